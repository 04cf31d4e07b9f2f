r"""The output layer and the head's loss as one autograd function with an analytic backward.

:meth:`rnnbench.models.SequenceModel.nll` used to run the output layer (``baddbmm``), the
head's per-step NLL (:mod:`rnnbench.heads`: a dozen elementwise ops for the 20-component
speech mixture), the padding mask and the sum as separate autograd nodes, each recorded,
each with its own backward and its own intermediate tensors. Here the forward computes, in a
few vectorised passes with no graph, the logits, the masked per-step NLL *and its gradient
with respect to the logits* (which does not depend on the incoming gradient but through a
per-member factor), and the backward is that factor and two ``bmm``.

Shapes: ``K`` members, ``R = T B`` steps of the batch (``T`` steps of ``B`` sequences),
``H`` hidden units, ``P`` head parameters per step, ``D`` values per frame. For member
``k`` with hidden states :math:`h_r` and real-step indicator :math:`m_r \in \{0, 1\}`:

.. math::
    a_r = W_{out} h_r + b_{out}, \qquad
    L_k = \sum_r m_r\, \mathrm{nll}(a_r, y_r), \qquad
    G_r = m_r \frac{\partial\, \mathrm{nll}(a_r, y_r)}{\partial a_r},

and, with :math:`\bar L_k` the gradient arriving at :math:`L_k` (``1/N`` for the paper's
per-step loss),

.. math::
    \frac{\partial}{\partial h_r} = \bar L_k\, W_{out}^\top G_r, \qquad
    \frac{\partial}{\partial W_{out}} = \bar L_k \sum_r G_r h_r^\top, \qquad
    \frac{\partial}{\partial b_{out}} = \bar L_k \sum_r G_r.

The heads' gradients (:func:`_bernoulli`, :func:`_gmm`) are derived in their docstrings. A
padded step (``m_r = 0``) adds nothing, and its target is zeroed first, as
:meth:`~rnnbench.models.SequenceModel.step_nll` does (its garbage, NaN included, never
reaches a sum); its gradient is :math:`0 \cdot \partial\mathrm{nll}` as autograd's is.

Every formula is the one the heads evaluate; only the order of some sums and a few roundings
differ (float32 results agree with autograd's to about 1e-6, relative; the mixture's kernel
takes its log-sum-exps and the scales' logarithms in float64, which is closer to the exact
values than float32 autograd). NaN and inf propagate as in the autograd path, so divergence
detection sees them.

For the Bernoulli head in float32, :func:`bernoulli_pass` does the output layer, the loss,
its gradient and the backward's products in one numba pass per member
(:mod:`rnnbench.nn.kernels.bernoulli`), and :func:`mixture_pass` the same for the speech
mixture (:func:`rnnbench.nn.kernels.mixture.head_pass`, softplus and its derivative computed
in the kernel), for evaluation (:func:`step_nll`) and for the manual training pass
(:mod:`rnnbench.train.manual_step`); :func:`member_nll` keeps the torch ops below (the
autograd path, and the reference the kernels are tested against).

:func:`usable` says where it runs: a :class:`~rnnbench.heads.BernoulliHead` or
:class:`~rnnbench.heads.GaussianMixtureHead` on CPU in float32 or float64, a model whose
``backend`` is not ``"torch"`` (that backend stays plain autograd end to end), outside
``torch.compile``, tracing and ``torch.func`` transforms (the function has no rules for them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnbench.heads import BernoulliHead, GaussianMixtureHead, _check_params, _check_target
from rnnbench.nn.kernels import bernoulli, mixture

__all__ = ["bernoulli_pass", "kernel_pass", "member_nll", "mixture_pass", "step_nll", "usable"]

_ENABLED = True  # private switch: tests turn it off to run the autograd path on the same model
_KERNEL = True  # private switch: tests turn it off to run both heads in torch ops


def usable(model, y: Tensor) -> bool:
    """Whether ``model.nll`` / ``model.step_nll`` may use the fused head (module docstring)."""
    if not _ENABLED or type(model.head) not in _HEADS:
        return False
    if getattr(model, "backend", "auto") == "torch" or y.requires_grad:
        return False
    w = getattr(model, "weight_out", None)
    if w is None or w.device.type != "cpu" or w.dtype not in (torch.float32, torch.float64):
        return False
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    return not torch._C._are_functorch_transforms_active()


def member_nll(
    head, out: Tensor, weight: Tensor, bias: Tensor, y: Tensor, mask: Tensor | None
) -> Tensor:
    """Summed NLL over the real steps, per member: ``(K,)``, differentiable in ``out``,
    ``weight`` and ``bias``.

    Args:
        head: a :class:`~rnnbench.heads.BernoulliHead` or
            :class:`~rnnbench.heads.GaussianMixtureHead`.
        out: hidden states ``(K, T, B, H)``.
        weight: ``weight_out (K, P, H)``; bias: ``bias_out (K, P)``.
        y: targets ``(T, B, D)`` (shared) or ``(K, T, B, D)``.
        mask: ``(T, B)`` or ``(K, T, B)``, real steps > 0 (None: all real).
    """
    _check_params(weight.transpose(1, 2), head.n_outputs, type(head).__name__)
    _check_target(y, head.out_dim, type(head).__name__)
    return _HeadLoss.apply(out, weight, bias, y, mask, head)


@torch.no_grad()
def step_nll(
    head, out: Tensor, weight: Tensor, bias: Tensor, y: Tensor, mask: Tensor | None
) -> Tensor:
    """Per-step NLL ``(K, T, B)``, 0 on padded steps, without gradients (evaluation);
    arguments as :func:`member_nll`."""
    _check_params(weight.transpose(1, 2), head.n_outputs, type(head).__name__)
    _check_target(y, head.out_dim, type(head).__name__)
    k, t, b, _ = out.shape
    if bernoulli_kernel(head, out) or mixture_kernel(head, out):
        return kernel_pass(head, out, weight, bias, y, mask)[0].view(k, t, b)
    rows, _, _ = _evaluate(head, _logits(out, weight, bias), y, mask, False)
    return rows.view(k, t, b)


def bernoulli_kernel(head, out: Tensor) -> bool:
    """Whether :func:`bernoulli_pass` runs ``head`` on hidden states ``out``: a
    :class:`~rnnbench.heads.BernoulliHead` on float32 CPU tensors (the kernel is float32's)."""
    return (
        _KERNEL and type(head) is BernoulliHead and out.dtype == torch.float32
        and out.device.type == "cpu"
    )  # fmt: skip


def mixture_kernel(head, out: Tensor) -> bool:
    """Whether :func:`mixture_pass` runs ``head`` on hidden states ``out``: a
    :class:`~rnnbench.heads.GaussianMixtureHead` on float32 CPU tensors."""
    return (
        _KERNEL and type(head) is GaussianMixtureHead and out.dtype == torch.float32
        and out.device.type == "cpu"
    )  # fmt: skip


def kernel_pass(
    head, out: Tensor, weight: Tensor, bias: Tensor, y: Tensor, mask: Tensor | None,
    scale: Tensor | None = None,
) -> tuple[Tensor, ...]:  # fmt: skip
    """:func:`bernoulli_pass` or :func:`mixture_pass`, by ``head``'s type."""
    if type(head) is BernoulliHead:
        return bernoulli_pass(out, weight, bias, y, mask, scale)
    return mixture_pass(head, out, weight, bias, y, mask, scale)


def bernoulli_pass(
    out: Tensor, weight: Tensor, bias: Tensor, y: Tensor, mask: Tensor | None,
    scale: Tensor | None = None,
) -> tuple[Tensor, ...]:  # fmt: skip
    r"""The Bernoulli head's output layer, per-step NLL ``(K, R)`` (0 on padded steps) and,
    with ``scale`` (:math:`\bar L_k` of the module docstring, ``(K,)``), the output layer's
    gradients ``d_out (K, T, B, H)``, ``d_weight``, ``d_bias`` in one numba pass per member
    (:mod:`rnnbench.nn.kernels.bernoulli`); arguments as :func:`member_nll`, float32."""
    return _kernel_call(bernoulli.head_pass, (), out, weight, bias, y, mask, scale)


def mixture_pass(
    head, out: Tensor, weight: Tensor, bias: Tensor, y: Tensor, mask: Tensor | None,
    scale: Tensor | None = None,
) -> tuple[Tensor, ...]:  # fmt: skip
    """:func:`bernoulli_pass` for a :class:`~rnnbench.heads.GaussianMixtureHead`: the output
    layer, the mixture's NLL, its gradient and the backward's products in one numba pass per
    member (:func:`rnnbench.nn.kernels.mixture.head_pass`), float32."""
    extra = (head.components, head.out_dim, head.min_std)
    return _kernel_call(mixture.head_pass, extra, out, weight, bias, y, mask, scale)


def _kernel_call(kernel, extra, out, weight, bias, y, mask, scale):
    """Run a head kernel (``head_pass(out, w, b, y, real, scale, grad, *extra, rows, d_out,
    d_w, d_b)``) on torch tensors: the shared body of :func:`bernoulli_pass` and
    :func:`mixture_pass`."""
    from rnnbench.nn.kernels import glue

    k, t, b, h = out.shape
    r, p = t * b, weight.shape[1]
    grad = scale is not None
    rows = out.new_empty(k, r)
    d_out = out.new_empty((k, t, b, h) if grad else (0, 0, 0, 0))
    d_w = out.new_empty(weight.shape if grad else (0, 0, 0))
    d_b = out.new_empty(bias.shape if grad else (0, 0))
    real = torch.ones(1, r, dtype=torch.bool) if mask is None else (mask > 0).reshape(-1, r)
    s = scale.to(torch.float32) if grad else out.new_ones(k)
    glue._call(
        r * p * h,
        kernel,
        *(_array(v) for v in (out.reshape(k, r, h), weight, bias)),
        _array(y.reshape(-1, r, y.shape[-1]).to(torch.float32)),
        _array(real),
        _array(s.expand(k)),
        grad,
        *extra,
        rows.numpy(),
        d_out.view(k, r, h).numpy() if grad else d_out.view(0, 0, 0).numpy(),
        d_w.numpy(),
        d_b.numpy(),
    )
    return (rows, d_out, d_w, d_b) if grad else (rows,)


def _array(t: Tensor):
    """``t`` as a contiguous numpy array (no copy where it is one)."""
    return t.detach().contiguous().numpy()


def _logits(out: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``a (K, R, P)``: the output layer, one ``baddbmm``."""
    k, t, b, h = out.shape
    return torch.baddbmm(bias.unsqueeze(1), out.reshape(k, t * b, h), weight.transpose(1, 2))


def _evaluate(head, a: Tensor, y: Tensor, mask: Tensor | None, grad: bool):
    """The per-step NLL ``(K, R)`` (0 on padding), (``grad``) its gradient with respect to
    ``a`` (which it may overwrite) and the real steps as ``(1 or K, R, 1)`` floats that the
    gradient still has to be multiplied with (None: no padding). Padded targets are zeroed
    first, as :meth:`~rnnbench.models.SequenceModel.step_nll` zeroes them."""
    k, r, _ = a.shape
    yr = y.reshape(-1, r, y.shape[-1])
    real = None if mask is None else (mask > 0).reshape(-1, r)
    if real is not None and bool(real.all()):
        real = None  # no padding (speech: every segment has the same length)
    real_f = None
    if real is not None:
        yr = torch.where(real.unsqueeze(-1), yr, yr.new_zeros(()))
    rows, g = _HEADS[type(head)](a, yr.to(a.dtype), head, grad)
    if real is not None:
        rows = torch.where(real, rows, rows.new_zeros(()))
        real_f = real.to(a.dtype).unsqueeze(-1)
    return rows, g, real_f


def _bernoulli(a: Tensor, y: Tensor, head, grad: bool) -> tuple[Tensor, Tensor | None]:
    r"""Per-step NLL ``(K, R)`` of independent Bernoulli notes with logits ``a (K, R, D)``,
    and (``grad``) its gradient with respect to ``a``, written over ``a``:

    .. math::
        \mathrm{nll} = \sum_d \big[\log(1 + e^{a_d}) - y_d a_d\big], \qquad
        \frac{\partial\, \mathrm{nll}}{\partial a_d} = \sigma(a_d) - y_d.
    """
    rows = F.binary_cross_entropy_with_logits(a, y.expand_as(a), reduction="none").sum(-1)
    return rows, (a.sigmoid_().sub_(y) if grad else None)


def _gmm(a: Tensor, y: Tensor, head, grad: bool) -> tuple[Tensor, Tensor | None]:
    r"""Per-step NLL ``(K, R)`` of :class:`~rnnbench.heads.GaussianMixtureHead` and (``grad``)
    its gradient with respect to the head parameters ``a (K, R, C(1+2D))``.

    With logits :math:`\ell_c`, means :math:`\mu_{cd}`, scale pre-activations :math:`s_{cd}`,
    :math:`\sigma_{cd} = \sigma_{\min} + \mathrm{softplus}(s_{cd})`,
    :math:`z_{cd} = (y_d - \mu_{cd}) / \sigma_{cd}`, log-weights
    :math:`\log\pi_c = \ell_c - \log\sum_j e^{\ell_j}` and
    :math:`\alpha_c = \log\pi_c - \sum_d (\tfrac12 z_{cd}^2 + \log\sigma_{cd}
    + \tfrac12\log 2\pi)`, the NLL is :math:`-\log\sum_c e^{\alpha_c}`. With the
    responsibilities :math:`r_c = e^{\alpha_c - \log\sum_j e^{\alpha_j}}` (the posterior of
    component :math:`c`):

    .. math::
        \frac{\partial\,\mathrm{nll}}{\partial \ell_c} = \pi_c \textstyle\sum_j r_j - r_c,
        \qquad
        \frac{\partial\,\mathrm{nll}}{\partial \mu_{cd}} = -\frac{r_c z_{cd}}{\sigma_{cd}},
        \qquad
        \frac{\partial\,\mathrm{nll}}{\partial s_{cd}} =
            \frac{r_c - r_c z_{cd}^2}{\sigma_{cd}}\, \mathrm{softplus}'(s_{cd}),

    (:math:`\sum_j r_j = 1` up to rounding; log-softmax's backward keeps the sum, and so does
    this), where :math:`\mathrm{softplus}'(s) = e^s/(1+e^s)`, exactly 1 above softplus's
    threshold 20 (there softplus is the identity), as autograd's ``softplus_backward``
    computes it. :math:`r_c z_{cd}^2` is taken as :math:`(r_c z_{cd}) z_{cd}`, as autograd
    multiplies, so a component whose :math:`z^2` overflows but whose responsibility is 0
    gives 0, not NaN.

    Torch computes ``exp(s)`` and ``log1p(exp(s))``, vectorised; the rest runs in one
    numba pass over the steps (:func:`rnnbench.nn.kernels.mixture.gmm_rows`).
    """
    c, d = head.components, head.out_dim
    k, r, _ = a.shape
    s = a[..., c + c * d :]
    es = torch.exp(s)
    lp = torch.log1p(es)  # softplus(s) below its threshold; both (K, R, C D), contiguous
    rows = a.new_empty(k, r)
    g = torch.empty_like(a) if grad else a.new_empty(0, 0, 0)
    mixture.gmm_rows(
        a.detach().contiguous().numpy(),
        lp.numpy(),
        es.numpy(),
        y.contiguous().numpy(),
        c,
        d,
        head.min_std,
        grad,
        rows.numpy(),
        g.numpy(),
    )
    return rows, (g if grad else None)


_HEADS = {BernoulliHead: _bernoulli, GaussianMixtureHead: _gmm}


class _HeadLoss(torch.autograd.Function):
    """``(out, weight, bias, y, mask, head) -> (K,)``: see the module docstring."""

    @staticmethod
    def forward(ctx, out, weight, bias, y, mask, head):
        a = _logits(out, weight, bias)
        rows, g, real_f = _evaluate(head, a, y, mask, any(ctx.needs_input_grad[:3]))
        ctx.save_for_backward(out, weight, g, real_f)
        return rows.sum(1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        out, weight, g, real_f = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        return (*backward_products(out, weight, g, real_f, grad, need), None, None, None)


def backward_products(out, weight, g, real_f, grad, need=(True, True, True)):
    """The output layer's gradients ``(d_out (K, T, B, H), d_weight, d_bias)`` (None where
    ``need`` says no) from the loss's gradient ``g (K, R, P)`` in the logits, the real-step
    indicator ``real_f (K, R, 1)`` or None, and the gradient ``grad (K,)`` arriving at each
    member's loss: :class:`_HeadLoss`'s backward, and the manual training pass's
    (:mod:`rnnbench.train.manual_step`), so both give the same numbers."""
    k, t, b, h = out.shape
    # the per-member factor multiplies the small operands (the weights, the products'
    # results), the real-step indicator the (K, R, H) ones: g (K, R, P) is only read, so
    # a retained graph can run backward again
    scale = grad.reshape(k, 1, 1).to(g.dtype)
    d_out = d_w = d_b = None
    if need[0]:
        w = weight * scale
        if g.shape[2] > 2 * h:  # a wide head (speech: P = 420): as (W^T G^T)^T, faster
            d_out = torch.bmm(w.transpose(1, 2), g.transpose(1, 2)).transpose(1, 2)
            d_out = d_out.contiguous()
        else:
            d_out = torch.bmm(g, w)
        if real_f is not None:
            d_out.mul_(real_f)
        d_out = d_out.view(k, t, b, h)
    if need[1]:
        rows = out.reshape(k, t * b, h)
        if real_f is not None:
            rows = rows * real_f
        # as (out^T G)^T: the long dimension P as the product's columns, faster than G^T out
        d_w = torch.bmm(rows.transpose(1, 2), g).transpose(1, 2).contiguous().mul_(scale)
    if need[2]:
        if real_f is None:
            d_b = g.sum(1)
        else:
            d_b = torch.bmm(real_f.expand(k, -1, -1).transpose(1, 2), g).squeeze(1)
        d_b.mul_(scale.view(k, 1))
    return d_out, d_w, d_b
