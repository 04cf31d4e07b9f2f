"""How rnnbench makes a population of a plug-in unit: ``torch.func.vmap`` over the one-model
code (what :mod:`rnnbench.units.runner` does) against a loop over K separate models.

    .venv/bin/python benchmarks/units_population.py [--members 10] [--repeat 3] [--threads 1]
        [--unit path/to/cell.py:Class ...]

One forward and backward pass (NLL of every step, summed) over the 15 JSB training batches
of 16 sequences, the units at the ablation's matched music size, best of ``--repeat``
passes. Both sides compute the same numbers (the largest difference of the losses is
printed); the ratio is measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from rnnbench.analysis import units
from rnnbench.data.batching import iterate_batches
from rnnbench.data.registry import load_dataset
from rnnbench.models import SequenceModel
from rnnbench.units.cli import resolve_unit_arg


def pass_time(models, batches, repeat: int) -> tuple[float, list[float]]:
    best, losses = float("inf"), []
    for _ in range(repeat):
        start = time.perf_counter()
        losses = []
        for b in batches:
            for m in models:
                nll, _, _ = m.nll(b.x, b.y, b.mask)
                nll.sum().backward()
                losses += nll.detach().tolist()
        best = min(best, time.perf_counter() - start)
    return best, losses


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--unit", action="append", default=[])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("jsb")
    batches = list(iterate_batches(data.split("train"), 16, seed=0, epoch=0))
    k = args.members
    print(f"load average {os.getloadavg()[0]:.1f}; JSB train, {len(batches)} batches, K={k}")
    print("| unit | H | vmap population | loop over K models | loop / vmap | max loss diff |")
    print("|---|---|---|---|---|---|")
    for spec in ["mingru", "minlstm", *args.unit]:
        unit, _ = resolve_unit_arg(spec)
        hidden = units.hidden_size("music", unit, "")

        def model(pop, seeds, unit=unit, hidden=hidden):
            return SequenceModel(
                unit, 88, 88, hidden, head="bernoulli", population=pop, seeds=seeds
            )

        t_vmap, l_vmap = pass_time([model(k, list(range(k)))], batches, args.repeat)
        t_loop, l_loop = pass_time([model(1, [s]) for s in range(k)], batches, args.repeat)
        # the loop's losses are member-major within each batch, as the population's
        diff = max(abs(a - b) for a, b in zip(sorted(l_vmap), sorted(l_loop), strict=True))
        print(
            f"| {unit} | {hidden} | {t_vmap:.2f} s | {t_loop:.2f} s | "
            f"{t_loop / t_vmap:.2f}x | {diff:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
