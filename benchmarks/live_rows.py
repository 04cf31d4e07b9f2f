"""The recurrent kernels over a batch's real rows only: CPU time of the fused GRU and LSTM
forward and backward kernels on batches with JSB's real sequence lengths, this tree against
another commit, alternating.

    PYTHONPATH=$PWD/src .venv/bin/python benchmarks/live_rows.py --baseline 7755466

Each worker draws the same 30 batches of 4 training sequences (JSB Chorales' lengths, padded
at their end to the longest, about 26% of the (step, row) slots padding) for a population of
10 members at the paper's JSB sizes (GRU 46 units, LSTM 36), calls the numba kernels directly
on one thread, and prints the best of five blocks' CPU microseconds per batch. Besides the
times it prints the kernels' results' checksum, so that two trees' outputs can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {"gru": 46, "lstm": 36}
K, B, BATCHES = 10, 4, 30


def lengths() -> list[int]:
    from rnnbench.data.music import load_mat_rolls

    return [len(r) for r in load_mat_rolls(ROOT / "data" / "music" / "JSB_Chorales.mat")["train"]]


def worker() -> dict:
    """Best-of-five CPU microseconds per batch of each kernel pair, and checksums."""
    import time

    import numpy as np

    from rnnbench.nn.kernels import gru, lstm

    rng = np.random.default_rng(0)
    lens = lengths()
    batches = []
    for _ in range(BATCHES):
        pick = rng.choice(len(lens), B, replace=False)
        ls = [lens[i] for i in pick]
        mask = np.zeros((K, max(ls), B), np.float32)
        for b, n in enumerate(ls):
            mask[:, :n, b] = 1
        batches.append(mask)
    result = {}
    for cell, H in CASES.items():
        G = {"gru": 3, "lstm": 4}[cell] * H
        w = (0.2 * rng.standard_normal((K, G, H))).astype(np.float32)
        bh = (0.1 * rng.standard_normal((K, G))).astype(np.float32)
        wc = np.zeros((K, 3, H), np.float32)
        h0 = np.zeros((K, B, H), np.float32)
        data = []
        for mask in batches:
            T = mask.shape[1]
            xw = rng.standard_normal((K, T, B, G)).astype(np.float32)
            d_out = rng.standard_normal((K, T, B, H)).astype(np.float32) * mask[..., None]
            data.append((mask, xw, d_out))

        if cell == "gru":

            def fwd(mask, xw, w=w, bh=bh, h0=h0):
                return gru.gru_forward(xw, w, bh, True, mask, h0)

            def bwd(mask, d_out, o, w=w, h0=h0):
                return gru.gru_backward(d_out, h0, w, True, mask, o[2], o[3], o[4])
        else:

            def fwd(mask, xw, w=w, bh=bh, wc=wc, h0=h0):
                return lstm.lstm_forward(xw, w, bh, wc, False, mask, h0, h0)

            def bwd(mask, d_out, o, w=w, wc=wc, h0=h0):
                return lstm.lstm_backward(d_out, h0, h0, w, wc, False, mask, o[3], o[4], o[5])

        outs = [fwd(mask, xw) for mask, xw, _ in data]
        grads = [bwd(mask, d, o) for (mask, _, d), o in zip(data, outs, strict=True)]
        best = {"forward": float("inf"), "backward": float("inf")}
        for _ in range(5):
            start = time.process_time()
            for mask, xw, _ in data:
                fwd(mask, xw)
            best["forward"] = min(best["forward"], time.process_time() - start)
            start = time.process_time()
            for (mask, _, d), o in zip(data, outs, strict=True):
                bwd(mask, d, o)
            best["backward"] = min(best["backward"], time.process_time() - start)
        result[cell] = {part: v / BATCHES * 1e6 for part, v in best.items()}
        result[cell]["sum"] = float(sum(float(np.abs(g[1]).sum()) for g in grads))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", help="a commit to time in the same run, alternating")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        os.environ.setdefault("NUMBA_NUM_THREADS", "1")
        print(json.dumps(worker()))
        return
    trees = {"this": ROOT / "src"}
    tmp = None
    if args.baseline:
        tmp = tempfile.TemporaryDirectory()
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", tmp.name, args.baseline],
            check=True, capture_output=True,
        )  # fmt: skip
        trees["base"] = Path(tmp.name) / "src"
    runs = {name: [] for name in trees}
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    try:
        for _ in range(args.repeats):
            for name, src in trees.items():
                out = subprocess.run(
                    [sys.executable, __file__, "--worker"],
                    env=dict(env, PYTHONPATH=str(src)), capture_output=True, text=True,
                    check=True, cwd=ROOT,
                )  # fmt: skip
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        if tmp is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", tmp.name])
            tmp.cleanup()
    print(f"load average {os.getloadavg()[0]:.1f}; us per batch of 4, population of {K}")
    for cell in CASES:
        for part in ("forward", "backward"):
            line = f"{cell:5s} {part:9s}"
            for name in trees:
                vals = sorted(r[cell][part] for r in runs[name])
                mid = vals[len(vals) // 2]
                line += f"  {name}: median {mid:8.1f} ({vals[0]:.1f}-{vals[-1]:.1f})"
            if "base" in trees:
                both = zip(runs["this"], runs["base"], strict=True)
                pairs = [b[cell][part] / t[cell][part] for t, b in both]
                line += "  ratios " + " ".join(f"{x:.2f}" for x in pairs)
            print(line)
        sums = "  ".join(f"{n}: {runs[n][0][cell]['sum']:.6g}" for n in trees)
        print(f"{cell:5s} checksum  {sums}")


if __name__ == "__main__":
    main()
