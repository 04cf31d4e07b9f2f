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
"""

from __future__ import annotations

import math

import numpy as np

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
