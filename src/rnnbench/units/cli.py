"""``--unit`` on the command line: a built-in unit's name, or a SPEC that loads a user unit
(:func:`rnnbench.units.registry.load`: the one place a user's code is imported)."""

from __future__ import annotations

from rnnbench.units.names import BUILTIN

UNIT_HELP = (
    "tanh, lstm, gru, mingru, minlstm, mingru2, minlstm2, or your own unit (docs/units.md): "
    "path/to/cell.py:Class, package.module:Class or an installed rnnbench.units entry point"
)


def resolve_unit_arg(value: str) -> tuple[str, str]:
    """``(unit name, RunConfig.unit_source)`` of a ``--unit`` value."""
    if value in BUILTIN:
        return value, ""
    from rnnbench.units.registry import load

    loaded = load(value)
    return loaded.name, loaded.source
