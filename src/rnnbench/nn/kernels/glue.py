"""The torch side of the fused kernels: plain tensors in and out, the kernel picked per cell
and variant, numba's BLAS calls run on torch's thread count. Autograd lives in
:mod:`rnnbench.nn.ops`, which calls :func:`forward` and :func:`backward`; nothing here imports
it back.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np
import scipy
import torch

from rnnbench.nn.kernels import heap
from rnnbench.nn.kernels.gru import (
    gru_backward,
    gru_forward,
    gru_variant_backward,
    gru_variant_forward,
)
from rnnbench.nn.kernels.lstm import (
    lstm_backward,
    lstm_forward,
    lstm_variant_backward,
    lstm_variant_forward,
)
from rnnbench.nn.kernels.tanh import tanh_backward, tanh_forward

# ---- torch glue: plain tensors in and out; autograd lives in rnnbench.nn.ops ----------------


def _find_openblas_local_threads():
    """``openblas_set_num_threads_local`` of scipy's bundled OpenBLAS (the BLAS numba calls),
    or None when scipy links another BLAS."""
    root = Path(scipy.__file__).parent
    for path in [*root.parent.glob("scipy.libs/*openblas*"), *root.glob(".dylibs/*openblas*")]:
        try:
            setter = ctypes.CDLL(str(path)).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
        return setter
    return None


_set_blas_threads = _find_openblas_local_threads()
heap.keep_freed_memory()  # the kernels' per-call arrays on pages already mapped (heap.py)


# Per-step products smaller than this many multiply-adds run on one BLAS thread whatever torch's
# thread count: at (B, H) x (H, G) = (4, 36) x (36, 144), 20,736, one thread takes about 0.4 us
# (measured on a 2-core Xeon), less than waking a second thread, and on a loaded machine a
# multithreaded product waits for a busy core (issue 22 measured up to 10x slower steps).
SMALL_PRODUCT = 1 << 17


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _busy_cores() -> float:
    """Runnable processes beside this one (the 1-minute load average less the caller)."""
    try:
        return max(0.0, os.getloadavg()[0] - 1.0)
    except OSError:
        return 0.0


def _threads(work: int) -> int:
    """BLAS threads for per-step products of ``work`` multiply-adds: one below
    :data:`SMALL_PRODUCT`; above it torch's thread count, at most one per
    :data:`SMALL_PRODUCT` of work and at most the cores the load average leaves idle (plus
    this one), so that a loaded machine never makes a step wait for a busy core."""
    if work < SMALL_PRODUCT:
        return 1
    most = torch.get_num_threads()
    if most == 1:  # --threads 1: no load average to read (a system call per kernel call)
        return 1
    idle = int(_cores() - _busy_cores())
    return max(1, min(most, work // SMALL_PRODUCT, idle))


def _call(work, kernel, *args):
    """Run ``kernel`` with numba's BLAS calls on this thread on :func:`_threads` threads for
    per-step products of ``work`` multiply-adds."""
    if _set_blas_threads is None:
        return kernel(*args)
    previous = _set_blas_threads(_threads(work))
    try:
        return kernel(*args)
    finally:
        _set_blas_threads(previous)


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    """``t`` as a contiguous numpy array of ``dtype`` (a torch dtype), sharing its memory when
    it already is one (the common case: no copy, and no torch op beyond the checks)."""
    if t.dtype != dtype:
        t = t.to(dtype)
    if not t.is_contiguous():
        t = t.contiguous()
    return (t.detach() if t.requires_grad else t).numpy()


def _member_mask(mask: torch.Tensor, K: int, dtype) -> np.ndarray:
    """The kernels' ``(K, T, B)`` mask from a ``(T, B)`` one shared by the members or a
    ``(K, T, B)`` one (members that read their own minibatches, issue 22)."""
    return _np(mask.expand(K, *mask.shape[-2:]), dtype)


def _np_dtype(t: torch.Tensor):
    return np.float64 if t.dtype == torch.float64 else np.float32


def _bias_np(b_hh, xw) -> np.ndarray:
    if b_hh is None:
        return np.zeros((xw.shape[0], xw.shape[3]), dtype=_np_dtype(xw))
    return _np(b_hh, xw.dtype)


_from = torch.from_numpy


# The variants' kernel arguments (see the variant kernels above).
# has_i, has_f, has_o, cifg, linear_g, linear_c
_LSTM_FLAGS = {
    "nig": (0, 1, 1, 0, 0, 0),
    "nfg": (1, 0, 1, 0, 0, 0),
    "nog": (1, 1, 0, 0, 0, 0),
    "niaf": (1, 1, 1, 0, 1, 0),
    "noaf": (1, 1, 1, 0, 0, 1),
    "cifg": (1, 0, 1, 1, 0, 0),
}
# r0, cr, z0, cz: r = r0 + cr s, z = z0 + cz s
_GRU_COEFS = {"nrg": (1, 0, 0, 1), "nug": (0, 1, 0, 0), "mgu": (0, 1, 1, -1)}


def _lstm_layout(variant: str, H: int):
    """Flags, block offsets and the peephole rows (of i, f, o) a variant keeps."""
    from rnnbench.nn import variants

    flags = _LSTM_FLAGS[variant]
    kept = variants.gates("lstm", variant)
    offsets = np.array(
        [kept.index(g) * H if g in kept else -1 for g in ("i", "f", "g", "o")], np.int64
    )
    rows = [("i", "f", "o").index(p) for p in variants.peephole_rows("lstm", variant)]
    return flags, offsets, rows


def _kernel_variant(variant: str) -> str:
    """The variant whose kernels run: ``""`` (the full unit's own kernels) for ``""`` and
    ``fb1`` (which differs from the full LSTM only at init), else the variant."""
    return "" if variant in ("", "fb1") else variant


def _lstm_peepholes(w_ch, peephole, variant, K, H, dt):
    """``v (K, 3, H)`` for the kernels: ``w_ch``, with zero rows for the peepholes a variant
    removes (``(K, 3, 1)`` zeros without peepholes in the full unit's kernels)."""
    np_dt = np.float64 if dt == torch.float64 else np.float32
    if not variant:
        return _np(w_ch, dt) if peephole else np.zeros((K, 3, 1), np_dt)
    v = np.zeros((K, 3, H), np_dt)
    if peephole:
        v[:, _lstm_layout(variant, H)[2]] = _np(w_ch, dt)
    return v


def forward(cell, reset, peephole, variant, xw, w_hh, b_hh, w_ch, mask, h0, c0):
    """The fused forward of ``cell`` on plain tensors (no autograd): ``(out, h_n, c_n, hs,
    cs, acts, aux)``, where ``c_n``, ``cs`` (LSTM), ``acts`` (LSTM, GRU) and ``aux`` (GRU)
    are empty tensors for the cells that have none. ``mask (T, B)``, shared by the members, or
    ``(K, T, B)``, one per member, is a tensor (ones for no padding); ``b_hh`` and ``w_ch``
    may be None; ``peephole`` says whether ``w_ch`` is used.
    ``variant`` (canonical, :func:`rnnbench.nn.variants.resolve`) picks the variant kernels:
    ``w_hh`` has the variant's ``G*H`` rows and ``w_ch`` one row per peephole it keeps; an
    LSTM variant's ``acts`` is ``(K, T, B, 4H)`` (i, f, g, o, removed gates at their constant).
    Every output is a fresh tensor; the kernels take ``w_hh`` as the module stores it and
    return the final states themselves, so no torch op runs here but the conversions.
    """
    variant = _kernel_variant(variant)
    dt = xw.dtype
    K, H = xw.shape[0], w_hh.shape[-1]
    work = mask.shape[-1] * w_hh.shape[1] * H  # B x H by H x G per step
    m, x, w = _member_mask(mask, K, dt), _np(xw, dt), _np(w_hh, dt)
    bias, h = _bias_np(b_hh, xw), _np(h0, dt)
    if cell == "lstm":
        v = _lstm_peepholes(w_ch, peephole, variant, K, H, dt)
        if variant:
            flags, offsets, _ = _lstm_layout(variant, H)
            flags = np.array(flags, v.dtype)
            outs = _call(
                work, lstm_variant_forward, x, w, bias, v, peephole, flags, offsets, m, h,
                _np(c0, dt),
            )  # fmt: skip
        else:
            outs = _call(work, lstm_forward, x, w, bias, v, peephole, m, h, _np(c0, dt))
        out, h_n, c_n, hs, cs, acts = outs
        return _from(out), _from(h_n), _from(c_n), _from(hs), _from(cs), _from(acts), _empty(xw)
    if cell == "gru":
        before = reset == "before"
        if variant:
            coefs = np.array(_GRU_COEFS[variant], _np_dtype(xw))
            outs = _call(work, gru_variant_forward, x, w, bias, before, coefs, m, h)
        else:
            outs = _call(work, gru_forward, x, w, bias, before, m, h)
        out, h_n, hs, acts, aux = outs
        return _from(out), _from(h_n), _empty(xw), _from(hs), _empty(xw), _from(acts), _from(aux)
    out, h_n, hs = _call(work, tanh_forward, x, w, bias, m, h)
    c_n, cs, acts, aux = (_empty(xw) for _ in range(4))  # distinct: outputs may not alias
    return _from(out), _from(h_n), c_n, _from(hs), cs, acts, aux


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(0)


def backward(
    cell, reset, peephole, variant, d_out, d_hn, d_cn, w_hh, w_ch, mask, out, hs, cs, acts, aux
):
    """The fused backward through time on plain tensors: the gradients ``(d_xw, d_w_hh,
    d_b_hh, d_w_ch, d_h0, d_c0)`` of the loss with respect to the inputs of :func:`forward`
    (``d_w_ch`` and ``d_c0`` empty where the cell has none; ``d_w_ch`` has ``w_ch``'s rows).
    The kernels compute the recurrent weights' gradients themselves (one product per member
    after the walk through time)."""
    variant = _kernel_variant(variant)
    dt = hs.dtype
    K, H = hs.shape[0], w_hh.shape[-1]
    work = mask.shape[-1] * w_hh.shape[1] * H
    m, w, d_o, d_h = _member_mask(mask, K, dt), _np(w_hh, dt), _np(d_out, dt), _np(d_hn, dt)
    if cell == "lstm":
        v = _lstm_peepholes(w_ch, peephole, variant, K, H, dt)
        grads = (d_o, d_h, _np(d_cn, dt), w, v, peephole)
        saved = (m, _np(hs, dt), _np(cs, dt), _np(acts, dt))
        if variant:
            flags, offsets, rows = _lstm_layout(variant, H)
            flags = np.array(flags, v.dtype)
            d_xw, d_w, d_b, d_h0, d_c0, d_v = _call(
                work, lstm_variant_backward, *grads, flags, offsets, *saved
            )
            d_v = np.ascontiguousarray(d_v[:, rows])
        else:
            d_xw, d_w, d_b, d_h0, d_c0, d_v = _call(work, lstm_backward, *grads, *saved)
        d_v = _from(d_v) if peephole else _empty(hs)
        return _from(d_xw), _from(d_w), _from(d_b), d_v, _from(d_h0), _from(d_c0)
    if cell == "gru":
        before = reset == "before"
        saved = (m, _np(hs, dt), _np(acts, dt), _np(aux, dt))
        if variant:
            coefs = np.array(_GRU_COEFS[variant], _np_dtype(hs))
            grads = _call(work, gru_variant_backward, d_o, d_h, w, before, coefs, *saved)
        else:
            grads = _call(work, gru_backward, d_o, d_h, w, before, *saved)
        d_xw, d_w, d_b, d_h0 = grads
        return _from(d_xw), _from(d_w), _from(d_b), _empty(hs), _from(d_h0), _empty(hs)
    d_xw, d_w, d_b, d_h0 = _call(work, tanh_backward, d_o, d_h, w, m, _np(out, dt), _np(hs, dt))
    return _from(d_xw), _from(d_w), _from(d_b), _empty(hs), _from(d_h0), _empty(hs)
