"""Fused CPU kernels: the whole time loop in numba, and a hand-written backward through time.

Each cell has a forward kernel, which runs all steps of all K members and keeps what the
backward needs (states, gate activations), and a backward kernel, which walks the steps in
reverse and returns the gradient of the gate pre-activations. The input projection is done by
torch before (so autograd differentiates it), and the gradients of the recurrent weights are
one batched matmul after: ``dW_hh = sum over t, b of d_pre[t, b]^T h_prev[t, b]``.

Notation in the kernels: ``xw (K, T, B, G*H)`` the projected input ``W x + b_ih``; ``hs, cs
(K, T+1, B, H)`` the states, ``hs[:, 0] = h0``; ``m = mask[t, b]`` (1 real step, 0 padding);
``d_*`` the gradient of the loss with respect to ``*``. Per-step products use ``np.dot`` on
contiguous 2-D blocks, which numba sends to BLAS.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch.autograd.function import once_differentiable

_jit = numba.njit(cache=True, nogil=True)


@_jit
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# ---- tanh: h = tanh(xw + W_hh h_prev + b_hh) -------------------------------------------------


@_jit
def tanh_forward(xw, w_hh_t, b_hh, mask, h0):
    K, T, B, H = xw.shape
    hs = np.empty((K, T + 1, B, H), xw.dtype)
    out = np.empty((K, T, B, H), xw.dtype)
    rec = np.empty((B, H), xw.dtype)
    for k in range(K):
        hs[k, 0] = h0[k]
        for t in range(T):
            np.dot(hs[k, t], w_hh_t[k], rec)
            for b in range(B):
                m = mask[t, b]
                for j in range(H):
                    h = math.tanh(xw[k, t, b, j] + rec[b, j] + b_hh[k, j])
                    out[k, t, b, j] = m * h
                    hs[k, t + 1, b, j] = m * h + (1 - m) * hs[k, t, b, j]
    return out, hs


@_jit
def tanh_backward(d_out, d_hn, w_hh, mask, out):
    """Returns ``d_pre (K, T, B, H)`` (= d xw) and ``d_h0``. ``out`` holds h_t on real steps."""
    K, T, B, H = out.shape
    d_pre = np.empty((K, T, B, H), out.dtype)
    d_h0 = np.empty((K, B, H), out.dtype)
    d_h = np.empty((B, H), out.dtype)
    rec = np.empty((B, H), out.dtype)
    for k in range(K):
        d_h[:] = d_hn[k]
        for t in range(T - 1, -1, -1):
            for b in range(B):
                m = mask[t, b]
                for j in range(H):
                    h = out[k, t, b, j]
                    d_pre[k, t, b, j] = m * (d_out[k, t, b, j] + d_h[b, j]) * (1 - h * h)
                    d_h[b, j] = (1 - m) * d_h[b, j]
            np.dot(d_pre[k, t], w_hh[k], rec)
            d_h += rec
        d_h0[k] = d_h
    return d_pre, d_h0


# ---- LSTM, gate blocks i, f, g, o; peepholes v (K, 3, H) when peephole ------------------------


@_jit
def lstm_forward(xw, w_hh_t, b_hh, w_ch, peephole, mask, h0, c0):
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
        for t in range(T):
            np.dot(hs[k, t], w_hh_t[k], rec)
            for b in range(B):
                m = mask[t, b]
                for j in range(H):
                    c_prev = cs[k, t, b, j]
                    p_i = xw[k, t, b, j] + rec[b, j] + b_hh[k, j]
                    p_f = xw[k, t, b, H + j] + rec[b, H + j] + b_hh[k, H + j]
                    p_g = xw[k, t, b, 2 * H + j] + rec[b, 2 * H + j] + b_hh[k, 2 * H + j]
                    p_o = xw[k, t, b, 3 * H + j] + rec[b, 3 * H + j] + b_hh[k, 3 * H + j]
                    if peephole:
                        p_i += w_ch[k, 0, j] * c_prev
                        p_f += w_ch[k, 1, j] * c_prev
                    i = _sigmoid(p_i)
                    f = _sigmoid(p_f)
                    g = math.tanh(p_g)
                    c = f * c_prev + i * g
                    if peephole:
                        p_o += w_ch[k, 2, j] * c
                    o = _sigmoid(p_o)
                    h = o * math.tanh(c)
                    acts[k, t, b, j] = i
                    acts[k, t, b, H + j] = f
                    acts[k, t, b, 2 * H + j] = g
                    acts[k, t, b, 3 * H + j] = o
                    out[k, t, b, j] = m * h
                    hs[k, t + 1, b, j] = m * h + (1 - m) * hs[k, t, b, j]
                    cs[k, t + 1, b, j] = m * c + (1 - m) * c_prev
    return out, hs, cs, acts


@_jit
def lstm_backward(d_out, d_hn, d_cn, w_hh, w_ch, peephole, mask, cs, acts):
    """Returns ``d_pre (K, T, B, 4H)`` (= d xw), ``d_h0``, ``d_c0`` and ``d_w_ch``."""
    K, T, B, G = acts.shape
    H = G // 4
    d_pre = np.empty((K, T, B, G), acts.dtype)
    d_h0 = np.empty((K, B, H), acts.dtype)
    d_c0 = np.empty((K, B, H), acts.dtype)
    d_w_ch = np.zeros((K, 3, H), acts.dtype)
    d_h = np.empty((B, H), acts.dtype)
    d_c = np.empty((B, H), acts.dtype)
    rec = np.empty((B, H), acts.dtype)
    for k in range(K):
        d_h[:] = d_hn[k]
        d_c[:] = d_cn[k]
        for t in range(T - 1, -1, -1):
            for b in range(B):
                m = mask[t, b]
                for j in range(H):
                    i = acts[k, t, b, j]
                    f = acts[k, t, b, H + j]
                    g = acts[k, t, b, 2 * H + j]
                    o = acts[k, t, b, 3 * H + j]
                    c = cs[k, t + 1, b, j]
                    c_prev = cs[k, t, b, j]
                    tanh_c = math.tanh(c)
                    d_h_new = m * (d_out[k, t, b, j] + d_h[b, j])
                    d_p_o = d_h_new * tanh_c * o * (1 - o)
                    d_c_new = m * d_c[b, j] + d_h_new * o * (1 - tanh_c * tanh_c)
                    if peephole:
                        d_c_new += d_p_o * w_ch[k, 2, j]
                        d_w_ch[k, 2, j] += d_p_o * c
                    d_p_i = d_c_new * g * i * (1 - i)
                    d_p_f = d_c_new * c_prev * f * (1 - f)
                    d_p_g = d_c_new * i * (1 - g * g)
                    d_c_prev = d_c_new * f + (1 - m) * d_c[b, j]
                    if peephole:
                        d_c_prev += d_p_i * w_ch[k, 0, j] + d_p_f * w_ch[k, 1, j]
                        d_w_ch[k, 0, j] += d_p_i * c_prev
                        d_w_ch[k, 1, j] += d_p_f * c_prev
                    d_pre[k, t, b, j] = d_p_i
                    d_pre[k, t, b, H + j] = d_p_f
                    d_pre[k, t, b, 2 * H + j] = d_p_g
                    d_pre[k, t, b, 3 * H + j] = d_p_o
                    d_c[b, j] = d_c_prev
                    d_h[b, j] = (1 - m) * d_h[b, j]
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
    K, T, B, G = xw.shape
    H = G // 3
    hs = np.empty((K, T + 1, B, H), xw.dtype)
    acts = np.empty((K, T, B, G), xw.dtype)
    aux = np.empty((K, T, B, H), xw.dtype)
    out = np.empty((K, T, B, H), xw.dtype)
    rec_rz = np.empty((B, 2 * H), xw.dtype)
    rec_n = np.empty((B, H), xw.dtype)
    for k in range(K):
        hs[k, 0] = h0[k]
        for t in range(T):
            np.dot(hs[k, t], w_rz_t[k], rec_rz)
            for b in range(B):
                for j in range(H):
                    r = _sigmoid(xw[k, t, b, j] + rec_rz[b, j] + b_hh[k, j])
                    z = _sigmoid(xw[k, t, b, H + j] + rec_rz[b, H + j] + b_hh[k, H + j])
                    acts[k, t, b, j] = r
                    acts[k, t, b, H + j] = z
                    if before:
                        aux[k, t, b, j] = r * hs[k, t, b, j]
            if before:
                np.dot(aux[k, t], w_n_t[k], rec_n)
            else:
                np.dot(hs[k, t], w_n_t[k], rec_n)
            for b in range(B):
                m = mask[t, b]
                for j in range(H):
                    r = acts[k, t, b, j]
                    z = acts[k, t, b, H + j]
                    x_n = xw[k, t, b, 2 * H + j]
                    if before:
                        n = math.tanh(x_n + rec_n[b, j] + b_hh[k, 2 * H + j])
                    else:
                        rec = rec_n[b, j] + b_hh[k, 2 * H + j]
                        aux[k, t, b, j] = rec
                        n = math.tanh(x_n + r * rec)
                    acts[k, t, b, 2 * H + j] = n
                    h_prev = hs[k, t, b, j]
                    h = (1 - z) * n + z * h_prev
                    out[k, t, b, j] = m * h
                    hs[k, t + 1, b, j] = m * h + (1 - m) * h_prev
    return out, hs, acts, aux


@_jit
def gru_backward(d_out, d_hn, w_rz, w_n, before, mask, hs, acts, aux):
    """Returns ``d_xw (K, T, B, 3H)``, ``d_rec_n (K, T, B, H)`` (the gradient of the n block's
    recurrent pre-activation: ``W_hn (r h)`` before, ``W_hn h + b_hn`` after) and ``d_h0``.
    The r and z blocks' recurrent gradient is their block of ``d_xw``."""
    K, T, B, G = acts.shape
    H = G // 3
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
                m = mask[t, b]
                for j in range(H):
                    r = acts[k, t, b, j]
                    z = acts[k, t, b, H + j]
                    n = acts[k, t, b, 2 * H + j]
                    h_prev = hs[k, t, b, j]
                    d_h_new = m * (d_out[k, t, b, j] + d_h[b, j])
                    d_p_n = d_h_new * (1 - z) * (1 - n * n)
                    d_rz[k, t, b, H + j] = d_h_new * (h_prev - n) * z * (1 - z)
                    d_xn[k, t, b, j] = d_p_n
                    if before:
                        d_rec_n[k, t, b, j] = d_p_n
                    else:
                        d_rec_n[k, t, b, j] = d_p_n * r
                        d_rz[k, t, b, j] = d_p_n * aux[k, t, b, j] * r * (1 - r)
                    d_h[b, j] = d_h_new * z + (1 - m) * d_h[b, j]
            if before:
                np.dot(d_xn[k, t], w_n[k], d_rh)
                for b in range(B):
                    for j in range(H):
                        r = acts[k, t, b, j]
                        d_rz[k, t, b, j] = d_rh[b, j] * hs[k, t, b, j] * r * (1 - r)
                        d_h[b, j] += d_rh[b, j] * r
            else:
                np.dot(d_rec_n[k, t], w_n[k], rec)
                d_h += rec
            np.dot(d_rz[k, t], w_rz[k], rec)
            d_h += rec
        d_h0[k] = d_h
    return np.concatenate((d_rz, d_xn), axis=3), d_rec_n, d_h0


# ---- autograd glue ---------------------------------------------------------------------------


def run(cell, xw, w_hh, b_hh, w_ch, reset, mask, h0, c0):
    """:func:`rnnbench.nn.functional.run_unit` after the input projection, on the fused kernels."""
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
        out, hs = tanh_forward(_np(xw, xw.dtype), w_hh_t, _bias_np(b_hh, xw), m, _np(h0, xw.dtype))
        out, hs = torch.from_numpy(out), torch.from_numpy(hs)
        ctx.state = (w_hh, b_hh, m, out, hs)
        return out, hs[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn):
        w_hh, b_hh, m, out, hs = ctx.state
        dt = out.dtype
        d_pre, d_h0 = tanh_backward(_np(d_out, dt), _np(d_hn, dt), _np(w_hh, dt), m, out.numpy())
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
        out, hs, cs, acts = lstm_forward(
            _np(xw, dt), _np(w_hh.transpose(1, 2), dt), _bias_np(b_hh, xw), v, peephole, m,
            _np(h0, dt), _np(c0, dt),
        )
        hs, cs = torch.from_numpy(hs), torch.from_numpy(cs)
        ctx.state = (w_hh, b_hh, v, peephole, m, hs, cs, acts)
        return torch.from_numpy(out), hs[:, -1].clone(), cs[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn, d_cn):
        w_hh, b_hh, v, peephole, m, hs, cs, acts = ctx.state
        dt = hs.dtype
        d_pre, d_h0, d_c0, d_v = lstm_backward(
            _np(d_out, dt), _np(d_hn, dt), _np(d_cn, dt), _np(w_hh, dt), v, peephole, m,
            cs.numpy(), acts,
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
        out, hs, acts, aux = gru_forward(
            _np(xw, dt), _np(w_rz.transpose(1, 2), dt), _np(w_n.transpose(1, 2), dt),
            _bias_np(b_hh, xw), before, m, _np(h0, dt),
        )
        hs = torch.from_numpy(hs)
        ctx.state = (w_rz, w_n, b_hh, before, m, hs, acts, aux)
        return torch.from_numpy(out), hs[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn):
        w_rz, w_n, b_hh, before, m, hs, acts, aux = ctx.state
        dt = hs.dtype
        d_xw, d_rec_n, d_h0 = gru_backward(
            _np(d_out, dt), _np(d_hn, dt), _np(w_rz, dt), _np(w_n, dt), before, m,
            hs.numpy(), acts, aux,
        )
        d_xw, d_rec_n = torch.from_numpy(d_xw), torch.from_numpy(d_rec_n)
        H = d_rec_n.shape[-1]
        h_prev = hs[:, :-1]
        d_w_rz, d_b_rz = _weight_grads(d_xw[..., : 2 * H], h_prev, b_hh)
        n_input = torch.from_numpy(aux) if before else h_prev
        d_w_n, d_b_n = _weight_grads(d_rec_n, n_input, b_hh)
        d_w = torch.cat((d_w_rz, d_w_n), 1)
        d_b = torch.cat((d_b_rz, d_b_n), 1) if b_hh is not None else None
        return d_xw, d_w, d_b, None, None, torch.from_numpy(d_h0)
