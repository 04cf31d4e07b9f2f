r"""The LSTM's fused kernels (gate blocks i, f, g, o; optional peepholes) and one kernel pair
for every LSTM variant of :mod:`rnnbench.nn.variants`:

.. math::
    i, f, o = \sigma(a_{i,f,o}), \quad g = \tanh(a_g), \quad
    c_t = f c_{t-1} + i g, \quad h_t = o \tanh(c_t),

with :math:`a = W x_t + b + U h_{t-1} + b_{hh}` (+ the peepholes :math:`v \odot c`)."""

from __future__ import annotations

import numpy as np

from rnnbench.nn.kernels.blas import real_rows_dot, step_dot
from rnnbench.nn.kernels.common import (
    _HALF,
    _finish_step,
    _gate,
    _hold_tail,
    _jit,
    _keep_cell,
    _live_steps,
    _member_rows,
    _sigmoid,
    _step_rows,
    _tanh,
    _transposed,
    _weight_grads,
    _weight_grads_rows,
)

# ---- LSTM, gate blocks i, f, g, o; peepholes v (K, 3, H) when peephole ------------------------


@_jit
def _gate_affine(H, dtype):
    """Per column of the i, f, g, o blocks: ``s`` and ``shift`` of :func:`_gate` (sigmoid on
    i, f, o; tanh on g)."""
    one = np.ones(1, dtype)[0]
    scale = np.full(4 * H, _HALF, dtype)
    shift = np.full(4 * H, _HALF, dtype)
    scale[2 * H : 3 * H] = one
    shift[2 * H : 3 * H] = one - one
    return scale, shift


@_jit
def lstm_forward(xw, w_hh, b_hh, w_ch, peephole, mask, h0, c0):
    """Returns ``out``, ``h_n``, ``c_n``, ``hs``, ``cs`` and ``acts (K, T, B, 4H)``: i, f, g, o
    after their non-linearities (0 on a padding row, which keeps its state with out 0).
    ``w_hh (K, 4H, H)`` as the module stores it. The gate non-linearities run as one loop
    over the row's 4H columns (3H with peepholes, where o waits for c): in float32 the same
    arithmetic as one loop per block, without a remainder per block (about 30% faster at H =
    36)."""
    K, T, B, G = xw.shape
    H = G // 4
    hs = np.empty((K, T + 1, B, H), xw.dtype)
    cs = np.empty((K, T + 1, B, H), xw.dtype)
    acts = np.empty((K, T, B, G), xw.dtype)
    out = np.empty((K, T, B, H), xw.dtype)
    h_n = np.empty((K, B, H), xw.dtype)
    c_n = np.empty((K, B, H), xw.dtype)
    rec = np.empty((B, G), xw.dtype)
    h_rows = np.empty((B, H), xw.dtype)
    rows = np.empty(B, np.intp)
    scale, shift = _gate_affine(H, xw.dtype)
    for k in range(K):
        hs[k, 0] = h0[k]
        cs[k, 0] = c0[k]
        w_t = _transposed(w_hh[k])
        L = _live_steps(mask[k])  # the steps after L are all padding: kept state, out 0
        for t in range(L):
            # the real rows only (common._step_rows; the product: blas.real_rows_dot)
            n = _step_rows(mask[k, t], rows)
            whole = real_rows_dot(hs[k, t], w_t, rec, rows, n, h_rows)
            # rows indexed, not taken as views (a view per row and step costs an atomic
            # reference count; as in the GRU kernels)
            for i in range(n):
                b = rows[i]
                ri = b if whole else i
                if peephole:
                    for j in range(G):
                        acts[k, t, b, j] = xw[k, t, b, j] + rec[ri, j] + b_hh[k, j]
                    for j in range(H):
                        acts[k, t, b, j] += w_ch[k, 0, j] * cs[k, t, b, j]
                        acts[k, t, b, H + j] += w_ch[k, 1, j] * cs[k, t, b, j]
                    for j in range(3 * H):
                        acts[k, t, b, j] = _gate(acts[k, t, b, j], scale[j], shift[j])
                    for j in range(H):
                        cs[k, t + 1, b, j] = (
                            acts[k, t, b, H + j] * cs[k, t, b, j]
                            + acts[k, t, b, j] * acts[k, t, b, 2 * H + j]
                        )
                    for j in range(H):
                        o = _sigmoid(acts[k, t, b, 3 * H + j] + w_ch[k, 2, j] * cs[k, t + 1, b, j])
                        acts[k, t, b, 3 * H + j] = o
                        hs[k, t + 1, b, j] = o * _tanh(cs[k, t + 1, b, j])
                else:
                    for j in range(G):
                        acts[k, t, b, j] = _gate(
                            xw[k, t, b, j] + rec[ri, j] + b_hh[k, j], scale[j], shift[j]
                        )
                    for j in range(H):  # c and h in one pass: one scalar remainder, not two
                        c = (
                            acts[k, t, b, H + j] * cs[k, t, b, j]
                            + acts[k, t, b, j] * acts[k, t, b, 2 * H + j]
                        )
                        cs[k, t + 1, b, j] = c
                        hs[k, t + 1, b, j] = acts[k, t, b, 3 * H + j] * _tanh(c)
                m = mask[k, t, b]
                if m != 1:  # _finish_step and _keep_cell, inline
                    for j in range(H):
                        out[k, t, b, j] = m * hs[k, t + 1, b, j]
                        hs[k, t + 1, b, j] = out[k, t, b, j] + (1 - m) * hs[k, t, b, j]
                        cs[k, t + 1, b, j] = m * cs[k, t + 1, b, j] + (1 - m) * cs[k, t, b, j]
                else:
                    for j in range(H):
                        out[k, t, b, j] = hs[k, t + 1, b, j]
            if n < B:  # the padding rows (mask 0): out 0, the state kept, acts 0
                for b in range(B):
                    if mask[k, t, b] == 0:
                        for j in range(H):
                            out[k, t, b, j] = 0
                            hs[k, t + 1, b, j] = hs[k, t, b, j]
                            cs[k, t + 1, b, j] = cs[k, t, b, j]
                        for j in range(G):
                            acts[k, t, b, j] = 0
        _hold_tail(hs[k], L)
        _hold_tail(cs[k], L)
        out[k, L:] = 0
        acts[k, L:] = 0
        h_n[k] = hs[k, T]
        c_n[k] = cs[k, T]
    return out, h_n, c_n, hs, cs, acts


@_jit
def lstm_backward(d_out, d_hn, d_cn, w_hh, w_ch, peephole, mask, hs, cs, acts):
    """Returns ``d_pre (K, T, B, 4H)`` (= d xw), ``d_w_hh``, ``d_b_hh``, ``d_h0``, ``d_c0`` and
    ``d_w_ch``. A padding row inside the live steps passes ``d_h`` and ``d_c`` through with
    ``d_pre`` 0 and adds nothing to the weights' gradients."""
    K, T, B, G = acts.shape
    H = G // 4
    one = np.ones(1, acts.dtype)[0]
    d_pre = np.empty((K, T, B, G), acts.dtype)
    d_w = np.empty((K, G, H), acts.dtype)
    d_b = np.empty((K, G), acts.dtype)
    d_h0 = np.empty((K, B, H), acts.dtype)
    d_c0 = np.empty((K, B, H), acts.dtype)
    d_w_ch = np.zeros((K, 3, H), acts.dtype)
    d_h = np.empty((B, H), acts.dtype)
    d_c = np.empty((B, H), acts.dtype)
    d_c_new = np.empty(H, acts.dtype)
    rec = np.empty((B, H), acts.dtype)
    d_live = np.empty((T * B, G), acts.dtype)  # the computed rows' d_pre and h_prev,
    h_live = np.empty((T * B, H), acts.dtype)  # compact (common._member_rows)
    for k in range(K):
        d_h[:] = d_hn[k]
        d_c[:] = d_cn[k]
        v_i, v_f, v_o = w_ch[k, 0], w_ch[k, 1], w_ch[k, 2]
        d_v_i, d_v_f, d_v_o = d_w_ch[k, 0], d_w_ch[k, 1], d_w_ch[k, 2]
        # the per-step product d_pre W as d_pre (W^T)^T: OpenBLAS's small-matrix kernel took
        # 0.50 us against 0.58 at (4, 144) x (144, 36) on one thread (the GRU's and tanh's
        # shapes measured no faster, so they keep W)
        w_t = _transposed(w_hh[k])
        L = _live_steps(mask[k])  # the padded tail passes d_h, d_c through, no gradient into it
        d_pre[k, L:] = 0
        rows, count, first = _member_rows(mask[k], L)
        for t in range(L - 1, -1, -1):
            # the real rows only (common._step_rows; a padding row passes d_h and d_c
            # through with no gradient), the product on all rows as in lstm_forward
            n, r0 = count[t], first[t]
            for i in range(n):
                b = rows[t, i]
                m, keep = mask[k, t, b], one - mask[k, t, b]
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
                    ig, f, g = a[j], a[H + j], a[2 * H + j]
                    dp[j] = d_c_new[j] * g * (ig - ig * ig)
                    dp[H + j] = d_c_new[j] * c_prev[j] * (f - f * f)
                    dp[2 * H + j] = d_c_new[j] * ig * (one - g * g)
                    dc[j] = d_c_new[j] * f + keep * dc[j]
                if peephole:
                    for j in range(H):
                        dc[j] += dp[j] * v_i[j] + dp[H + j] * v_f[j]
                        d_v_i[j] += dp[j] * c_prev[j]
                        d_v_f[j] += dp[H + j] * c_prev[j]
                q = r0 + i
                for j in range(G):
                    d_live[q, j] = dp[j]
                for j in range(H):
                    h_live[q, j] = hs[k, t, b, j]
            if n == B:
                step_dot(d_pre[k, t], w_t.T, rec)
                d_h += rec
                continue
            for b in range(B):
                if mask[k, t, b] == 0:
                    for j in range(G):
                        d_pre[k, t, b, j] = 0
            if 2 * n > B:
                step_dot(d_pre[k, t], w_t.T, rec)
                for i in range(n):
                    b = rows[t, i]
                    for j in range(H):
                        d_h[b, j] += rec[b, j]
            elif n > 0:
                step_dot(d_live[r0 : r0 + n], w_t.T, rec[:n])
                for i in range(n):
                    b = rows[t, i]
                    for j in range(H):
                        d_h[b, j] += rec[i, j]
        d_h0[k] = d_h
        d_c0[k] = d_c
        R = first[L]
        _weight_grads_rows(d_live[:R], h_live[:R], d_w[k], d_b[k])
    return d_pre, d_w, d_b, d_h0, d_c0, d_w_ch


# ---- LSTM variants (rnnbench.nn.variants): one kernel for all, flags per gate block -----------
# The variant's pre-activations come compact (its G gate blocks, in the order i, f, g, o of the
# blocks it keeps); ``acts (K, T, B, 4H)`` always holds i, f, g, o after their non-linearities
# (a removed gate holds its constant: i = 1, f = 1 or 1 - i, o = 1). The flags, 0 or 1 in the
# kernel's dtype, are ``(has_i, has_f, has_o, cifg, linear_g, linear_c)`` and ``offsets`` the
# compact columns of the i, f, g, o blocks (-1: removed); every branch on them sits outside the
# loops over units, so the loops stay vectorised. Peepholes come as the full ``(K, 3, H)``
# with zero rows for the gates a variant removes.


@_jit
def lstm_variant_forward(xw, w_hh, b_hh, w_ch, peephole, flags, offsets, mask, h0, c0):
    """Returns ``out``, ``h_n``, ``c_n``, ``hs``, ``cs`` and ``acts (K, T, B, 4H)`` (i, f, g,
    o). ``w_hh (K, G, H)`` as the module stores it."""
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
    h_n = np.empty((K, B, H), xw.dtype)
    c_n = np.empty((K, B, H), xw.dtype)
    rec = np.empty((B, G), xw.dtype)
    pre = np.empty(G, xw.dtype)
    for k in range(K):
        hs[k, 0] = h0[k]
        cs[k, 0] = c0[k]
        bias = b_hh[k]
        v_i, v_f, v_o = w_ch[k, 0], w_ch[k, 1], w_ch[k, 2]
        w_t = _transposed(w_hh[k])
        L = _live_steps(mask[k])  # the steps after L are all padding: kept state, out 0
        for t in range(L):
            step_dot(hs[k, t], w_t, rec)
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
                _finish_step(mask[k, t, b], h, hs[k, t, b], out[k, t, b])
                _keep_cell(mask[k, t, b], c, c_prev)
        _hold_tail(hs[k], L)
        _hold_tail(cs[k], L)
        out[k, L:] = 0
        acts[k, L:] = 0
        h_n[k] = hs[k, T]
        c_n[k] = cs[k, T]
    return out, h_n, c_n, hs, cs, acts


@_jit
def lstm_variant_backward(
    d_out, d_hn, d_cn, w_hh, w_ch, peephole, flags, offsets, mask, hs, cs, acts
):
    """Returns ``d_pre (K, T, B, G)`` (compact, = d xw), ``d_w_hh``, ``d_b_hh``, ``d_h0``,
    ``d_c0`` and ``d_w_ch (K, 3, H)``."""
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
    d_w = np.empty((K, G, H), acts.dtype)
    d_b = np.empty((K, G), acts.dtype)
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
        L = _live_steps(mask[k])  # the padded tail passes d_h, d_c through, no gradient into it
        d_pre[k, L:] = 0
        for t in range(L - 1, -1, -1):
            for b in range(B):
                m, keep = mask[k, t, b], one - mask[k, t, b]
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
            step_dot(d_pre[k, t], w_hh[k], rec)
            d_h += rec
        d_h0[k] = d_h
        d_c0[k] = d_c
        _weight_grads(d_pre[k, :L], hs[k, :L], d_w[k], d_b[k])
    return d_pre, d_w, d_b, d_h0, d_c0, d_w_ch
