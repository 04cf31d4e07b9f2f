"""What :class:`~rnnbench.nn.RNN`, :class:`~rnnbench.nn.LSTM` and :class:`~rnnbench.nn.GRU`
share: torch's constructor checks, parameters named as torch names them (``weight_ih_l1``,
``..._reverse``), stacked and bidirectional layers with inter-layer dropout, input layouts
(batch_first, unbatched, PackedSequence), ``hx`` checks as torch makes them, the form kept in
the state dict, and the call into :func:`rnnbench.nn.functional.run_unit` per layer (both
directions of a layer in one call, as a population of two)."""

from __future__ import annotations

import numbers
import warnings

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnbench.errors import RnnbenchError
from rnnbench.nn.functional import BACKENDS, numba_available, run_unit
from rnnbench.nn.init import SCHEMES, init_unit, reset_like_torch
from rnnbench.nn.variants import gate_count, peephole_rows, resolve

EXTRA_STATE_KEY = "_extra_state"  # torch's key for Module.get_extra_state


class RecurrentUnit(nn.Module):
    """Stacked, optionally bidirectional recurrent layers of one cell; the subclasses fix
    ``cell``, ``form`` and their public signature (torch's, plus keyword-only forms)."""

    cell: str
    form: tuple[str, ...] = ()  # the unit's form arguments, shown by repr: peephole, reset
    paper_form: dict = {}  # the form values that torch.nn cannot express (saved in the dict)

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
        proj_size: int,
        device,
        dtype,
        *,
        init: str,
        backend: str,
        peephole: bool = False,
        reset: str = "before",
        variant: str = "",
    ) -> None:
        """The subclasses' public arguments; defaults live in the subclasses.
        ``variant`` (:mod:`rnnbench.nn.variants`) is stored canonical: ``np`` becomes
        ``peephole=False`` and ``after`` ``reset="after"``, with ``variant=""``."""
        _check_arguments(input_size, hidden_size, num_layers, bias, batch_first, dropout)
        _check_projection(proj_size, hidden_size)
        if not isinstance(bidirectional, bool):
            raise TypeError(
                f"bidirectional should be of type bool, got: {type(bidirectional).__name__}"
            )
        if reset not in ("before", "after"):
            raise RnnbenchError(f"reset must be 'before' or 'after', not {reset!r}.")
        if not isinstance(peephole, bool):
            raise RnnbenchError(f"peephole must be True or False, not {peephole!r}.")
        if not isinstance(variant, str):
            raise RnnbenchError(f"variant must be a string such as 'nig', not {variant!r}.")
        if variant == "np":
            peephole = False
        variant, peephole, reset = resolve(self.cell, variant, peephole, reset)
        if init not in SCHEMES:
            raise RnnbenchError(f"init must be 'torch' or 'paper', not {init!r}.")
        if backend not in BACKENDS:
            raise RnnbenchError(f"backend must be one of {BACKENDS}, not {backend!r}.")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=3,
            )
        super().__init__()
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.init = init
        self.backend = backend
        self.peephole = peephole
        self.reset = reset
        self.variant = variant
        if backend != "torch" and numba_available():
            import rnnbench.nn.ops  # noqa: F401  (registers the custom ops before any tracing)
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer, suffix, shapes in self._shapes():
            names = []
            for name, shape in shapes.items():
                name = f"{name[:-1]}{layer}{suffix}"  # init_unit names layer 0: ..._l0
                empty = torch.empty(shape, device=device, dtype=dtype)
                self.register_parameter(name, nn.Parameter(empty))
                names.append(name)
            self._flat_weights_names.extend(names)
            self._all_weights.append(names)
        self.reset_parameters()

    # ---- torch's module surface ---------------------------------------------------------------

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """The parameters of each layer and direction (l0, l0_reverse, l1, ...), as torch."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    def _shapes(self):
        """``(layer, suffix, {name: shape})`` of every layer and direction, in torch's
        registration order (names as :func:`~rnnbench.nn.init.init_unit` gives them)."""
        directions = ("", "_reverse") if self.bidirectional else ("",)
        cell = "tanh" if self.cell == "relu" else self.cell
        H = self.hidden_size
        R = self.proj_size or H
        GH = gate_count(cell, self.variant) * H
        for layer in range(self.num_layers):
            inputs = self.input_size if layer == 0 else R * len(directions)
            for suffix in directions:
                shapes = {"weight_ih_l0": (GH, inputs), "weight_hh_l0": (GH, R)}
                if self.bias:
                    shapes.update(bias_ih_l0=(GH,), bias_hh_l0=(GH,))
                if self.proj_size:
                    shapes["weight_hr_l0"] = (R, H)
                if self.peephole:
                    shapes["weight_ch_l0"] = (len(peephole_rows(cell, self.variant)), H)
                yield layer, suffix, shapes

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        r"""Draw the weights with the module's ``init`` scheme (torch's global RNG by default).

        ``init="torch"``: every parameter in registration order (per layer and direction:
        ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``, ``weight_hr``, then the
        peepholes ``weight_ch``) from :math:`\mathcal{U}(-1/\sqrt{H}, 1/\sqrt{H})` in the
        parameter's dtype, as ``torch.nn.RNNBase.reset_parameters`` draws
        (:func:`~rnnbench.nn.init.reset_like_torch`): the cuDNN forms draw exactly torch's
        numbers and leave the generator where torch leaves it. ``init="paper"``: per layer and
        direction, :func:`~rnnbench.nn.init.init_unit`'s draws (float32, then cast)."""
        cell = "tanh" if self.cell == "relu" else self.cell
        with torch.no_grad():
            for layer, suffix, shapes in self._shapes():
                params = {n: getattr(self, f"{n[:-1]}{layer}{suffix}") for n in shapes}
                if self.init == "torch":
                    reset_like_torch(
                        params, cell, self.hidden_size, variant=self.variant, generator=generator
                    )
                    continue
                weights = init_unit(
                    cell,
                    next(iter(shapes.values()))[1],
                    self.hidden_size,
                    bias=self.bias,
                    peephole=self.peephole,
                    scheme=self.init,
                    generator=generator,
                    variant=self.variant,
                    proj_size=self.proj_size,
                )
                for name, value in weights.items():
                    params[name].copy_(value)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.cell == "relu":
            text += ", nonlinearity='relu'"
        if self.proj_size:
            text += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout != 0:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        text += f", init={self.init!r}, backend={self.backend!r}"
        text += "".join(f", {name}={getattr(self, name)!r}" for name in self.form)
        return text + (f", variant={self.variant!r}" if self.variant else "")

    def flatten_parameters(self) -> None:
        """Does nothing: here for code written against ``torch.nn.LSTM`` (no cuDNN buffer)."""

    def __prepare_scriptable__(self):
        raise RnnbenchError(
            f"torch.jit.script cannot compile rnnbench.nn.{type(self).__name__} (its forward "
            "runs Python-level layers and numba kernels); use torch.compile, torch.export or "
            "torch.jit.trace instead."
        )

    # ---- the form in the state dict -----------------------------------------------------------

    def _is_paper_form(self) -> bool:
        """Whether the module computes a form torch.nn cannot: a paper form or a variant."""
        paper = any(getattr(self, name) == value for name, value in self.paper_form.items())
        return paper or bool(self.variant)

    def get_extra_state(self) -> dict:
        """The form (``{"cell": "gru", "reset": "before", "variant": ""}``), saved by the paper
        forms and the variants only, so that the cuDNN forms' state dicts are exactly torch's."""
        form = {name: getattr(self, name) for name in self.form}
        return {"cell": self.cell, **form, "variant": self.variant}

    def set_extra_state(self, state) -> None:
        """Nothing to set: :meth:`_load_from_state_dict` compares the form and refuses a
        state dict of the other form (a missing key that names the argument: a strict load
        raises it, a non-strict one returns it; both warn)."""

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if not self._is_paper_form():
            destination.pop(prefix + EXTRA_STATE_KEY, None)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
    ) -> None:
        saved = state_dict.get(prefix + EXTRA_STATE_KEY)
        peepholes = any(key.startswith(prefix + "weight_ch_l") for key in state_dict)
        problem = self._form_problem(saved, peepholes)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
        )
        if prefix + EXTRA_STATE_KEY in missing_keys:
            missing_keys.remove(prefix + EXTRA_STATE_KEY)
        if problem:
            # torch calls this with strict=True whatever the caller asked and applies
            # ``strict`` to missing_keys afterwards: a missing key that carries the sentence
            # makes a strict load fail with it, and a non-strict load return it (and warn).
            missing_keys.append(f"{prefix}{EXTRA_STATE_KEY} (the form: {problem})")
            warnings.warn(problem, stacklevel=4)

    def _form_problem(self, saved, peepholes: bool) -> str | None:
        """One sentence when the state dict's form differs from this module's, else None."""
        name = type(self).__name__
        if isinstance(saved, dict):
            saved = {"variant": "", **saved}  # recorded before the variants: the full unit
            for arg in (*self.form, "variant"):
                if arg in saved and saved[arg] != getattr(self, arg):
                    return (
                        f"this state dict is of a {name} with {arg}={saved[arg]!r} and this "
                        f"module has {arg}={getattr(self, arg)!r}: build the module with "
                        f"{arg}={saved[arg]!r} to load it."
                    )
            return None
        if self.cell == "lstm" and peepholes != self.peephole:
            return (
                f"this state dict {'has' if peepholes else 'has no'} peephole weights "
                f"(weight_ch_l*) and this module has peephole={self.peephole}: build the "
                f"module with peephole={peepholes} to load it."
            )
        if self.variant:
            return (
                f"this state dict does not record a variant (torch.nn's never do) and this "
                f"module has variant={self.variant!r}: build the module with variant='' to "
                f"load a state dict of the full unit, or pass strict=False to load a "
                f"{self.variant!r} state dict saved by an rnnbench that did not record forms."
            )
        if self.cell == "gru" and self.reset == "before":
            return (
                "this state dict does not say its GRU form (torch.nn.GRU's never do) and this "
                "module computes the paper's reset='before': build GRU(..., reset='after') to "
                "load a torch.nn.GRU state dict, or pass strict=False to load a reset='before' "
                "state dict saved by an rnnbench that did not record forms."
            )
        return None

    # ---- forward ------------------------------------------------------------------------------

    def forward(self, input, hx=None):
        """``(output, h_n)``, or ``(output, (h_n, c_n))`` for the LSTM, as torch; see the unit."""
        packed = isinstance(input, PackedSequence)
        data = input.data if packed else input
        self._check_input(data, packed)
        unbatched = not packed and data.dim() == 2
        mask = lengths = None
        if packed:
            x, lengths = pad_packed_sequence(input)  # (T, B, I) in the caller's batch order
            steps = torch.arange(x.shape[0]).unsqueeze(1)
            mask = (steps < lengths.unsqueeze(0)).to(device=x.device, dtype=x.dtype)
        elif unbatched:
            x = data.unsqueeze(1)
        else:
            x = data.transpose(0, 1) if self.batch_first else data
        h0, c0 = self._check_state(hx, x, unbatched)
        if x.shape[0] == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")

        out, h_n, c_n = self._layers(x, mask, lengths, h0, c0)
        if packed:
            out = _pack_like(input, out, lengths)
        elif unbatched:
            out, h_n = out[:, 0], h_n[:, 0]
            c_n = c_n[:, 0] if c_n is not None else None
        elif self.batch_first:
            out = out.transpose(0, 1)
        return (out, (h_n, c_n)) if self.cell == "lstm" else (out, h_n)

    def _layers(self, x, mask, lengths, h0, c0):
        """Every layer over ``x (T, B, I)``: ``out (T, B, D*R)``, ``h_n (L*D, B, R)``,
        ``c_n (L*D, B, H)`` (``R`` = ``proj_size``, else ``H``)."""
        T, B, _ = x.shape
        D, H = (2 if self.bidirectional else 1), self.hidden_size
        R = self.proj_size or H
        if B == 0:
            empty = x.new_zeros(self.num_layers * D, 0, R)
            c_n = x.new_zeros(self.num_layers * D, 0, H) if self.cell == "lstm" else None
            return x.new_zeros(T, 0, D * R), empty, c_n
        reverse = _time_reversal(mask, lengths, T, B, x.device) if D == 2 else None
        finals_h, finals_c = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, training=True)
            if D == 2:
                x = torch.stack((x, _reverse(x, reverse)))  # both directions as members K = 2
            w = {}
            for names in zip(*self._all_weights[layer * D : (layer + 1) * D], strict=True):
                stacked = torch.stack([getattr(self, n) for n in names])
                w[names[0].rsplit("_l", 1)[0]] = _contiguous_grad(stacked)
            states = slice(layer * D, (layer + 1) * D)
            out, h_n, c_n = run_unit(
                self.cell,
                x,
                w["weight_ih"],
                w["weight_hh"],
                w.get("bias_ih"),
                w.get("bias_hh"),
                w_ch=w.get("weight_ch"),
                w_hr=w.get("weight_hr"),
                reset=self.reset,
                mask=mask,
                h0=h0[states] if h0 is not None else None,
                c0=c0[states] if c0 is not None else None,
                backend=self.backend,
                variant=self.variant,
            )
            x = torch.cat((out[0], _reverse(out[1], reverse)), -1) if D == 2 else out[0]
            finals_h.append(h_n)
            finals_c.append(c_n)
        h_n = torch.cat(finals_h) if len(finals_h) > 1 else finals_h[0]
        c_n = None
        if self.cell == "lstm":
            c_n = torch.cat(finals_c) if len(finals_c) > 1 else finals_c[0]
        return x, h_n, c_n

    def _check_input(self, data: Tensor, packed: bool) -> None:
        """torch's checks of ``input``, with torch's exception types and messages."""
        name = type(self).__name__
        if not packed and data.dim() not in (2, 3):
            raise ValueError(
                f"{name}: Expected input to be 2D or 3D, got {data.dim()}D tensor instead"
            )
        weight = self.weight_ih_l0
        if data.dtype != weight.dtype and not torch.is_autocast_enabled(data.device.type):
            raise ValueError(
                f"RNN input dtype ({data.dtype}) does not match weight dtype ({weight.dtype}). "
                f"Convert input: input.to({weight.dtype}), or convert model: "
                f"model.to({data.dtype})"
            )
        if data.shape[-1] != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                f"got {data.shape[-1]}"
            )

    def _check_state(self, hx, x: Tensor, unbatched: bool):
        """``(h0, c0)``, each ``(L*D, B, H)`` or None, from the caller's ``hx`` checked as torch
        checks it (a list ``[h, c]`` is taken as a tuple)."""
        if hx is None:
            return None, None
        name = type(self).__name__
        lstm = self.cell == "lstm"
        if lstm:
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError(
                    f"{name}: hx must be a tuple (h_0, c_0) of two tensors, got "
                    f"{_kind(hx)}; pass (h_0, c_0) or nothing."
                )
            states = list(hx)
        else:
            if not isinstance(hx, Tensor):
                raise TypeError(
                    f"{name}: hx must be one tensor h_0, got {_kind(hx)}; only the LSTM "
                    "takes a tuple (h_0, c_0)."
                )
            states = [hx]
        if not all(isinstance(s, Tensor) for s in states):
            raise TypeError(f"{name}: hx must hold tensors, got {_kind(hx)}.")
        want = 2 if unbatched else 3
        if any(s.dim() != want for s in states):
            kind = "unbatched 2-D" if unbatched else "batched 3-D"
            got = ", ".join(f"{s.dim()}-D" for s in states)
            what = "hx and cx" if lstm else "hx"
            raise RuntimeError(
                f"For {kind} input, {what} should also be {want}-D but got "
                + (f"({got}) tensors" if lstm else f"{got} tensor")
            )
        if unbatched:
            states = [s.unsqueeze(1) for s in states]
        D = 2 if self.bidirectional else 1
        for i, state in enumerate(states):
            size = self.proj_size if self.proj_size and i == 0 else self.hidden_size
            expected = (self.num_layers * D, x.shape[1], size)
            if tuple(state.shape) != expected:
                label = f"hidden[{i}]" if lstm else "hidden"
                raise RuntimeError(f"Expected {label} size {expected}, got {list(state.shape)}")
            if state.dtype != x.dtype:
                raise RuntimeError(
                    f"{name}: hx dtype ({state.dtype}) does not match input dtype "
                    f"({x.dtype}); convert the state: hx.to({x.dtype})."
                )
        return states[0], (states[1] if lstm else None)


def _check_arguments(input_size, hidden_size, num_layers, bias, batch_first, dropout) -> None:
    """torch.nn.RNNBase's checks, with its exception types and messages."""
    if (
        not isinstance(dropout, numbers.Number)
        or not 0 <= dropout <= 1
        or isinstance(dropout, bool)
    ):
        raise ValueError(
            "dropout should be a number in range [0, 1] representing the probability of an "
            "element being zeroed"
        )
    if not isinstance(bias, bool):
        raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
    if not isinstance(batch_first, bool):
        raise TypeError(f"batch_first should be of type bool, got: {type(batch_first).__name__}")
    if not isinstance(input_size, int):
        raise TypeError(f"input_size should be of type int, got: {type(input_size).__name__}")
    if input_size <= 0:
        raise ValueError("input_size must be greater than zero")
    if not isinstance(hidden_size, int):
        raise TypeError(f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
    if hidden_size <= 0:
        raise ValueError("hidden_size must be greater than zero")
    if not isinstance(num_layers, int) or isinstance(num_layers, bool):
        raise TypeError(f"num_layers should be of type int, got: {type(num_layers).__name__}")
    if num_layers <= 0:
        raise ValueError("num_layers must be greater than zero")


def _check_projection(proj_size, hidden_size: int) -> None:
    """torch.nn.LSTM's checks of ``proj_size``, with its exception types and messages."""
    if not isinstance(proj_size, int) or isinstance(proj_size, bool):
        raise TypeError(f"proj_size should be of type int, got: {type(proj_size).__name__}")
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")


class _ContiguousGrad(torch.autograd.Function):
    """The identity, whose backward hands on a contiguous gradient: the gradients that
    ``torch.autograd.grad`` returns for the weights are then contiguous, as torch's are
    (the recurrent products read the weights transposed, so their gradients come back as
    transposed views)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(weight):
        return weight.view_as(weight)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()

    @staticmethod
    def jvp(ctx, tangent):
        return tangent.view_as(tangent)  # forward-mode AD: a view, as forward returns


def _contiguous_grad(weight: Tensor) -> Tensor:
    """``weight``, through :class:`_ContiguousGrad` when a gradient will flow (not while
    tracing or compiling, where the graph's own layout rules apply)."""
    if (
        weight.dim() < 2
        or not (weight.requires_grad and torch.is_grad_enabled())
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
    ):
        return weight
    return _ContiguousGrad.apply(weight)


def _kind(value) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _time_reversal(mask, lengths, T: int, B: int, device) -> Tensor | None:
    """Index ``(T, B)`` that reverses each sequence within its length (padding stays in
    place); None when no sequence is padded (then a flip reverses)."""
    if mask is None:
        return None
    t = torch.arange(T).unsqueeze(1)
    n = lengths.unsqueeze(0)
    return torch.where(t < n, n - 1 - t, t).to(device)


def _reverse(x: Tensor, index: Tensor | None) -> Tensor:
    """``x (T, B, F)`` with each sequence reversed in time (its own inverse)."""
    if index is None:
        return x.flip(0)
    return x.gather(0, index.unsqueeze(-1).expand_as(x))


def _pack_like(like: PackedSequence, out: Tensor, lengths: Tensor) -> PackedSequence:
    """Pack ``out (T, B, H)``, in the caller's batch order, as ``like`` is packed."""
    order = like.sorted_indices
    if order is not None:
        out = out.index_select(1, order)
        lengths = lengths.index_select(0, order.cpu())
    data = pack_padded_sequence(out, lengths).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)
