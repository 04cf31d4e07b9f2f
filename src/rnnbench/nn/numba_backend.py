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

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")

# ---- activations: libm in float64; in float32 a rational tanh that vectorises ----------------
# tanh(x) ~ x P(x^2) / Q(x^2) on x clamped to +-7.905 (where float32 tanh rounds to +-1), the
# minimax fit of Eigen / XLA / MLAS, within a few float32 ulps; sigmoid(x) = (1 + tanh(x/2)) / 2.
# NaN propagates (tanh(NaN) = NaN) and +-inf saturates to +-1, exactly as torch.tanh.
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
        # x first: numba's min and max follow Python's, which return their first argument
        # when a comparison with NaN is False, so NaN passes through the clamp and the
        # rational form, as through torch.tanh (max(-C, min(C, x)) returned C for NaN).
        x = max(min(x, _TANH_CLAMP), -_TANH_CLAMP)
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


def _call(kernel, *args):
    """Run ``kernel`` with numba's BLAS calls on this thread using torch's thread count."""
    if _set_blas_threads is None:
        return kernel(*args)
    previous = _set_blas_threads(torch.get_num_threads())
    try:
        return kernel(*args)
    finally:
        _set_blas_threads(previous)


def run(cell, xw, w_hh, b_hh, w_ch, reset, mask, h0, c0):
    """:func:`rnnbench.nn.functional.run_unit` after the input projection, on the fused kernels
    (through the custom operator of :mod:`rnnbench.nn.ops`)."""
    from rnnbench.nn import ops

    return ops.run(cell, xw, w_hh, b_hh, w_ch, reset, mask, h0, c0)


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    return t.detach().to(dtype).contiguous().numpy()


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


def forward(cell, reset, peephole, xw, w_hh, b_hh, w_ch, mask, h0, c0):
    """The fused forward of ``cell`` on plain tensors (no autograd): ``(out, h_n, c_n, hs,
    cs, acts, aux)``, where ``c_n``, ``cs`` (LSTM), ``acts`` (LSTM, GRU) and ``aux`` (GRU)
    are empty tensors for the cells that have none. ``mask (T, B)`` is a tensor (ones for
    no padding); ``b_hh`` and ``w_ch`` may be None; ``peephole`` says whether ``w_ch`` is used.
    """
    dt = xw.dtype
    m = _np(mask, dt)
    x = _np(xw, dt)
    bias = _bias_np(b_hh, xw)
    empty = (xw.new_empty(0) for _ in range(4))
    if cell == "lstm":
        v = _np(w_ch, dt) if peephole else np.zeros((xw.shape[0], 3, 1), _np_dtype(xw))
        out, hs, cs, acts = _call(
            lstm_forward,
            x,
            _np(w_hh.transpose(1, 2), dt),
            bias,
            v,
            peephole,
            m,
            _np(h0, dt),
            _np(c0, dt),
        )
        hs, cs = torch.from_numpy(hs), torch.from_numpy(cs)
        c_n, acts, aux = cs[:, -1].clone(), torch.from_numpy(acts), next(empty)
    elif cell == "gru":
        H = w_hh.shape[-1]
        out, hs, acts, aux = _call(
            gru_forward,
            x,
            _np(w_hh[:, : 2 * H].transpose(1, 2), dt),
            _np(w_hh[:, 2 * H :].transpose(1, 2), dt),
            bias,
            reset == "before",
            m,
            _np(h0, dt),
        )
        hs, acts, aux = torch.from_numpy(hs), torch.from_numpy(acts), torch.from_numpy(aux)
        c_n, cs = next(empty), next(empty)
    else:
        out, hs = _call(tanh_forward, x, _np(w_hh.transpose(1, 2), dt), bias, m, _np(h0, dt))
        hs = torch.from_numpy(hs)
        c_n, cs, acts, aux = empty
    return torch.from_numpy(out), hs[:, -1].clone(), c_n, hs, cs, acts, aux


def backward(cell, reset, peephole, d_out, d_hn, d_cn, w_hh, w_ch, mask, out, hs, cs, acts, aux):
    """The fused backward through time on plain tensors: the gradients ``(d_xw, d_w_hh,
    d_b_hh, d_w_ch, d_h0, d_c0)`` of the loss with respect to the inputs of :func:`forward`
    (``d_w_ch`` and ``d_c0`` empty where the cell has none)."""
    dt = hs.dtype
    m = _np(mask, dt)
    h_prev = hs[:, :-1]
    empty = (hs.new_empty(0) for _ in range(2))
    if cell == "lstm":
        v = _np(w_ch, dt) if peephole else np.zeros((hs.shape[0], 3, 1), _np_dtype(hs))
        d_xw, d_h0, d_c0, d_v = _call(
            lstm_backward,
            _np(d_out, dt),
            _np(d_hn, dt),
            _np(d_cn, dt),
            _np(w_hh, dt),
            v,
            peephole,
            m,
            _np(cs, dt),
            _np(acts, dt),
        )
        d_xw = torch.from_numpy(d_xw)
        d_w, d_b = _weight_grads(d_xw, h_prev)
        d_v = torch.from_numpy(d_v) if peephole else next(empty)
        return d_xw, d_w, d_b, d_v, torch.from_numpy(d_h0), torch.from_numpy(d_c0)
    if cell == "gru":
        H = w_hh.shape[-1]
        before = reset == "before"
        d_xw, d_rec_n, d_h0 = _call(
            gru_backward,
            _np(d_out, dt),
            _np(d_hn, dt),
            _np(w_hh[:, : 2 * H], dt),
            _np(w_hh[:, 2 * H :], dt),
            before,
            m,
            _np(hs, dt),
            _np(acts, dt),
            _np(aux, dt),
        )
        d_xw, d_rec_n = torch.from_numpy(d_xw), torch.from_numpy(d_rec_n)
        d_w_rz, d_b_rz = _weight_grads(d_xw[..., : 2 * H], h_prev)
        d_w_n, d_b_n = _weight_grads(d_rec_n, aux if before else h_prev)
        d_w, d_b = torch.cat((d_w_rz, d_w_n), 1), torch.cat((d_b_rz, d_b_n), 1)
        return d_xw, d_w, d_b, next(empty), torch.from_numpy(d_h0), next(empty)
    d_xw, d_h0 = _call(tanh_backward, _np(d_out, dt), _np(d_hn, dt), _np(w_hh, dt), m, _np(out, dt))
    d_xw = torch.from_numpy(d_xw)
    d_w, d_b = _weight_grads(d_xw, h_prev)
    return d_xw, d_w, d_b, next(empty), torch.from_numpy(d_h0), next(empty)
