"""The fused output layer and loss (rnnbench.head_loss) against autograd, one batch at a time.

For each configuration it builds the population's model, takes the first training batches,
and times a training step (``model.nll``, the loss backward) and an evaluation step
(``model.step_nll`` without gradients) through both paths, alternating path by path and
repetition by repetition in one process; a batch's figure is its best ``time.process_time``
over the repetitions (the best filters out what other processes cost on a shared machine), and
the table gives the mean over the batches and the ratio::

    PYTHONPATH=src .venv/bin/python benchmarks/head_loss.py            # JSB and FSDD-A
    PYTHONPATH=src .venv/bin/python benchmarks/head_loss.py --repeats 40 --batches 8
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from rnnbench import head_loss
from rnnbench.data.batching import iterate_batches
from rnnbench.data.registry import load_dataset
from rnnbench.models import SequenceModel

ROOT = Path(__file__).resolve().parents[1]
# name: (data set, unit, population, batch size, hidden)
CONFIGS = {
    "jsb-lstm-10": ("jsb", "lstm", 10, 4, 36),
    "jsb-lstm-1": ("jsb", "lstm", 1, 4, 36),
    "fsdd-a-lstm-1": ("fsdd-a", "lstm", 1, 16, 36),
    "fsdd-a-lstm-20k": ("fsdd-a", "lstm", 1, 16, 61),  # 20,191 recurrent parameters
}


def step(model, batch, train: bool) -> None:
    if train:
        model.zero_grad()
        nll_sum, n, _ = model.nll(batch.x, batch.y, batch.mask)
        (nll_sum / n).sum().backward()
    else:
        with torch.no_grad():
            model.step_nll(batch.x, batch.y, batch.mask)


def measure(name: str, batches: int, repeats: int, data_dir: str) -> dict:
    dataset_name, unit, members, batch_size, hidden = CONFIGS[name]
    dataset = load_dataset(dataset_name, data_dir)
    model = SequenceModel(
        unit, dataset.in_dim, dataset.out_dim, hidden, head=dataset.head, population=members
    )
    chosen = list(iterate_batches(dataset.split("train"), batch_size, seed=0, epoch=1))[:batches]
    out = {}
    try:
        for train in (True, False):
            best = {p: [float("inf")] * len(chosen) for p in ("autograd", "fused")}
            for _ in range(repeats):
                for path in best:
                    head_loss._ENABLED = path == "fused"
                    for i, batch in enumerate(chosen):
                        start = time.process_time()
                        step(model, batch, train)
                        best[path][i] = min(best[path][i], time.process_time() - start)
            out["train" if train else "eval"] = {p: sum(v) / len(v) for p, v in best.items()}
    finally:
        head_loss._ENABLED = True
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=",".join(CONFIGS), help=", ".join(CONFIGS))
    p.add_argument("--batches", type=int, default=8, help="training batches timed (default 8)")
    p.add_argument("--repeats", type=int, default=25, help="repetitions per path (default 25)")
    p.add_argument("--data-dir", default=str(ROOT / "data"))
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n| configuration | step | autograd ms | fused ms | ratio |\n|---|---|---|---|---|")
    for name in args.configs.split(","):
        for kind, t in measure(name, args.batches, args.repeats, args.data_dir).items():
            a, f = t["autograd"] * 1e3, t["fused"] * 1e3
            print(f"| {name} | {kind} | {a:.3f} | {f:.3f} | {a / f:.2f}x |", flush=True)
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
