"""What one member and step of a JSB population costs inside the compiled update's kernels.

    PYTHONPATH=src .venv/bin/python benchmarks/member_step.py [--repeats 40]

Issue 22's populations of 10 (K = 10 members, batch B = 4, T = 61 steps: a JSB batch's mean
length) spend their update in the recurrent kernels, the Bernoulli head and the work over every
parameter. This prints CPU microseconds per member and step (``time.process_time``, numba's
BLAS on one thread, as the trainer runs it with ``--threads 1``), each the median of
``--repeats`` calls after a warm-up:

- the per-step products of the kernels alone (OpenBLAS's small-matrix kernels through numba's
  ``np.dot``), at the LSTM's and the GRU's shapes and at the GRU's padded to multiples of 16;
- the LSTM's and the GRU's forward and backward kernels and the head, each on hot caches;
- the LSTM's forward, head and backward in a row over all members, then member by member,
  each call after a 3.2 MB array has been written (caches cold, as in an update): the same
  arithmetic in another order, to see whether a member's working set kept in cache pays.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np

from rnnbench.nn.kernels import bernoulli, glue
from rnnbench.nn.kernels.gru import gru_backward, gru_forward
from rnnbench.nn.kernels.lstm import lstm_backward, lstm_forward
from rnnbench.train.compiled_driver import _head

K, T, B, D = 10, 61, 4, 88
R = T * B


@numba.njit
def _dots(a, w, out, n):
    for _ in range(n):
        np.dot(a, w, out)


@numba.njit
def _all_members(xw, w, b, wch, mask, h0, wo, bo, y, real, scale, trash):
    trash[:] += 1.0
    out, hn, cn, hs, cs, acts = lstm_forward(xw, w, b, wch, False, mask, h0, h0)
    rows, d_out, _, _ = _head(out, wo, bo, y, real, scale)
    grads = lstm_backward(d_out, h0, h0, w, wch, False, mask, hs, cs, acts)
    return rows.sum() + grads[1].sum()


@numba.njit
def _member_by_member(xw, w, b, wch, mask, h0, wo, bo, y, real, scale, trash):
    trash[:] += 1.0
    total = 0.0
    G, H = xw.shape[3], h0.shape[2]
    for k in range(xw.shape[0]):
        x1, w1 = xw[k].reshape(1, T, B, G), w[k].reshape(1, G, H)
        b1, c1 = b[k].reshape(1, G), wch[k].reshape(1, 3, H)
        m1, z = mask[k].reshape(1, T, B), h0[k].reshape(1, B, H)
        out, hn, cn, hs, cs, acts = lstm_forward(x1, w1, b1, c1, False, m1, z, z)
        rows, d_out, _, _ = _head(
            out, wo[k].reshape(1, D, H), bo[k].reshape(1, D), y, real, scale[k : k + 1]
        )
        grads = lstm_backward(d_out, z, z, w1, c1, False, m1, hs, cs, acts)
        total += rows.sum() + grads[1].sum()
    return total


def _median_us(fn, args, repeats, per):
    fn(*args)
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn(*args)
        times.append(time.process_time() - start)
    return statistics.median(times) / per * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=40)
    args = p.parse_args()
    glue._set_blas_threads(1)
    rng = np.random.default_rng(0)
    print("per-step products, one call (us, GFLOP/s):")
    for rows, inner, cols in [(4, 36, 144), (4, 144, 36), (4, 46, 92), (4, 48, 96), (4, 46, 46)]:
        a = rng.random((rows, inner), dtype=np.float32)
        w = rng.random((inner, cols), dtype=np.float32)
        out = np.empty((rows, cols), np.float32)
        us = _median_us(_dots, (a, w, out, 20_000), max(3, args.repeats // 10), 20_000)
        print(f"  ({rows}, {inner}) x ({inner}, {cols}): {us:.3f} us, "
              f"{2 * rows * inner * cols / us / 1e3:.1f} GFLOP/s")  # fmt: skip
    y = (rng.random((1, R, D)) < 0.05).astype(np.float32)
    real = np.ones((1, R), np.bool_)
    scale = np.ones(K, np.float32)
    mask = np.ones((K, T, B), np.float32)
    per = K * T
    print(f"kernels on hot caches, K={K}, T={T}, B={B} (us per member and step):")
    for unit, H, G in (("lstm", 36, 144), ("gru", 46, 138)):
        xw = (rng.standard_normal((K, T, B, G)) * 0.5).astype(np.float32)
        w = (rng.standard_normal((K, G, H)) * 0.1).astype(np.float32)
        b = np.zeros((K, G), np.float32)
        h0 = np.zeros((K, B, H), np.float32)
        if unit == "lstm":
            wch = np.zeros((K, 3, H), np.float32)
            fwd = (xw, w, b, wch, False, mask, h0, h0)
            out, hn, cn, hs, cs, acts = lstm_forward(*fwd)
            d = rng.standard_normal(out.shape).astype(np.float32)
            fw = _median_us(lstm_forward, fwd, args.repeats, per)
            bargs = (d, h0, h0, w, wch, False, mask, hs, cs, acts)
            bw = _median_us(lstm_backward, bargs, args.repeats, per)
        else:
            fwd = (xw, w, b, True, mask, h0)
            out, hn, hs, acts, aux = gru_forward(*fwd)
            d = rng.standard_normal(out.shape).astype(np.float32)
            fw = _median_us(gru_forward, fwd, args.repeats, per)
            bargs = (d, h0, w, True, mask, hs, acts, aux)
            bw = _median_us(gru_backward, bargs, args.repeats, per)
        wo = (rng.standard_normal((K, D, H)) * 0.1).astype(np.float32)
        bo = np.zeros((K, D), np.float32)
        head = (out.reshape(K, R, H), wo, bo, y, real, scale, True, np.empty((K, R), np.float32),
                np.empty((K, R, H), np.float32), np.empty((K, D, H), np.float32),
                np.empty((K, D), np.float32))  # fmt: skip
        hd = _median_us(bernoulli.head_pass, head, args.repeats, per)
        print(f"  {unit} (H={H}): forward {fw:.2f}, backward {bw:.2f}, head {hd:.2f}")
    H, G = 36, 144
    xw = (rng.standard_normal((K, T, B, G)) * 0.5).astype(np.float32)
    w = (rng.standard_normal((K, G, H)) * 0.1).astype(np.float32)
    wo = (rng.standard_normal((K, D, H)) * 0.1).astype(np.float32)
    common = (xw, w, np.zeros((K, G), np.float32), np.zeros((K, 3, H), np.float32), mask,
              np.zeros((K, B, H), np.float32), wo, np.zeros((K, D), np.float32), y, real, scale,
              np.zeros(800_000, np.float32))  # fmt: skip
    times = {f.__name__: [] for f in (_all_members, _member_by_member)}
    for f in (_all_members, _member_by_member):
        f(*common)
    for _ in range(args.repeats):  # alternating
        for f in (_all_members, _member_by_member):
            start = time.process_time()
            f(*common)
            times[f.__name__].append(time.process_time() - start)
    print("LSTM forward + head + backward, caches cold (us per member and step):")
    for name, spent in times.items():
        print(f"  {name.strip('_').replace('_', ' ')}: {statistics.median(spent) / per * 1e6:.2f}")


if __name__ == "__main__":
    main()
