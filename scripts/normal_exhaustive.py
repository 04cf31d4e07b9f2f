"""Every float32 uniform torch's CPU ``normal_`` can draw, through torch and through
:mod:`rnnbench.train.noise_stream`, compared bit for bit.

torch's float32 ``normal_`` turns uniforms :math:`u = k\\,2^{-24}` (:math:`k < 2^{24}`) into
normals in pairs: :math:`\\sqrt{-2\\log(1-u_1)}` times the cosine and the sine of
:math:`2\\pi u_2`. Here a generator's Mersenne state is set (``set_state``) so that its next
608 outputs are chosen words (the tempering inverted, no twist in between), and ``normal_``
on 608 numbers turns them into 304 chosen pairs. Four sweeps of all :math:`2^{24}` values:
:math:`u_1 = u_2`, :math:`u_2 = 0` (the radius alone, :math:`\\cos 0 = 1`), :math:`u_1 = 1/2`
(sine and cosine times one radius), and :math:`u_2 = 7919\\,k \\bmod 2^{24}`.

    PYTHONPATH=src .venv/bin/python scripts/normal_exhaustive.py [--count 16777216]

About 30 s on one core. Prints the mismatched numbers per sweep (0 where the two agree).
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
import torch

from rnnbench.train import noise_stream

PER = 304  # pairs per crafted state: 38 blocks of 16 numbers from state words 0..607


def untemper(y: np.ndarray) -> np.ndarray:
    """The state words whose mt19937 outputs are ``y`` (the tempering inverted)."""
    y = y.astype(np.uint64)
    y ^= y >> 18
    y ^= (y << 15) & 0xEFC60000
    t = y.copy()
    for _ in range(5):
        t = y ^ ((t << 7) & 0x9D2C5680)
    y = t & 0xFFFFFFFF
    t = y.copy()
    for _ in range(3):
        t = y ^ (t >> 11)
    return (t & 0xFFFFFFFF).astype(np.uint32)


def torch_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torch's ``(z_j, z_{j+8})`` for the uniforms ``a·2^-24`` and ``b·2^-24``."""
    n = a.shape[0]
    g = torch.Generator().manual_seed(0)
    state = g.get_state().numpy().copy()
    state[8:12].view(np.int32)[0] = 624  # left: 623 outputs before the next twist
    state[16:24].view(np.uint64)[0] = 0  # next
    words = state[24 : 24 + 8 * 624].view(np.uint64)
    tensor = torch.from_numpy(state)
    out = torch.empty(2 * PER)
    c, s = np.empty(n, np.float32), np.empty(n, np.float32)
    for start in range(0, n, PER):
        m = min(PER, n - start)
        first, second = np.zeros(PER, np.uint32), np.zeros(PER, np.uint32)
        first[:m], second[:m] = a[start : start + m], b[start : start + m]
        blocks = np.concatenate([first.reshape(-1, 8), second.reshape(-1, 8)], axis=1)
        words[: 2 * PER] = untemper(blocks.reshape(-1))
        g.set_state(tensor)
        out.normal_(generator=g)
        o = out.numpy().reshape(-1, 16)
        c[start : start + m] = o[:, :8].reshape(-1)[:m]
        s[start : start + m] = o[:, 8:].reshape(-1)[:m]
    return c, s


@numba.njit
def stream_pairs(a, b, c, s):
    scale = np.float32(1.0 / (1 << 24))
    for i in range(a.shape[0]):
        c[i], s[i] = noise_stream._pair(np.float32(a[i]) * scale, np.float32(b[i]) * scale)


def mismatches(a: np.ndarray, b: np.ndarray) -> int:
    want_c, want_s = torch_pairs(a, b)
    c, s = np.empty_like(want_c), np.empty_like(want_s)
    stream_pairs(a, b, c, s)
    return int((c.view(np.uint32) != want_c.view(np.uint32)).sum()) + int(
        (s.view(np.uint32) != want_s.view(np.uint32)).sum()
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1 << 24, help="uniform values k (default 2^24)")
    n = p.parse_args().count
    k = np.arange(n, dtype=np.uint32)
    sweeps = {
        "u1 = u2 = k": (k, k),
        "u2 = 0": (k, np.zeros(n, np.uint32)),
        "u1 = 1/2": (np.full(n, 1 << 23, np.uint32), k),
        "u2 = 7919 k": (k, (k * np.uint32(7919)) & np.uint32(0xFFFFFF)),
    }
    for name, (a, b) in sweeps.items():
        start = time.time()
        print(f"{name}: {n} pairs, {mismatches(a, b)} numbers differ ({time.time() - start:.1f} s)")


if __name__ == "__main__":
    main()
