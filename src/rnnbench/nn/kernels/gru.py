r"""The GRU's fused kernels (gate blocks r, z, n; reset before or after the product) and one
kernel pair for every GRU variant of :mod:`rnnbench.nn.variants`:

.. math::
    r, z = \sigma(a_{r,z}), \quad n = \tanh(W_n x_t + b_n + U_n (r \odot h_{t-1})), \quad
    h_t = (1 - z) n + z h_{t-1}."""

from __future__ import annotations

import numpy as np

from rnnbench.nn.kernels.blas import real_rows_dot, step_dot
from rnnbench.nn.kernels.common import (
    _finish_step,
    _hold_tail,
    _jit,
    _live_steps,
    _member_rows,
    _sigmoid,
    _step_rows,
    _tanh,
    _transposed,
    _weight_grads,
    _weight_grads_rows,
)

# ---- GRU, gate blocks r, z, n; h = (1 - z) n + z h_prev -----------------------------------------
# The recurrent weights ``w_hh (K, 3H, H)`` come as the module stores them: the r,z rows
# (2H x H), then the n rows (H x H).
# ``aux (K, T, B, H)`` holds the n block's recurrent input for "before" (r * h_prev) and its
# recurrent pre-activation for "after" (W_hn h_prev + b_hn).


@_jit
def gru_forward(xw, w_hh, b_hh, before, mask, h0):
    """Returns ``out``, ``h_n``, ``hs``, ``acts (K, T, B, 3H)`` (r, z, n after their
    non-linearities) and ``aux``. A padding row inside the live steps (common,
    :func:`_step_rows`) is not computed: out 0, the state kept, ``acts`` and ``aux`` 0."""
    K, T, B, G = xw.shape
    H = G // 3
    one = np.ones(1, xw.dtype)[0]
    hs = np.empty((K, T + 1, B, H), xw.dtype)
    acts = np.empty((K, T, B, G), xw.dtype)
    aux = np.empty((K, T, B, H), xw.dtype)
    out = np.empty((K, T, B, H), xw.dtype)
    h_n = np.empty((K, B, H), xw.dtype)
    rec_rz = np.empty((B, 2 * H), xw.dtype)
    rec_n = np.empty((B, H), xw.dtype)
    h_rows = np.empty((B, H), xw.dtype)  # a step's computed rows: h_prev, then r h_prev
    rows = np.empty(B, np.intp)
    for k in range(K):
        hs[k, 0] = h0[k]
        w_rz_t, w_n_t = _transposed(w_hh[k, : 2 * H]), _transposed(w_hh[k, 2 * H :])
        L = _live_steps(mask[k])  # the steps after L are all padding: kept state, out 0
        for t in range(L):
            n = _step_rows(mask[k, t], rows)  # the real rows (the product: real_rows_dot)
            whole = real_rows_dot(hs[k, t], w_rz_t, rec_rz, rows, n, h_rows)
            # the rows are indexed, not taken as views (a view per row and step costs an
            # atomic reference count: about a fifth of this kernel's time at JSB's sizes)
            for i in range(n):
                b = rows[i]
                ri = b if whole else i
                for j in range(2 * H):
                    acts[k, t, b, j] = _sigmoid(xw[k, t, b, j] + rec_rz[ri, j] + b_hh[k, j])
                if before:
                    for j in range(H):
                        aux[k, t, b, j] = acts[k, t, b, j] * hs[k, t, b, j]
                    if not whole:
                        for j in range(H):
                            h_rows[i, j] = aux[k, t, b, j]
            if whole:
                if before and n < B:  # a padding row's r h_prev is 0 (its result unused)
                    for b in range(B):
                        if mask[k, t, b] == 0:
                            for j in range(H):
                                aux[k, t, b, j] = 0
                step_dot(aux[k, t] if before else hs[k, t], w_n_t, rec_n)
            elif n > 0:
                step_dot(h_rows[:n], w_n_t, rec_n[:n])
            for i in range(n):
                b = rows[i]
                ri = b if whole else i
                if before:
                    for j in range(H):
                        acts[k, t, b, 2 * H + j] = _tanh(
                            xw[k, t, b, 2 * H + j] + rec_n[ri, j] + b_hh[k, 2 * H + j]
                        )
                else:
                    for j in range(H):
                        aux[k, t, b, j] = rec_n[ri, j] + b_hh[k, 2 * H + j]
                        acts[k, t, b, 2 * H + j] = _tanh(
                            xw[k, t, b, 2 * H + j] + acts[k, t, b, j] * aux[k, t, b, j]
                        )
                m = mask[k, t, b]
                if m == 1:  # _finish_step's arithmetic, inline
                    for j in range(H):
                        z = acts[k, t, b, H + j]
                        h = (one - z) * acts[k, t, b, 2 * H + j] + z * hs[k, t, b, j]
                        out[k, t, b, j] = h
                        hs[k, t + 1, b, j] = h
                else:
                    for j in range(H):
                        z = acts[k, t, b, H + j]
                        h = (one - z) * acts[k, t, b, 2 * H + j] + z * hs[k, t, b, j]
                        out[k, t, b, j] = m * h
                        hs[k, t + 1, b, j] = out[k, t, b, j] + (1 - m) * hs[k, t, b, j]
            if n < B:  # the padding rows (mask 0), indexed (no views)
                for b in range(B):
                    if mask[k, t, b] == 0:
                        for j in range(H):
                            out[k, t, b, j] = 0
                            hs[k, t + 1, b, j] = hs[k, t, b, j]
                            aux[k, t, b, j] = 0
                        for j in range(G):
                            acts[k, t, b, j] = 0
        _hold_tail(hs[k], L)
        out[k, L:] = 0
        acts[k, L:] = 0
        aux[k, L:] = 0
        h_n[k] = hs[k, T]
    return out, h_n, hs, acts, aux


@_jit
def gru_backward(d_out, d_hn, w_hh, before, mask, hs, acts, aux):
    """Returns ``d_xw (K, T, B, 3H)``, ``d_w_hh``, ``d_b_hh`` and ``d_h0``. The r and z blocks'
    recurrent gradient is their block of ``d_xw``; the n block's is ``d_rec_n``, the gradient
    of its recurrent pre-activation (``W_hn (r h)`` before, ``W_hn h + b_hn`` after). A
    padding row inside the live steps passes ``d_h`` through with ``d_xw`` 0 and adds
    nothing to the weights' gradients."""
    K, T, B, G = acts.shape
    H = G // 3
    S = 2 * H
    one = np.ones(1, acts.dtype)[0]
    d_xw = np.empty((K, T, B, G), acts.dtype)
    d_w = np.empty((K, w_hh.shape[1], H), acts.dtype)
    d_b = np.empty((K, w_hh.shape[1]), acts.dtype)
    d_h0 = np.empty((K, B, H), acts.dtype)
    d_h = np.empty((B, H), acts.dtype)
    d_rh = np.empty((B, H), acts.dtype)
    rec = np.empty((B, H), acts.dtype)
    # one member's computed (step, row) slots in order (common._member_rows): the r, z and n
    # gradients and the products' inputs, contiguous for the per-step and weight products
    d_rz = np.empty((T * B, 2 * H), acts.dtype)
    d_rec_n = np.empty((T * B, H), acts.dtype)
    h_prev = np.empty((T * B, H), acts.dtype)
    rh = np.empty((T * B, H), acts.dtype) if before else h_prev
    for k in range(K):
        d_h[:] = d_hn[k]
        w_s, w_n = w_hh[k, :S], w_hh[k, S:]
        L = _live_steps(mask[k])  # the padded tail passes d_h through, no gradient into it
        d_xw[k, L:] = 0
        rows, count, first = _member_rows(mask[k], L)
        for t in range(L - 1, -1, -1):
            n, r0 = count[t], first[t]
            # rows indexed, not taken as views (as in gru_forward)
            for i in range(n):
                b, q = rows[t, i], r0 + i
                m, keep = mask[k, t, b], one - mask[k, t, b]
                for j in range(H):
                    z, nn = acts[k, t, b, H + j], acts[k, t, b, 2 * H + j]
                    d_h_new = m * (d_out[k, t, b, j] + d_h[b, j])
                    dxn = d_h_new * (one - z) * (one - nn * nn)
                    d_xw[k, t, b, 2 * H + j] = dxn
                    d_rz[q, H + j] = d_h_new * (hs[k, t, b, j] - nn) * (z - z * z)
                    d_h[b, j] = d_h_new * z + keep * d_h[b, j]
                    h_prev[q, j] = hs[k, t, b, j]
                if before:  # the n block's recurrent gradient is d_xn itself
                    for j in range(H):
                        d_rec_n[q, j] = d_xw[k, t, b, 2 * H + j]
                        rh[q, j] = aux[k, t, b, j]
                else:
                    for j in range(H):
                        r, dxn = acts[k, t, b, j], d_xw[k, t, b, 2 * H + j]
                        d_rec_n[q, j] = dxn * r
                        d_rz[q, j] = dxn * aux[k, t, b, j] * (r - r * r)
            if n > 0:
                if before:
                    step_dot(d_rec_n[r0 : r0 + n], w_n, d_rh[:n])
                    for i in range(n):
                        b, q = rows[t, i], r0 + i
                        for j in range(H):
                            r, drh = acts[k, t, b, j], d_rh[i, j]
                            d_rz[q, j] = drh * hs[k, t, b, j] * (r - r * r)
                            d_h[b, j] += drh * r
                else:
                    step_dot(d_rec_n[r0 : r0 + n], w_n, rec[:n])
                    for i in range(n):
                        b = rows[t, i]
                        for j in range(H):
                            d_h[b, j] += rec[i, j]
                step_dot(d_rz[r0 : r0 + n], w_s, rec[:n])
            for i in range(n):
                b, q = rows[t, i], r0 + i
                for j in range(H):
                    d_h[b, j] += rec[i, j]
                for j in range(2 * H):
                    d_xw[k, t, b, j] = d_rz[q, j]
            if n < B:  # the padding rows (mask 0): no gradient, d_h passes through
                for b in range(B):
                    if mask[k, t, b] == 0:
                        for j in range(G):
                            d_xw[k, t, b, j] = 0
        d_h0[k] = d_h
        R = first[L]  # the weights' gradients, in chunks of rows (WEIGHT_GRAD_CHUNK)
        _weight_grads_rows(d_rz[:R], h_prev[:R], d_w[k, :S], d_b[k, :S])
        _weight_grads_rows(d_rec_n[:R], rh[:R], d_w[k, S:], d_b[k, S:])
    return d_xw, d_w, d_b, d_h0


# ---- GRU variants: one gate block s and the candidate block n ---------------------------------
# Every GRU variant keeps one gate s = σ(a_s) beside n, and reads it as its reset gate
# r = r0 + cr s and its update gate z = z0 + cz s in h = (1 - z) n + z h_prev:
# nrg (r = 1, z = s): coefs (1, 0, 0, 1); nug (r = s, z = 0): (0, 1, 0, 0);
# mgu (r = f, z = 1 - f, f = s): (0, 1, 1, -1). The coefficients are exact 0, 1 or -1, so the
# arithmetic is that of the unit's own equation. ``aux`` as in the full GRU.


@_jit
def gru_variant_forward(xw, w_hh, b_hh, before, coefs, mask, h0):
    """Returns ``out``, ``h_n``, ``hs``, ``acts (K, T, B, 2H)`` (s, n) and ``aux``; ``w_hh
    (K, 2H, H)``: the s rows, then the n rows."""
    K, T, B, G = xw.shape
    H = G // 2
    r0, cr, z0, cz = coefs[0], coefs[1], coefs[2], coefs[3]
    one = np.ones(1, xw.dtype)[0]
    hs = np.empty((K, T + 1, B, H), xw.dtype)
    acts = np.empty((K, T, B, G), xw.dtype)
    aux = np.empty((K, T, B, H), xw.dtype)
    out = np.empty((K, T, B, H), xw.dtype)
    h_n = np.empty((K, B, H), xw.dtype)
    rec_s = np.empty((B, H), xw.dtype)
    rec_n = np.empty((B, H), xw.dtype)
    for k in range(K):
        hs[k, 0] = h0[k]
        bias = b_hh[k]
        w_s_t, w_n_t = _transposed(w_hh[k, :H]), _transposed(w_hh[k, H:])
        L = _live_steps(mask[k])  # the steps after L are all padding: kept state, out 0
        for t in range(L):
            step_dot(hs[k, t], w_s_t, rec_s)
            for b in range(B):
                a, x, r, h_prev = acts[k, t, b], xw[k, t, b], rec_s[b], hs[k, t, b]
                for j in range(H):
                    a[j] = _sigmoid(x[j] + r[j] + bias[j])
                if before:
                    rh = aux[k, t, b]
                    for j in range(H):
                        rh[j] = (r0 + cr * a[j]) * h_prev[j]
            step_dot(aux[k, t] if before else hs[k, t], w_n_t, rec_n)
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
                _finish_step(mask[k, t, b], h, h_prev, out[k, t, b])
        _hold_tail(hs[k], L)
        out[k, L:] = 0
        acts[k, L:] = 0
        aux[k, L:] = 0
        h_n[k] = hs[k, T]
    return out, h_n, hs, acts, aux


@_jit
def gru_variant_backward(d_out, d_hn, w_hh, before, coefs, mask, hs, acts, aux):
    """Returns ``d_xw (K, T, B, 2H)``, ``d_w_hh``, ``d_b_hh`` and ``d_h0``, as
    :func:`gru_backward`."""
    K, T, B, G = acts.shape
    H = G // 2
    S = H
    r0, cr, z0, cz = coefs[0], coefs[1], coefs[2], coefs[3]
    one = np.ones(1, acts.dtype)[0]
    d_s = np.empty((K, T, B, H), acts.dtype)
    d_xn = np.empty((K, T, B, H), acts.dtype)
    d_rec_n = np.empty((K, T, B, H), acts.dtype)
    d_w = np.empty((K, w_hh.shape[1], H), acts.dtype)
    d_b = np.empty((K, w_hh.shape[1]), acts.dtype)
    d_h0 = np.empty((K, B, H), acts.dtype)
    d_h = np.empty((B, H), acts.dtype)
    d_rh = np.empty((B, H), acts.dtype)
    rec = np.empty((B, H), acts.dtype)
    for k in range(K):
        d_h[:] = d_hn[k]
        w_s, w_n = w_hh[k, :S], w_hh[k, S:]
        L = _live_steps(mask[k])  # the padded tail passes d_h through, no gradient into it
        d_s[k, L:] = 0
        d_xn[k, L:] = 0
        d_rec_n[k, L:] = 0
        for t in range(L - 1, -1, -1):
            for b in range(B):
                m, keep = mask[k, t, b], one - mask[k, t, b]
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
                step_dot(d_xn[k, t], w_n, d_rh)
                for b in range(B):
                    a, h_prev, ds = acts[k, t, b], hs[k, t, b], d_s[k, t, b]
                    dh, drh = d_h[b], d_rh[b]
                    for j in range(H):
                        s = a[j]
                        ds[j] = (ds[j] + cr * drh[j] * h_prev[j]) * (s - s * s)
                        dh[j] += drh[j] * (r0 + cr * s)
            else:
                step_dot(d_rec_n[k, t], w_n, rec)
                d_h += rec
            step_dot(d_s[k, t], w_s, rec)
            d_h += rec
        d_h0[k] = d_h
        h_prev = hs[k, :L]  # the weights' gradients, in chunks of rows (WEIGHT_GRAD_CHUNK)
        _weight_grads(d_s[k, :L], h_prev, d_w[k, :S], d_b[k, :S])
        _weight_grads(d_rec_n[k, :L], aux[k, :L] if before else h_prev, d_w[k, S:], d_b[k, S:])
    return np.concatenate((d_s, d_xn), axis=3), d_w, d_b, d_h0
