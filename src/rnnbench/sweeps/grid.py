"""Grids of runs: learning-rate candidates, populations, and user sweeps from TOML files.

A *grid* is a list of :class:`Population`. A population is a list of
:class:`~rnnbench.train.config.RunConfig` that share everything but learning rate and seed
(one ``group_key``), trained together by :func:`rnnbench.train.population.train_population`.

Sweep files (``rnnbench sweep CONFIG.toml``; example in ``examples/sweep.toml``)::

    name = "gates"                      # label stored with every run (default: the file name)
    datasets = ["jsb", "nottingham"]    # any name of rnnbench.data.registry
    units = ["tanh", "lstm", "gru"]
    forms = ["paper", "cudnn"]          # paper, cudnn, peephole, no-peephole,
                                        # reset-before, reset-after (default ["paper"]),
                                        # or variant names: nig, cifg, mgu, ...
    budgets = ["paper", 50000]          # "paper" (Table 1 sizes) or parameter counts
    # hidden = [36, 64]                 # or explicit hidden sizes instead of budgets
    seeds = 3                           # a count (seeds 0..N-1) or a list [0, 5, 7]

    [lr]
    candidates = 10                     # log-uniform draws, natural log in [low, high]
    low = -12
    high = -6
    seed = 1234                         # the generator's seed (default: 0)
    # values = [1e-3, 3e-4]             # or explicit rates instead of draws

    [train]                             # any RunConfig field but the ones above
    max_epochs = 200
    batch_size = 16
    # protocol = "authors"              # the authors' recipe (docs/training.md); the keys
                                        # beside it override its values

    [search]                            # optional: successive halving (rnnbench.train.halving)
    strategy = "halving"                # or "full" (the default: the paper's search)
    eta = 3                             # keep ceil(n / eta) rates at each rung
    min_epochs = 27                     # the first rung; then 81, 243, ...

Forms: ``paper`` is the peephole LSTM and the reset-before GRU, ``cudnn`` the LSTM without
peepholes and the reset-after GRU (as ``torch.nn``). A variant name of
:mod:`rnnbench.nn.variants` is a form of its unit (``np`` is ``no-peephole``, ``after`` is
``reset-after``; the others are relative to the paper's form, and ``budgets = ["paper"]``
gives a variant that removes gates the size matching the paper's parameter count). Each
unit takes the forms that apply to it; tanh has one form. Every (data set, unit, form, size)
is one population holding all its learning rates × seeds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnnbench.data.names import task_of
from rnnbench.errors import RnnbenchError
from rnnbench.nn.variants import VARIANTS
from rnnbench.train.config import UNITS, RunConfig
from rnnbench.train.presets import with_preset

# The paper's range: log lr ~ U(-12, -6), natural log.
LOG_LR_LOW = -12.0
LOG_LR_HIGH = -6.0
# Fixed part of the seed of reproduce's learning-rate draws (plus a stable hash of set/unit).
LR_SEED = 20141211

FORMS = {
    "paper": {"lstm": {"peephole": True}, "gru": {"reset": "before"}},
    "cudnn": {"lstm": {"peephole": False}, "gru": {"reset": "after"}},
    "peephole": {"lstm": {"peephole": True}},
    "no-peephole": {"lstm": {"peephole": False}},
    "reset-before": {"gru": {"reset": "before"}},
    "reset-after": {"gru": {"reset": "after"}},
    # the variants (issue 13), each a form of its unit; np and after are the forms above
    **{
        name: {unit: dict(v.alias) if v.alias else {"variant": name}}
        for (unit, name), v in VARIANTS.items()
    },
}
SWEEP_KEYS = {
    "name",
    "datasets",
    "units",
    "forms",
    "budgets",
    "hidden",
    "seeds",
    "lr",
    "train",
    "search",
}
SEARCH_KEYS = {"strategy": "search", "eta": "search_eta", "min_epochs": "search_min_epochs"}
LR_KEYS = {"candidates", "low", "high", "seed", "values"}
# RunConfig fields a sweep sets through its own keys, not through [train].
_GRID_FIELDS = {"dataset", "unit", "peephole", "reset", "variant", "hidden", "lr", "seed"}
_GRID_FIELDS.add("unit_source")  # a user unit's: only the command's --unit sets it (issue 24)


@dataclass
class Population:
    """Members trained together; ``labels`` go to the store (sweep, stage, quick).

    ``whole`` is set on the part of a population left to train when a sweep resumes (see
    :func:`rnnbench.sweeps.common.plan`): the population as planned, all of whose members a
    chained stage must see (reproduce picks the learning rate among all the candidates).
    """

    configs: list[RunConfig]
    labels: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    whole: Population | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.configs:
            raise ValueError("a population needs at least one member")
        groups = {c.group_key() for c in self.configs}
        if len(groups) != 1:
            raise ValueError("population members must differ only in lr, seed and data_seed")
        if len({c.key() for c in self.configs}) != len(self.configs):
            raise ValueError("population members must be distinct")
        if not self.name:
            c = self.configs[0]
            self.name = f"{c.dataset}/{c.unit}"


def stable_seed(*parts: str, base: int = LR_SEED) -> int:
    """``base`` plus a hash of ``parts`` that is the same on every machine and Python run."""
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return base + int(digest[:8], 16)


def lr_candidates(
    count: int, *, seed: int, low: float = LOG_LR_LOW, high: float = LOG_LR_HIGH
) -> list[float]:
    """``count`` learning rates with log lr ~ U(low, high) (natural log), from ``seed``.

    The same ``seed`` always gives the same rates; they are returned in draw order.
    """
    if count < 1:
        raise RnnbenchError(f"The number of learning-rate candidates is {count}: use 1 or more.")
    if not low < high:
        raise RnnbenchError(
            f"The log learning-rate range [{low}, {high}] is empty: use low < high."
        )
    rng = np.random.default_rng(seed)
    return [float(math.exp(x)) for x in rng.uniform(low, high, size=count)]


def group_populations(configs: list[RunConfig], labels: dict | None = None) -> list[Population]:
    """Split configs into populations by ``group_key``, keeping first-seen order."""
    groups: dict[str, list[RunConfig]] = {}
    for c in configs:
        groups.setdefault(c.group_key(), []).append(c)
    return [Population(list(members), dict(labels or {})) for members in groups.values()]


# -- sweep files --------------------------------------------------------------------------------


def _fail(where: str, problem: str, fix: str) -> RnnbenchError:
    return RnnbenchError(f"In {where}: {problem}; {fix}.")


def _list_of(spec: dict, key: str, where: str, kind: type | tuple, default=None) -> list:
    value = spec.get(key, default)
    if value is None:
        raise _fail(where, f"'{key}' is missing", f"add {key} = [...]")
    if not isinstance(value, list) or not value:
        raise _fail(where, f"'{key}' must be a non-empty list", f"write {key} = [...]")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, kind):
            raise _fail(
                where, f"'{key}' holds {item!r}", "check the example in examples/sweep.toml"
            )
    return value


def _unknown(keys, known: set[str], where: str, section: str) -> None:
    extra = sorted(set(keys) - known)
    if extra:
        raise _fail(
            where,
            f"unknown key(s) {', '.join(extra)} in {section}",
            f"use only {', '.join(sorted(known))}",
        )


def _hidden_for(dataset: str, unit: str, budget, form: dict) -> int | None:
    """None for the paper's size (RunConfig's default), else the size matching ``budget``."""
    if budget == "paper":
        return None
    from rnnbench import models

    peephole = bool(form.get("peephole", True))
    variant = form.get("variant", "")
    return int(
        models.match_hidden(task_of(dataset), unit, int(budget), peephole=peephole, variant=variant)
    )


def _learning_rates(spec: dict, where: str) -> list[float]:
    lr = spec.get("lr", {"candidates": 10})
    if not isinstance(lr, dict):
        raise _fail(where, "'lr' must be a table", "write [lr] with candidates or values")
    _unknown(lr, LR_KEYS, where, "[lr]")
    if "values" in lr:
        if set(lr) - {"values"}:
            raise _fail(where, "[lr] mixes values with draws", "give either values or candidates")
        values = _list_of(lr, "values", where, (int, float))
        if any(not (math.isfinite(v) and v > 0) for v in values):
            raise _fail(where, "[lr] values must be positive numbers", "fix the rates")
        return [float(v) for v in values]
    count, low, high, seed = (
        lr.get(k, d)
        for k, d in (("candidates", 10), ("low", LOG_LR_LOW), ("high", LOG_LR_HIGH), ("seed", 0))
    )
    for name, value, kind in (
        ("candidates", count, int),
        ("seed", seed, int),
        ("low", low, (int, float)),
        ("high", high, (int, float)),
    ):
        if isinstance(value, bool) or not isinstance(value, kind):
            raise _fail(
                where,
                f"[lr] {name} = {value!r} has the wrong type",
                "use a whole number for candidates and seed, numbers for low and high",
            )
    if low > 0 or high > 0:
        raise _fail(
            where,
            "[lr] low and high are natural logs of the rate, so at most 0",
            "write e.g. low = -12, high = -6",
        )
    try:
        return lr_candidates(count, seed=seed, low=float(low), high=float(high))
    except RnnbenchError as exc:
        raise _fail(where, str(exc).rstrip("."), "fix the [lr] table") from None


def _seeds(spec: dict, where: str) -> list[int]:
    seeds = spec.get("seeds", 1)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise _fail(where, f"seeds = {seeds}", "use a count of 1 or more, or a list")
        return list(range(seeds))
    seeds = _list_of(spec, "seeds", where, int)
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise _fail(where, "seeds must be distinct and >= 0", "fix the list")
    return seeds


def _search(spec: dict, where: str) -> dict:
    """The ``[search]`` table as RunConfig fields (``strategy`` -> ``search``, ...)."""
    search = spec.get("search", {})
    if not isinstance(search, dict):
        raise _fail(where, "'search' must be a table", 'write [search] with strategy = "halving"')
    _unknown(search, set(SEARCH_KEYS), where, "[search]")
    return {SEARCH_KEYS[k]: v for k, v in search.items()}


def parse_sweep(spec: dict, where: str = "the sweep file") -> tuple[str, list[Population]]:
    """Validate a sweep spec (a parsed TOML dict) and build its populations."""
    _unknown(spec, SWEEP_KEYS, where, "the top level")
    name = spec.get("name", "sweep")
    if not isinstance(name, str) or not name:
        raise _fail(where, f"name = {name!r}", "use a non-empty string")
    datasets = _list_of(spec, "datasets", where, str)
    from rnnbench.data.registry import PATTERNS, list_datasets

    known = set(list_datasets())
    prefixes = tuple(p.partition(":")[0] + ":" for p in PATTERNS)
    for d in datasets:
        if d.split("?")[0] not in known and not d.startswith(prefixes):
            choices = ", ".join([*sorted(known), *PATTERNS])
            raise _fail(where, f"unknown data set {d!r}", f"use one of {choices}")
    units = _list_of(spec, "units", where, str)
    from rnnbench.units import registry

    for u in units:  # a user unit only when the command line loaded it: a file names no code
        if u not in UNITS and not registry.known(u):
            raise _fail(
                where,
                f"unknown unit {u!r}",
                f"use {', '.join(registry.names())}, or load yours with --unit FILE.py:Class",
            )
    forms = _list_of(spec, "forms", where, str, default=["paper"])
    for f in forms:
        if f not in FORMS:
            raise _fail(where, f"unknown form {f!r}", f"use {', '.join(FORMS)}")
    if "budgets" in spec and "hidden" in spec:
        raise _fail(where, "both budgets and hidden are given", "keep one of them")
    if "hidden" in spec:
        sizes = [("hidden", h) for h in _list_of(spec, "hidden", where, int)]
        if any(h < 1 for _, h in sizes):
            raise _fail(where, "hidden sizes must be positive", "fix the list")
    else:
        budgets = _list_of(spec, "budgets", where, (str, int), default=["paper"])
        for b in budgets:
            if (isinstance(b, str) and b != "paper") or (isinstance(b, int) and b < 1):
                raise _fail(where, f"budget {b!r}", 'use "paper" or a positive parameter count')
        sizes = [("budget", b) for b in budgets]
    lrs = _learning_rates(spec, where)
    seeds = _seeds(spec, where)
    train = spec.get("train", {})
    if not isinstance(train, dict):
        raise _fail(where, "'train' must be a table", "write [train] with RunConfig fields")
    fields = {f.name for f in dataclasses.fields(RunConfig)} - _GRID_FIELDS
    _unknown(train, fields, where, "[train]")
    # protocol = "authors": the preset, under the table's own values; [search]: halving
    train = with_preset({**train, **_search(spec, where)})

    populations: list[Population] = []
    seen: set[str] = set()
    for dataset in datasets:
        for unit in units:
            unit_forms = []
            for f in forms:
                plain = unit not in ("lstm", "gru")  # tanh and plug-in units have one form
                form = FORMS[f].get(unit, {}) if not plain else {}
                if (plain or unit in FORMS[f]) and form not in unit_forms:
                    unit_forms.append(form)
            if not unit_forms:
                raise _fail(
                    where,
                    f"none of the forms {forms} applies to {unit}",
                    "add paper or cudnn, or a form of that unit",
                )
            for form in unit_forms:
                for kind, size in sizes:
                    hidden = size if kind == "hidden" else _hidden_for(dataset, unit, size, form)
                    try:
                        configs = [
                            RunConfig(
                                dataset=dataset,
                                unit=unit,
                                unit_source=registry.source_of(unit),
                                hidden=hidden,
                                lr=lr,
                                seed=seed,
                                **form,
                                **train,
                            )
                            for lr in lrs
                            for seed in seeds
                        ]
                    except (RnnbenchError, TypeError, ValueError) as exc:
                        raise _fail(where, str(exc).rstrip("."), "fix the [train] table") from None
                    if configs[0].group_key() in seen:
                        continue
                    seen.add(configs[0].group_key())
                    label = f"{dataset}/{unit}" + (f"/{next(iter(form.values()))}" if form else "")
                    populations.append(
                        Population(configs, {"sweep": name}, f"{label}/h{hidden or 'paper'}")
                    )
    return name, populations


def load_sweep(path: str | Path) -> tuple[str, list[Population]]:
    """Read and validate a sweep TOML file; ``name`` defaults to the file's stem."""
    path = Path(path)
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RnnbenchError(f"The sweep file {path} does not exist: check the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RnnbenchError(f"Cannot read the sweep file {path} ({exc}): check it.") from None
    except tomllib.TOMLDecodeError as exc:
        raise RnnbenchError(f"The sweep file {path} is not valid TOML ({exc}): fix it.") from None
    spec.setdefault("name", path.stem)
    return parse_sweep(spec, where=str(path))
