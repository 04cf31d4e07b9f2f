"""A plug-in unit as a population of K models: ``torch.func.vmap`` over the one-model code.

Every parameter carries a leading K dimension (as every rnnbench model's); :func:`run`
maps the unit's ``step`` loop (or its ``sequence``) over it, with masking as
:func:`rnnbench.nn.functional.run_unit` does it (padded steps keep the state and output 0;
padding only at the end of a row). :func:`check` runs a unit once on member 0 before its
first use and turns the usual mistakes into one sentence each (:class:`UnitError`).
The cost of the vmap against a loop over the members: ``benchmarks/units_population.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnbench.errors import RnnbenchError

__all__ = ["UnitError", "check", "run", "uses_sequence"]


class UnitError(RnnbenchError):
    """A plug-in unit that does not keep the interface (one sentence, no traceback)."""


def uses_sequence(unit) -> bool:
    """Whether this call runs the unit's ``sequence`` (gradients on and it has one)."""
    has_step = callable(getattr(unit, "step", None))
    has_seq = callable(getattr(unit, "sequence", None))
    return has_seq and (torch.is_grad_enabled() or not has_step)


def _one(unit, p: dict, x: Tensor, state: tuple, mask: Tensor | None, seq: bool):
    """One model, or K for a ``batched`` unit (leading dimensions ``...``): ``x (..., T, B, I)``,
    ``mask (..., T, B)`` or None, ``state`` tuple of ``(..., B, H)`` -> ``out (..., T, B, H)``
    and the final state."""
    if seq:
        states = tuple(unit.sequence(p, x, state))
        if mask is None:
            return states[0], tuple(s.select(-3, -1) for s in states)
        keep = mask.unsqueeze(-1)
        lengths = (mask > 0).sum(-2)  # (..., B)
        shape = states[0].shape
        idx = (
            (lengths - 1)
            .clamp(min=0)
            .unsqueeze(-2)
            .unsqueeze(-1)
            .expand(*shape[:-3], 1, *shape[-2:])
        )
        final = tuple(
            torch.where(lengths.unsqueeze(-1) > 0, torch.gather(s, -3, idx).squeeze(-3), s0)
            for s, s0 in zip(states, state, strict=True)
        )
        return states[0] * keep, final
    outs = []
    for t in range(x.shape[-3]):
        new = tuple(unit.step(p, x.select(-3, t), state))
        if mask is not None:
            m = mask.select(-2, t).unsqueeze(-1) > 0
            new = tuple(torch.where(m, n, o) for n, o in zip(new, state, strict=True))
        state = new
        outs.append(state[0] if mask is None else state[0] * mask.select(-2, t).unsqueeze(-1))
    return torch.stack(outs, dim=-3), state


def run(unit, params: dict[str, Tensor], x: Tensor, hidden: int, mask=None, state=None):
    """Run K members: ``params {name: (K, ...)}``, ``x (T, B, I)`` shared or ``(K, T, B, I)``,
    ``mask (T, B)`` shared, ``(K, T, B)`` (each member's own) or None, ``state`` a tuple of
    ``(K, B, H)`` (None: zeros).

    Returns ``out (K, T, B, H)`` and the final state tuple of ``(K, B, H)``."""
    first = next(iter(params.values()))
    k = first.shape[0]
    b = x.shape[-2]
    if state is None:
        zero = x.new_zeros(k, b, hidden)
        state = tuple(zero for _ in unit.state)
    seq = uses_sequence(unit)
    own = mask is not None and mask.dim() == 3  # each member's own mask (issue 22)
    if getattr(unit, "batched", False):  # the unit's code takes the leading K itself
        xs = x if x.dim() == 4 else x.expand(k, *x.shape)
        ms = mask if mask is None or own else mask.expand(k, *mask.shape)
        return _one(unit, params, xs, tuple(state), ms, seq)

    def member(p, xs, s, m):
        return _one(unit, p, xs, s, m, seq)

    x_dim = 0 if x.dim() == 4 else None
    in_dims = (0, x_dim, 0, 0 if own else None)
    return torch.func.vmap(member, in_dims=in_dims)(params, x, tuple(state), mask)


def check(unit, params: dict[str, Tensor], in_dim: int, hidden: int) -> None:
    """Run member 0 on a small batch once, on ``step`` and ``sequence`` (whichever exist),
    and raise one sentence for a state of the wrong kind or shape, a parameter read but not
    declared, an error inside the unit, or a non-finite value."""
    name = getattr(unit, "name", type(unit).__name__)
    p = {n: t.detach()[0] for n, t in params.items()}
    ref = next(iter(p.values()))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, in_dim, generator=gen, dtype=torch.float64).to(ref)
    s0 = tuple(ref.new_zeros(2, hidden) for _ in unit.state)
    fns = [f for f in ("step", "sequence") if callable(getattr(unit, f, None))]
    if not fns:
        raise UnitError(f"unit {name!r} has neither step nor sequence; define one of them.")
    for fn in fns:
        try:
            with torch.no_grad():
                out = getattr(unit, fn)(p, x[0] if fn == "step" else x, s0)
        except KeyError as exc:
            raise UnitError(
                f"unit {name!r}'s {fn} reads parameter {exc.args[0]!r}, which its shapes() "
                f"does not declare; add it to shapes() (declared: {', '.join(p)})."
            ) from None
        except Exception as exc:  # noqa: BLE001 - the user's code: one sentence back
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UnitError(
                f"unit {name!r}'s {fn} failed on a batch of 2 rows ({type(exc).__name__}: "
                f"{first}); fix the unit's {fn}."
            ) from None
        want = (2, hidden) if fn == "step" else (3, 2, hidden)
        if not isinstance(out, (tuple, list)) or len(out) != len(unit.state):
            raise UnitError(
                f"unit {name!r}'s {fn} returned {type(out).__name__}, not a tuple of "
                f"{len(unit.state)} tensor(s) {unit.state}; return the new state as a tuple."
            )
        for label, t in zip(unit.state, out, strict=True):
            if not isinstance(t, Tensor) or tuple(t.shape) != want:
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise UnitError(
                    f"unit {name!r}'s {fn} returned state {label!r} of shape {shape}, but "
                    f"rnnbench expects {want} ({'B, H' if fn == 'step' else 'T, B, H'}); "
                    "return one (B, H) tensor per state name per step."
                )
            if t.device.type != "meta" and not torch.isfinite(t).all():
                raise UnitError(
                    f"unit {name!r}'s {fn} returned a non-finite {label!r} (NaN or inf) on the "
                    "first batch, before any training; check its equations and init()."
                )
