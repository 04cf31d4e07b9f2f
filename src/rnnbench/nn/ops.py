"""The fused numba kernels as PyTorch custom operators, so that autograd, ``torch.compile``,
``torch.export`` and ``torch.jit.trace`` see one leaf op per recurrent layer.

Two operators, defined with :func:`torch.library.custom_op`:

- ``rnnbench::fused_rnn(cell, reset, peephole, variant, xw, w_hh, b_hh, w_ch, mask, h0, c0)``
  returns ``(out, h_n, c_n, hs, cs, acts, aux)``: the outputs and what the backward needs
  (:func:`rnnbench.nn.numba_backend.forward`).
- ``rnnbench::fused_rnn_backward(cell, reset, peephole, variant, d_out, d_hn, d_cn, w_hh, w_ch,
  mask, out, hs, cs, acts, aux)`` returns ``(d_xw, d_w_hh, d_b_hh, d_w_ch, d_h0, d_c0)``
  (:func:`rnnbench.nn.numba_backend.backward`).

The static configuration travels as op arguments (``cell``: ``"tanh"``, ``"lstm"``, ``"gru"``;
``reset``: ``"before"``/``"after"``; ``peephole``: bool; ``variant``: ``""`` or a canonical
name of :mod:`rnnbench.nn.variants`), so a new form is one more argument. A variant's ``G``
(the rows of ``w_hh`` per unit) is the gates it keeps, and its ``w_ch`` has one row per
peephole it keeps; an LSTM's ``acts`` is always ``(K, T, B, 4H)``.
Tensors with no meaning for a cell (``c_n`` of a GRU, ...) are empty. Each op has a fake
(meta) implementation giving the output shapes, so compilers trace through it without running
numba; ``fused_rnn`` has an autograd formula (``fused_rnn_backward``), and
``fused_rnn_backward``'s own formula raises :class:`FirstOrderOnly`: the hand-written
backward has no derivative (double backward needs ``backend="torch"``).

In eager mode :func:`run` does not go through the op's dispatch (which cost as much as the
kernels at batch 1): :class:`FusedRnnEager` is the op's ``autograd.Function`` twin, with the
same forward, backward and double-backward refusal; with no gradient wanted :func:`run` calls
the kernels directly. Wherever something traces (see :func:`_eager`) the op runs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnbench.errors import RnnbenchError
from rnnbench.nn import numba_backend

_Outputs = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]
_Grads = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


class FirstOrderOnly(RnnbenchError, RuntimeError):
    """Double backward through the fused kernels (a RuntimeError, as torch's autograd raises)."""


@torch.library.custom_op("rnnbench::fused_rnn", mutates_args=(), device_types="cpu")
def fused_rnn(
    cell: str,
    reset: str,
    peephole: bool,
    variant: str,
    xw: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    w_ch: Tensor | None,
    mask: Tensor,
    h0: Tensor,
    c0: Tensor | None,
) -> _Outputs:
    return numba_backend.forward(cell, reset, peephole, variant, xw, w_hh, b_hh, w_ch, mask, h0, c0)


@fused_rnn.register_fake
def _fused_rnn_fake(cell, reset, peephole, variant, xw, w_hh, b_hh, w_ch, mask, h0, c0):
    K, T, B, G = xw.shape
    H = w_hh.shape[-1]

    def new(*shape):
        return xw.new_empty(shape)

    lstm, gru = cell == "lstm", cell == "gru"
    return (
        new(K, T, B, H),
        new(K, B, H),
        new(K, B, H) if lstm else new(0),
        new(K, T + 1, B, H),
        new(K, T + 1, B, H) if lstm else new(0),
        new(K, T, B, 4 * H) if lstm else new(K, T, B, G) if gru else new(0),
        new(K, T, B, H) if gru else new(0),
    )


@torch.library.custom_op("rnnbench::fused_rnn_backward", mutates_args=(), device_types="cpu")
def fused_rnn_backward(
    cell: str,
    reset: str,
    peephole: bool,
    variant: str,
    d_out: Tensor,
    d_hn: Tensor,
    d_cn: Tensor | None,
    w_hh: Tensor,
    w_ch: Tensor | None,
    mask: Tensor,
    out: Tensor,
    hs: Tensor,
    cs: Tensor,
    acts: Tensor,
    aux: Tensor,
) -> _Grads:
    return numba_backend.backward(
        cell, reset, peephole, variant, d_out, d_hn, d_cn, w_hh, w_ch, mask, out, hs, cs, acts, aux
    )


@fused_rnn_backward.register_fake
def _fused_rnn_backward_fake(
    cell, reset, peephole, variant, d_out, d_hn, d_cn, w_hh, w_ch, mask, out, hs, cs, acts, aux
):
    K, T, B, H = out.shape
    G = w_hh.shape[1]

    def new(*shape):
        return out.new_empty(shape)

    lstm = cell == "lstm"
    return (
        new(K, T, B, G),
        new(K, G, H),
        new(K, G),
        new(K, w_ch.shape[1], H) if lstm and peephole else new(0),
        new(K, B, H),
        new(K, B, H) if lstm else new(0),
    )


def _setup_context(ctx, inputs, output):
    cell, reset, peephole, variant, xw, w_hh, b_hh, w_ch, mask, h0, c0 = inputs
    out, _, _, hs, cs, acts, aux = output
    ctx.config = (cell, reset, peephole, variant)
    ctx.has = (b_hh is not None, w_ch is not None, c0 is not None)
    ctx.save_for_backward(w_hh, w_ch, mask, out, hs, cs, acts, aux)


def _backward(ctx, d_out, d_hn, d_cn, *_unused):
    cell, reset, peephole, variant = ctx.config
    w_hh, w_ch, mask, out, hs, cs, acts, aux = ctx.saved_tensors
    d_out = d_out if d_out is not None else torch.zeros_like(out)
    d_hn = d_hn if d_hn is not None else torch.zeros_like(hs[:, -1])
    if cell == "lstm" and d_cn is None:
        d_cn = torch.zeros_like(hs[:, -1])
    # With create_graph (grad mode on in the backward) or under a tracer the backward op runs
    # (its autograd formula raises FirstOrderOnly); otherwise the plain tensor function,
    # without the op's dispatch (which costs as much as the kernels on the paper's models).
    eager = not torch.is_grad_enabled() and all(
        _eager(t) for t in (hs, d_out, d_hn, d_cn) if t is not None
    )
    backward = numba_backend.backward if eager else fused_rnn_backward
    d_xw, d_w, d_b, d_v, d_h0, d_c0 = backward(
        cell, reset, peephole, variant, d_out, d_hn, d_cn if cell == "lstm" else None, w_hh,
        w_ch, mask, out, hs, cs, acts, aux,
    )  # fmt: skip
    has_bias, has_peep, has_c0 = ctx.has
    return (
        None,
        None,
        None,
        None,
        d_xw,
        d_w,
        d_b if has_bias else None,
        d_v if has_peep else None,
        None,
        d_h0,
        d_c0 if has_c0 else None,
    )


def _no_double_backward(ctx, *grads):
    raise FirstOrderOnly(
        "the numba backend computes first derivatives only; build the module (or call "
        'run_unit) with backend="torch" for double backward.'
    )


fused_rnn.register_autograd(_backward, setup_context=_setup_context)


def _no_context(ctx, inputs, output):
    pass


fused_rnn_backward.register_autograd(_no_double_backward, setup_context=_no_context)


class FusedRnnEager(torch.autograd.Function):
    """``rnnbench::fused_rnn`` in eager mode without the custom op's dispatch: the same
    forward (:func:`rnnbench.nn.numba_backend.forward`) and the same backward (``_backward``,
    so double backward raises :class:`FirstOrderOnly` as through the op). Used by :func:`run`
    only where nothing traces (see :func:`_eager`); compilers and exporters see the op."""

    @staticmethod
    def forward(ctx, cell, reset, peephole, variant, xw, w_hh, b_hh, w_ch, mask, h0, c0):
        outputs = numba_backend.forward(
            cell, reset, peephole, variant, xw, w_hh, b_hh, w_ch, mask, h0, c0
        )
        ctx.mark_non_differentiable(*outputs[3:])
        ctx.set_materialize_grads(False)
        inputs = (cell, reset, peephole, variant, xw, w_hh, b_hh, w_ch, mask, h0, c0)
        _setup_context(ctx, inputs, outputs)
        return outputs

    @staticmethod
    def backward(ctx, *grads):
        return (None, None, None, None, *_backward(ctx, *grads)[4:])


def _traced_stack() -> int:
    """Torch dispatch modes active (proxy and fake tracing run as such modes)."""
    length = getattr(torch._C, "_len_torch_dispatch_stack", None)
    return 1 if length is None else length()


def _functorch_wrapped(t: Tensor) -> bool:
    """Whether ``t`` is wrapped by a transform: ``torch.func``'s, or the legacy vmap that
    gradcheck's batched-gradient check runs over the backward."""
    functorch = torch._C._functorch
    checks = ("is_functorch_wrapped_tensor", "is_legacy_batchedtensor")
    return any(getattr(functorch, name, lambda _: True)(t) for name in checks)


def _eager(xw: Tensor) -> bool:
    """Whether :func:`run` may skip the custom op: a plain tensor, no compiler, exporter,
    tracer, ``torch.func`` transform (vmap over the backward, in gradcheck) or torch function
    or dispatch mode watching."""
    return (
        type(xw) is torch.Tensor
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and not torch._C._are_functorch_transforms_active()
        and not _functorch_wrapped(xw)
        and not torch._C._is_torch_function_mode_enabled()
        and not _traced_stack()
    )


def run(cell, xw, w_hh, b_hh, w_ch, reset, mask, h0, c0, variant=""):
    """:func:`rnnbench.nn.functional.run_unit` after the input projection: ``(out, h_n,
    c_n)``, ``c_n`` None except for the LSTM. ``variant`` is canonical
    (:func:`rnnbench.nn.variants.resolve`: ``""`` for ``np`` and ``after``). In eager mode
    it calls the kernels directly (no gradient wanted) or through :class:`FusedRnnEager`;
    under a compiler, exporter or tracer it calls the custom op ``rnnbench::fused_rnn``. The
    three give the same numbers."""
    mask = xw.new_ones(xw.shape[1:3]) if mask is None else mask.to(xw.dtype)
    peephole = w_ch is not None
    args = (cell, reset, peephole, variant, xw, w_hh, b_hh, w_ch, mask, h0, c0)
    if not _eager(xw):
        out, h_n, c_n, *_ = fused_rnn(*args)
    elif torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (xw, w_hh, b_hh, w_ch, h0, c0)
    ):
        out, h_n, c_n, *_ = FusedRnnEager.apply(*args)
    else:
        out, h_n, c_n, *_ = numba_backend.forward(*args)
    return out, h_n, (c_n if cell == "lstm" else None)
