r"""Weight noise in few calls, for population-stacked float32 CPU weights.

:class:`~rnnbench.train.protocol.WeightNoise` adds :math:`\sigma n` to every weight matrix of
every member, :math:`n \sim \mathcal N(0, 1)` drawn from the member's own generator, and puts
the clean weights back after the update's backward pass. Done tensor by tensor in torch that
is a clean copy, a draw per member, an add and a restore per tensor; on the paper's small
models the calls around the draws cost about a fifth of the noise. Here:

- the draws are the same ``Tensor.normal_(generator=g_k)`` calls on the same numbers, but into
  one flat row per member, ``[W_1 | W_2 | ...]``, so that consecutive tensors can be drawn in
  one call where that gives the very same numbers (:func:`runs`);
- the noisy weights :math:`W + \sigma n` of every tensor and member are written by one numba
  call (:func:`noisy`) into buffers of their own, and each parameter's ``.data`` is pointed at
  its buffer for the update's passes and back at its untouched clean tensor after: no clean
  copy, and the restore is exact by construction.

The sum is a fused multiply-add, :math:`\mathrm{fma}(n, \sigma, W)` with :math:`\sigma` rounded
to float32, because that is what ``torch.add(W, n, alpha=σ)`` computes on CPUs with FMA (its
vectorised and its scalar loops); :func:`usable` checks it on the running machine once and
sends everything back to the torch code where it does not hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import torch
from numba import types
from numba.extending import intrinsic
from torch import Tensor

__all__ = ["noisy", "runs", "usable", "views", "warm_up"]

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")

# torch.Tensor.normal_ on a float tensor of n >= 16 contiguous numbers (CPU) draws n uniforms,
# turns each block of 16 into normals (Box-Muller) and, when 16 does not divide n, draws 16
# fresh uniforms for the last 16 places. Drawing tensors A then B therefore gives the numbers
# of one draw over [A | B] when 16 divides A's size and B has at least 16 numbers.
BLOCK = 16


def runs(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """Group consecutive tensor sizes into draws that give the numbers of one draw per tensor:
    ``(start, stop)`` element ranges of the member's flat row. A run goes on while its sizes so
    far are multiples of 16 and the next size is at least 16."""
    out: list[tuple[int, int]] = []
    start = end = 0
    for size in sizes:
        if end > start and (end - start) % BLOCK == 0 and size >= BLOCK:
            end += size
            continue
        if end > start:
            out.append((start, end))
        start, end = end, end + size
    if end > start:
        out.append((start, end))
    return out


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (LLVM's ``llvm.fma``)."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


@_jit
def _noisy_row(w, n, sigma, out):
    for j in range(w.shape[0]):
        out[j] = _fma(n[j], sigma, w[j])


@_jit
def _noisy(weights, noise, offsets, sigma, out):
    for i in range(len(weights)):
        w, o = weights[i], out[i]
        start = offsets[i]
        n = w.shape[1]
        for k in range(w.shape[0]):
            _noisy_row(w[k], noise[k, start : start + n], sigma, o[k])


def _flat(t: Tensor) -> np.ndarray:
    a = (t.detach() if t.requires_grad else t).numpy()
    return a.reshape(a.shape[0], -1)


def views(tensors: Sequence[Tensor]) -> tuple[np.ndarray, ...]:
    """``(K, n)`` numpy views sharing memory with ``tensors`` (contiguous, CPU)."""
    return tuple(_flat(t) for t in tensors)


def noisy(weights, noise: np.ndarray, offsets: np.ndarray, sigma: float, out) -> None:
    """``out ← fma(n, σ, W)`` for every tensor and member (numpy views from :func:`views`;
    ``noise`` is ``(K, total)``, tensor ``i`` at ``offsets[i]`` of each member's row)."""
    _noisy(weights, noise, offsets, np.float32(sigma), out)


_CHECKED: bool | None = None


def _fma_matches_torch() -> bool:
    """Whether :func:`add` gives ``torch.Tensor.add_(n, alpha=σ)``'s numbers bit for bit here
    (on sizes with and without a vector tail; values where one rounding and two differ)."""
    g = torch.Generator().manual_seed(1234)
    for size in (1, 7, 16, 37, 1000):
        w = torch.randn(2, size, generator=g) * 0.3
        n = torch.randn(2, size, generator=g)
        want = w.clone().add_(n, alpha=0.075)
        got = torch.empty_like(w)
        noisy(views([w]), n.numpy(), np.zeros(1, np.int64), 0.075, views([got]))
        if not torch.equal(got, want):
            return False
    return True


def usable(weights: Sequence[Tensor]) -> bool:
    """Whether the weights can take the fused path: float32, contiguous, on CPU, with a leading
    member dimension, on a machine where :func:`add` equals torch's add."""
    global _CHECKED
    if not weights:
        return False
    for w in weights:
        if w.dtype != torch.float32 or w.device.type != "cpu" or w.dim() < 2:
            return False
        if not w.is_contiguous():
            return False
    if _CHECKED is None:
        _CHECKED = _fma_matches_torch()
    return _CHECKED


def warm_up(weights: Sequence[Tensor]) -> None:
    """Compile (or load) :func:`noisy` for this many weight tensors, on copies, drawing nothing
    (:mod:`rnnbench.train.warmup`)."""
    weights = [w.detach().clone() for w in weights]
    if not usable(weights):
        return
    sizes = [w[0].numel() for w in weights]
    offsets = np.cumsum([0, *sizes])[:-1].astype(np.int64)
    noise = np.zeros((weights[0].shape[0], sum(sizes)), np.float32)
    out = [torch.empty_like(w) for w in weights]
    noisy(views(weights), noise, offsets, 0.075, views(out))
