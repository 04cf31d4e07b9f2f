r"""The tanh unit's fused kernels: :math:`h_t = \tanh(W x_t + b + U h_{t-1} + b_{hh})`,
forward over all steps and members, and its backward through time."""

from __future__ import annotations

import numpy as np

from rnnbench.nn.kernels.blas import real_rows_dot, step_dot
from rnnbench.nn.kernels.common import (
    _hold_tail,
    _jit,
    _live_steps,
    _member_rows,
    _step_rows,
    _tanh,
    _transposed,
    _weight_grads_rows,
)

# ---- tanh: h = tanh(xw + W_hh h_prev + b_hh) -------------------------------------------------


@_jit
def tanh_forward(xw, w_hh, b_hh, mask, h0):
    """Returns ``out``, ``h_n`` and ``hs``; ``w_hh (K, H, H)`` as the module stores it. A
    padding row inside the live steps (common, :func:`_step_rows`) is not computed: out 0,
    the state kept."""
    K, T, B, H = xw.shape
    hs = np.empty((K, T + 1, B, H), xw.dtype)
    out = np.empty((K, T, B, H), xw.dtype)
    h_n = np.empty((K, B, H), xw.dtype)
    rec = np.empty((B, H), xw.dtype)
    h_rows = np.empty((B, H), xw.dtype)
    rows = np.empty(B, np.intp)
    for k in range(K):
        hs[k, 0] = h0[k]
        bias = b_hh[k]
        w_t = _transposed(w_hh[k])
        L = _live_steps(mask[k])  # the steps after L are all padding: kept state, out 0
        for t in range(L):
            # the real rows only (common._step_rows; the product: blas.real_rows_dot)
            n = _step_rows(mask[k, t], rows)
            whole = real_rows_dot(hs[k, t], w_t, rec, rows, n, h_rows)
            for i in range(n):
                b = rows[i]
                ri = b if whole else i
                for j in range(H):
                    hs[k, t + 1, b, j] = _tanh(xw[k, t, b, j] + rec[ri, j] + bias[j])
                m = mask[k, t, b]
                if m == 1:  # _finish_step's arithmetic, indexed
                    for j in range(H):
                        out[k, t, b, j] = hs[k, t + 1, b, j]
                else:
                    for j in range(H):
                        out[k, t, b, j] = m * hs[k, t + 1, b, j]
                        hs[k, t + 1, b, j] = out[k, t, b, j] + (1 - m) * hs[k, t, b, j]
            if n < B:  # the padding rows (mask 0): out 0, the state kept
                for b in range(B):
                    if mask[k, t, b] == 0:
                        for j in range(H):
                            out[k, t, b, j] = 0
                            hs[k, t + 1, b, j] = hs[k, t, b, j]
        _hold_tail(hs[k], L)
        out[k, L:] = 0
        h_n[k] = hs[k, T]
    return out, h_n, hs


@_jit
def tanh_backward(d_out, d_hn, w_hh, mask, out, hs):
    """Returns ``d_pre (K, T, B, H)`` (= d xw), ``d_w_hh``, ``d_b_hh`` and ``d_h0``. ``out``
    holds h_t on real steps, ``hs`` the states (``hs[:, t]`` multiplies ``w_hh`` at step t).
    A padding row inside the live steps passes ``d_h`` through with no gradient."""
    K, T, B, H = out.shape
    one = np.ones(1, out.dtype)[0]
    d_pre = np.empty((K, T, B, H), out.dtype)
    d_w = np.empty((K, H, H), out.dtype)
    d_b = np.empty((K, H), out.dtype)
    d_h0 = np.empty((K, B, H), out.dtype)
    d_h = np.empty((B, H), out.dtype)
    rec = np.empty((B, H), out.dtype)
    d_live = np.empty((T * B, H), out.dtype)  # the computed rows' d_pre and h_prev,
    h_live = np.empty((T * B, H), out.dtype)  # compact (common._member_rows)
    for k in range(K):
        d_h[:] = d_hn[k]
        L = _live_steps(mask[k])  # the padded tail passes d_h through, no gradient into it
        d_pre[k, L:] = 0
        rows, count, first = _member_rows(mask[k], L)
        for t in range(L - 1, -1, -1):
            n, r0 = count[t], first[t]
            for i in range(n):
                b, q = rows[t, i], r0 + i
                m, keep = mask[k, t, b], one - mask[k, t, b]
                for j in range(H):
                    h = out[k, t, b, j]
                    dp = m * (d_out[k, t, b, j] + d_h[b, j]) * (one - h * h)
                    d_pre[k, t, b, j] = dp
                    d_live[q, j] = dp
                    d_h[b, j] = keep * d_h[b, j]
                    h_live[q, j] = hs[k, t, b, j]
            if n > 0:
                step_dot(d_live[r0 : r0 + n], w_hh[k], rec[:n])
                for i in range(n):
                    b = rows[t, i]
                    for j in range(H):
                        d_h[b, j] += rec[i, j]
            if n < B:
                for b in range(B):
                    if mask[k, t, b] == 0:
                        for j in range(H):
                            d_pre[k, t, b, j] = 0
        d_h0[k] = d_h
        # the recurrent weights' gradients, in chunks of rows (common.WEIGHT_GRAD_CHUNK)
        R = first[L]
        _weight_grads_rows(d_live[:R], h_live[:R], d_w[k], d_b[k])
    return d_pre, d_w, d_b, d_h0
