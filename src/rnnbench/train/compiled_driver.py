r"""The numba drivers of :mod:`rnnbench.train.compiled_update`: one ``@njit`` call per update.

Each driver (:func:`lstm_update`, :func:`gru_update`, :func:`tanh_update`) calls the existing
kernels with the old path's arguments, the passes member by member (each kernel on one member:
the same arithmetic as one call over all members):

.. math::
    \tilde W = \mathrm{fma}(n, \sigma, W), \quad
    \xi = \tilde W_{ih} x + b_{ih}, \quad
    (h, \dots) = \mathrm{cell}(\xi; \tilde W_{hh}, b_{hh}), \quad
    (\mathrm{nll}, \bar h, \bar W_{out}, \bar b_{out}) = \mathrm{head}(h; s),

then the cell's backward kernel, :math:`\bar W_{ih} = \sum_r \bar\xi_r x_r^\top`,
:math:`\bar b_{ih} = \sum_r \bar\xi_r`, the member norms :math:`\lVert g_k \rVert`, the clip
:math:`g_k \leftarrow g_k \min(1, c / \lVert g_k \rVert)` (finite norms only), the finite check
and the protocol's RMSProp on the clean parameters of the members that may step.

Kernels used as they are: :mod:`rnnbench.train.fused_noise` (``_noisy``),
:mod:`rnnbench.nn.sparse_input` (``_finite``, ``_gather_bias``, ``_scatter_bias``),
:mod:`rnnbench.nn.kernels` (the cells' forward and backward, the Bernoulli ``head_pass``) and
:mod:`rnnbench.train.fused` (``_sq_norms``, ``_scale``, ``_rmsprop``, ``_authors``). Numba's
on-disk cache keys a driver on this file alone, yet the compiled driver holds those kernels'
code: :func:`_drop_stale` deletes the drivers' cached files when any of those sources changed.
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from rnnbench.nn.kernels import cache

_HERE = Path(__file__).parent
_SOURCES = (
    *sorted((_HERE.parent / "nn" / "kernels").glob("*.py")),
    _HERE.parent / "nn" / "sparse_input.py",
    _HERE / "fused.py",
    _HERE / "fused_noise.py",
    Path(__file__),
)
STAMP = "rnnbench-driver.sha256"


def _drop_stale() -> None:
    """Delete this module's cached drivers when any source they compile in has changed."""
    cache.drop_stale_module(__name__.rsplit(".", 1)[-1], _HERE, _SOURCES, STAMP)


_drop_stale()

from rnnbench.nn import sparse_input  # noqa: E402  (after the stale cache is gone)
from rnnbench.nn.kernels import bernoulli  # noqa: E402
from rnnbench.nn.kernels.gru import gru_backward, gru_forward  # noqa: E402
from rnnbench.nn.kernels.lstm import lstm_backward, lstm_forward  # noqa: E402
from rnnbench.nn.kernels.tanh import tanh_backward, tanh_forward  # noqa: E402
from rnnbench.train import fused, fused_noise  # noqa: E402

__all__ = ["DRIVERS", "gru_update", "lstm_update", "step", "tanh_update"]

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _front(noise_on, sigma, clean, noise, offsets, noisy, w_ih):
    """The noisy weights; False when the weights the gather reads are not finite (then
    nothing is gathered and the caller runs the old pass)."""
    if noise_on:
        fused_noise._noisy(clean, noise, offsets, sigma, noisy)
    return sparse_input._finite(w_ih)


@_jit
def _member_keys(keys, ends, k):
    """Member ``k``'s part of the gather's plan, as a one-member plan: ``ends (1, F)`` or
    ``(K, F)`` (each member its own keys, one after another in ``keys``)."""
    if ends.shape[0] == 1:
        return keys, ends
    start = 0 if k == 0 else ends[k - 1, ends.shape[1] - 1]
    return keys[start:], (ends[k] - start).reshape(1, ends.shape[1])


@_jit
def _one(a, k):
    """Member ``k`` of a per-member array, or the shared one (first dimension 1)."""
    return a[0 if a.shape[0] == 1 else k].reshape((1,) + a.shape[1:])


@_jit
def _head(out, w_out, b_out, y, real, scale):
    """The Bernoulli head's pass as ``head_loss.bernoulli_pass`` runs it."""
    K, T, B, H = out.shape
    R = T * B
    D = w_out.shape[1]
    rows = np.empty((K, R), np.float32)
    d_out = np.empty((K, T, B, H), np.float32)
    d_w = np.empty((K, D, H), np.float32)
    d_b = np.empty((K, D), np.float32)
    bernoulli.head_pass(
        out.reshape(K, R, H), w_out, b_out, y, real, scale, True, rows,
        d_out.reshape(K, R, H), d_w, d_b,
    )  # fmt: skip
    return rows, d_out, d_w, d_b


# float32's largest value, and a float32 sum's relative rounding bound per term (2^-23)
_FLT_MAX = float(np.finfo(np.float32).max)
_ULP = 2.0**-23


@_jit
def _sums(rows):
    """Each member's NLL summed in float64, and whether that settles torch's float32 sum
    ``rows.sum(1)`` being finite: ``(total, decided)``. The NLLs are never negative, so every
    float32 order of their sum stays below ``S (1 + R u)`` and above ``S (1 - R u)``: finite
    when the first is below float32's largest value, inf when the second is above it; in the
    band between, the order decides (``decided`` False: the trainer asks torch)."""
    K, R = rows.shape
    total = np.zeros(K, np.float64)
    decided = True
    for k in range(K):
        s = 0.0
        low = True
        for r in range(R):
            x = np.float64(rows[k, r])
            s += x
            low = low and x >= 0
        if np.isfinite(s) and s * (1.0 + R * _ULP) >= _FLT_MAX:
            if low and s * (1.0 - R * _ULP) > _FLT_MAX:
                s = np.inf  # every order overflows
            else:
                decided = False
        total[k] = s
    return total, decided


@_jit
def _clip(grads, K, grad_clip):
    """:func:`rnnbench.train.fused.member_grad_norms`: the norms before clipping (returned)
    and each member's gradient rescaled to ``grad_clip`` when its finite norm is larger."""
    norms = np.sqrt(fused._sq_norms(grads, K))
    if grad_clip:
        scale = np.empty(K, np.float32)
        for k in range(K):
            n = norms[k]
            clip = np.isfinite(n) and n > grad_clip
            scale[k] = np.float32(grad_clip / n) if clip else np.float32(1.0)
        fused._scale(grads, scale)
    return norms


@_jit
def step(grads, params, square_avg, momentum_buffer, new_v, new_u, lr, active, decay, rest,
         mu, eps, authors, update_clip):  # fmt: skip
    """The protocol's RMSProp on the members where ``active`` (``fused``'s kernels)."""
    if authors:
        fused._authors(params, grads, square_avg, momentum_buffer, new_v, new_u, lr, active,
                       decay, rest, mu, eps, update_clip)  # fmt: skip
    else:
        fused._rmsprop(params, grads, square_avg, momentum_buffer, lr, active, decay, rest, mu,
                       eps, mu != 0)  # fmt: skip


@_jit
def _finish(grads, rows, params, square_avg, momentum_buffer, new_v, new_u, lr, steps, decay,
            rest, mu, eps, authors, grad_clip, update_clip):  # fmt: skip
    """Norms, clipping, the finite check and the step, in the old order: ``(norms, total,
    stepped)``; ``stepped`` False (nothing stepped) where :func:`_sums` leaves the finite
    check to torch."""
    K = lr.shape[0]
    norms = _clip(grads, K, grad_clip)
    total, decided = _sums(rows)
    if not decided:
        return norms, total, False
    active = np.empty(K, np.bool_)
    for k in range(K):
        active[k] = steps[k] and np.isfinite(total[k]) and np.isfinite(norms[k])
    step(grads, params, square_avg, momentum_buffer, new_v, new_u, lr, active, decay, rest, mu,
         eps, authors, update_clip)  # fmt: skip
    return norms, total, True


@_jit
def _stopped(params):
    e2 = np.empty((0, 0), np.float32)
    e3 = np.empty((0, 0, 0), np.float32)
    e = np.empty(0, np.float64)
    return False, e2, e3, e3, e, e, False, params


@_jit
def _gather(w_ih, b_ih, keys, ends, k, T, B):
    """Member ``k``'s ``xi (1, T, B, GH)`` by the gather, and its part of the plan."""
    kk, ee = _member_keys(keys, ends, k)
    xw = sparse_input._gather_bias(_one(w_ih, k), kk, ee, _one(b_ih, k))
    return xw.reshape(1, T, B, xw.shape[2]), kk, ee


@_jit
def _scale(scale, k):
    """``s_k`` as a one-member array."""
    s = np.empty(1, np.float32)
    s[0] = scale[k]
    return s


@_jit
def _store(k, d_xw, kk, ee, I, d_w_hh, d_b_hh, d_w_out, d_b_out, grads, r, rows, hn, h_n):
    """Member ``k``'s results into the members' arrays: its per-step NLLs ``r``, last state
    ``hn`` and gradients (``grads``: :func:`_gradients`' arrays), the gather's transpose
    first."""
    g_ih, g_hh, g_bih, g_bhh, g_out, g_bout = grads
    T, B, GH = d_xw.shape[1], d_xw.shape[2], d_xw.shape[3]
    d_w_ih, d_b_ih = sparse_input._scatter_bias(d_xw.reshape(1, T * B, GH), kk, ee, I)
    g_ih[k] = d_w_ih.reshape(-1)
    g_hh[k] = d_w_hh.reshape(-1)
    g_bih[k] = d_b_ih[0]
    g_bhh[k] = d_b_hh[0]
    g_out[k] = d_w_out.reshape(-1)
    g_bout[k] = d_b_out[0]
    rows[k] = r[0]
    h_n[k] = hn[0]


@_jit
def _gradients(K, w_ih, w_hh, w_out):
    """Empty arrays for the members' gradients of ``W_ih, W_hh, b_ih, b_hh, W_out, b_out``."""
    GH, I = w_ih.shape[1], w_ih.shape[2]
    G, H = w_hh.shape[1], w_hh.shape[2]
    D = w_out.shape[1]
    f = np.float32
    return (np.empty((K, GH * I), f), np.empty((K, G * H), f), np.empty((K, GH), f),
            np.empty((K, G), f), np.empty((K, D * H), f), np.empty((K, D), f))  # fmt: skip


@_jit
def _member_head(out, w_out, b_out, y, real, scale, k):
    """Member ``k``'s head (:func:`_head` on its slices)."""
    return _head(out, _one(w_out, k), _one(b_out, k), _one(y, k), _one(real, k), _scale(scale, k))


@_jit
def _outputs(K, T, B, w_ih, w_hh, w_out):
    """The members' per-step NLLs, last states, gradients and a zero state, made empty."""
    H = w_hh.shape[2]
    rows = np.empty((K, T * B), np.float32)
    h_n = np.empty((K, B, H), np.float32)
    return rows, h_n, _gradients(K, w_ih, w_hh, w_out), np.zeros((1, B, H), np.float32)


# The drivers run the passes member by member: a member's gather, forward kernel, head,
# backward kernel and the gather's transpose, then the next member's. Each kernel computes
# every member alone, so this is the arithmetic of one call over all members, in another
# order of the members; a member's arrays (about 0.6 MB at JSB's sizes against 6 MB for a
# population of 10) stay in cache from its forward to its backward
# (`benchmarks/member_step.py`).


@_jit
def lstm_update(noise_on, sigma, clean, noise, offsets, noisy, w_ih, b_ih, w_hh, b_hh, w_ch,
                w_out, b_out, keys, ends, mask, before, peephole, h0, c0, y, real, scale, params,
                square_avg, momentum_buffer, new_v, new_u, lr, steps, decay, rest, mu, eps,
                authors, grad_clip, update_clip):  # fmt: skip
    """The LSTM's update (module docstring): ``(ok, rows, h_n, c_n, norms, total, stepped,
    grads)``; ``ok`` False: the gather's weights were not finite, nothing ran after the
    noise; ``stepped`` False: the finite check is the caller's, and then :func:`step`."""
    K, T, B = mask.shape
    I, H = w_ih.shape[2], w_hh.shape[2]
    if not _front(noise_on, sigma, clean, noise, offsets, noisy, w_ih):
        return _stopped(params)
    rows, h_n, g6, zero = _outputs(K, T, B, w_ih, w_hh, w_out)
    c_n = np.empty((K, B, H), np.float32)
    d_ch = np.zeros((K, 3 * H if peephole else 0), np.float32)
    for k in range(K):
        xw, kk, ee = _gather(w_ih, b_ih, keys, ends, k, T, B)
        w_k, b_k, v_k, m_k = _one(w_hh, k), _one(b_hh, k), _one(w_ch, k), _one(mask, k)
        out, hn, cn, hs, cs, acts = lstm_forward(xw, w_k, b_k, v_k, peephole, m_k, _one(h0, k),
                                                 _one(c0, k))  # fmt: skip
        r, d_out, d_w_out, d_b_out = _member_head(out, w_out, b_out, y, real, scale, k)
        d_xw, d_w_hh, d_b_hh, _, _, d_v = lstm_backward(d_out, zero, zero, w_k, v_k, peephole,
                                                        m_k, hs, cs, acts)  # fmt: skip
        c_n[k] = cn[0]
        if peephole:
            d_ch[k] = d_v.reshape(-1)
        _store(k, d_xw, kk, ee, I, d_w_hh, d_b_hh, d_w_out, d_b_out, g6, r, rows, hn, h_n)
    g_ih, g_hh, g_bih, g_bhh, g_out, g_bout = g6
    grads = (g_ih, g_hh, g_bih, g_bhh, d_ch, g_out, g_bout)
    norms, total, stepped = _finish(grads, rows, params, square_avg, momentum_buffer, new_v,
                                    new_u, lr, steps, decay, rest, mu, eps, authors, grad_clip,
                                    update_clip)  # fmt: skip
    return True, rows, h_n, c_n, norms, total, stepped, grads


@_jit
def _tail(rows, h_n, grads, params, square_avg, momentum_buffer, new_v, new_u, lr, steps,
          decay, rest, mu, eps, authors, grad_clip, update_clip):  # fmt: skip
    """The GRU's and the tanh RNN's update after their passes: the norms, clipping, finite
    check and step (:func:`_finish`), the driver's return value (no cell state)."""
    norms, total, stepped = _finish(grads, rows, params, square_avg, momentum_buffer, new_v,
                                    new_u, lr, steps, decay, rest, mu, eps, authors, grad_clip,
                                    update_clip)  # fmt: skip
    return True, rows, h_n, np.empty((0, 0, 0), np.float32), norms, total, stepped, grads


@_jit
def gru_update(noise_on, sigma, clean, noise, offsets, noisy, w_ih, b_ih, w_hh, b_hh, w_ch,
               w_out, b_out, keys, ends, mask, before, peephole, h0, c0, y, real, scale, params,
               square_avg, momentum_buffer, new_v, new_u, lr, steps, decay, rest, mu, eps,
               authors, grad_clip, update_clip):  # fmt: skip
    """The GRU's update (:func:`lstm_update`'s arguments; ``w_ch``, ``peephole``, ``c0``
    unused)."""
    K, T, B = mask.shape
    I = w_ih.shape[2]
    if not _front(noise_on, sigma, clean, noise, offsets, noisy, w_ih):
        return _stopped(params)
    rows, h_n, grads, zero = _outputs(K, T, B, w_ih, w_hh, w_out)
    for k in range(K):
        xw, kk, ee = _gather(w_ih, b_ih, keys, ends, k, T, B)
        w_k, b_k, m_k = _one(w_hh, k), _one(b_hh, k), _one(mask, k)
        out, hn, hs, acts, aux = gru_forward(xw, w_k, b_k, before, m_k, _one(h0, k))
        r, d_out, d_w_out, d_b_out = _member_head(out, w_out, b_out, y, real, scale, k)
        d_xw, d_w_hh, d_b_hh, _ = gru_backward(d_out, zero, w_k, before, m_k, hs, acts, aux)
        _store(k, d_xw, kk, ee, I, d_w_hh, d_b_hh, d_w_out, d_b_out, grads, r, rows, hn, h_n)
    return _tail(rows, h_n, grads, params, square_avg, momentum_buffer, new_v, new_u, lr, steps,
                 decay, rest, mu, eps, authors, grad_clip, update_clip)  # fmt: skip


@_jit
def tanh_update(noise_on, sigma, clean, noise, offsets, noisy, w_ih, b_ih, w_hh, b_hh, w_ch,
                w_out, b_out, keys, ends, mask, before, peephole, h0, c0, y, real, scale, params,
                square_avg, momentum_buffer, new_v, new_u, lr, steps, decay, rest, mu, eps,
                authors, grad_clip, update_clip):  # fmt: skip
    """The tanh RNN's update (:func:`gru_update`'s arguments; ``before`` unused too)."""
    K, T, B = mask.shape
    I = w_ih.shape[2]
    if not _front(noise_on, sigma, clean, noise, offsets, noisy, w_ih):
        return _stopped(params)
    rows, h_n, grads, zero = _outputs(K, T, B, w_ih, w_hh, w_out)
    for k in range(K):
        xw, kk, ee = _gather(w_ih, b_ih, keys, ends, k, T, B)
        w_k, b_k, m_k = _one(w_hh, k), _one(b_hh, k), _one(mask, k)
        out, hn, hs = tanh_forward(xw, w_k, b_k, m_k, _one(h0, k))
        r, d_out, d_w_out, d_b_out = _member_head(out, w_out, b_out, y, real, scale, k)
        d_xw, d_w_hh, d_b_hh, _ = tanh_backward(d_out, zero, w_k, m_k, out, hs)
        _store(k, d_xw, kk, ee, I, d_w_hh, d_b_hh, d_w_out, d_b_out, grads, r, rows, hn, h_n)
    return _tail(rows, h_n, grads, params, square_avg, momentum_buffer, new_v, new_u, lr, steps,
                 decay, rest, mu, eps, authors, grad_clip, update_clip)  # fmt: skip


DRIVERS = {"lstm": lstm_update, "gru": gru_update, "tanh": tanh_update}
