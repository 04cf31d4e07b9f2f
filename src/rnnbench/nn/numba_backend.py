"""Fused CPU kernels: the whole time loop in numba, and a hand-written backward through time.

Each cell has a forward kernel, which runs all steps of all K members and keeps what the
backward needs (states, gate activations), and a backward kernel, which walks the steps in
reverse and returns the gradient of the gate pre-activations. The input projection is done by
torch before (so autograd differentiates it), and the gradients of the recurrent weights are
one batched matmul after: ``dW_hh = sum over t, b of d_pre[t, b]^T h_prev[t, b]``.

Notation in the kernels: ``xw (K, T, B, G*H)`` the projected input ``W x + b_ih``; ``hs, cs
(K, T+1, B, H)`` the states, ``hs[:, 0] = h0``; ``m = mask[t, b]`` (1 real step, 0 padding);
``d_*`` the gradient of the loss with respect to ``*``. Per-step products use ``np.dot`` on
contiguous 2-D blocks, which numba sends to scipy's OpenBLAS; the kernels run it on as many
threads as ``torch.get_num_threads()`` (OpenBLAS's default, one thread per core, made a step
up to 10x slower on a busy 2-core machine).

The kernels compile on first use (about 15 s for the three cells in one dtype on 2 cores) and
are cached on disk (numba ``cache=True``), so later processes start in about a second.

The variants of :mod:`rnnbench.nn.variants` that remove or change a gate run two more kernel
pairs, one for every LSTM variant and one for every GRU variant, with the variant as flags
(about 15 s more to compile per dtype, once); the full units keep their own kernels.
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import numba
import numpy as np
import scipy
import torch
from numba import types
from numba.extending import overload
from torch.autograd.function import once_differentiable

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")

# ---- activations: libm in float64; in float32 a rational tanh that vectorises ----------------
# tanh(x) ~ x P(x^2) / Q(x^2) on x clamped to +-7.905 (where float32 tanh rounds to +-1), the
# minimax fit of Eigen / XLA / MLAS, within a few float32 ulps; sigmoid(x) = (1 + tanh(x/2)) / 2.
# libm's expf and tanhf are opaque calls that stop LLVM from vectorising the gate loops, and
# numba has no SVML here, so the rational form makes the float32 kernels about 2x faster.

_TANH_CLAMP = np.float32(7.90531110763549805)
_P1, _P3, _P5, _P7, _P9, _P11, _P13 = (
    np.float32(c)
    for c in (
        4.89352455891786e-03,
        6.37261928875436e-04,
        1.48572235717979e-05,
        5.12229709037114e-08,
        -8.60467152213735e-11,
        2.00018790482477e-13,
        -2.76076847742355e-16,
    )
)
_Q0, _Q2, _Q4, _Q6 = (
    np.float32(c)
    for c in (
        4.89352518554385e-03,
        2.26843463243900e-03,
        1.18534705686654e-04,
        1.19825839466702e-06,
    )
)
_HALF = np.float32(0.5)


def _tanh(x):
    return math.tanh(x)


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@overload(_tanh, inline="always")
def _tanh_impl(x):
    if x != types.float32:
        return lambda x: math.tanh(x)

    def rational_tanh(x):
        x = max(-_TANH_CLAMP, min(_TANH_CLAMP, x))
        x2 = x * x
        p = _P1 + x2 * (_P3 + x2 * (_P5 + x2 * (_P7 + x2 * (_P9 + x2 * (_P11 + x2 * _P13)))))
        q = _Q0 + x2 * (_Q2 + x2 * (_Q4 + x2 * _Q6))
        return x * p / q

    return rational_tanh


@overload(_sigmoid, inline="always")
def _sigmoid_impl(x):
    if x != types.float32:
        return lambda x: 1.0 / (1.0 + math.exp(-x))
    return lambda x: _HALF * _tanh(_HALF * x) + _HALF


# ---- the masked state update, shared by all cells -----------------------------------------------


@_jit
def _finish_step(m, new, prev, out_row):
    """``out = m * new``; the state ``new`` becomes ``m * new + (1 - m) * prev``."""
    if m == 1:
        out_row[:] = new
    else:
        for j in range(new.shape[0]):
            out_row[j] = m * new[j]
            new[j] = out_row[j] + (1 - m) * prev[j]


@_jit
def _keep_cell(m, new, prev):
    if m != 1:
        for j in range(new.shape[0]):
            new[j] = m * new[j] + (1 - m) * prev[j]


# ---- tanh: h = tanh(xw + W_hh h_prev + b_hh) -------------------------------------------------


@_jit
def tanh_forward(xw, w_hh_t, b_hh, mask, h0):
    K, T, B, H = xw.shape
    hs = np.empty((K, T + 1, B, H), xw.dtype)
    out = np.empty((K, T, B, H), xw.dtype)
    rec = np.empty((B, H), xw.dtype)
    for k in range(K):
        hs[k, 0] = h0[k]
        bias = b_hh[k]
        for t in range(T):
            np.dot(hs[k, t], w_hh_t[k], rec)
            for b in range(B):
                x, r, h = xw[k, t, b], rec[b], hs[k, t + 1, b]
                for j in range(H):
                    h[j] = _tanh(x[j] + r[j] + bias[j])
                _finish_step(mask[t, b], h, hs[k, t, b], out[k, t, b])
    return out, hs


@_jit
def tanh_backward(d_out, d_hn, w_hh, mask, out):
    """Returns ``d_pre (K, T, B, H)`` (= d xw) and ``d_h0``. ``out`` holds h_t on real steps."""
    K, T, B, H = out.shape
    one = np.ones(1, out.dtype)[0]
    d_pre = np.empty((K, T, B, H), out.dtype)
    d_h0 = np.empty((K, B, H), out.dtype)
    d_h = np.empty((B, H), out.dtype)
    rec = np.empty((B, H), out.dtype)
    for k in range(K):
        d_h[:] = d_hn[k]
        for t in range(T - 1, -1, -1):
            for b in range(B):
                m, keep = mask[t, b], one - mask[t, b]
                h, dp, dout, dh = out[k, t, b], d_pre[k, t, b], d_out[k, t, b], d_h[b]
                for j in range(H):
                    dp[j] = m * (dout[j] + dh[j]) * (one - h[j] * h[j])
                    dh[j] = keep * dh[j]
            np.dot(d_pre[k, t], w_hh[k], rec)
            d_h += rec
        d_h0[k] = d_h
    return d_pre, d_h0


# ---- LSTM, gate blocks i, f, g, o; peepholes v (K, 3, H) when peephole ------------------------


@_jit
def lstm_forward(xw, w_hh_t, b_hh, w_ch, peephole, mask, h0, c0):
    """Returns ``out``, ``hs``, ``cs`` and ``acts (K, T, B, 4H)``: i, f, g, o after their
    non-linearities."""
    K, T, B, G = xw.shape
    H = G // 4
    hs = np.empty((K, T + 1, B, H), xw.dtype)
    cs = np.empty((K, T + 1, B, H), xw.dtype)
    acts = np.empty((K, T, B, G), xw.dtype)
    out = np.empty((K, T, B, H), xw.dtype)
    rec = np.empty((B, G), xw.dtype)
    for k in range(K):
        hs[k, 0] = h0[k]
        cs[k, 0] = c0[k]
        bias = b_hh[k]
        v_i, v_f, v_o = w_ch[k, 0], w_ch[k, 1], w_ch[k, 2]
        for t in range(T):
            np.dot(hs[k, t], w_hh_t[k], rec)
            for b in range(B):
                a, x, r = acts[k, t, b], xw[k, t, b], rec[b]
                c_prev, c, h = cs[k, t, b], cs[k, t + 1, b], hs[k, t + 1, b]
                for j in range(G):
                    a[j] = x[j] + r[j] + bias[j]
                if peephole:
                    for j in range(H):
                        a[j] += v_i[j] * c_prev[j]
                        a[H + j] += v_f[j] * c_prev[j]
                for j in range(2 * H):
                    a[j] = _sigmoid(a[j])
                for j in range(2 * H, 3 * H):
                    a[j] = _tanh(a[j])
                for j in range(H):
                    c[j] = a[H + j] * c_prev[j] + a[j] * a[2 * H + j]
                if peephole:
                    for j in range(H):
                        a[3 * H + j] += v_o[j] * c[j]
                for j in range(3 * H, 4 * H):
                    a[j] = _sigmoid(a[j])
                for j in range(H):
                    h[j] = a[3 * H + j] * _tanh(c[j])
                _finish_step(mask[t, b], h, hs[k, t, b], out[k, t, b])
                _keep_cell(mask[t, b], c, c_prev)
    return out, hs, cs, acts


@_jit
def lstm_backward(d_out, d_hn, d_cn, w_hh, w_ch, peephole, mask, cs, acts):
    """Returns ``d_pre (K, T, B, 4H)`` (= d xw), ``d_h0``, ``d_c0`` and ``d_w_ch``."""
    K, T, B, G = acts.shape
    H = G // 4
    one = np.ones(1, acts.dtype)[0]
    d_pre = np.empty((K, T, B, G), acts.dtype)
    d_h0 = np.empty((K, B, H), acts.dtype)
    d_c0 = np.empty((K, B, H), acts.dtype)
    d_w_ch = np.zeros((K, 3, H), acts.dtype)
    d_h = np.empty((B, H), acts.dtype)
    d_c = np.empty((B, H), acts.dtype)
    d_c_new = np.empty(H, acts.dtype)
    rec = np.empty((B, H), acts.dtype)
    for k in range(K):
        d_h[:] = d_hn[k]
        d_c[:] = d_cn[k]
        v_i, v_f, v_o = w_ch[k, 0], w_ch[k, 1], w_ch[k, 2]
        d_v_i, d_v_f, d_v_o = d_w_ch[k, 0], d_w_ch[k, 1], d_w_ch[k, 2]
        for t in range(T - 1, -1, -1):
            for b in range(B):
                m, keep = mask[t, b], one - mask[t, b]
                a, dp, dout = acts[k, t, b], d_pre[k, t, b], d_out[k, t, b]
                c, c_prev, dh, dc = cs[k, t + 1, b], cs[k, t, b], d_h[b], d_c[b]
                for j in range(H):
                    o = a[3 * H + j]
                    tanh_c = _tanh(c[j])
                    d_h_new = m * (dout[j] + dh[j])
                    dp[3 * H + j] = d_h_new * tanh_c * (o - o * o)
                    d_c_new[j] = m * dc[j] + d_h_new * o * (one - tanh_c * tanh_c)
                    dh[j] = keep * dh[j]
                if peephole:
                    for j in range(H):
                        d_c_new[j] += dp[3 * H + j] * v_o[j]
                        d_v_o[j] += dp[3 * H + j] * c[j]
                for j in range(H):
                    i, f, g = a[j], a[H + j], a[2 * H + j]
                    dp[j] = d_c_new[j] * g * (i - i * i)
                    dp[H + j] = d_c_new[j] * c_prev[j] * (f - f * f)
                    dp[2 * H + j] = d_c_new[j] * i * (one - g * g)
                    dc[j] = d_c_new[j] * f + keep * dc[j]
                if peephole:
                    for j in range(H):
                        dc[j] += dp[j] * v_i[j] + dp[H + j] * v_f[j]
                        d_v_i[j] += dp[j] * c_prev[j]
                        d_v_f[j] += dp[H + j] * c_prev[j]
            np.dot(d_pre[k, t], w_hh[k], rec)
            d_h += rec
        d_h0[k] = d_h
        d_c0[k] = d_c
    return d_pre, d_h0, d_c0, d_w_ch


# ---- GRU, gate blocks r, z, n; h = (1 - z) n + z h_prev -----------------------------------------
# The recurrent weights come split into the r,z rows (w_rz, 2H x H) and the n rows (w_n, H x H).
# ``aux (K, T, B, H)`` holds the n block's recurrent input for "before" (r * h_prev) and its
# recurrent pre-activation for "after" (W_hn h_prev + b_hn).


@_jit
def gru_forward(xw, w_rz_t, w_n_t, b_hh, before, mask, h0):
    """Returns ``out``, ``hs``, ``acts (K, T, B, 3H)`` (r, z, n after their non-linearities)
    and ``aux``."""
    K, T, B, G = xw.shape
    H = G // 3
    one = np.ones(1, xw.dtype)[0]
    hs = np.empty((K, T + 1, B, H), xw.dtype)
    acts = np.empty((K, T, B, G), xw.dtype)
    aux = np.empty((K, T, B, H), xw.dtype)
    out = np.empty((K, T, B, H), xw.dtype)
    rec_rz = np.empty((B, 2 * H), xw.dtype)
    rec_n = np.empty((B, H), xw.dtype)
    for k in range(K):
        hs[k, 0] = h0[k]
        bias = b_hh[k]
        for t in range(T):
            np.dot(hs[k, t], w_rz_t[k], rec_rz)
            for b in range(B):
                a, x, r, h_prev = acts[k, t, b], xw[k, t, b], rec_rz[b], hs[k, t, b]
                for j in range(2 * H):
                    a[j] = _sigmoid(x[j] + r[j] + bias[j])
                if before:
                    rh = aux[k, t, b]
                    for j in range(H):
                        rh[j] = a[j] * h_prev[j]
            np.dot(aux[k, t] if before else hs[k, t], w_n_t[k], rec_n)
            for b in range(B):
                a, x, r, h_prev = acts[k, t, b], xw[k, t, b], rec_n[b], hs[k, t, b]
                h, rec = hs[k, t + 1, b], aux[k, t, b]
                if before:
                    for j in range(H):
                        a[2 * H + j] = _tanh(x[2 * H + j] + r[j] + bias[2 * H + j])
                else:
                    for j in range(H):
                        rec[j] = r[j] + bias[2 * H + j]
                        a[2 * H + j] = _tanh(x[2 * H + j] + a[j] * rec[j])
                for j in range(H):
                    z = a[H + j]
                    h[j] = (one - z) * a[2 * H + j] + z * h_prev[j]
                _finish_step(mask[t, b], h, h_prev, out[k, t, b])
    return out, hs, acts, aux


@_jit
def gru_backward(d_out, d_hn, w_rz, w_n, before, mask, hs, acts, aux):
    """Returns ``d_xw (K, T, B, 3H)``, ``d_rec_n (K, T, B, H)`` (the gradient of the n block's
    recurrent pre-activation: ``W_hn (r h)`` before, ``W_hn h + b_hn`` after) and ``d_h0``.
    The r and z blocks' recurrent gradient is their block of ``d_xw``."""
    K, T, B, G = acts.shape
    H = G // 3
    one = np.ones(1, acts.dtype)[0]
    d_rz = np.empty((K, T, B, 2 * H), acts.dtype)
    d_xn = np.empty((K, T, B, H), acts.dtype)
    d_rec_n = np.empty((K, T, B, H), acts.dtype)
    d_h0 = np.empty((K, B, H), acts.dtype)
    d_h = np.empty((B, H), acts.dtype)
    d_rh = np.empty((B, H), acts.dtype)
    rec = np.empty((B, H), acts.dtype)
    for k in range(K):
        d_h[:] = d_hn[k]
        for t in range(T - 1, -1, -1):
            for b in range(B):
                m, keep = mask[t, b], one - mask[t, b]
                a, h_prev, dout, dh = acts[k, t, b], hs[k, t, b], d_out[k, t, b], d_h[b]
                drz, dxn, drn, ax = d_rz[k, t, b], d_xn[k, t, b], d_rec_n[k, t, b], aux[k, t, b]
                for j in range(H):
                    r, z, n = a[j], a[H + j], a[2 * H + j]
                    d_h_new = m * (dout[j] + dh[j])
                    dxn[j] = d_h_new * (one - z) * (one - n * n)
                    drz[H + j] = d_h_new * (h_prev[j] - n) * (z - z * z)
                    dh[j] = d_h_new * z + keep * dh[j]
                if before:
                    drn[:] = dxn
                else:
                    for j in range(H):
                        r = a[j]
                        drn[j] = dxn[j] * r
                        drz[j] = dxn[j] * ax[j] * (r - r * r)
            if before:
                np.dot(d_xn[k, t], w_n[k], d_rh)
                for b in range(B):
                    a, h_prev, drz = acts[k, t, b], hs[k, t, b], d_rz[k, t, b]
                    dh, drh = d_h[b], d_rh[b]
                    for j in range(H):
                        r = a[j]
                        drz[j] = drh[j] * h_prev[j] * (r - r * r)
                        dh[j] += drh[j] * r
            else:
                np.dot(d_rec_n[k, t], w_n[k], rec)
                d_h += rec
            np.dot(d_rz[k, t], w_rz[k], rec)
            d_h += rec
        d_h0[k] = d_h
    return np.concatenate((d_rz, d_xn), axis=3), d_rec_n, d_h0


# ---- autograd glue ---------------------------------------------------------------------------


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


def _call(kernel, *args):
    """Run ``kernel`` with numba's BLAS calls on this thread using torch's thread count."""
    if _set_blas_threads is None:
        return kernel(*args)
    previous = _set_blas_threads(torch.get_num_threads())
    try:
        return kernel(*args)
    finally:
        _set_blas_threads(previous)


def run(cell, xw, w_hh, b_hh, w_ch, reset, mask, h0, c0, variant=""):
    """:func:`rnnbench.nn.functional.run_unit` after the input projection, on the fused kernels.

    ``variant`` is a canonical variant name (:func:`rnnbench.nn.variants.resolve`); the full
    units (``""``, and ``fb1``, which differs only at init) run their own kernels."""
    if variant and variant != "fb1":
        if cell == "lstm":
            return _FusedLSTMVariant.apply(xw, w_hh, b_hh, w_ch, variant, mask, h0, c0)
        out, h_n = _FusedGRUVariant.apply(xw, w_hh, b_hh, variant, reset == "before", mask, h0)
        return out, h_n, None
    if cell == "lstm":
        return _FusedLSTM.apply(xw, w_hh, b_hh, w_ch, mask, h0, c0)
    if cell == "gru":
        out, h_n = _FusedGRU.apply(xw, w_hh, b_hh, reset == "before", mask, h0)
    else:
        out, h_n = _FusedTanh.apply(xw, w_hh, b_hh, mask, h0)
    return out, h_n, None


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    return t.detach().to(dtype).contiguous().numpy()


def _mask_np(mask, xw) -> np.ndarray:
    if mask is None:
        return np.ones(xw.shape[1:3], dtype=_np_dtype(xw))
    return _np(mask, xw.dtype)


def _np_dtype(t: torch.Tensor):
    return np.float64 if t.dtype == torch.float64 else np.float32


def _bias_np(b_hh, xw) -> np.ndarray:
    if b_hh is None:
        return np.zeros((xw.shape[0], xw.shape[3]), dtype=_np_dtype(xw))
    return _np(b_hh, xw.dtype)


def _weight_grads(d_rec, inputs, b_hh):
    """``dW = sum_t,b d_rec^T inputs`` per member, and ``db`` when there is a bias."""
    K, T, B, G = d_rec.shape
    flat = d_rec.reshape(K, T * B, G)
    d_w = torch.bmm(flat.transpose(1, 2), inputs.reshape(K, T * B, -1))
    return d_w, (flat.sum(1) if b_hh is not None else None)


class _FusedTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, w_hh, b_hh, mask, h0):
        m = _mask_np(mask, xw)
        w_hh_t = _np(w_hh.transpose(1, 2), xw.dtype)
        out, hs = _call(
            tanh_forward, _np(xw, xw.dtype), w_hh_t, _bias_np(b_hh, xw), m, _np(h0, xw.dtype)
        )
        out, hs = torch.from_numpy(out), torch.from_numpy(hs)
        ctx.save_for_backward(w_hh, b_hh, out)
        ctx.state = (m, hs)
        return out, hs[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn):
        w_hh, b_hh, out = ctx.saved_tensors
        m, hs = ctx.state
        dt = out.dtype
        d_pre, d_h0 = _call(
            tanh_backward, _np(d_out, dt), _np(d_hn, dt), _np(w_hh, dt), m, _np(out, dt)
        )
        d_pre = torch.from_numpy(d_pre)
        d_w, d_b = _weight_grads(d_pre, hs[:, :-1], b_hh)
        return d_pre, d_w, d_b, None, torch.from_numpy(d_h0)


class _FusedLSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, w_hh, b_hh, w_ch, mask, h0, c0):
        dt = xw.dtype
        m = _mask_np(mask, xw)
        peephole = w_ch is not None
        v = _np(w_ch, dt) if peephole else np.zeros((xw.shape[0], 3, 1), _np_dtype(xw))
        out, hs, cs, acts = _call(
            lstm_forward,
            _np(xw, dt),
            _np(w_hh.transpose(1, 2), dt),
            _bias_np(b_hh, xw),
            v,
            peephole,
            m,
            _np(h0, dt),
            _np(c0, dt),
        )
        hs, cs = torch.from_numpy(hs), torch.from_numpy(cs)
        ctx.save_for_backward(w_hh, b_hh, w_ch)
        ctx.state = (v, peephole, m, hs, cs, acts)
        return torch.from_numpy(out), hs[:, -1].clone(), cs[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn, d_cn):
        w_hh, b_hh, _ = ctx.saved_tensors
        v, peephole, m, hs, cs, acts = ctx.state
        dt = hs.dtype
        d_pre, d_h0, d_c0, d_v = _call(
            lstm_backward,
            _np(d_out, dt),
            _np(d_hn, dt),
            _np(d_cn, dt),
            _np(w_hh, dt),
            v,
            peephole,
            m,
            cs.numpy(),
            acts,
        )
        d_pre = torch.from_numpy(d_pre)
        d_w, d_b = _weight_grads(d_pre, hs[:, :-1], b_hh)
        d_v = torch.from_numpy(d_v) if peephole else None
        return d_pre, d_w, d_b, d_v, None, torch.from_numpy(d_h0), torch.from_numpy(d_c0)


class _FusedGRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, w_hh, b_hh, before, mask, h0):
        dt = xw.dtype
        H = w_hh.shape[-1]
        m = _mask_np(mask, xw)
        w_rz, w_n = w_hh[:, : 2 * H], w_hh[:, 2 * H :]
        out, hs, acts, aux = _call(
            gru_forward,
            _np(xw, dt),
            _np(w_rz.transpose(1, 2), dt),
            _np(w_n.transpose(1, 2), dt),
            _bias_np(b_hh, xw),
            before,
            m,
            _np(h0, dt),
        )
        hs = torch.from_numpy(hs)
        ctx.save_for_backward(w_hh, b_hh)
        ctx.state = (before, m, hs, acts, aux)
        return torch.from_numpy(out), hs[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn):
        w_hh, b_hh = ctx.saved_tensors
        before, m, hs, acts, aux = ctx.state
        H = w_hh.shape[-1]
        w_rz, w_n = w_hh[:, : 2 * H], w_hh[:, 2 * H :]
        dt = hs.dtype
        d_xw, d_rec_n, d_h0 = _call(
            gru_backward,
            _np(d_out, dt),
            _np(d_hn, dt),
            _np(w_rz, dt),
            _np(w_n, dt),
            before,
            m,
            hs.numpy(),
            acts,
            aux,
        )
        d_xw, d_rec_n = torch.from_numpy(d_xw), torch.from_numpy(d_rec_n)
        h_prev = hs[:, :-1]
        d_w_rz, d_b_rz = _weight_grads(d_xw[..., : 2 * H], h_prev, b_hh)
        n_input = torch.from_numpy(aux) if before else h_prev
        d_w_n, d_b_n = _weight_grads(d_rec_n, n_input, b_hh)
        d_w = torch.cat((d_w_rz, d_w_n), 1)
        d_b = torch.cat((d_b_rz, d_b_n), 1) if b_hh is not None else None
        return d_xw, d_w, d_b, None, None, torch.from_numpy(d_h0)


# ---- LSTM variants (rnnbench.nn.variants): one kernel for all, flags per gate block -----------
# The variant's pre-activations come compact (its G gate blocks, in the order i, f, g, o of the
# blocks it keeps); ``acts (K, T, B, 4H)`` always holds i, f, g, o after their non-linearities
# (a removed gate holds its constant: i = 1, f = 1 or 1 - i, o = 1). The flags, 0 or 1 in the
# kernel's dtype, are ``(has_i, has_f, has_o, cifg, linear_g, linear_c)`` and ``offsets`` the
# compact columns of the i, f, g, o blocks (-1: removed); every branch on them sits outside the
# loops over units, so the loops stay vectorised. Peepholes come as the full ``(K, 3, H)``
# with zero rows for the gates a variant removes.


@_jit
def lstm_variant_forward(xw, w_hh_t, b_hh, w_ch, peephole, flags, offsets, mask, h0, c0):
    """Returns ``out``, ``hs``, ``cs`` and ``acts (K, T, B, 4H)`` (i, f, g, o)."""
    K, T, B, G = xw.shape
    H = h0.shape[2]
    has_i, has_f, has_o, cifg, lin_g, lin_c = (
        flags[0],
        flags[1],
        flags[2],
        flags[3],
        flags[4],
        flags[5],
    )
    oi, of, og, oo = offsets[0], offsets[1], offsets[2], offsets[3]
    one = np.ones(1, xw.dtype)[0]
    hs = np.empty((K, T + 1, B, H), xw.dtype)
    cs = np.empty((K, T + 1, B, H), xw.dtype)
    acts = np.empty((K, T, B, 4 * H), xw.dtype)
    out = np.empty((K, T, B, H), xw.dtype)
    rec = np.empty((B, G), xw.dtype)
    pre = np.empty(G, xw.dtype)
    for k in range(K):
        hs[k, 0] = h0[k]
        cs[k, 0] = c0[k]
        bias = b_hh[k]
        v_i, v_f, v_o = w_ch[k, 0], w_ch[k, 1], w_ch[k, 2]
        for t in range(T):
            np.dot(hs[k, t], w_hh_t[k], rec)
            for b in range(B):
                a, x, r = acts[k, t, b], xw[k, t, b], rec[b]
                c_prev, c, h = cs[k, t, b], cs[k, t + 1, b], hs[k, t + 1, b]
                for j in range(G):
                    pre[j] = x[j] + r[j] + bias[j]
                if has_i:
                    if peephole:
                        for j in range(H):
                            a[j] = _sigmoid(pre[oi + j] + v_i[j] * c_prev[j])
                    else:
                        for j in range(H):
                            a[j] = _sigmoid(pre[oi + j])
                else:
                    a[:H] = one
                if cifg:
                    for j in range(H):
                        a[H + j] = one - a[j]
                elif has_f:
                    if peephole:
                        for j in range(H):
                            a[H + j] = _sigmoid(pre[of + j] + v_f[j] * c_prev[j])
                    else:
                        for j in range(H):
                            a[H + j] = _sigmoid(pre[of + j])
                else:
                    a[H : 2 * H] = one
                if lin_g:
                    for j in range(H):
                        a[2 * H + j] = pre[og + j]
                else:
                    for j in range(H):
                        a[2 * H + j] = _tanh(pre[og + j])
                for j in range(H):
                    c[j] = a[H + j] * c_prev[j] + a[j] * a[2 * H + j]
                if has_o:
                    if peephole:
                        for j in range(H):
                            a[3 * H + j] = _sigmoid(pre[oo + j] + v_o[j] * c[j])
                    else:
                        for j in range(H):
                            a[3 * H + j] = _sigmoid(pre[oo + j])
                else:
                    a[3 * H :] = one
                if lin_c:
                    for j in range(H):
                        h[j] = a[3 * H + j] * c[j]
                else:
                    for j in range(H):
                        h[j] = a[3 * H + j] * _tanh(c[j])
                _finish_step(mask[t, b], h, hs[k, t, b], out[k, t, b])
                _keep_cell(mask[t, b], c, c_prev)
    return out, hs, cs, acts


@_jit
def lstm_variant_backward(d_out, d_hn, d_cn, w_hh, w_ch, peephole, flags, offsets, mask, cs, acts):
    """Returns ``d_pre (K, T, B, G)`` (compact, = d xw), ``d_h0``, ``d_c0`` and ``d_w_ch
    (K, 3, H)``."""
    K, T, B, H4 = acts.shape
    H = H4 // 4
    G = w_hh.shape[1]
    has_i, has_f, has_o, cifg, lin_g, lin_c = (
        flags[0],
        flags[1],
        flags[2],
        flags[3],
        flags[4],
        flags[5],
    )
    oi, of, og, oo = offsets[0], offsets[1], offsets[2], offsets[3]
    one = np.ones(1, acts.dtype)[0]
    tanh_g = one - lin_g  # 1 when g = tanh(pre), 0 when linear
    coupled = cifg  # f = 1 - i: d i gets - d f
    d_pre = np.empty((K, T, B, G), acts.dtype)
    d_h0 = np.empty((K, B, H), acts.dtype)
    d_c0 = np.empty((K, B, H), acts.dtype)
    d_w_ch = np.zeros((K, 3, H), acts.dtype)
    d_h = np.empty((B, H), acts.dtype)
    d_c = np.empty((B, H), acts.dtype)
    d_c_new = np.empty(H, acts.dtype)
    full = np.empty(4 * H, acts.dtype)
    rec = np.empty((B, H), acts.dtype)
    for k in range(K):
        d_h[:] = d_hn[k]
        d_c[:] = d_cn[k]
        v_i, v_f, v_o = w_ch[k, 0], w_ch[k, 1], w_ch[k, 2]
        d_v_i, d_v_f, d_v_o = d_w_ch[k, 0], d_w_ch[k, 1], d_w_ch[k, 2]
        for t in range(T - 1, -1, -1):
            for b in range(B):
                m, keep = mask[t, b], one - mask[t, b]
                a, dp, dout = acts[k, t, b], d_pre[k, t, b], d_out[k, t, b]
                c, c_prev, dh, dc = cs[k, t + 1, b], cs[k, t, b], d_h[b], d_c[b]
                if lin_c:
                    for j in range(H):
                        o = a[3 * H + j]
                        d_h_new = m * (dout[j] + dh[j])
                        full[3 * H + j] = d_h_new * c[j] * (o - o * o)
                        d_c_new[j] = m * dc[j] + d_h_new * o
                        dh[j] = keep * dh[j]
                else:
                    for j in range(H):
                        o = a[3 * H + j]
                        tanh_c = _tanh(c[j])
                        d_h_new = m * (dout[j] + dh[j])
                        full[3 * H + j] = d_h_new * tanh_c * (o - o * o)
                        d_c_new[j] = m * dc[j] + d_h_new * o * (one - tanh_c * tanh_c)
                        dh[j] = keep * dh[j]
                if peephole and has_o:
                    for j in range(H):
                        d_c_new[j] += full[3 * H + j] * v_o[j]
                        d_v_o[j] += full[3 * H + j] * c[j]
                for j in range(H):
                    i, f, g = a[j], a[H + j], a[2 * H + j]
                    full[j] = d_c_new[j] * (g - coupled * c_prev[j]) * (i - i * i)
                    full[H + j] = d_c_new[j] * c_prev[j] * (f - f * f)
                    full[2 * H + j] = d_c_new[j] * i * (one - tanh_g * g * g)
                    dc[j] = d_c_new[j] * f + keep * dc[j]
                if peephole:
                    if has_i:
                        for j in range(H):
                            dc[j] += full[j] * v_i[j]
                            d_v_i[j] += full[j] * c_prev[j]
                    if has_f:
                        for j in range(H):
                            dc[j] += full[H + j] * v_f[j]
                            d_v_f[j] += full[H + j] * c_prev[j]
                if has_i:
                    dp[oi : oi + H] = full[:H]
                if has_f:
                    dp[of : of + H] = full[H : 2 * H]
                dp[og : og + H] = full[2 * H : 3 * H]
                if has_o:
                    dp[oo : oo + H] = full[3 * H :]
            np.dot(d_pre[k, t], w_hh[k], rec)
            d_h += rec
        d_h0[k] = d_h
        d_c0[k] = d_c
    return d_pre, d_h0, d_c0, d_w_ch


# ---- GRU variants: one gate block s and the candidate block n ---------------------------------
# Every GRU variant keeps one gate s = σ(a_s) beside n, and reads it as its reset gate
# r = r0 + cr s and its update gate z = z0 + cz s in h = (1 - z) n + z h_prev:
# nrg (r = 1, z = s): coefs (1, 0, 0, 1); nug (r = s, z = 0): (0, 1, 0, 0);
# mgu (r = f, z = 1 - f, f = s): (0, 1, 1, -1). The coefficients are exact 0, 1 or -1, so the
# arithmetic is that of the unit's own equation. ``aux`` as in the full GRU.


@_jit
def gru_variant_forward(xw, w_s_t, w_n_t, b_hh, before, coefs, mask, h0):
    """Returns ``out``, ``hs``, ``acts (K, T, B, 2H)`` (s, n) and ``aux``."""
    K, T, B, G = xw.shape
    H = G // 2
    r0, cr, z0, cz = coefs[0], coefs[1], coefs[2], coefs[3]
    one = np.ones(1, xw.dtype)[0]
    hs = np.empty((K, T + 1, B, H), xw.dtype)
    acts = np.empty((K, T, B, G), xw.dtype)
    aux = np.empty((K, T, B, H), xw.dtype)
    out = np.empty((K, T, B, H), xw.dtype)
    rec_s = np.empty((B, H), xw.dtype)
    rec_n = np.empty((B, H), xw.dtype)
    for k in range(K):
        hs[k, 0] = h0[k]
        bias = b_hh[k]
        for t in range(T):
            np.dot(hs[k, t], w_s_t[k], rec_s)
            for b in range(B):
                a, x, r, h_prev = acts[k, t, b], xw[k, t, b], rec_s[b], hs[k, t, b]
                for j in range(H):
                    a[j] = _sigmoid(x[j] + r[j] + bias[j])
                if before:
                    rh = aux[k, t, b]
                    for j in range(H):
                        rh[j] = (r0 + cr * a[j]) * h_prev[j]
            np.dot(aux[k, t] if before else hs[k, t], w_n_t[k], rec_n)
            for b in range(B):
                a, x, r, h_prev = acts[k, t, b], xw[k, t, b], rec_n[b], hs[k, t, b]
                h, rec = hs[k, t + 1, b], aux[k, t, b]
                if before:
                    for j in range(H):
                        a[H + j] = _tanh(x[H + j] + r[j] + bias[H + j])
                else:
                    for j in range(H):
                        rec[j] = r[j] + bias[H + j]
                        a[H + j] = _tanh(x[H + j] + (r0 + cr * a[j]) * rec[j])
                for j in range(H):
                    z = z0 + cz * a[j]
                    h[j] = (one - z) * a[H + j] + z * h_prev[j]
                _finish_step(mask[t, b], h, h_prev, out[k, t, b])
    return out, hs, acts, aux


@_jit
def gru_variant_backward(d_out, d_hn, w_s, w_n, before, coefs, mask, hs, acts, aux):
    """Returns ``d_xw (K, T, B, 2H)``, ``d_rec_n (K, T, B, H)`` and ``d_h0``, as
    :func:`gru_backward`."""
    K, T, B, G = acts.shape
    H = G // 2
    r0, cr, z0, cz = coefs[0], coefs[1], coefs[2], coefs[3]
    one = np.ones(1, acts.dtype)[0]
    d_s = np.empty((K, T, B, H), acts.dtype)
    d_xn = np.empty((K, T, B, H), acts.dtype)
    d_rec_n = np.empty((K, T, B, H), acts.dtype)
    d_h0 = np.empty((K, B, H), acts.dtype)
    d_h = np.empty((B, H), acts.dtype)
    d_rh = np.empty((B, H), acts.dtype)
    rec = np.empty((B, H), acts.dtype)
    for k in range(K):
        d_h[:] = d_hn[k]
        for t in range(T - 1, -1, -1):
            for b in range(B):
                m, keep = mask[t, b], one - mask[t, b]
                a, h_prev, dout, dh = acts[k, t, b], hs[k, t, b], d_out[k, t, b], d_h[b]
                ds, dxn, drn, ax = d_s[k, t, b], d_xn[k, t, b], d_rec_n[k, t, b], aux[k, t, b]
                for j in range(H):
                    s, n = a[j], a[H + j]
                    z = z0 + cz * s
                    d_h_new = m * (dout[j] + dh[j])
                    dxn[j] = d_h_new * (one - z) * (one - n * n)
                    ds[j] = cz * d_h_new * (h_prev[j] - n)  # via z; the r part comes next
                    dh[j] = d_h_new * z + keep * dh[j]
                if before:
                    drn[:] = dxn
                else:
                    for j in range(H):
                        s = a[j]
                        drn[j] = dxn[j] * (r0 + cr * s)
                        ds[j] = (ds[j] + cr * dxn[j] * ax[j]) * (s - s * s)
            if before:
                np.dot(d_xn[k, t], w_n[k], d_rh)
                for b in range(B):
                    a, h_prev, ds = acts[k, t, b], hs[k, t, b], d_s[k, t, b]
                    dh, drh = d_h[b], d_rh[b]
                    for j in range(H):
                        s = a[j]
                        ds[j] = (ds[j] + cr * drh[j] * h_prev[j]) * (s - s * s)
                        dh[j] += drh[j] * (r0 + cr * s)
            else:
                np.dot(d_rec_n[k, t], w_n[k], rec)
                d_h += rec
            np.dot(d_s[k, t], w_s[k], rec)
            d_h += rec
        d_h0[k] = d_h
    return np.concatenate((d_s, d_xn), axis=3), d_rec_n, d_h0


# ---- autograd glue of the variants ----------------------------------------------------------

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


class _FusedLSTMVariant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, w_hh, b_hh, w_ch, variant, mask, h0, c0):
        dt = xw.dtype
        K, H = xw.shape[0], w_hh.shape[-1]
        m = _mask_np(mask, xw)
        flags, offsets, rows = _lstm_layout(variant, H)
        flags = np.array(flags, _np_dtype(xw))
        peephole = w_ch is not None
        v = np.zeros((K, 3, H), _np_dtype(xw))
        if peephole:
            v[:, rows] = _np(w_ch, dt)
        out, hs, cs, acts = _call(
            lstm_variant_forward,
            _np(xw, dt),
            _np(w_hh.transpose(1, 2), dt),
            _bias_np(b_hh, xw),
            v,
            peephole,
            flags,
            offsets,
            m,
            _np(h0, dt),
            _np(c0, dt),
        )
        hs, cs = torch.from_numpy(hs), torch.from_numpy(cs)
        ctx.save_for_backward(w_hh, b_hh)
        ctx.state = (v, peephole, flags, offsets, rows, m, hs, cs, acts)
        return torch.from_numpy(out), hs[:, -1].clone(), cs[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn, d_cn):
        w_hh, b_hh = ctx.saved_tensors
        v, peephole, flags, offsets, rows, m, hs, cs, acts = ctx.state
        dt = hs.dtype
        d_pre, d_h0, d_c0, d_v = _call(
            lstm_variant_backward,
            _np(d_out, dt),
            _np(d_hn, dt),
            _np(d_cn, dt),
            _np(w_hh, dt),
            v,
            peephole,
            flags,
            offsets,
            m,
            cs.numpy(),
            acts,
        )
        d_pre = torch.from_numpy(d_pre)
        d_w, d_b = _weight_grads(d_pre, hs[:, :-1], b_hh)
        d_v = torch.from_numpy(np.ascontiguousarray(d_v[:, rows])) if peephole else None
        return (d_pre, d_w, d_b, d_v, None, None, torch.from_numpy(d_h0), torch.from_numpy(d_c0))


class _FusedGRUVariant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, w_hh, b_hh, variant, before, mask, h0):
        dt = xw.dtype
        H = w_hh.shape[-1]
        m = _mask_np(mask, xw)
        coefs = np.array(_GRU_COEFS[variant], _np_dtype(xw))
        w_s, w_n = w_hh[:, :H], w_hh[:, H:]
        out, hs, acts, aux = _call(
            gru_variant_forward,
            _np(xw, dt),
            _np(w_s.transpose(1, 2), dt),
            _np(w_n.transpose(1, 2), dt),
            _bias_np(b_hh, xw),
            before,
            coefs,
            m,
            _np(h0, dt),
        )
        hs = torch.from_numpy(hs)
        ctx.save_for_backward(w_hh, b_hh)
        ctx.state = (before, coefs, m, hs, acts, aux)
        return torch.from_numpy(out), hs[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn):
        w_hh, b_hh = ctx.saved_tensors
        before, coefs, m, hs, acts, aux = ctx.state
        H = w_hh.shape[-1]
        w_s, w_n = w_hh[:, :H], w_hh[:, H:]
        dt = hs.dtype
        d_xw, d_rec_n, d_h0 = _call(
            gru_variant_backward,
            _np(d_out, dt),
            _np(d_hn, dt),
            _np(w_s, dt),
            _np(w_n, dt),
            before,
            coefs,
            m,
            hs.numpy(),
            acts,
            aux,
        )
        d_xw, d_rec_n = torch.from_numpy(d_xw), torch.from_numpy(d_rec_n)
        h_prev = hs[:, :-1]
        d_w_s, d_b_s = _weight_grads(d_xw[..., :H], h_prev, b_hh)
        n_input = torch.from_numpy(aux) if before else h_prev
        d_w_n, d_b_n = _weight_grads(d_rec_n, n_input, b_hh)
        d_w = torch.cat((d_w_s, d_w_n), 1)
        d_b = torch.cat((d_b_s, d_b_n), 1) if b_hh is not None else None
        return d_xw, d_w, d_b, None, None, None, torch.from_numpy(d_h0)
