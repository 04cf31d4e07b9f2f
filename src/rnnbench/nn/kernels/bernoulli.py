r"""The music head in one numba pass per member: the output layer, the Bernoulli NLL, its
gradient and the head's backward products, in float32.

For member ``k`` with hidden states :math:`h_r` (``R = T B`` steps), real-step indicator
:math:`m_r`, targets :math:`y_r \in [0, 1]^D` and the factor :math:`s_k` that the gradient of
the member's loss carries (``1/N_k`` for the paper's per-step loss, 1 for the authors'):

.. math::
    a_r = W_{out} h_r + b_{out}, \qquad
    \mathrm{nll}_r = \sum_d \big[(1 - y_{rd})\, a_{rd} - \min(a_{rd}, 0)
        + \log(1 + e^{-|a_{rd}|})\big],

(``binary_cross_entropy_with_logits``'s formula, :class:`rnnbench.heads.BernoulliHead`), and

.. math::
    G_r = s_k m_r\,(\sigma(a_r) - y_r), \qquad
    \bar h_r = W_{out}^\top G_r, \qquad
    \bar W_{out} = \sum_r G_r h_r^\top, \qquad
    \bar b_{out} = \sum_r G_r,

with :math:`\sigma(a) = 1 / (1 + e^{-|a|})` for :math:`a \ge 0` and
:math:`e^{-|a|} / (1 + e^{-|a|})` below. Torch ran this as about fifteen tensor operations,
each a pass over ``(K, R, D)`` in memory, and ``binary_cross_entropy_with_logits`` alone took
most of a millisecond per update of a JSB population of 10. Here, for one member at a time, one
BLAS product (``np.dot``, scipy's OpenBLAS) gives the logits of its real steps into a block
that stays in cache; one loop over those steps turns each row into its NLL and, over the same
memory, its gradient; two more products give :math:`\bar h` and :math:`\bar W_{out}`.

The products run over the real steps only: where a member has padded steps, the hidden
states of its real ones are first copied, in order, into a compact ``(R_real, H)`` block, and
the rows of :math:`\bar h` are put back in their places afterwards. A population whose
members read their own batch orders pads each member's window to the longest of the update
(a JSB population of fresh seeds: about 35% padded steps), so the head's work follows the
real steps. The terms left out were 0, so the results are those of the full products
within float32 rounding (OpenBLAS may block a product of another shape differently; bit for
bit where no step is padded). The evaluation (no gradient) keeps its one product over all
``R`` steps where fewer than ``R / 16`` are padded (the validation batches, sorted by length:
about 3%), where the copy costs more than it saves; a row of logits comes from its own
hidden state alone, and a padded step's is never read.

The loop vectorises: :math:`e^{-|a|}` comes from :func:`_exp_neg` (Cephes' ``expf``: a
Cody-Waite reduction and a degree-6 polynomial, the power of two made from its bits; within
about one float32 ulp of ``torch.exp``, as numba has no vectorised ``exp`` here), and the
:math:`D` logarithms of a row are one: :math:`\sum_d \log(1 + e_d) = \log \prod_d (1 + e_d)`
in float64 (each factor is in :math:`[1, 2]`; where the product is not finite, the terms are
summed one by one). The row's sums are taken in float64 (:func:`_row_sums`, the only code
compiled with reassociation, which vectorises sums and keeps NaN and inf); the NLL is rounded
once. So the NLL is a little closer to the exact value than float32 autograd's, and the
gradients agree with autograd's within float32 rounding.

A padded step (:math:`m_r = 0`) is never read: its NLL and :math:`\bar h_r` are 0 and its
hidden state and target enter no product and no sum (garbage, NaN included, never reaches
one); a member without a real step has an NLL and gradients of 0. NaN and inf in the
weights, biases or real hidden states propagate to the member's NLL and gradients as through
autograd, so divergence detection sees them (no fast-math assumptions about NaN or inf
anywhere).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from rnnbench.nn.kernels.common import _jit

_LOG2E = np.float32(1.44269504088896341)
_C1 = np.float32(0.693359375)  # ln 2 in two parts (Cody-Waite)
_C2 = np.float32(-2.12194440e-4)
_P0, _P1, _P2, _P3, _P4, _P5 = (
    np.float32(c)
    for c in (5.0000001201e-1, 1.6666665459e-1, 4.1665795894e-2, 8.3334519073e-3)
    + (1.3981999507e-3, 1.9875691500e-4)
)
_LOWEST = np.float32(-104.0)  # exp(-104) rounds to 0 in float32
_ONE, _HALF, _ZERO = np.float32(1.0), np.float32(0.5), np.float32(0.0)
_TWO_M64 = np.float32(2.0**-64)
_FEW = 16  # below R / _FEW padded steps the evaluation runs its product over all R steps


@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose bits are the int32 ``bits`` (a vectorisable bit cast)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@numba.njit(inline="always")
def _exp_neg(t):
    """``exp(t)`` for float32 ``t <= 0`` (or NaN, returned as is), within about one ulp.

    ``t = n ln2 + r`` with ``|r| <= ln2 / 2``, ``exp(r)`` by Cephes' polynomial, times
    ``2^n`` built from its exponent bits as ``2^(n + 64) 2^-64`` (exact for normal results;
    results below float32's normal range are rounded once, as ``expf``'s)."""
    tc = t if t > _LOWEST else _LOWEST  # NaN too: its n must be a number (fptosi)
    ni = -np.int32(-tc * _LOG2E + _HALF)  # round(t / ln2), t <= 0
    n = np.float32(ni)
    r = tc - n * _C1
    r = r - n * _C2
    z = r * r
    p = (((((_P5 * r + _P4) * r + _P3) * r + _P2) * r + _P1) * r + _P0) * z + r + _ONE
    res = (p * _f32_from_bits((ni + np.int32(127 + 64)) << np.int32(23))) * _TWO_M64
    if t < _LOWEST:
        res = _ZERO
    if t != t:
        res = t
    return res


@_jit
def _exp_all(t, out):
    """``out[i] = exp(t[i])`` by :func:`_exp_neg`, for ``t <= 0`` (its tests)."""
    for i in range(t.shape[0]):
        out[i] = _exp_neg(t[i])


# reassociated (vectorised) sums; NaN and inf still propagate (no nnan / ninf)
@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _row_sums(lin, e):
    """``sum(lin)`` and ``prod(1 + e)`` in float64."""
    total = 0.0
    prod = 1.0
    for d in range(lin.shape[0]):
        total += np.float64(lin[d])
        prod *= 1.0 + np.float64(e[d])
    return total, prod


@_jit
def _real_rows(rk, idx):
    """The indices of the real steps of ``rk`` into ``idx``, in order; their count."""
    n = 0
    for r in range(rk.shape[0]):
        if rk[r]:
            idx[n] = r
            n += 1
    return n


@_jit
def head_pass(out, w, b, y, real, scale, grad, rows, d_out, d_w, d_b):
    """The module docstring's pass for all ``K`` members, over each member's real steps.

    Args:
        out: hidden states ``(K, R, H)``, float32, contiguous (as every array here).
        w: ``weight_out (K, D, H)``; b: ``bias_out (K, D)``.
        y: targets ``(1 or K, R, D)`` (one set shared by the members, or one per member).
        real: real steps ``(1 or K, R)``, bool.
        scale: ``s_k (K,)``, the factor of each member's gradient.
        grad: whether to compute the gradients (False: evaluation, ``rows`` only).
        rows: out, the per-step NLL ``(K, R)``, 0 on padded steps.
        d_out, d_w, d_b: out (``grad``), ``(K, R, H)``, ``(K, D, H)``, ``(K, D)``.
    """
    K, R, H = out.shape
    D = w.shape[1]
    one_y = y.shape[0] == 1
    one_m = real.shape[0] == 1
    a = np.empty((R, D), np.float32)  # the first n rows: the logits, then G
    hc = np.empty((R, H), np.float32)  # the real steps' hidden states, compacted
    idx = np.empty(R, np.int64)  # the real steps, in order
    lin = np.empty(D, np.float32)
    e = np.empty(D, np.float32)
    acc = np.empty(D, np.float64)
    n = 0
    for k in range(K):
        yk = y[0 if one_y else k]
        rk = real[0 if one_m else k]
        if k == 0 or not one_m:
            n = _real_rows(rk, idx)
        bk = b[k]
        hk = out[k]
        s = scale[k]
        for r in range(R):
            if not rk[r]:
                rows[k, r] = 0.0
        if n == 0:  # an idle member: no product (BLAS's leading dimensions must be >= 1)
            if grad:
                d_out[k] = 0.0
                d_w[k] = 0.0
                d_b[k] = 0.0
            continue
        # the evaluation's logits over all steps where few are padded (a padded row's logits
        # come from its hidden state alone and are never read): the copy would cost more
        full = n == R or (not grad and (R - n) * _FEW < R)
        if not full:  # the real steps' hidden states, compacted; a padded one is never read
            for i in range(n):
                r = idx[i]
                for j in range(H):
                    hc[i, j] = hk[r, j]
        hr = hk if full else hc[:n]
        ar = a if full else a[:n]
        np.dot(hr, w[k].T, ar)
        acc[:] = 0.0
        for q in range(n):
            r = idx[q]
            i = r if full else q  # the step's row of ar
            # the logits, their NLL terms and exp(-|a|)
            for d in range(D):
                x = ar[i, d] + bk[d]
                ar[i, d] = x
                lin[d] = (_ONE - yk[r, d]) * x - min(x, _ZERO)
                e[d] = _exp_neg(-abs(x))
            total, prod = _row_sums(lin, e)
            if prod < np.inf:
                total += math.log(prod)
            else:  # overflow (D past about 1000) or NaN: one logarithm per note
                for d in range(D):
                    total += math.log1p(np.float64(e[d]))
            rows[k, r] = total
            if grad:  # G = s (sigmoid(a) - y), over a
                for d in range(D):
                    inv = _ONE / (_ONE + e[d])
                    sig = inv if ar[i, d] >= _ZERO else e[d] * inv
                    g = s * (sig - yk[r, d])
                    ar[i, d] = g
                    acc[d] += g
        if not grad:
            continue
        np.dot(ar.T, hr, d_w[k])
        for d in range(D):
            d_b[k, d] = acc[d]
        dk = d_out[k]
        np.dot(ar, w[k], dk[:n])
        # each real step's row to its place, from the last (idx[i] >= i: a row is moved before
        # it is overwritten; the rows before the first padded step stay), the padded rows 0
        i = n - 1
        while i >= 0 and idx[i] != i:
            r = idx[i]
            for j in range(H):
                dk[r, j] = dk[i, j]
            i -= 1
        i = 0
        for r in range(R):
            if i < n and idx[i] == r:
                i += 1
            else:
                for j in range(H):
                    dk[r, j] = 0.0
