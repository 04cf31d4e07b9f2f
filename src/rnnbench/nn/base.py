"""What :class:`~rnnbench.nn.RNN`, :class:`~rnnbench.nn.LSTM` and :class:`~rnnbench.nn.GRU`
share: parameters named as torch, input layouts (batch_first, unbatched, PackedSequence) and
the call into :func:`rnnbench.nn.functional.run_unit` with a population of one."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnbench.errors import RnnbenchError
from rnnbench.nn.functional import BACKENDS, run_unit
from rnnbench.nn.init import SCHEMES, init_unit
from rnnbench.nn.variants import resolve


class RecurrentUnit(nn.Module):
    """One recurrent layer; subclasses fix ``cell``, ``form`` and their public signature."""

    cell: str
    form: tuple[str, ...] = ()  # the unit's form arguments, shown by repr: peephole, reset
    num_layers = 1
    bidirectional = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool,
        batch_first: bool,
        init: str,
        backend: str,
        device=None,
        dtype=None,
        *,
        peephole: bool = False,
        reset: str = "before",
        variant: str = "",
    ) -> None:
        """The subclasses' public arguments, in their order; defaults live in the subclasses.
        ``variant`` (:mod:`rnnbench.nn.variants`) is stored canonical: ``np`` becomes
        ``peephole=False`` and ``after`` ``reset="after"``, with ``variant=""``."""
        if reset not in ("before", "after"):
            raise RnnbenchError(f"reset must be 'before' or 'after', not {reset!r}.")
        if variant == "np":
            peephole = False
        variant, peephole, reset = resolve(self.cell, variant, peephole, reset)
        super().__init__()
        if init not in SCHEMES:
            raise RnnbenchError(f"init must be 'torch' or 'paper', not {init!r}.")
        if backend not in BACKENDS:
            raise RnnbenchError(f"backend must be one of {BACKENDS}, not {backend!r}.")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.batch_first = batch_first
        self.init = init
        self.backend = backend
        self.peephole = peephole
        self.reset = reset
        self.variant = variant
        weights = init_unit(
            self.cell,
            input_size,
            hidden_size,
            bias=bias,
            peephole=peephole,
            scheme=init,
            variant=variant,
        )
        for name, value in weights.items():
            self.register_parameter(name, nn.Parameter(value.to(device=device, dtype=dtype)))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Redraw the weights with the module's ``init`` scheme (torch's global RNG by default)."""
        fresh = init_unit(
            self.cell,
            self.input_size,
            self.hidden_size,
            bias=self.bias,
            peephole=self.peephole,
            scheme=self.init,
            generator=generator,
            variant=self.variant,
        )
        with torch.no_grad():
            for name, value in fresh.items():
                getattr(self, name).copy_(value)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        text += f", init={self.init!r}, backend={self.backend!r}"
        text += "".join(f", {name}={getattr(self, name)!r}" for name in self.form)
        return text + (f", variant={self.variant!r}" if self.variant else "")

    def flatten_parameters(self) -> None:
        """Does nothing: here for code written against ``torch.nn.LSTM`` (no cuDNN buffer)."""

    def forward(self, input, hx: Tensor | tuple[Tensor, Tensor] | None = None):
        """``(output, h_n)``, or ``(output, (h_n, c_n))`` for the LSTM, as torch; see the unit."""
        packed = isinstance(input, PackedSequence)
        mask = lengths = None
        if packed:
            x, lengths = pad_packed_sequence(input)
            steps = torch.arange(x.shape[0]).unsqueeze(1)
            mask = (steps < lengths.unsqueeze(0)).to(device=x.device, dtype=x.dtype)
        elif input.dim() == 2:
            x = input.unsqueeze(1)
        elif input.dim() == 3:
            x = input.transpose(0, 1) if self.batch_first else input
        else:
            raise ValueError(
                f"{type(self).__name__}: expected 2-D or 3-D input, got {input.dim()}-D"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input.size(-1) must be {self.input_size}, got {x.shape[-1]}")
        unbatched = not packed and input.dim() == 2

        h0, c0 = hx if isinstance(hx, tuple) else (hx, None)
        expected = (1, self.hidden_size) if unbatched else (1, x.shape[1], self.hidden_size)
        for state in (h0, c0):
            if state is not None and tuple(state.shape) != expected:
                raise RuntimeError(f"Expected hidden size {expected}, got {tuple(state.shape)}")
        if unbatched:
            h0 = h0.unsqueeze(1) if h0 is not None else None
            c0 = c0.unsqueeze(1) if c0 is not None else None

        weights = {name: p.unsqueeze(0) for name, p in self.named_parameters()}
        out, h_n, c_n = run_unit(
            self.cell,
            x,
            weights["weight_ih_l0"],
            weights["weight_hh_l0"],
            weights.get("bias_ih_l0"),
            weights.get("bias_hh_l0"),
            w_ch=weights.get("weight_ch_l0"),
            reset=self.reset,
            mask=mask,
            h0=h0,
            c0=c0,
            backend=self.backend,
            variant=self.variant,
        )
        out = out[0]
        if packed:
            out = _pack_like(input, out, lengths)
        elif unbatched:
            out, h_n = out[:, 0], h_n[:, 0]
            c_n = c_n[:, 0] if c_n is not None else None
        elif self.batch_first:
            out = out.transpose(0, 1)
        return (out, (h_n, c_n)) if self.cell == "lstm" else (out, h_n)


def _pack_like(like: PackedSequence, out: Tensor, lengths: Tensor) -> PackedSequence:
    """Pack ``out (T, B, H)``, in the caller's batch order, as ``like`` is packed."""
    order = like.sorted_indices
    if order is not None:
        out = out.index_select(1, order)
        lengths = lengths.index_select(0, order.cpu())
    data = pack_padded_sequence(out, lengths).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)
