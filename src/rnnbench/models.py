r"""Sequence models (one recurrent layer + an output head) and parameter counting.

A :class:`SequenceModel` models :math:`p(x_1..x_T) = \prod_t p(x_{t+1} | x_{\le t})`: the
recurrent layer reads the input frames, a linear output layer maps each hidden state to the
parameters of the head's distribution over the next frame (:mod:`rnnbench.heads`). It holds a
*population* of ``K`` independent models of the same shape: every parameter has a leading ``K``
dimension and one call runs all members (:func:`rnnbench.nn.functional.run_unit`).

Parameter counting and matching live in :mod:`rnnbench.counting` (re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rnnbench import head_loss
from rnnbench.counting import (
    GATES,
    TASKS,
    UNITS,
    _check_unit,
    _resolve_head,
    count_params,
    match_hidden,
    output_params,
    paper_hidden,
    recurrent_params,
    task_head,
    total_params,
)
from rnnbench.errors import RnnbenchError
from rnnbench.nn import variants as _variants
from rnnbench.nn.functional import run_unit
from rnnbench.nn.init import init_unit

__all__ = [
    "GATES",
    "TASKS",
    "UNITS",
    "SequenceModel",
    "count_params",
    "match_hidden",
    "output_params",
    "paper_hidden",
    "recurrent_params",
    "task_head",
    "total_params",
]

INITS = ("paper", "torch")
PAPER_OUT_SCALE = 0.1


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> Tensor:
    """U(-bound, bound), drawn in float64 so the values do not depend on the model's dtype."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return ((2 * u - 1) * bound).to(torch.float32)


State = tuple[Tensor, Tensor | None]


class SequenceModel(nn.Module):
    r"""One recurrent layer and a linear output layer feeding a head, for K models at once.

    For each member ``k``, with inputs :math:`x_t` and the unit's hidden state :math:`h_t`:

    .. math::
        h_t = \mathrm{unit}(x_t, h_{t-1}), \qquad a_t = W_{out} h_t + b_{out}, \qquad
        x_{t+1} \sim \mathrm{head}(a_t),

    and the loss of a step is the head's negative log-likelihood of the next frame, in nats.

    Args:
        unit: ``"tanh"``, ``"lstm"`` or ``"gru"``.
        in_dim: ``I``, values per input frame (music 88, speech 20).
        out_dim: ``D``, values per predicted frame (music 88, speech 10).
        hidden: ``H``, units of the recurrent layer.
        head: ``"bernoulli"``, ``"gmm"`` (20 components) or a head object from
            :mod:`rnnbench.heads` with ``out_dim`` ``D``.
        population: ``K``, the number of independent members.
        peephole: LSTM only: the paper's diagonal peepholes (``weight_ch_l0``).
        reset: GRU only: ``"before"`` (the paper) or ``"after"`` (torch/cuDNN).
        variant: ``""`` (the full unit) or a variant of :mod:`rnnbench.nn.variants`
            (``np``, ``after``: stored as ``peephole=False``, ``reset="after"``, variant
            ``""``). ``G`` below is then the gates the variant keeps.
        init: ``"paper"`` or ``"torch"``, the scheme of :func:`rnnbench.nn.init.init_unit`
            for the recurrent layer. The output layer follows the same choice: ``"paper"``
            draws ``weight_out`` from U(-0.1, 0.1) with ``bias_out`` zero (the authors' uniform
            ±0.1); ``"torch"`` draws both from U(-1/√H, 1/√H), as ``nn.Linear`` does.
        seeds: one integer per member (default ``0 .. K-1``). Member ``k`` is initialised from
            ``torch.Generator().manual_seed(seeds[k])`` (the recurrent layer first, then the
            output layer), so its weights do not depend on ``K`` or on the other members.
        backend: passed to :func:`rnnbench.nn.functional.run_unit` (``"auto"``, ``"torch"``,
            ``"numba"``).

    Parameters (each with the leading ``K`` dimension; ``G`` = 4, 3, 1 for LSTM, GRU, tanh;
    ``P = head.n_outputs``):
        ``weight_ih_l0 (K, G*H, I)``, ``weight_hh_l0 (K, G*H, H)``, ``bias_ih_l0``,
        ``bias_hh_l0 (K, G*H)`` named, ordered and gate-ordered as ``torch.nn`` names them
        (LSTM i, f, g, o; GRU r, z, n); ``weight_ch_l0 (K, 3, H)`` (peephole LSTM: i, f, o;
        a variant: one row per peephole it keeps);
        ``weight_out (K, P, H)`` and ``bias_out (K, P)`` (the output layer).

    State: ``(h (K, B, H), c (K, B, H))`` for an LSTM, ``(h, None)`` otherwise.

    A plug-in unit (:mod:`rnnbench.units`) builds a :class:`rnnbench.units.model.UnitModel`,
    this class with the unit's parameters and runner; ``unit_source`` (a stored config's) must
    then be what ``--unit`` loaded here.

    Example::

        >>> model = SequenceModel("gru", 88, 88, 46, head="bernoulli", population=3)
        >>> x = torch.zeros(50, 8, 88); mask = torch.ones(50, 8)
        >>> params, state = model(x, mask)              # params (3, 50, 8, 88)
        >>> nll_sum, n_steps, _ = model.nll(x, x, mask)  # nll_sum (3,), n_steps 400
    """

    def __new__(cls, unit: str | None = None, *args, **kwargs):  # None: copy, unpickle
        if cls is SequenceModel and unit is not None and unit not in GATES:
            from rnnbench.units.model import UnitModel

            cls = UnitModel
        return super().__new__(cls)

    def __init__(
        self,
        unit: str,
        in_dim: int,
        out_dim: int,
        hidden: int,
        *,
        head,
        population: int = 1,
        peephole: bool = True,
        reset: str = "before",
        init: str = "paper",
        seeds: Sequence[int] | None = None,
        backend: str = "auto",
        variant: str = "",
        unit_source: str | None = None,
    ) -> None:
        super().__init__()
        _check_unit(unit)
        if init not in INITS:
            raise RnnbenchError(f"init must be 'paper' or 'torch', not {init!r}.")
        if reset not in ("before", "after"):
            raise RnnbenchError(f"reset must be 'before' or 'after', not {reset!r}.")
        if min(int(in_dim), int(out_dim), int(hidden), int(population)) < 1:
            raise RnnbenchError(
                "in_dim, out_dim, hidden and population must all be at least 1; "
                f"got {in_dim}, {out_dim}, {hidden}, {population}."
            )
        if variant == "np":
            peephole = False
        variant, peephole, reset = _variants.resolve(unit, variant, peephole, reset)
        seeds = list(range(population)) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != population:
            raise RnnbenchError(
                f"got {len(seeds)} seeds for a population of {population}; pass one per member."
            )
        self.unit = unit
        self.in_dim, self.out_dim, self.hidden = int(in_dim), int(out_dim), int(hidden)
        self.population = int(population)
        self.peephole = bool(peephole) and unit == "lstm"
        self.reset = reset
        self.variant = variant
        self.init = init
        self.seeds = seeds
        self.backend = backend
        self.head = _resolve_head(head, self.out_dim)

        n_out = self.head.n_outputs
        members = []
        for seed in seeds:
            gen = torch.Generator().manual_seed(seed)
            p = self._init_recurrent(gen)
            if init == "paper":
                p["weight_out"] = _uniform((n_out, self.hidden), PAPER_OUT_SCALE, gen)
                p["bias_out"] = torch.zeros(n_out)
            else:
                bound = 1.0 / math.sqrt(self.hidden)
                p["weight_out"] = _uniform((n_out, self.hidden), bound, gen)
                p["bias_out"] = _uniform((n_out,), bound, gen)
            members.append(p)
        for name in members[0]:
            stacked = torch.stack([m[name].to(torch.float32) for m in members])
            self.register_parameter(name, nn.Parameter(stacked))

    def _init_recurrent(self, gen: torch.Generator) -> dict[str, Tensor]:
        """One member's recurrent parameters (the output layer's are drawn after them)."""
        return init_unit(
            self.unit,
            self.in_dim,
            self.hidden,
            bias=True,
            peephole=self.peephole,
            scheme=self.init,
            generator=gen,
            variant=self.variant,
        )

    def extra_repr(self) -> str:
        form = ""
        if self.unit == "lstm":
            form = f", peephole={self.peephole}"
        elif self.unit == "gru":
            form = f", reset={self.reset!r}"
        if self.variant:
            form += f", variant={self.variant!r}"
        return (
            f"unit={self.unit!r}, in_dim={self.in_dim}, out_dim={self.out_dim}, "
            f"hidden={self.hidden}{form}, head={self.head!r}, population={self.population}"
        )

    # -- running

    def forward(
        self, x: Tensor, mask: Tensor | None = None, state: State | None = None
    ) -> tuple[Tensor, State]:
        """Head parameters for every step.

        Args:
            x: ``(T, B, I)`` shared by all members, or ``(K, T, B, I)``.
            mask: ``(T, B)``, 1 on real steps and 0 on padding at the end (None: all real);
                or ``(K, T, B)``, each member's own (its own minibatch, issue 22).
            state: the state a previous call returned (truncated BPTT), or None for zeros.

        Returns:
            ``head_params (K, T, B, P)`` (padded steps: the output layer's bias) and the final
            state ``(h, c)`` (``c`` None for tanh and GRU), taken at each row's last real step.
        """
        out, state = self._hidden(x, mask, state)
        k, t, b, h = out.shape
        flat = torch.baddbmm(
            self.bias_out.unsqueeze(1), out.reshape(k, t * b, h), self.weight_out.transpose(1, 2)
        )
        return flat.reshape(k, t, b, -1), state

    def _hidden(self, x: Tensor, mask: Tensor | None, state: State | None):
        """The hidden states ``out (K, T, B, H)`` and the final state, ``x`` checked."""
        if x.shape[-1] != self.in_dim:
            raise RnnbenchError(
                f"the model reads {self.in_dim} values per step but x has {x.shape[-1]}; "
                "build the model with the data set's in_dim."
            )
        out, h_n, c_n = self._recurrent(x, mask, state)
        return out, (h_n, c_n)

    def _recurrent(self, x: Tensor, mask: Tensor | None, state: State | None):
        """The recurrent layer: ``out (K, T, B, H)``, ``h_n``, ``c_n`` (None but the LSTM)."""
        h0, c0 = (None, None) if state is None else state
        return run_unit(
            self.unit,
            x,
            self.weight_ih_l0,
            self.weight_hh_l0,
            self.bias_ih_l0,
            self.bias_hh_l0,
            w_ch=self.weight_ch_l0 if self.peephole else None,
            reset=self.reset,
            mask=mask,
            h0=h0,
            c0=c0,
            backend=self.backend,
            variant=self.variant,
        )

    def nll(
        self, x: Tensor, y: Tensor, mask: Tensor | None = None, state: State | None = None
    ) -> tuple[Tensor, int, State]:
        """Summed negative log-likelihood of the targets over the real steps, per member.

        Args:
            x: inputs ``(T, B, I)``; ``y``: targets ``(T, B, D)`` (the frames to predict);
                or ``(K, T, B, .)``, each member's own minibatch.
            mask: ``(T, B)`` (None: every step is real), or ``(K, T, B)`` per member. Padded
                steps contribute nothing, even when their targets hold garbage (NaN included).
            state: as in :meth:`forward`.

        Returns:
            ``nll_sum (K,)`` in nats, ``n_steps`` (the number of real steps: one int shared by
            all members, or a ``(K,)`` tensor of ``nll_sum``'s dtype, each member's, for a
            ``(K, T, B)`` mask; divide to get the paper's NLL per time step) and the final state.
        """
        if head_loss.usable(self, y):  # the output layer and the loss in one autograd node
            out, state = self._hidden(x, mask, state)
            nll_sum = head_loss.member_nll(self.head, out, self.weight_out, self.bias_out, y, mask)
            t, b = out.shape[1:3]
        else:
            per, state = self.step_nll(x, y, mask, state)
            nll_sum, (t, b) = per.sum((1, 2)), per.shape[1:3]
        if mask is None:
            n_steps = t * b
        elif mask.dim() == 3:  # each member's own batches: each member's own count
            n_steps = (mask > 0).sum((1, 2)).to(nll_sum.dtype)
        else:
            n_steps = int((mask > 0).sum())
        return nll_sum, n_steps, state

    def step_nll(
        self, x: Tensor, y: Tensor, mask: Tensor | None = None, state: State | None = None
    ) -> tuple[Tensor, State]:
        """Negative log-likelihood of every step, per member: ``(K, T, B)`` (0 on padding)
        and the final state; :meth:`nll` sums it. Per-sequence averages start here."""
        if not torch.is_grad_enabled() and head_loss.usable(self, y):  # evaluation
            out, state = self._hidden(x, mask, state)
            per = head_loss.step_nll(self.head, out, self.weight_out, self.bias_out, y, mask)
            return per, state
        params, state = self.forward(x, mask, state)
        if mask is None:
            return self.head.nll(params, y), state
        real = mask > 0
        y = torch.where(real.unsqueeze(-1), y, y.new_zeros(()))
        per = self.head.nll(params, y)
        return torch.where(real, per, per.new_zeros(())), state

    @staticmethod
    def detach_state(state: State | None) -> State | None:
        """The state cut from the graph, to carry across truncated-BPTT windows."""
        if state is None:
            return None
        h, c = state
        return h.detach(), (None if c is None else c.detach())

    # -- parameters

    def weight_matrices(self, output: bool = True) -> list[nn.Parameter]:
        """The tensors that get weight noise: ``weight_ih_l0``, ``weight_hh_l0``, the peephole
        diagonals ``weight_ch_l0`` (when present) and, unless ``output=False`` (the authors'
        code: the recurrent layer only), the output layer's ``weight_out``. Biases are left
        out."""
        mats = [self.weight_ih_l0, self.weight_hh_l0]
        if self.peephole:
            mats.append(self.weight_ch_l0)
        if output:
            mats.append(self.weight_out)
        return mats

    def member_state(self, k: int) -> dict[str, Tensor]:
        """Member ``k``'s parameters without the K dimension (detached copies), by name."""
        self._check_member(k)
        return {name: p.detach()[k].clone() for name, p in self.named_parameters()}

    def load_member_state(self, k: int, state: dict[str, Tensor]) -> None:
        """Overwrite member ``k``'s parameters with ``state`` (as :meth:`member_state` gives)."""
        self._check_member(k)
        params = dict(self.named_parameters())
        if set(state) != set(params):
            missing = sorted(set(params) - set(state))
            extra = sorted(set(state) - set(params))
            raise RnnbenchError(
                f"member state does not fit this model (missing {missing}, unexpected {extra}); "
                "load a checkpoint saved from a model of the same unit and form."
            )
        for name, p in params.items():
            value = torch.as_tensor(state[name])
            if value.shape != p.shape[1:]:
                raise RnnbenchError(
                    f"{name} has shape {tuple(value.shape)} in the member state but "
                    f"{tuple(p.shape[1:])} in the model; build the model with the same sizes."
                )
        with torch.no_grad():
            for name, p in params.items():
                p[k].copy_(state[name])

    def _check_member(self, k: int) -> None:
        if not 0 <= int(k) < self.population:
            raise RnnbenchError(
                f"member {k} does not exist in a population of {self.population}; "
                f"use 0 .. {self.population - 1}."
            )

    def param_count(self, per_member: bool = True) -> int:
        """Parameters of one member (``per_member``) or of the whole population."""
        total = sum(p.numel() for p in self.parameters())
        return total // self.population if per_member else total

    # -- sampling

    @torch.no_grad()
    def sample(
        self,
        steps: int,
        *,
        prime: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Generate ``steps`` frames from every member, feeding each sample back in.

        The next input is the previous input with the sampled frame appended, cut to its last
        ``I`` values. For music (``I = D = 88``) that is the sampled frame itself; for speech
        (``I = 20``, ``D = 10``) the 10 new samples are appended to the waveform and its last 20
        samples are the next input. Concatenate the frames of a speech sample for the waveform:
        ``model.sample(n).reshape(K, -1)``.

        Args:
            steps: the number of frames to generate.
            prime: ``(T0, I)`` input frames to read first (the same layout as a data set's
                inputs); the first generated frame continues them. None: start from one
                all-zero input frame (silence).
            generator: the random stream of the head's draws, on the model's device (None:
                PyTorch's global one).

        Returns:
            ``(K, steps, D)``.
        """
        if int(steps) < 0:
            raise RnnbenchError(f"steps must be at least 0, got {steps}.")
        ref = self.weight_out
        if prime is None:
            prime = torch.zeros(1, self.in_dim)
        prime = torch.as_tensor(prime).to(dtype=ref.dtype, device=ref.device)
        if prime.dim() != 2 or prime.shape[0] < 1 or prime.shape[1] != self.in_dim:
            raise RnnbenchError(
                f"prime must have shape (T0, {self.in_dim}) with T0 >= 1, got "
                f"{tuple(prime.shape)}; pass input frames as the data set gives them."
            )
        params, state = self.forward(prime.unsqueeze(1), None, None)
        last = params[:, -1]  # (K, 1, P)
        inp = prime[-1].expand(self.population, 1, self.in_dim)  # (K, B=1, I)
        frames = []
        for s in range(int(steps)):
            if not bool(torch.isfinite(last).all()):  # no draw from inf or NaN parameters
                raise RnnbenchError(
                    f"the sample stopped being finite at step {s + 1} of {int(steps)}: reading "
                    "its own samples back in, the model's output layer gave inf or NaN; draw "
                    "fewer steps (--steps, --seconds) or at a lower --temperature."
                )
            y = self.head.sample(last, generator)  # (K, 1, D)
            frames.append(y[:, 0])
            if s + 1 == steps:
                break
            inp = torch.cat([inp, y], dim=-1)[..., -self.in_dim :]
            params, state = self.forward(inp.unsqueeze(1), None, state)  # x (K, 1, 1, I)
            last = params[:, 0]
        if not frames:
            return ref.new_zeros(self.population, 0, self.out_dim)
        return torch.stack(frames, dim=1)
