"""The torch side of the fused kernels: plain tensors in and out, the kernel picked per cell
and variant, numba's BLAS calls run on torch's thread count. Autograd lives in
:mod:`rnnbench.nn.ops`, which calls :func:`forward` and :func:`backward`; nothing here imports
it back.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import scipy
import torch

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


# Per-step products smaller than this many multiply-adds run on one BLAS thread whatever torch's
# thread count: at (B, H) x (H, G) = (4, 36) x (36, 144), 20,736, one thread takes about 0.4 us
# (measured on a 2-core Xeon), less than waking a second thread, and on a loaded machine a
# multithreaded product waits for a busy core (issue 22 measured up to 10x slower steps).
SMALL_PRODUCT = 1 << 17


def _threads(work: int) -> int:
    """BLAS threads for per-step products of ``work`` multiply-adds."""
    return 1 if work < SMALL_PRODUCT else torch.get_num_threads()


def _call(work, kernel, *args):
    """Run ``kernel`` with numba's BLAS calls on this thread, on one thread for small per-step
    products (``work`` multiply-adds, :data:`SMALL_PRODUCT`), else torch's thread count."""
    if _set_blas_threads is None:
        return kernel(*args)
    previous = _set_blas_threads(_threads(work))
    try:
        return kernel(*args)
    finally:
        _set_blas_threads(previous)


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    return t.detach().to(dtype).contiguous().numpy()


def _member_mask(mask: torch.Tensor, K: int, dtype) -> np.ndarray:
    """The kernels' ``(K, T, B)`` mask from a ``(T, B)`` one shared by the members (issue 22:
    members may read their own minibatches) or a ``(K, T, B)`` one."""
    return _np(mask.expand(K, *mask.shape[-2:]), dtype)


def _np_dtype(t: torch.Tensor):
    return np.float64 if t.dtype == torch.float64 else np.float32


def _bias_np(b_hh, xw) -> np.ndarray:
    if b_hh is None:
        return np.zeros((xw.shape[0], xw.shape[3]), dtype=_np_dtype(xw))
    return _np(b_hh, xw.dtype)


def _weight_grads(d_rec, inputs):
    """``dW = sum_t,b d_rec^T inputs`` and ``db = sum_t,b d_rec`` per member."""
    K, T, B, G = d_rec.shape
    flat = d_rec.reshape(K, T * B, G)
    d_w = torch.bmm(flat.transpose(1, 2), inputs.reshape(K, T * B, -1))
    return d_w, flat.sum(1)


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
    """
    variant = _kernel_variant(variant)
    dt = xw.dtype
    K, H = xw.shape[0], w_hh.shape[-1]
    work = mask.shape[-1] * w_hh.shape[1] * H  # B x H by H x G per step
    m = _member_mask(mask, K, dt)
    x = _np(xw, dt)
    bias = _bias_np(b_hh, xw)
    empty = (xw.new_empty(0) for _ in range(4))
    if cell == "lstm":
        v = _lstm_peepholes(w_ch, peephole, variant, K, H, dt)
        w_hh_t = _np(w_hh.transpose(1, 2), dt)
        states = (m, _np(h0, dt), _np(c0, dt))
        if variant:
            flags, offsets, _ = _lstm_layout(variant, H)
            flags = np.array(flags, v.dtype)
            out, hs, cs, acts = _call(
                work, lstm_variant_forward, x, w_hh_t, bias, v, peephole, flags, offsets, *states
            )
        else:
            out, hs, cs, acts = _call(work, lstm_forward, x, w_hh_t, bias, v, peephole, *states)
        hs, cs = torch.from_numpy(hs), torch.from_numpy(cs)
        c_n, acts, aux = cs[:, -1].clone(), torch.from_numpy(acts), next(empty)
    elif cell == "gru":
        S = w_hh.shape[1] - H  # the gate rows before the candidate's: r, z (a variant: one)
        w_s_t = _np(w_hh[:, :S].transpose(1, 2), dt)
        w_n_t = _np(w_hh[:, S:].transpose(1, 2), dt)
        before = reset == "before"
        if variant:
            coefs = np.array(_GRU_COEFS[variant], _np_dtype(xw))
            out, hs, acts, aux = _call(
                work, gru_variant_forward, x, w_s_t, w_n_t, bias, before, coefs, m, _np(h0, dt)
            )
        else:
            out, hs, acts, aux = _call(
                work, gru_forward, x, w_s_t, w_n_t, bias, before, m, _np(h0, dt)
            )
        hs, acts, aux = torch.from_numpy(hs), torch.from_numpy(acts), torch.from_numpy(aux)
        c_n, cs = next(empty), next(empty)
    else:
        out, hs = _call(work, tanh_forward, x, _np(w_hh.transpose(1, 2), dt), bias, m, _np(h0, dt))
        hs = torch.from_numpy(hs)
        c_n, cs, acts, aux = empty
    return torch.from_numpy(out), hs[:, -1].clone(), c_n, hs, cs, acts, aux


def backward(
    cell, reset, peephole, variant, d_out, d_hn, d_cn, w_hh, w_ch, mask, out, hs, cs, acts, aux
):
    """The fused backward through time on plain tensors: the gradients ``(d_xw, d_w_hh,
    d_b_hh, d_w_ch, d_h0, d_c0)`` of the loss with respect to the inputs of :func:`forward`
    (``d_w_ch`` and ``d_c0`` empty where the cell has none; ``d_w_ch`` has ``w_ch``'s rows)."""
    variant = _kernel_variant(variant)
    dt = hs.dtype
    K, H = hs.shape[0], w_hh.shape[-1]
    work = mask.shape[-1] * w_hh.shape[1] * H
    m = _member_mask(mask, K, dt)
    h_prev = hs[:, :-1]
    empty = (hs.new_empty(0) for _ in range(2))
    if cell == "lstm":
        v = _lstm_peepholes(w_ch, peephole, variant, K, H, dt)
        grads = (_np(d_out, dt), _np(d_hn, dt), _np(d_cn, dt), _np(w_hh, dt), v, peephole)
        saved = (m, _np(cs, dt), _np(acts, dt))
        if variant:
            flags, offsets, rows = _lstm_layout(variant, H)
            flags = np.array(flags, v.dtype)
            d_xw, d_h0, d_c0, d_v = _call(
                work, lstm_variant_backward, *grads, flags, offsets, *saved
            )
            d_v = np.ascontiguousarray(d_v[:, rows])
        else:
            d_xw, d_h0, d_c0, d_v = _call(work, lstm_backward, *grads, *saved)
        d_xw = torch.from_numpy(d_xw)
        d_w, d_b = _weight_grads(d_xw, h_prev)
        d_v = torch.from_numpy(d_v) if peephole else next(empty)
        return d_xw, d_w, d_b, d_v, torch.from_numpy(d_h0), torch.from_numpy(d_c0)
    if cell == "gru":
        S = w_hh.shape[1] - H
        before = reset == "before"
        weights = (_np(d_out, dt), _np(d_hn, dt), _np(w_hh[:, :S], dt), _np(w_hh[:, S:], dt))
        saved = (m, _np(hs, dt), _np(acts, dt), _np(aux, dt))
        if variant:
            coefs = np.array(_GRU_COEFS[variant], _np_dtype(hs))
            d_xw, d_rec_n, d_h0 = _call(work, gru_variant_backward, *weights, before, coefs, *saved)
        else:
            d_xw, d_rec_n, d_h0 = _call(work, gru_backward, *weights, before, *saved)
        d_xw, d_rec_n = torch.from_numpy(d_xw), torch.from_numpy(d_rec_n)
        d_w_s, d_b_s = _weight_grads(d_xw[..., :S], h_prev)
        d_w_n, d_b_n = _weight_grads(d_rec_n, aux if before else h_prev)
        d_w, d_b = torch.cat((d_w_s, d_w_n), 1), torch.cat((d_b_s, d_b_n), 1)
        return d_xw, d_w, d_b, next(empty), torch.from_numpy(d_h0), next(empty)
    d_xw, d_h0 = _call(
        work, tanh_backward, _np(d_out, dt), _np(d_hn, dt), _np(w_hh, dt), m, _np(out, dt)
    )
    d_xw = torch.from_numpy(d_xw)
    d_w, d_b = _weight_grads(d_xw, h_prev)
    return d_xw, d_w, d_b, next(empty), torch.from_numpy(d_h0), next(empty)
