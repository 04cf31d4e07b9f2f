r"""A training update's forward and backward pass without autograd: :func:`select`.

Per update the population trainer (:mod:`rnnbench.train.population`) needs each member's
summed NLL :math:`S_k`, its loss :math:`L_k` (:math:`S_k / N_k` for the paper's protocol,
:math:`S_k` for the authors', :func:`rnnbench.train.authors.training_loss`), the final state
(truncated BPTT) and the gradient of :math:`\sum_k L_k` in every parameter's ``.grad``.
:class:`AutogradPass` gets them as before, through ``SequenceModel.nll`` and
``loss.sum().backward()``. :class:`ManualPass` calls the same pieces in the same order
without recording a graph, for the models whose every piece has a hand-written backward:

1. the input projection :math:`\xi = W_{ih} x + b_{ih}`: a gather of the columns of
   :math:`W_{ih}` for the keys that sound, the bias added in the same kernel, where
   :mod:`rnnbench.nn.sparse_input` allows it, else one ``addmm`` per member (the product
   of :func:`rnnbench.nn.functional.project_input`'s ``baddbmm``, member by member);
2. the fused recurrent forward kernel (:func:`rnnbench.nn.kernels.glue.forward`);
3. the output layer, the head's masked per-step NLL and its gradient :math:`G` with respect
   to the logits, as :mod:`rnnbench.head_loss` computes them (for either head in float32,
   steps 3 and 4 are one numba pass per member, ``head_loss.kernel_pass``:
   :mod:`rnnbench.nn.kernels.bernoulli`, :func:`rnnbench.nn.kernels.mixture.head_pass`);
4. with :math:`\bar S_k = \partial L_k / \partial S_k` (:math:`1/N_k`, or 1) and the real-step
   indicator :math:`m_r`, :math:`\bar a_r = \bar S_k m_r G_r`, then
   :math:`\bar h_r = W_{out}^\top \bar a_r`, :math:`\bar W_{out} = \sum_r \bar a_r h_r^\top`,
   :math:`\bar b_{out} = \sum_r \bar a_r` (``head_loss.backward_products``, the function
   ``head_loss``'s autograd backward calls);
5. the fused recurrent backward kernel (:func:`rnnbench.nn.kernels.glue.backward`), with no
   gradient arriving at the final state (it is carried detached): :math:`\bar\xi`,
   :math:`\bar W_{hh}`, :math:`\bar b_{hh}` and the peepholes' :math:`\bar w_{ch}`;
6. :math:`\bar b_{ih} = \sum_r \bar\xi_r` and :math:`\bar W_{ih} = \sum_r \bar\xi_r x_r^\top`
   (the gather's transpose, :func:`rnnbench.nn.sparse_input.scatter_with_bias`, which sums
   :math:`\bar b_{ih}` in the same pass, in float64; or one ``bmm`` in autograd's order).

Each gradient is written as the parameter's ``.grad`` (contiguous, as the fused clipping and
RMSProp of :mod:`rnnbench.train.fused` read them). Every formula is autograd's in the same
precision, so the gradients equal the autograd path's within float32 rounding (the same
operations, a few sums in another order); NaN and inf propagate the same way, so divergence
detection sees them. Weight noise needs nothing here: the trainer runs either pass inside
:meth:`rnnbench.train.protocol.WeightNoise.applied`, so both read the noisy weights and the
gradient lands in the clean parameters' ``.grad``.

:func:`select` is the one place that chooses: the manual pass for a built-in unit
(:class:`~rnnbench.models.SequenceModel` itself: ``tanh``, ``lstm``, ``gru`` and their
variants) on the fused numba backend, float32 CPU parameters, a head that
:mod:`rnnbench.head_loss` fuses (Bernoulli, the Gaussian mixture); the autograd pass for
everything else (``backend="torch"``, other devices and dtypes, plug-in units).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnbench import head_loss
from rnnbench.errors import RnnbenchError
from rnnbench.nn import sparse_input
from rnnbench.nn.kernels import heap
from rnnbench.train.authors import is_authors, training_loss

__all__ = ["AutogradPass", "ManualPass", "select"]

_ENABLED = True  # private switch: tests turn it off to compare with the autograd pass

# (nll_sum (K,), n_steps (int or (K,)), loss (K,), state)
Result = tuple[Tensor, "int | Tensor", Tensor, tuple]


def select(model, cfg) -> AutogradPass | ManualPass:
    """The pass the population trainer runs for ``model`` under ``cfg``'s protocol (and,
    once per process, :func:`rnnbench.nn.kernels.heap.keep_freed_memory`: its updates' buffers
    are reused instead of faulted in again)."""
    heap.keep_freed_memory()
    return ManualPass(model, cfg) if _ENABLED and manual_usable(model) else AutogradPass(model, cfg)


def manual_usable(model) -> bool:
    """Whether :class:`ManualPass` computes ``model``'s update (see the module docstring)."""
    from rnnbench.models import SequenceModel
    from rnnbench.nn.functional import numba_available

    if type(model) is not SequenceModel or model.unit not in ("tanh", "lstm", "gru"):
        return False
    if model.backend == "torch" or not numba_available():
        return False
    if type(model.head) not in head_loss._HEADS or not head_loss._ENABLED:
        return False
    params = dict(model.named_parameters())
    if set(params) != set(_names(model)):
        return False
    return all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params.values())


def _names(model) -> tuple[str, ...]:
    """The parameters the manual pass writes a gradient for."""
    peep = ("weight_ch_l0",) if model.peephole else ()
    rec = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    return (*rec, *peep, "weight_out", "bias_out")


def _n_steps(mask: Tensor | None, t: int, b: int, like: Tensor):
    """``SequenceModel.nll``'s ``n_steps``: an int, or per member for a ``(K, T, B)`` mask."""
    if mask is None:
        return t * b
    if mask.dim() == 3:
        return (mask > 0).sum((1, 2)).to(like.dtype)
    return int((mask > 0).sum())


class AutogradPass:
    """The update's pass through ``SequenceModel.nll`` and autograd (any model)."""

    def __init__(self, model, cfg) -> None:
        self.model, self.cfg = model, cfg

    def __call__(self, x, y, mask, state, shared: bool) -> Result:
        """Forward and backward on one update's batch; gradients in ``.grad``."""
        nll_sum, n, state = self.model.nll(x, y, mask, state)
        if not shared:  # an idle member's loss is 0 over no steps, not 0/0
            n = n.clamp(min=1)
        loss = training_loss(self.cfg, nll_sum, n)
        loss.sum().backward()
        return nll_sum, n, loss, state


class ManualPass:
    """The same pass with the hand-written backward of every piece (module docstring)."""

    def __init__(self, model, cfg) -> None:
        self.model, self.cfg = model, cfg
        self.authors = is_authors(cfg)
        self.cell, self.variant = model.unit, model.variant
        self.peephole, self.reset = model.peephole, model.reset
        self.names = _names(model)
        params = dict(model.named_parameters())
        self.params = [params[n] for n in self.names]
        self._zeros: dict[tuple, Tensor] = {}

    def _zero(self, like: Tensor, *shape: int) -> Tensor:
        """A zero tensor of ``shape`` kept across updates: the initial states and the final
        states' gradients, which the kernels only read (never written, never returned)."""
        key = (*shape, like.dtype)
        zero = self._zeros.get(key)
        if zero is None:
            zero = self._zeros[key] = like.new_zeros(shape)
        return zero

    @torch.no_grad()
    def __call__(self, x, y, mask, state, shared: bool) -> Result:
        """Forward and backward on one update's batch; gradients in ``.grad``."""
        from rnnbench.nn.kernels import glue

        m = self.model
        if x.shape[-1] != m.in_dim:
            raise RnnbenchError(
                f"the model reads {m.in_dim} values per step but x has {x.shape[-1]}; "
                "build the model with the data set's in_dim."
            )
        head_loss._check_target(y, m.head.out_dim, type(m.head).__name__)
        w_ih, w_hh, b_ih, b_hh = m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0
        w_ch = m.weight_ch_l0 if self.peephole else None
        w_out, b_out = m.weight_out, m.bias_out
        K, GH, I = w_ih.shape
        T, B = x.shape[-3:-1]
        H = w_hh.shape[-1]
        lstm = self.cell == "lstm"

        # 1. the input projection
        keys = sparse_input.plan(x, w_ih)
        if keys is not None:  # the bias added inside the gather (no pass of its own)
            flat = None
            xw = sparse_input.gather(w_ih, *keys, b_ih).view(K, T, B, GH)
        else:
            # as functional.project_input, the bias inside the product, but one ``addmm``
            # per member: at the paper's speech sizes (T B = 768 rows, G H = 681 or 780) one
            # batched product over 4 or 10 members ran at half the speed of the members' own
            # (0.93 against 0.47 ms per member, one thread; the same at one member)
            flat = x.reshape(1 if x.dim() == 3 else K, T * B, I).expand(K, T * B, I)
            xw = x.new_empty(K, T * B, GH)
            for k in range(K):
                torch.addmm(b_ih[k], flat[k], w_ih[k].t(), out=xw[k])
            xw = xw.view(K, T, B, GH)

        # 2. the recurrence
        h0, c0 = (None, None) if state is None else state
        h0 = self._zero(xw, K, B, H) if h0 is None else h0
        if lstm and c0 is None:
            c0 = self._zero(xw, K, B, H)
        kmask = xw.new_ones(T, B) if mask is None else mask.to(xw.dtype)
        config = (self.cell, self.reset, self.peephole, self.variant)
        out, h_n, c_n, hs, cs, acts, aux = glue.forward(
            *config, xw, w_hh, b_hh, w_ch, kmask, h0, c0 if lstm else None
        )

        # 3-4. the output layer, the loss and its gradient in the logits, and back through
        # the output layer (the gradient of sum_k L_k): one numba pass per member for
        # either head in float32, else head_loss's torch ops and its backward's products
        n = _n_steps(mask, T, B, out)
        if not shared:  # an idle member's loss is 0 over no steps, not 0/0
            n = n.clamp(min=1)
        d_sum = out.new_ones(K)
        if not self.authors:
            d_sum = d_sum / n
        if head_loss.bernoulli_kernel(m.head, out) or head_loss.mixture_kernel(m.head, out):
            rows, d_out, d_w_out, d_b_out = head_loss.kernel_pass(
                m.head, out, w_out, b_out, y, mask, d_sum
            )
        else:
            a = head_loss._logits(out, w_out, b_out)
            rows, g, real_f = head_loss._evaluate(m.head, a, y, mask, True)
            d_out, d_w_out, d_b_out = head_loss.backward_products(out, w_out, g, real_f, d_sum)
        nll_sum = rows.sum(1)
        loss = training_loss(self.cfg, nll_sum, n)

        # 5. back through time (nothing arrives at the final state: it is carried detached)
        d_hn = self._zero(out, K, B, H)
        d_cn = d_hn if lstm else None
        d_xw, d_w_hh, d_b_hh, d_w_ch, _, _ = glue.backward(
            *config, d_out, d_hn, d_cn, w_hh, w_ch, kmask, out, hs, cs, acts, aux
        )

        # 6. back through the input projection
        d_xw = d_xw.view(K, T * B, GH)
        if keys is not None:  # the bias's gradient summed in the same pass
            d_w_ih, d_b_ih = sparse_input.scatter_with_bias(d_xw, *keys, I)
        else:
            d_b_ih = d_xw.sum(1)
            # as autograd's backward of baddbmm (the same product, the same order)
            d_w_ih = torch.bmm(flat.transpose(1, 2), d_xw).transpose(1, 2).contiguous()

        grads = [d_w_ih, d_w_hh, d_b_ih, d_b_hh, *((d_w_ch,) if w_ch is not None else ())]
        for p, d in zip(self.params, (*grads, d_w_out, d_b_out), strict=True):
            p.grad = d
        return nll_sum, n, loss, (h_n, c_n if lstm else None)
