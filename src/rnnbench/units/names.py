"""The names of the built-in units, without importing torch (``RunConfig`` checks against them).

``FUSED``: the paper's units, with numba kernels (:func:`rnnbench.nn.functional.run_unit`) and
the variants of :mod:`rnnbench.nn.variants`. ``PLUGIN``: built-in units written against the
plug-in interface (:mod:`rnnbench.units.builtin`). A user's unit takes any other identifier.
"""

from __future__ import annotations

from rnnbench.errors import RnnbenchError

FUSED = ("tanh", "lstm", "gru")
PLUGIN = ("mingru", "minlstm", "mingru2", "minlstm2")
BUILTIN = FUSED + PLUGIN
#: ``RunConfig.unit_source`` prefixes: a file, an importable module, an installed entry point.
SOURCE_KINDS = ("file", "module", "entry")


def check_user_name(name, where: str) -> str:
    """A user unit's name: an identifier that is not a built-in unit's."""
    if not isinstance(name, str) or not name.isidentifier():
        raise RnnbenchError(
            f"{where} names its unit {name!r}; give the class a `name` that is a Python "
            "identifier (e.g. name = 'indrnn')."
        )
    if name.lower() in BUILTIN:
        raise RnnbenchError(
            f"{where} names its unit {name!r}, which is a built-in unit; rename it (e.g. "
            f"name = 'my_{name.lower()}')."
        )
    return name


def check_source(unit: str, source: str) -> None:
    """What ``RunConfig`` checks: built-ins carry no source, a user unit one of
    ``KIND:...@HASH``."""
    if unit in BUILTIN:
        if source:
            raise RnnbenchError(
                f"RunConfig unit_source={source!r} is invalid for the built-in unit {unit!r}; "
                "leave it empty."
            )
        return
    check_user_name(unit, "RunConfig")
    kind, _, rest = str(source).partition(":")
    if kind not in SOURCE_KINDS or "@" not in rest:
        raise RnnbenchError(
            f"RunConfig unit {unit!r} is not a built-in unit ({', '.join(BUILTIN)}); name its "
            "file with --unit path/to/cell.py:Class (unit_source records it)."
        )
