"""One registry of units: the fused built-ins, the plug-in built-ins, and user units.

User code is imported ONLY by :func:`load`, which a command line (``--unit SPEC``) or an API
call names; nothing that reads a store, an export, a results folder or a sweep file calls it.
A unit loaded here is known by its name for the rest of the process (:func:`get`), and its
``source`` (``KIND:WHERE:Class@HASH``, the first 16 hex characters of the SHA-256 of its file)
goes into every ``RunConfig`` that trains it, so a changed file is a different run.

Specs: ``path/to/cell.py:Class`` (a file), ``package.module:Class`` (importable), or the
name of an entry point in the group ``rnnbench.units`` (an installed package's units).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from rnnbench.errors import RnnbenchError
from rnnbench.units.names import BUILTIN, FUSED, PLUGIN, check_user_name

__all__ = [
    "GROUP",
    "Loaded",
    "builtin_unit",
    "check_config",
    "get",
    "is_plugin",
    "known",
    "load",
    "loaded",
    "names",
]

GROUP = "rnnbench.units"
_LOADED: dict[str, Loaded] = {}  # name -> the unit this process loaded


@dataclass(frozen=True)
class Loaded:
    name: str
    cls: type
    source: str  # KIND:WHERE:Class@HASH
    spec: str  # what workers load again (a file's absolute path)


def builtin_unit(name: str):
    """The instance of a plug-in built-in (``mingru``, ``minlstm`` and their two-layer stacks
    ``mingru2``, ``minlstm2``)."""
    from rnnbench.units import builtin

    classes = {
        "mingru": builtin.MinGRU,
        "minlstm": builtin.MinLSTM,
        "mingru2": builtin.MinGRU2,
        "minlstm2": builtin.MinLSTM2,
    }
    return classes[name]()


def names() -> list[str]:
    """Every unit this process can train: the built-ins, then the loaded user units."""
    return [*BUILTIN, *_LOADED]


def known(name: str) -> bool:
    return name in BUILTIN or name in _LOADED


def is_plugin(name: str) -> bool:
    """Whether a unit runs through the plug-in interface (not a fused kernel)."""
    return name not in FUSED


def get(name: str):
    """An instance of the plug-in unit ``name`` (built-in or loaded in this process); one
    sentence naming ``--unit`` when a store or config names a unit nobody loaded."""
    if name in PLUGIN:
        return builtin_unit(name)
    if name in _LOADED:
        return _LOADED[name].cls()
    if name in FUSED:
        raise RnnbenchError(f"unit {name!r} has a fused kernel, not the plug-in interface.")
    raise RnnbenchError(
        f"unknown unit {name!r}: not a built-in unit ({', '.join(BUILTIN)}) and no --unit "
        "option loaded it; name its file with --unit path/to/cell.py:Class (rnnbench never "
        "imports a unit because a store or results folder names it)."
    )


def loaded() -> list[str]:
    """The specs loaded in this process (the sweep engines load them again in workers)."""
    return [u.spec for u in _LOADED.values()]


def source_of(name: str) -> str:
    """``RunConfig.unit_source`` of a unit: ``""`` for a built-in."""
    return "" if name in BUILTIN else _LOADED[name].source if name in _LOADED else ""


def check_config(unit: str, source: str) -> None:
    """Refuse a config whose user unit is not the one loaded here (a changed file)."""
    if unit in BUILTIN:
        return
    get(unit)
    have = _LOADED[unit].source
    if have != source:
        raise RnnbenchError(
            f"unit {unit!r} was trained from {source or 'another source'} but --unit loaded "
            f"{have}: the cell changed, so these are different runs; train the changed cell "
            "as new runs (its key differs) or restore the file."
        )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _from_file(spec: str, path_text: str, cls_name: str):
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise RnnbenchError(f"--unit {spec}: no file {path}; give path/to/cell.py:Class.")
    digest = _digest(path)
    modname = f"rnnbench_unit_{digest}"
    module = sys.modules.get(modname)
    if module is None:
        mspec = importlib.util.spec_from_file_location(modname, path)
        if mspec is None or mspec.loader is None:
            raise RnnbenchError(f"--unit {spec}: {path} is not a Python file; give a .py file.")
        module = importlib.util.module_from_spec(mspec)
        sys.modules[modname] = module
        try:
            mspec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's file: one sentence
            del sys.modules[modname]
            raise RnnbenchError(
                f"--unit {spec}: importing {path} failed ({type(exc).__name__}: {exc}); fix the "
                "file."
            ) from None
    # the file's name and content, not its folder: the same cell elsewhere is the same run
    return module, f"file:{path.name}:{cls_name}@{digest}"


def _from_module(spec: str, modname: str, cls_name: str, kind: str = "module"):
    try:
        module = importlib.import_module(modname)
    except Exception as exc:  # noqa: BLE001
        raise RnnbenchError(
            f"--unit {spec}: cannot import {modname} ({type(exc).__name__}: {exc}); install it "
            "or give path/to/cell.py:Class."
        ) from None
    file = inspect.getsourcefile(module)
    digest = _digest(Path(file)) if file else "0" * 16
    return module, f"{kind}:{modname}:{cls_name}@{digest}"


def _entry_point(spec: str):
    found = [ep for ep in importlib.metadata.entry_points(group=GROUP) if ep.name == spec]
    if not found:
        return None
    modname, _, attr = found[0].value.partition(":")
    return _from_module(spec, modname.strip(), attr.strip(), "entry")


def load(spec: str) -> Loaded:
    """Load the unit a command line or an API call names (see the module docstring)."""
    spec = str(spec).strip()
    if spec in BUILTIN:
        raise RnnbenchError(f"--unit {spec}: a built-in unit needs no loading; drop --unit.")
    where, sep, cls_name = spec.rpartition(":")
    again = spec  # what a worker loads (a file: its absolute path, whatever its cwd)
    if sep and (where.endswith(".py") or "/" in where or "\\" in where):
        module, source = _from_file(spec, where, cls_name)
        again = f"{Path(where).expanduser().resolve()}:{cls_name}"
    elif sep and where:
        module, source = _from_module(spec, where, cls_name)
    else:
        got = _entry_point(spec)
        if got is None:
            raise RnnbenchError(
                f"--unit {spec}: not a built-in unit ({', '.join(BUILTIN)}); give "
                "path/to/cell.py:Class, package.module:Class or the name of an installed "
                f"{GROUP} entry point."
            )
        module, source = got
        cls_name = source.split(":")[2].split("@")[0]
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type):
        raise RnnbenchError(f"--unit {spec}: {where or spec} defines no class {cls_name!r}.")
    name = check_user_name(getattr(cls, "name", None), f"--unit {spec}")
    _validate(cls, spec)
    have = _LOADED.get(name)
    if have is not None and have.source != source:
        raise RnnbenchError(
            f"--unit {spec}: the unit name {name!r} is already taken by {have.spec}; give one "
            "of them another name."
        )
    _LOADED[name] = Loaded(name, cls, source, again)
    return _LOADED[name]


def _validate(cls: type, spec: str) -> None:
    """The class-level checks (the first run checks the rest: :func:`runner.check`)."""
    unit = cls()
    name = unit.name
    state = getattr(unit, "state", None)
    if state not in (("h",), ("h", "c")):
        raise RnnbenchError(
            f"--unit {spec}: unit {name!r} has state {state!r}; use ('h',) or ('h', 'c')."
        )
    if not callable(getattr(unit, "step", None)) and not callable(getattr(unit, "sequence", None)):
        raise RnnbenchError(f"--unit {spec}: unit {name!r} defines neither step nor sequence.")
    check_shapes(unit, 3, 2)
    if getattr(unit, "budget_of", "gru") not in FUSED:
        raise RnnbenchError(
            f"--unit {spec}: unit {name!r} has budget_of={unit.budget_of!r}; use one of "
            f"{', '.join(FUSED)}."
        )


def count(name: str, in_dim: int, hidden: int) -> int:
    """The parameters a plug-in unit declares for one model (every tensor of ``shapes``)."""
    return sum(math.prod(s) for s in check_shapes(get(name), in_dim, hidden).values())


def check_shapes(unit, in_dim: int, hidden: int) -> dict[str, tuple[int, ...]]:
    """``unit.shapes(I, H)``, checked: identifiers to tuples of positive ints."""
    name = getattr(unit, "name", type(unit).__name__)
    try:
        shapes = unit.shapes(in_dim, hidden)
    except NotImplementedError:
        shapes = None
    if not isinstance(shapes, dict) or not shapes:
        raise RnnbenchError(
            f"unit {name!r}: shapes(I, H) must return its parameters as {{name: shape}}, got "
            f"{type(shapes).__name__}; declare every parameter there."
        )
    out = {}
    for key, shape in shapes.items():
        ok = isinstance(key, str) and key.isidentifier() and key not in ("weight_out", "bias_out")
        dims = tuple(shape) if isinstance(shape, (tuple, list)) else None
        if not ok or not dims or not all(isinstance(d, int) and d >= 1 for d in dims):
            raise RnnbenchError(
                f"unit {name!r}: shapes() gives {key!r} the shape {shape!r}; use an identifier "
                "(not weight_out/bias_out) and a tuple of positive ints in I and H."
            )
        out[key] = dims
    return out
