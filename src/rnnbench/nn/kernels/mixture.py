r"""The speech head's loss in one pass per step: the 20-component mixture's NLL and its gradient.

:func:`rnnbench.head_loss._gmm` evaluates, for every step ``r`` of every member ``k``, the
negative log-likelihood of a mixture of ``C`` diagonal Gaussians over a ``D``-dimensional frame
(:class:`rnnbench.heads.GaussianMixtureHead`) and its gradient with respect to the head
parameters ``a = (l, mu, s)``. With :math:`\sigma_{cd} = \sigma_{\min} + \mathrm{softplus}
(s_{cd})`, :math:`z_{cd} = (y_d - \mu_{cd}) / \sigma_{cd}`,
:math:`\log\pi_c = \ell_c - \log\sum_j e^{\ell_j}`,

.. math::
    \alpha_c = \log\pi_c - \Big(\sum_d \tfrac12 z_{cd}^2 + \log\prod_d \sigma_{cd}
        + \tfrac{D}{2}\log 2\pi\Big), \qquad
    \mathrm{nll} = -\log\sum_c e^{\alpha_c},

and, with the responsibilities :math:`r_c = e^{\alpha_c - \log\sum_j e^{\alpha_j}}`,

.. math::
    \frac{\partial\,\mathrm{nll}}{\partial \ell_c} = \pi_c \textstyle\sum_j r_j - r_c, \quad
    \frac{\partial\,\mathrm{nll}}{\partial \mu_{cd}} = -\frac{r_c z_{cd}}{\sigma_{cd}}, \quad
    \frac{\partial\,\mathrm{nll}}{\partial s_{cd}} =
        \frac{r_c - (r_c z_{cd}) z_{cd}}{\sigma_{cd}}\,\frac{e^{s_{cd}}}{1 + e^{s_{cd}}}

(the last factor exactly 1 above softplus's threshold 20, as autograd's ``softplus_backward``).

Torch evaluated this as about thirty tensor operations, several of them broadcasts over
``(K, R, C, D)`` and writes into strided slices, each a pass over memory. Here one loop over
the steps keeps a step's 200 values in registers and L1. The element-wise transcendental
functions come from torch, vectorised, before the loop: ``e = exp(s)`` and ``log1p(e)``
(softplus below its threshold; its derivative is ``e / (1 + e)``, autograd's formula). In the
loop the scales' logarithms are summed as the logarithm of their product per component (in
float64: 20 ``log`` per step instead of 200; where the product overflows, comes near
float64's smallest numbers (a ``min_std`` below about 1e-30) or is not finite, the ``D``
logarithms are summed one by one, as before). The
log-sum-exps follow ``torch.logsumexp``: the maximum is subtracted unless it is infinite, so
NaN and infinities propagate to the NLL and the gradient as through autograd, and divergence
detection sees them.

Results agree with autograd's within float rounding (the order of the sums differs: float32
to about 1e-6 relative, float64 to 1e-12; ``tests/train/test_head_loss.py``).

In float32, :func:`head_pass` runs the whole head per member, as
:mod:`rnnbench.nn.kernels.bernoulli` does for music: the output layer (one BLAS product into
an ``(R, P)`` block), the loop above over the block's rows with softplus, its derivative and
the log-sum-exps' exponentials computed in the loop by vectorised float32 polynomials, the
gradient written over the block, and the two backward products. Torch's ``exp``, ``log1p``,
the ``(K, R, P)`` temporaries and the backward's ``bmm`` are gone: one FSDD-A training batch
(768 steps, 61 units, P = 420) 4.9 → 2.6 ms (CPU, best of 5 × 100 calls, load about 4.5;
the three products 1.5 ms of it), ``tests/nn/test_mixture_kernel.py``.

The block's columns are W's rows reordered dimension-major (:func:`_dim_major`), so that a
step's per-component sums over the ``D`` dimensions, and the element-wise work before and
after them, run as loops over all ``C D`` scales or over the ``C`` components, which
vectorise; the sums keep their order and the gradients land back in the head's order.
With ``d_W`` taken as ``(h^T G)^T`` (OpenBLAS is faster at that shape) and multiply-adds
contracted to FMA in this kernel alone (within float32 rounding of the separate operations)
the batch above 2.65 → 2.24 ms (one thread, best of 7 × 50 calls, load about 6; issue 22).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from rnnbench.nn.kernels.bernoulli import _exp_neg
from rnnbench.nn.kernels.common import _jit

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_SOFTPLUS_THRESHOLD = 20.0
_TINY = 1e-300  # below, a product of scales may have lost digits (subnormal) or be 0


@_jit
def _lse(v, n, e):
    """``torch.logsumexp`` of ``v[:n]`` in float64, which it returns, and the normalised
    exponentials ``e[i] = exp(v[i] - lse)`` (softmax) written into ``e``. The maximum ``m`` is
    subtracted unless it is infinite (then 0, so an infinite input gives an infinite
    result); NaN propagates. ``e[i]`` is ``exp(v[i] - m) / sum_j exp(v[j] - m)`` where that
    sum is finite and positive, else ``exp(v[i] - lse)`` (NaN or 0 as torch would give)."""
    m = -np.inf
    for i in range(n):
        if v[i] > m:
            m = v[i]
    if math.isinf(m):
        m = 0.0
    total = 0.0
    for i in range(n):
        e[i] = math.exp(v[i] - m)
        total += e[i]
    lse = math.log(total) + m
    if 0.0 < total < np.inf:
        inv = 1.0 / total
        for i in range(n):
            e[i] *= inv
    else:
        for i in range(n):
            e[i] = math.exp(v[i] - lse)
    return lse


@_jit
def gmm_rows(a, lp, es, y, components, dim, min_std, grad, rows, g):
    """Per-step NLL into ``rows (K, R)`` and (``grad``) its gradient with respect to ``a``
    into ``g (K, R, P)``.

    Args:
        a: head parameters ``(K, R, P)``, ``P = C (1 + 2D)``: logits, means, scale
            pre-activations (component-major).
        lp: ``log1p(exp(s)) (K, R, C*D)``: softplus below its threshold 20 (above, softplus is
            ``s`` itself).
        es: ``exp(s) (K, R, C*D)``: softplus's derivative below the threshold is
            ``es / (1 + es)``, as autograd's ``softplus_backward`` computes it.
        y: targets ``(1 or K, R, D)``.
    """
    K, R, _ = a.shape
    C, D = components, dim
    CD = C * D
    one_y = y.shape[0] == 1
    dt = a.dtype
    consts = np.empty(4, dt)  # the constants in a's dtype
    consts[0], consts[1], consts[2], consts[3] = 0.5, 1.0, min_std, 0.0
    half, one, floor, zero = consts[0], consts[1], consts[2], consts[3]
    const = D * _HALF_LOG_2PI
    inv_std = np.empty(CD, dt)  # 1 / sigma
    z = np.empty(CD, dt)
    resp = np.empty(C, dt)
    log_w = np.empty(C, np.float64)
    alpha = np.empty(C, np.float64)
    pi = np.empty(C, np.float64)
    post = np.empty(C, np.float64)
    for k in range(K):
        yk = 0 if one_y else k
        for r in range(R):
            row = a[k, r]
            lpr = lp[k, r]
            srow = row[C + CD :]
            yr = y[yk, r]
            for c in range(C):
                log_w[c] = row[c]
            lse_w = _lse(log_w, C, pi)
            for c in range(C):
                log_w[c] = log_w[c] - lse_w
            for c in range(C):
                base = c * D
                energy = zero
                prod = 1.0
                for d in range(D):
                    j = base + d
                    sd = (srow[j] if srow[j] > _SOFTPLUS_THRESHOLD else lpr[j]) + floor
                    inv = one / sd
                    zz = (yr[d] - row[C + j]) * inv
                    inv_std[j] = inv
                    z[j] = zz
                    energy += half * zz * zz
                    prod *= sd
                if _TINY < prod < np.inf:
                    log_std = math.log(prod)
                else:  # overflow or underflow (a tiny min_std), inf or NaN: one by one
                    log_std = 0.0
                    for d in range(D):
                        log_std += math.log(one / inv_std[base + d])
                alpha[c] = log_w[c] - (energy + log_std + const)
            lse = _lse(alpha, C, post)
            rows[k, r] = -lse
            if not grad:
                continue
            gr = g[k, r]
            total = 0.0
            for c in range(C):
                resp[c] = post[c]  # the responsibility r_c
                total += post[c]
            for c in range(C):
                gr[c] = pi[c] * total - post[c]
            esr = es[k, r]
            for c in range(C):
                rc = resp[c]
                base = c * D
                for d in range(D):
                    j = base + d
                    rz = rc * z[j]
                    gr[C + j] = -rz * inv_std[j]
                    g_std = (rc - rz * z[j]) * inv_std[j]
                    if srow[j] > _SOFTPLUS_THRESHOLD:
                        gr[C + CD + j] = g_std
                    else:
                        e = esr[j]
                        gr[C + CD + j] = g_std * (e / (e + one))


# ---- the training and evaluation pass in one kernel (float32) --------------------------------

# Cephes' logf polynomial for log(1 + f), f in [sqrt(1/2) - 1, sqrt(2) - 1]
_L = tuple(
    np.float32(c)
    for c in (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1)
    + (1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)
)
_L0, _L1, _L2, _L3, _L4, _L5, _L6, _L7, _L8 = _L
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_SQRT2_M1 = np.float32(0.41421356)
_F_ONE, _F_HALF, _F_ZERO = np.float32(1.0), np.float32(0.5), np.float32(0.0)
_F_THRESHOLD = np.float32(_SOFTPLUS_THRESHOLD)


@numba.njit(inline="always")
def _log1p_unit(x):
    """``log(1 + x)`` for float32 ``x`` in ``[0, 1]`` (or NaN, returned as NaN), within about
    one ulp: Cephes' ``logf`` on ``1 + x = 2^n (1 + f)``, with ``f = x`` (``n = 0``) up to
    ``sqrt(2) - 1`` and ``f = (x - 1) / 2`` (``n = 1``) above, both exact, so small ``x``
    keep their relative precision (``log1p``, not ``log`` of a rounded ``1 + x``)."""
    big = x > _SQRT2_M1
    f = (x - _F_ONE) * _F_HALF if big else x
    z = f * f
    p = ((((((((_L0 * f + _L1) * f + _L2) * f + _L3) * f + _L4) * f + _L5) * f + _L6) * f + _L7)
         * f + _L8) * f * z  # fmt: skip
    if big:
        p = p + _LN2_LO
    p = p - _F_HALF * z
    res = f + p
    if big:
        res = res + _LN2_HI
    return res


@_jit
def _log1p_all(x, out):
    """``out[i] = log1p(x[i])`` by :func:`_log1p_unit`, for ``x`` in ``[0, 1]`` (its tests)."""
    for i in range(x.shape[0]):
        out[i] = _log1p_unit(x[i])


@numba.njit(inline="always")
def _lse_fast(v, n, e, ef):
    """:func:`_lse` with the exponentials in float32 (:func:`_exp_neg`, in a loop of their own
    into the float32 scratch ``ef``, which vectorises; their sum, in order, and the logarithm
    in float64) where the maximum is finite, which it is unless an input is infinite or every
    input is NaN: there, :func:`_lse` itself. ``e`` as there (each within about one float32
    ulp of :func:`_lse`'s)."""
    m = -np.inf
    for i in range(n):
        if v[i] > m:
            m = v[i]
    if not -np.inf < m < np.inf:
        return _lse(v, n, e)
    for i in range(n):
        ef[i] = _exp_neg(np.float32(v[i] - m))
    total = 0.0
    for i in range(n):
        x = np.float64(ef[i])
        e[i] = x
        total += x
    lse = math.log(total) + m  # total >= 1, or NaN
    inv = 1.0 / total
    for i in range(n):
        e[i] *= inv
    return lse


@_jit
def _dim_major(components, dim):
    """The order in which :func:`head_pass` lays out a step's ``P = C (1 + 2 D)`` outputs:
    the ``C`` logits, then the means and then the scales, each dimension-major (``d C + c``
    holds the head's ``C + c D + d``, component-major), so that the sums over ``d`` run as
    loops over the components, which vectorise. ``perm[j]`` is the head's index of the
    block's column ``j``."""
    C, D = components, dim
    CD = C * D
    perm = np.empty(C + 2 * CD, np.int64)
    for c in range(C):
        perm[c] = c
    for d in range(D):
        for c in range(C):
            perm[C + d * C + c] = C + c * D + d
            perm[C + CD + d * C + c] = C + CD + c * D + d
    return perm


# head_pass alone may contract a multiply and an add into one fused multiply-add (rounded
# once, not twice: within float32 rounding of the separate operations; about 4% of the pass,
# in the softplus and logarithm polynomials). No other fast-math flag: NaN and inf propagate.
_jit_fma = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


@_jit_fma
def head_pass(out, w, b, y, real, scale, grad, components, dim, min_std, rows, d_out, d_w, d_b):
    r"""The output layer, the mixture's per-step NLL and (``grad``) its gradients through the
    output layer, per member, in float32: ``a = h W^T + b`` (one ``np.dot``) into a block
    that the loop over the steps turns, row by row and in place, into
    :math:`G_r = s_k m_r \partial\mathrm{nll}_r / \partial a_r` (the module docstring's
    formulas), then :math:`\bar h = G W` and :math:`\bar W = G^\top h` (two ``np.dot``) and
    :math:`\bar b = \sum_r G_r` (float64).

    Softplus is computed here, vectorised over a step's ``C D`` scales: ``softplus(s) =
    max(s, 0) + log1p(e^{-|s|})`` (``s`` itself above the threshold 20) and its derivative
    ``1 / (1 + e^{-s})`` for ``s >= 0``, ``e^s / (1 + e^s)`` below (exactly 1 above the
    threshold), with ``e^{-|s|}`` from :func:`rnnbench.nn.kernels.bernoulli._exp_neg` and
    the logarithm from :func:`_log1p_unit` (each within about one float32 ulp of torch's,
    which computed ``log1p(exp(s))``). The rest is :func:`gmm_rows`'s arithmetic: the
    log-sum-exps and the scales' logarithms (of their product per component) in float64.

    Args:
        out: hidden states ``(K, R, H)``, float32, contiguous (as every array here).
        w: ``weight_out (K, P, H)``; b: ``bias_out (K, P)``, ``P = C (1 + 2 D)``.
        y: targets ``(1 or K, R, D)``; real: real steps ``(1 or K, R)``, bool.
        scale: ``s_k (K,)``; grad: whether to compute the gradients.
        rows: out, the per-step NLL ``(K, R)``, 0 on padded steps (never read).
        d_out, d_w, d_b: out (``grad``), ``(K, R, H)``, ``(K, P, H)``, ``(K, P)``.
    """
    K, R, H = out.shape
    P = w.shape[1]
    C, D = components, dim
    CD = C * D
    one_y = y.shape[0] == 1
    one_m = real.shape[0] == 1
    floor = np.float32(min_std)
    const = D * _HALF_LOG_2PI
    perm = _dim_major(C, D)  # the block's column j holds the head's output perm[j]
    wp = np.empty((P, H), np.float32)  # W's rows in that order
    a = np.empty((R, P), np.float32)
    hm = np.empty((R, H) if grad else (0, H), np.float32)
    dwt = np.empty((H, P) if grad else (H, 0), np.float32)  # d_W^T, permuted
    sd = np.empty(CD, np.float32)  # sigma
    inv = np.empty(CD, np.float32)  # 1 / sigma
    dsp = np.empty(CD, np.float32)  # softplus'(s)
    z = np.empty(CD, np.float32)
    e2 = np.empty(CD, np.float32)  # z^2 / 2
    yt = np.empty(CD, np.float32)  # the step's target, once per component
    rt = np.empty(CD, np.float32)  # the responsibilities, once per scale
    energy = np.empty(C, np.float32)
    prod = np.empty(C, np.float64)
    ef = np.empty(C, np.float32)
    log_w = np.empty(C, np.float64)
    alpha = np.empty(C, np.float64)
    pi = np.empty(C, np.float64)
    post = np.empty(C, np.float64)
    acc = np.empty(P, np.float64)
    for k in range(K):
        yk = 0 if one_y else k
        rk = 0 if one_m else k
        hk = out[k]
        s_k = np.float32(scale[k])
        for j in range(P):
            wp[j] = w[k, perm[j]]
        np.dot(hk, wp.T, a)
        acc[:] = 0.0
        padded = False
        for r in range(R):
            if not real[rk, r]:
                padded = True
                rows[k, r] = 0.0
                if grad:
                    for j in range(P):
                        a[r, j] = 0.0
                continue
            for j in range(P):
                a[r, j] += b[k, perm[j]]
            for d in range(D):
                yt[d * C : (d + 1) * C] = y[yk, r, d]
            # sigma, 1 / sigma, softplus' derivative and z, vectorised over the C D scales
            for j in range(CD):
                s = a[r, C + CD + j]
                e = _exp_neg(-abs(s))
                sp = (s if s > _F_ZERO else _F_ZERO) + _log1p_unit(e)
                inv_e = _F_ONE / (_F_ONE + e)
                der = inv_e if s >= _F_ZERO else e * inv_e
                if s > _F_THRESHOLD:
                    sp = s
                    der = _F_ONE
                sig = sp + floor
                inv_j = _F_ONE / sig
                zz = (yt[j] - a[r, C + j]) * inv_j
                sd[j] = sig
                inv[j] = inv_j
                dsp[j] = der
                z[j] = zz
                e2[j] = _F_HALF * zz * zz
            # per component, the sums over d in order, vectorised over the components
            energy[:] = _F_ZERO
            prod[:] = 1.0
            for d in range(D):
                for c in range(C):
                    energy[c] += e2[d * C + c]
                    prod[c] *= sd[d * C + c]
            for c in range(C):
                log_w[c] = a[r, c]
            lse_w = _lse_fast(log_w, C, pi, ef)
            for c in range(C):
                if _TINY < prod[c] < np.inf:
                    log_std = math.log(prod[c])
                else:  # overflow or underflow (a tiny min_std), inf or NaN: one by one
                    log_std = 0.0
                    for d in range(D):
                        log_std += math.log(np.float64(sd[d * C + c]))
                alpha[c] = (log_w[c] - lse_w) - (energy[c] + log_std + const)
            lse = _lse_fast(alpha, C, post, ef)
            rows[k, r] = -lse
            if not grad:
                continue
            total = 0.0
            for c in range(C):
                total += post[c]
            for c in range(C):
                g = s_k * np.float32(pi[c] * total - post[c])
                a[r, c] = g
                acc[c] += g
            for d in range(D):
                for c in range(C):
                    rt[d * C + c] = np.float32(post[c])  # the responsibility r_c
            for j in range(CD):
                rc = rt[j]
                rz = rc * z[j]
                g_mu = s_k * (-rz * inv[j])
                g_s = s_k * (((rc - rz * z[j]) * inv[j]) * dsp[j])
                a[r, C + j] = g_mu
                a[r, C + CD + j] = g_s
                acc[C + j] += g_mu
                acc[C + CD + j] += g_s
        if grad:
            np.dot(a, wp, d_out[k])
            if padded:  # padded hidden states enter d_W as 0 (their garbage, NaN, never)
                for r in range(R):
                    for j in range(H):
                        hm[r, j] = hk[r, j] if real[rk, r] else _F_ZERO
                np.dot(hm.T, a, dwt)
                for r in range(R):  # 0, also where W holds inf or NaN (BLAS: 0 * inf = NaN)
                    if not real[rk, r]:
                        for j in range(H):
                            d_out[k, r, j] = 0.0
            else:
                np.dot(hk.T, a, dwt)  # d_W^T = h^T G: faster than G^T h at these shapes
            for j in range(P):
                d_b[k, perm[j]] = acc[j]
                for i in range(H):
                    d_w[k, perm[j], i] = dwt[i, j]
