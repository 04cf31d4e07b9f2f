"""The Bernoulli head's kernel over the real steps only, against another commit's, in CPU time.

``rnnbench.nn.kernels.bernoulli.head_pass`` of this tree and of commit ``--baseline`` (its
``bernoulli.py`` alone, loaded from a cache folder beside the other tree's, so that it compiles
once) run, alternating repetition by repetition in one process, on JSB's real batches with
hidden states drawn at random (the head's cost does not depend on their values):

- ``train``: the population's shared training batches (``--members`` members, batch 4, epoch 1;
  bucketed by length, about 2% padded steps), with gradients, as the compiled update runs it;
- ``valid``: the validation batches (sorted by length, about 3% padded), without gradients, as
  the compiled evaluation runs it;
- ``seeds``: the windows of a population of ``--members`` fresh seeds (each member its own batch
  order, padded to the update's longest and widest window: about 35-45% padded), with
  gradients, member by member as the compiled driver calls it.

A batch's figure is its best ``time.process_time`` over ``--repeats``; the table gives the
mean over the batches in microseconds per call, the ratio, and the largest absolute difference
between the two kernels' outputs::

    PYTHONPATH=$PWD/src python benchmarks/head_real_rows.py --baseline 7755466
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "src/rnnbench/nn/kernels/bernoulli.py"


def _baseline(rev: str):
    """Commit ``rev``'s ``bernoulli`` module, loaded from its own cache folder."""
    sha = subprocess.run(
        ["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    folder = Path(tempfile.gettempdir()) / f"rnnbench-head-{sha[:12]}"
    folder.mkdir(exist_ok=True)
    path = folder / "bernoulli_baseline.py"
    source = subprocess.run(
        ["git", "show", f"{sha}:{KERNEL}"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    if not path.exists() or path.read_bytes() != source:
        path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("bernoulli_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # numba's cache finds the module of what it loads by name
    spec.loader.exec_module(module)
    return module


def _calls(windows, members: int, hidden: int, grad: bool, rng) -> list[tuple]:
    """``head_pass`` arguments for ``members`` members per window ``(y (1, T, B, D), mask
    (1, T, B))`` (the targets and mask shared by the members)."""
    calls = []
    for y, mask in windows:
        _, t, b, d = y.shape
        r = t * b
        w = (rng.standard_normal((members, d, hidden)) * 0.2).astype(np.float32)
        bias = rng.standard_normal((members, d)).astype(np.float32)
        out = np.tanh(rng.standard_normal((members, r, hidden))).astype(np.float32)
        real = (mask.reshape(1, r) > 0).copy()
        scale = np.full(members, 1.0 / max(1, real.sum()), np.float32)
        if grad:
            shapes = ((members, r, hidden), (members, d, hidden), (members, d))
            grads = [np.empty(s, np.float32) for s in shapes]
        else:
            grads = [np.empty((0, 0, 0), np.float32)] * 2 + [np.empty((0, 0), np.float32)]
        calls.append(
            (out, w, bias, y.reshape(1, r, d).copy(), real, scale, grad,
             np.empty((members, r), np.float32), *grads)
        )  # fmt: skip
    return calls


def _windows(kind: str, members: int, batches: int) -> list[tuple]:
    """The JSB windows of ``kind`` (module docstring) as ``(y, mask)`` numpy arrays."""
    from rnnbench.data.batching import iterate_batches
    from rnnbench.data.registry import load_dataset
    from rnnbench.train.config import RunConfig
    from rnnbench.train.minibatches import population_batches

    data = load_dataset("jsb", str(ROOT / "data"))
    if kind == "seeds":
        configs = [
            RunConfig(dataset="jsb", unit="lstm", batch_size=4, lr=1e-3, seed=s, data_seed=s)
            for s in range(1, members + 1)
        ]
        found = []
        for pb in list(population_batches(data.split("train"), configs, 1))[:batches]:
            for k in range(members):  # member by member, as the compiled driver
                found.append((pb.y[k : k + 1].numpy(), pb.mask[k : k + 1].numpy()))
        return found
    if kind == "train":
        chosen = list(iterate_batches(data.split("train"), 4, seed=0, epoch=1))[:batches]
    else:
        chosen = list(iterate_batches(data.split("valid"), 4, seed=0, epoch=0, shuffle=False))
    return [(b.y.numpy()[None], b.mask.numpy()[None]) for b in chosen]


def main() -> None:
    from rnnbench.nn.kernels import bernoulli

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default="7755466", help="the commit to compare with")
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--hidden", type=int, default=46, help="46: the JSB GRU; 36: the LSTM")
    p.add_argument("--batches", type=int, default=8, help="training updates timed")
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    old = _baseline(args.baseline)
    rng = np.random.default_rng(0)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\nmembers {args.members}, hidden {args.hidden}, baseline {args.baseline}\n")
    print("| batches | real steps | baseline us | this us | ratio | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in ("train", "valid", "seeds"):
        windows = _windows(kind, args.members, args.batches)
        fraction = sum(m.sum() for _, m in windows) / sum(m.size for _, m in windows)
        members = 1 if kind == "seeds" else args.members
        calls = _calls(windows, members, args.hidden, kind != "valid", rng)
        outs = {}
        for name, mod in (("old", old), ("new", bernoulli)):
            outs[name] = []
            for c in calls:
                mod.head_pass(*c)
                outs[name].append([a.copy() for a in c[7:]])
        diff = max(
            float(np.abs(a - b).max()) if a.size else 0.0
            for o, n in zip(outs["old"], outs["new"], strict=True)
            for a, b in zip(o, n, strict=True)
        )
        best = {"old": [float("inf")] * len(calls), "new": [float("inf")] * len(calls)}
        for _ in range(args.repeats):
            for name, mod in (("old", old), ("new", bernoulli)):
                for i, c in enumerate(calls):
                    start = time.process_time()
                    mod.head_pass(*c)
                    best[name][i] = min(best[name][i], time.process_time() - start)
        o, n = (1e6 * sum(best[x]) / len(calls) for x in ("old", "new"))
        print(f"| {kind} | {fraction:.3f} | {o:.0f} | {n:.0f} | {o / n:.2f}x | {diff:.2g} |")
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
