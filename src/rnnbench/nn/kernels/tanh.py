r"""The tanh unit's fused kernels: :math:`h_t = \tanh(W x_t + b + U h_{t-1} + b_{hh})`,
forward over all steps and members, and its backward through time."""

from __future__ import annotations

import numpy as np

from rnnbench.nn.kernels.blas import step_dot
from rnnbench.nn.kernels.common import (
    _finish_step,
    _hold_tail,
    _jit,
    _live_steps,
    _tanh,
    _transposed,
    _weight_grads,
)

# ---- tanh: h = tanh(xw + W_hh h_prev + b_hh) -------------------------------------------------


@_jit
def tanh_forward(xw, w_hh, b_hh, mask, h0):
    """Returns ``out``, ``h_n`` and ``hs``; ``w_hh (K, H, H)`` as the module stores it."""
    K, T, B, H = xw.shape
    hs = np.empty((K, T + 1, B, H), xw.dtype)
    out = np.empty((K, T, B, H), xw.dtype)
    h_n = np.empty((K, B, H), xw.dtype)
    rec = np.empty((B, H), xw.dtype)
    for k in range(K):
        hs[k, 0] = h0[k]
        bias = b_hh[k]
        w_t = _transposed(w_hh[k])
        L = _live_steps(mask[k])  # the steps after L are all padding: kept state, out 0
        for t in range(L):
            step_dot(hs[k, t], w_t, rec)
            for b in range(B):
                x, r, h = xw[k, t, b], rec[b], hs[k, t + 1, b]
                for j in range(H):
                    h[j] = _tanh(x[j] + r[j] + bias[j])
                _finish_step(mask[k, t, b], h, hs[k, t, b], out[k, t, b])
        _hold_tail(hs[k], L)
        out[k, L:] = 0
        h_n[k] = hs[k, T]
    return out, h_n, hs


@_jit
def tanh_backward(d_out, d_hn, w_hh, mask, out, hs):
    """Returns ``d_pre (K, T, B, H)`` (= d xw), ``d_w_hh``, ``d_b_hh`` and ``d_h0``. ``out``
    holds h_t on real steps, ``hs`` the states (``hs[:, t]`` multiplies ``w_hh`` at step t)."""
    K, T, B, H = out.shape
    one = np.ones(1, out.dtype)[0]
    d_pre = np.empty((K, T, B, H), out.dtype)
    d_w = np.empty((K, H, H), out.dtype)
    d_b = np.empty((K, H), out.dtype)
    d_h0 = np.empty((K, B, H), out.dtype)
    d_h = np.empty((B, H), out.dtype)
    rec = np.empty((B, H), out.dtype)
    for k in range(K):
        d_h[:] = d_hn[k]
        L = _live_steps(mask[k])  # the padded tail passes d_h through, no gradient into it
        d_pre[k, L:] = 0
        for t in range(L - 1, -1, -1):
            for b in range(B):
                m, keep = mask[k, t, b], one - mask[k, t, b]
                h, dp, dout, dh = out[k, t, b], d_pre[k, t, b], d_out[k, t, b], d_h[b]
                for j in range(H):
                    dp[j] = m * (dout[j] + dh[j]) * (one - h[j] * h[j])
                    dh[j] = keep * dh[j]
            step_dot(d_pre[k, t], w_hh[k], rec)
            d_h += rec
        d_h0[k] = d_h
        # the recurrent weights' gradients, in chunks of rows (common.WEIGHT_GRAD_CHUNK)
        _weight_grads(d_pre[k, :L], hs[k, :L], d_w[k], d_b[k])
    return d_pre, d_w, d_b, d_h0
