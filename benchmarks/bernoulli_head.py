"""The music head in the manual training pass: torch ops against the numba pass, per batch.

For each configuration it takes the population's first training batches (their targets and
masks, hidden states of the model's size drawn at random: the head's cost does not depend on
their values) and times, alternating path by path and repetition by repetition in one
process, the piece of ``rnnbench.train.manual_step.ManualPass`` that the Bernoulli kernel
replaced: the logits, the masked NLL, its gradient and the two backward products
(``head_loss._logits``, ``_evaluate``, ``backward_products``: "torch") against
``head_loss.bernoulli_pass`` ("kernel"); and the evaluation's ``head_loss.step_nll`` with the
kernel off and on. A batch's figure is its best ``time.process_time`` over the repetitions
(the best filters out what other processes cost on a shared machine); the table gives the
mean over the batches in microseconds and the ratio::

    PYTHONPATH=src .venv/bin/python benchmarks/bernoulli_head.py
    PYTHONPATH=src .venv/bin/python benchmarks/bernoulli_head.py --configs jsb-lstm-10 --repeats 40
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
from rnnbench.heads import BernoulliHead

ROOT = Path(__file__).resolve().parents[1]
# name: (data set, population, batch size, hidden): benchmarks/epoch.py's music rows
CONFIGS = {
    "jsb-lstm-10": ("jsb", 10, 4, 36),
    "jsb-gru-10": ("jsb", 10, 4, 46),
    "jsb-lstm-1": ("jsb", 1, 4, 36),
    "jsb-gru-authors-3": ("jsb", 3, 1, 46),
    "nottingham-tanh-4": ("nottingham", 4, 4, 100),
}


def torch_pass(head, out, w, b, y, mask, scale) -> None:
    a = head_loss._logits(out, w, b)
    rows, g, real_f = head_loss._evaluate(head, a, y, mask, True)
    head_loss.backward_products(out, w, g, real_f, scale)
    rows.sum(1)


def kernel_pass(head, out, w, b, y, mask, scale) -> None:
    head_loss.bernoulli_pass(out, w, b, y, mask, scale)[0].sum(1)


def measure(name: str, batches: int, repeats: int, data_dir: str) -> dict:
    dataset_name, members, batch_size, hidden = CONFIGS[name]
    dataset = load_dataset(dataset_name, data_dir)
    chosen = list(iterate_batches(dataset.split("train"), batch_size, seed=0, epoch=1))[:batches]
    head = BernoulliHead(dataset.out_dim)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(members, dataset.out_dim, hidden, generator=g) * 0.2
    b = torch.randn(members, dataset.out_dim, generator=g)
    args = []
    for batch in chosen:
        t, bs = batch.x.shape[:2]
        out = torch.randn(members, t, bs, hidden, generator=g).tanh()
        scale = torch.full((members,), 1.0 / float((batch.mask > 0).sum()))
        args.append((out, batch.y, batch.mask, scale))
    runs = {
        "train": {"torch": torch_pass, "kernel": kernel_pass},
        "eval": {
            "torch": lambda *a: head_loss.step_nll(*a[:6]),
            "kernel": lambda *a: head_loss.step_nll(*a[:6]),
        },
    }
    result = {}
    try:
        for kind, paths in runs.items():
            best = {p: [float("inf")] * len(args) for p in paths}
            for _ in range(repeats):
                for path, fn in paths.items():
                    head_loss._KERNEL = path == "kernel"
                    for i, (out, y, mask, scale) in enumerate(args):
                        start = time.process_time()
                        fn(head, out, w, b, y, mask, scale)
                        best[path][i] = min(best[path][i], time.process_time() - start)
            result[kind] = {p: sum(v) / len(v) for p, v in best.items()}
    finally:
        head_loss._KERNEL = True
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=",".join(CONFIGS), help=", ".join(CONFIGS))
    p.add_argument("--batches", type=int, default=8, help="training batches timed (default 8)")
    p.add_argument("--repeats", type=int, default=20, help="repetitions per path (default 20)")
    p.add_argument("--data-dir", default=str(ROOT / "data"))
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n| configuration | step | torch us | kernel us | ratio |\n|---|---|---:|---:|---:|")
    for name in args.configs.split(","):
        for kind, t in measure(name, args.batches, args.repeats, args.data_dir).items():
            a, f = t["torch"] * 1e6, t["kernel"] * 1e6
            print(f"| {name} | {kind} | {a:.0f} | {f:.0f} | {a / f:.2f}x |", flush=True)
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
