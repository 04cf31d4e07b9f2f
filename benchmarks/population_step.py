"""One training update of K stacked models against K single-model updates, nothing else.

    .venv/bin/python benchmarks/population_step.py \
        [--unit lstm] [--members 10] [--batch-size 16] [--steps 30] [--threads 1]

An update is the protocol's inner loop on one JSB minibatch at the paper's music size: weight
noise on, forward, backward, noise off, per-member gradient clipping, RMSProp. The population
side runs it once for a stacked model of K members; the other side runs it K times for a K = 1
model (with the numba kernels, and again with the per-step torch loop). No evaluation, no
checkpoints: this isolates what stacking saves per step (benchmarks/population.py times whole
training runs). Prints milliseconds per model per update and the ratios.
"""

from __future__ import annotations

import argparse
import time

import torch

from rnnbench.data.batching import iterate_batches
from rnnbench.data.registry import load_dataset
from rnnbench.models import SequenceModel, paper_hidden
from rnnbench.train.protocol import PopulationRMSProp, WeightNoise, clip_member_grad_norms


def updater(unit: str, k: int, data, backend: str):
    """A closure doing one protocol update of a K-member model on a given batch."""
    hidden = paper_hidden("music", unit)
    model = SequenceModel(
        unit,
        data.in_dim,
        data.out_dim,
        hidden,
        head=data.head,
        population=k,
        seeds=list(range(k)),
        backend=backend,
    )
    params = list(model.parameters())
    opt = PopulationRMSProp(params, [1e-3] * k, decay=0.95, momentum=0.9, eps=1e-6)
    noise = WeightNoise(list(range(k)), 0.075)
    active = torch.ones(k, dtype=torch.bool)

    def update(batch) -> None:
        opt.zero_grad()
        with noise.applied(model.weight_matrices()):
            nll_sum, n, _ = model.nll(batch.x, batch.y, batch.mask)
            (nll_sum / n).sum().backward()
        clip_member_grad_norms(params, 1.0)
        opt.step(active)

    return update


def per_model_ms(update, batches, k: int, rounds: int = 3) -> float:
    """Best of ``rounds`` passes over the batches (after a warm-up), per model per update."""
    for b in batches[:2]:
        update(b)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for b in batches:
            update(b)
        best = min(best, time.perf_counter() - start)
    return best * 1e3 / (len(batches) * k)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--unit", default="lstm", choices=["tanh", "lstm", "gru"])
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=30, help="minibatches timed (default 30)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("jsb")
    batches = list(iterate_batches(data.split("train"), args.batch_size, seed=0, epoch=0))
    batches = batches[: args.steps]
    k = args.members
    frames = sum(int(b.mask.sum()) for b in batches) / len(batches)
    print(
        f"jsb {args.unit} (paper size), batch {args.batch_size} (~{frames:.0f} frames), "
        f"{k} members, {len(batches)} updates, {args.threads} thread(s)"
    )
    stacked = per_model_ms(updater(args.unit, k, data, "auto"), batches, k)
    print(f"population of {k} (numba):       {stacked:6.2f} ms per model per update")
    for backend in ("numba", "torch"):
        single = per_model_ms(updater(args.unit, 1, data, backend), batches, 1)
        print(
            f"one model at a time ({backend}): {single:6.2f} ms per update "
            f"-> population {single / stacked:.2f}x faster"
        )


if __name__ == "__main__":
    main()
