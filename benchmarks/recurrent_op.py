"""CPU microseconds of one fused recurrent layer, forward and backward, against another commit.

    .venv/bin/python benchmarks/recurrent_op.py [--baseline REV] [--repeats 3] [--part kernels]

What one training update spends in the recurrent layer of the issue-22 configurations: the
input projection, the fused kernels with their glue and autograd, on one thread. Each shape
runs ``run_unit(..., backend="numba")`` forward and ``out.sum().backward()`` 200 times after
20 warm-up calls, in a fresh worker process per tree and repeat (``--baseline REV`` exports
commit ``REV`` as ``benchmarks/epoch.py`` does, and the two trees alternate); a run's figure
is the best of five blocks of ``time.process_time`` per call (CPU time: a loaded machine
disturbs it far less than the wall clock), and the table gives the median over the repeats
and the baseline / this ratio. Shapes: ``cell K T B H`` with 88 inputs (a piano roll),
members K, steps T, batch B, units H (the paper's music sizes: LSTM 36, GRU 46, tanh 100).

``--part kernels`` times the recurrent kernels with their glue alone, as the manual training
pass calls them (``rnnbench.nn.kernels.glue.forward`` and ``backward`` on plain tensors, no
autograd, no input projection), forward and backward separately, with a random output
gradient; each worker alternates the two within its blocks, and the table gives forward,
backward and their sum per tree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    "jsb-lstm-10": ("lstm", 10, 60, 4, 36),
    "jsb-gru-10": ("gru", 10, 60, 4, 46),
    "jsb-lstm-1": ("lstm", 1, 60, 4, 36),
    "jsb-gru-authors-3": ("gru", 3, 60, 1, 46),
    "nottingham-tanh-4": ("tanh", 4, 60, 4, 100),
}


def worker(name: str) -> float:
    import time

    import torch

    from rnnbench.nn.functional import run_unit

    torch.set_num_threads(1)
    cell, K, T, B, H = SHAPES[name]
    G = {"lstm": 4, "gru": 3, "tanh": 1}[cell]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, 88, generator=gen)
    w_ih = (0.1 * torch.randn(K, G * H, 88, generator=gen)).requires_grad_()
    w_hh = (0.1 * torch.randn(K, G * H, H, generator=gen)).requires_grad_()
    b_ih = torch.zeros(K, G * H, requires_grad=True)
    b_hh = torch.zeros(K, G * H, requires_grad=True)
    mask = torch.ones(T, B)

    def once():
        out = run_unit(cell, x, w_ih, w_hh, b_ih, b_hh, mask=mask, backend="numba")[0]
        out.sum().backward()

    for _ in range(20):
        once()
    blocks = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(200):
            once()
        blocks.append((time.process_time() - start) / 200 * 1e6)
    return min(blocks)


def kernels_worker(name: str) -> list[float]:
    """Best-of-five CPU microseconds of ``glue.forward`` and ``glue.backward`` at ``name``."""
    import time

    import torch

    from rnnbench.nn.kernels import glue

    torch.set_num_threads(1)
    cell, K, T, B, H = SHAPES[name]
    G = {"lstm": 4, "gru": 3, "tanh": 1}[cell]
    gen = torch.Generator().manual_seed(0)
    xw = torch.randn(K, T, B, G * H, generator=gen)
    w_hh = 0.1 * torch.randn(K, G * H, H, generator=gen)
    b_hh = torch.zeros(K, G * H)
    mask = torch.ones(T, B)
    h0 = torch.zeros(K, B, H)
    c0 = torch.zeros(K, B, H) if cell == "lstm" else None
    config = (cell, "before", False, "")  # the GRU's reset as the paper's and epoch.py's
    out, h_n, c_n, hs, cs, acts, aux = glue.forward(*config, xw, w_hh, b_hh, None, mask, h0, c0)
    d_out = torch.randn(K, T, B, H, generator=gen)
    d_hn = torch.zeros(K, B, H)
    d_cn = torch.zeros(K, B, H) if cell == "lstm" else None
    calls = {
        "forward": lambda: glue.forward(*config, xw, w_hh, b_hh, None, mask, h0, c0),
        "backward": lambda: glue.backward(
            *config, d_out, d_hn, d_cn, w_hh, None, mask, out, hs, cs, acts, aux
        ),
    }
    n = max(50, 12000 // (K * B))
    best = {part: float("inf") for part in calls}
    for block in range(6):
        for part, call in calls.items():
            start = time.process_time()
            for _ in range(n):
                call()
            if block:  # the first block warms up
                best[part] = min(best[part], (time.process_time() - start) / n * 1e6)
    return [best["forward"], best["backward"]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", help="a commit to time in the same run, alternating")
    p.add_argument("--repeats", type=int, default=3, help="workers per tree and shape")
    p.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shape names")
    p.add_argument(
        "--part", choices=("layer", "kernels"), default="layer",
        help="layer: projection, kernels and autograd; kernels: the kernels and glue alone",
    )  # fmt: skip
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        run = kernels_worker if args.part == "kernels" else worker
        print(json.dumps(run(args.worker)))
        return
    trees = {"this": ROOT}
    if args.baseline:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from epoch import export

        trees = {"baseline": export(args.baseline), "this": ROOT}
    names = args.shapes.split(",")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    runs = {n: {t: [] for t in trees} for n in names}
    for name in names:
        for rep in range(args.repeats):
            for tree in list(trees) if rep % 2 == 0 else list(reversed(trees)):
                env = {**os.environ, "PYTHONPATH": str(trees[tree] / "src")}
                done = subprocess.run(
                    [sys.executable, __file__, "--worker", name, "--part", args.part],
                    env=env, capture_output=True, text=True, check=True,
                )  # fmt: skip
                runs[name][tree].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    if args.part == "kernels":
        kernels_table(names, runs, trees)
        return
    print("| shape (cell K T B H) | " + " | ".join(f"{t} CPU us" for t in trees) + " | ratio |")
    print("|---|" + "---|" * (len(trees) + 1))
    for name in names:
        med = {t: statistics.median(runs[name][t]) for t in trees}
        ratio = f"{med['baseline'] / med['this']:.2f}x" if args.baseline else "-"
        cells = " | ".join(f"{med[t]:.0f}" for t in trees)
        print(f"| {name} ({' '.join(map(str, SHAPES[name]))}) | {cells} | {ratio} |")


def kernels_table(names, runs, trees) -> None:
    """Forward, backward and their sum, medians over the repeats, and the sums' ratio."""
    heads = " | ".join(f"{t} fwd | {t} bwd | {t} sum" for t in trees)
    print(f"| shape (cell K T B H) | {heads} | ratio |")
    print("|---|" + "---|" * (3 * len(trees) + 1))
    for name in names:
        cells, sums = [], {}
        for tree in trees:
            fwd = statistics.median(r[0] for r in runs[name][tree])
            bwd = statistics.median(r[1] for r in runs[name][tree])
            sums[tree] = statistics.median(r[0] + r[1] for r in runs[name][tree])
            cells.append(f"{fwd:.0f} | {bwd:.0f} | {sums[tree]:.0f}")
        ratio = f"{sums['baseline'] / sums['this']:.2f}x" if "baseline" in sums else "-"
        print(f"| {name} ({' '.join(map(str, SHAPES[name]))}) | {' | '.join(cells)} | {ratio} |")


if __name__ == "__main__":
    main()
