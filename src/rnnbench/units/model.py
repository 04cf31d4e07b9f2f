"""What :class:`rnnbench.models.SequenceModel` does for a plug-in unit (kept here, so the
model's module stays about the fused units): :class:`UnitModel` draws one member's parameters,
checks the unit once, runs the population and names the tensors that get weight noise.
``SequenceModel("mingru", ...)`` builds one (``SequenceModel.__new__``)."""

from __future__ import annotations

import torch

from rnnbench.errors import RnnbenchError
from rnnbench.models import SequenceModel
from rnnbench.units.registry import check_config, check_shapes, get
from rnnbench.units.runner import UnitError, check, run


def plugin_init(unit, in_dim: int, hidden: int, generator: torch.Generator, variant: str):
    """One member's parameters from ``unit.init``, checked against ``unit.shapes``."""
    name = unit.name
    if variant:
        raise RnnbenchError(
            f"unit {name!r} has no variants (got variant={variant!r}); variants are forms of "
            "the LSTM and GRU."
        )
    shapes = check_shapes(unit, in_dim, hidden)
    params = unit.init(in_dim, hidden, generator)
    if not isinstance(params, dict) or set(params) != set(shapes):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise UnitError(
            f"unit {name!r}'s init() returned {got} but shapes() declares {sorted(shapes)}; "
            "return one tensor per declared parameter."
        )
    out = {}
    for key, shape in shapes.items():
        value = torch.as_tensor(params[key])
        if tuple(value.shape) != shape:
            raise UnitError(
                f"unit {name!r}'s init() gave {key!r} the shape {tuple(value.shape)} but "
                f"shapes() declares {shape}; make them agree."
            )
        out[key] = value.to(torch.float32)
    return out


def unit_tensors(model) -> dict[str, torch.Tensor]:
    return {n: getattr(model, n) for n in model.unit_params}


def plugin_check(model, member: dict) -> None:
    model.unit_params = tuple(n for n in member if n not in ("weight_out", "bias_out"))
    model._unit_seen = False  # the first forward checks for non-finite outputs
    check(model.plugin, unit_tensors(model), model.in_dim, model.hidden)


def plugin_forward(model, x, mask, state):
    st = None
    if state is not None:
        h, c = state
        st = (h,) if len(model.plugin.state) == 1 else (h, c)
    out, final = run(model.plugin, unit_tensors(model), x, model.hidden, mask, st)
    if not model._unit_seen:
        model._unit_seen = True
        if not torch.isfinite(out.detach()).all():
            raise UnitError(
                f"unit {model.plugin.name!r} returned NaN or inf on the first batch, before "
                "any training step; check its equations and init() on inputs like the data's."
            )
    return out, final[0], (final[1] if len(final) > 1 else None)


def plugin_trace(model, x, mask) -> list[dict]:
    """Per step, the unit's ``gates(p, x_t, state)`` (``{name: (B, H)}`` in [0, 1]) of every
    member, stacked ``(K, B, H)``, as :func:`rnnbench.nn.functional.run_unit`'s ``trace``
    holds them; ``[]`` for a unit without ``gates``. Runs the step (no gradients)."""
    unit = model.plugin
    if not callable(getattr(unit, "gates", None)):
        return []
    trace: list[dict] = []
    members = []
    for k in range(model.population):
        p = {n: t.detach()[k] for n, t in unit_tensors(model).items()}
        state = tuple(x.new_zeros(x.shape[1], model.hidden) for _ in unit.state)
        steps = []
        for t in range(x.shape[0]):
            steps.append(unit.gates(p, x[t], state))
            new = tuple(unit.step(p, x[t], state))
            m = mask[t].unsqueeze(-1) > 0 if mask is not None else None
            state = (
                new
                if m is None
                else tuple(torch.where(m, a, b) for a, b in zip(new, state, strict=True))
            )
        members.append(steps)
    for t in range(x.shape[0]):
        trace.append({g: torch.stack([m[t][g] for m in members]) for g in members[0][t]})
    return trace


def noise_tensors(model) -> list:
    names = getattr(model.plugin, "noise", None)
    if names is None:
        return [getattr(model, n) for n in model.unit_params if getattr(model, n).dim() >= 3]
    missing = [n for n in names if n not in model.unit_params]
    if missing:
        raise UnitError(
            f"unit {model.plugin.name!r} names {missing} in noise but shapes() does not "
            "declare them; name declared parameters."
        )
    return [getattr(model, n) for n in names]


class UnitModel(SequenceModel):
    """:class:`rnnbench.models.SequenceModel` of a plug-in unit: the unit's parameters (by its
    names, leading K), :func:`rnnbench.units.runner.run` for the recurrent layer, the unit's
    ``noise`` tensors for weight noise. Everything else (the head, ``nll``, ``member_state``,
    ``sample``) is the model's."""

    def __init__(self, unit: str, *args, unit_source: str | None = None, **kwargs) -> None:
        if unit_source is not None:  # a stored config's unit: loaded here, the same file
            check_config(unit, unit_source)
        super().__init__(unit, *args, **kwargs)
        names = [n for n, _ in self.named_parameters() if n not in ("weight_out", "bias_out")]
        plugin_check(self, dict.fromkeys(names))

    def _init_recurrent(self, gen: torch.Generator) -> dict[str, torch.Tensor]:
        if "plugin" not in self.__dict__:
            self.plugin = get(self.unit)
        return plugin_init(self.plugin, self.in_dim, self.hidden, gen, self.variant)

    def _recurrent(self, x, mask, state):
        return plugin_forward(self, x, mask, state)

    def weight_matrices(self, output: bool = True) -> list:
        return noise_tensors(self) + ([self.weight_out] if output else [])
