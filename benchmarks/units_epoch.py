"""One training epoch of each unit at the ablation study's matched size: fused kernels
(LSTM, GRU) against plug-in units without one (minGRU, minLSTM, or a user's ``--unit``).

    .venv/bin/python benchmarks/units_epoch.py [--dataset jsb] [--members 10] [--epochs 1]
        [--units lstm gru mingru minlstm] [--unit path/to/cell.py:Class] [--threads 1]

Each unit trains as the ablation's learning-rate search does: a population of ``--members``
at the paper's candidates, the paper's protocol (weight noise, clipping, RMSProp, a
validation pass and checkpoints each epoch), hidden size matched by recurrent parameters
(``rnnbench.analysis.units.hidden_size``). The warm-up of ``train_population`` (numba
compilation) is outside the timed epochs. Prints seconds per epoch (the trainer's own clock)
and the ratio to the first unit, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from rnnbench.analysis import units
from rnnbench.data.names import task_of
from rnnbench.data.registry import load_dataset
from rnnbench.train.config import RunConfig
from rnnbench.train.population import train_population
from rnnbench.units.cli import resolve_unit_arg


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="jsb")
    p.add_argument("--units", nargs="+", default=["gru", "lstm", "mingru", "minlstm"])
    p.add_argument("--unit", action="append", default=[], help="a user unit's SPEC, added")
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1, help="rounds over the units; the best kept")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset)
    lrs = np.exp(np.random.default_rng(0).uniform(-12, -6, args.members)).tolist()
    best: dict[str, tuple[int, float]] = {}
    for _ in range(args.repeat):  # rounds over every unit: load changes hit all of them
        for spec in [*args.units, *args.unit]:
            unit, source = resolve_unit_arg(spec)
            hidden = units.hidden_size(task_of(args.dataset), unit, "")
            configs = [
                RunConfig(
                    dataset=args.dataset,
                    unit=unit,
                    unit_source=source,
                    hidden=hidden,
                    lr=lr,
                    seed=k,
                    max_epochs=args.epochs,
                    patience=args.epochs + 1,
                )
                for k, lr in enumerate(lrs)
            ]
            with tempfile.TemporaryDirectory() as tmp:
                out = train_population(
                    configs,
                    out_dirs=[Path(tmp) / str(k) for k in range(len(configs))],
                    dataset=dataset,
                )
            sec = max(r["seconds"] for r in out) / args.epochs
            best[unit] = (hidden, min(sec, best.get(unit, (0, float("inf")))[1]))
            print(f"{unit:>8} H={hidden:<4} {sec:8.2f} s per epoch", flush=True)
    rows = [(u, h, s) for u, (h, s) in best.items()]
    base = rows[0][2]
    print(
        f"load average {os.getloadavg()[0]:.1f}; {args.dataset}, K={args.members}, "
        f"{args.threads} thread(s)"
    )
    for unit, hidden, sec in rows:
        print(f"| {unit} | {hidden} | {sec:.2f} s | {sec / base:.2f}x |")


if __name__ == "__main__":
    main()
