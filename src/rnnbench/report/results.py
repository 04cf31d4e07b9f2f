"""From a store's runs to the cells of Table 2: grouping, learning-rate choice, statistics.

A *cell* is one (data set, unit, form): the runs that differ only by learning rate, seed and
batch order (``data_seed``). Selection and reporting use disjoint runs:

- The learning rate is chosen on the *search* runs (every stage but ``seeds``): the candidate
  with the best mean validation NLL over the search runs with a finite validation NLL (status
  ``done``; a run that diverged after its best epoch is ``done`` and counts from its best
  state; the test split never takes part), compared on the replicates (seed, batch order) that
  completed at every candidate when there are any, else on all of them.
- Table 2, its intervals and the paired tests use the *fresh* runs at that rate (stage
  ``seeds``: seeds that took no part in the choice) with a finite test NLL. A cell with no
  stage labels (a user's sweep) has no fresh runs: it reports the runs at the chosen rate and
  is flagged (:attr:`Cell.fresh` False; the report names it as a departure).

No rate is chosen while the search itself is unfinished (a search run queued, running or
failed): a rate still training might win, so a report built half-way shows such a cell as in
progress, not as a result (``reproduce`` likewise chains no seeds after a failed search run).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from rnnbench.data.names import task_of
from rnnbench.report import paper
from rnnbench.store import form_of
from rnnbench.train.config import DEFAULT_BATCH_SIZE, DEFAULT_NOISE_OUTPUT, RunConfig
from rnnbench.train.presets import AUTHORS, preset

# Config keys that do not define a cell: the search dimensions and bookkeeping.
_NOT_CELL_KEYS = {"lr", "seed", "data_seed", "dataset", "unit", "peephole", "reset", "variant"}
# Statuses of runs that a resumed sweep will still train: a cell with any is in progress.
UNFINISHED = ("queued", "running")
# The stage label of runs that took no part in choosing the learning rate.
FRESH_STAGE = "seeds"


def replicate(run: dict) -> tuple[int, int]:
    """A run's replicate within its cell: (seed, batch order). Runs that differ only in
    ``data_seed`` are different replicates, never one overwriting the other."""
    config = run["config"]
    return (int(config.get("seed", 0)), int(config.get("data_seed", 0)))


def replicate_label(rep: tuple[int, int]) -> str:
    """ "3" for seed 3 with its own batch order (or the shared order 0), "3/0" otherwise."""
    seed, order = rep
    return str(seed) if order in (0, seed) else f"{seed}/{order}"


def is_fresh(run: dict) -> bool:
    """Whether the run took no part in choosing its cell's learning rate."""
    return run.get("stage") == FRESH_STAGE


def _lr_key(lr: float) -> float:
    """Learning rates as stored, rounded so that 1e-3 and 0.0010000000001 are one candidate."""
    return float(f"{float(lr):.10g}")


def form_label(config: dict) -> str:
    """The unit's form as the report prints it: "peephole", "no peephole", "reset before"/"after",
    a variant's name ("nig", "mgu reset after"; the cell reads "LSTM (nig)"), "" for tanh (the
    store's :func:`rnnbench.store.form_of` with spaces)."""
    form = form_of(config)
    return "" if form == "plain" else form.replace("-", " ")


@dataclass
class Summary:
    """Mean, sample standard deviation (ddof 1) and 95% t-interval of one split over seeds."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else math.nan

    @property
    def ci95(self) -> tuple[float, float]:
        if self.n < 2:
            return (math.nan, math.nan)
        half = stats.t.ppf(0.975, self.n - 1) * self.std / math.sqrt(self.n)
        return (self.mean - half, self.mean + half)


@dataclass
class Cell:
    """All runs of one (data set, unit, form) and what the report concludes from them."""

    dataset: str
    unit: str
    form: str
    runs: list[dict] = field(default_factory=list)
    lr_scores: dict[float, tuple[float, int]] = field(default_factory=dict)  # lr -> (mean, n)
    compared_seeds: list[tuple[int, int]] = field(default_factory=list)  # replicates compared
    chosen_lr: float | None = None
    # why the cell did not train (every run diverged before learning), else "";
    # :mod:`rnnbench.report.untrained` sets it, and such a cell reports no runs (:attr:`chosen`)
    untrained: str = ""
    # the settings that set it apart from its unit's other cells of the data set ("hidden=64",
    # "authors' protocol"), "" for none: unit contrasts pair cells of equal settings only
    setting: str = ""

    @property
    def label(self) -> str:
        unit = paper.UNIT_LABELS.get(self.unit, self.unit)
        return f"{unit} ({self.form})" if self.form else unit

    @property
    def is_paper_form(self) -> bool:
        return self.form == paper.PAPER_FORMS.get(self.unit, "")

    def count(self, status: str, lr: float | None = None) -> int:
        return sum(
            1
            for r in self.runs
            if r["status"] == status and (lr is None or _lr_key(r["config"]["lr"]) == lr)
        )

    @property
    def unfinished(self) -> list[dict]:
        """Runs still queued or running (the cell is in progress while there are any)."""
        return [r for r in self.runs if r["status"] in UNFINISHED]

    @property
    def fresh(self) -> bool:
        """Whether Table 2 reports runs that took no part in the choice (stage ``seeds``).
        False for a cell with no such run (a user's sweep): its numbers include the runs that
        chose the rate, biased low, and the report says so."""
        return any(is_fresh(r) for r in self.runs)

    @property
    def chosen(self) -> list[dict]:
        """The runs Table 2 reports: at the chosen learning rate, with a finite test NLL, and
        fresh (:attr:`fresh`) when the cell has fresh runs; by seed. None for a cell that did
        not train (:attr:`untrained`): its best states are near-initial, not results."""
        if self.chosen_lr is None or self.untrained:
            return []
        fresh = self.fresh
        runs = [
            r
            for r in self.runs
            if r["status"] == "done"
            and _lr_key(r["config"]["lr"]) == self.chosen_lr
            and _is_number(r.get("test_nll"))
            and (is_fresh(r) or not fresh)
        ]
        return sorted(runs, key=replicate)

    def summary(self, split: str, average: str = "frame") -> Summary:
        """``split`` over the reported runs; ``average`` ``"frame"`` (the paper's metric) or
        ``"sequence"`` (per-sequence mean; runs stored without it are left out)."""
        name = f"{split}_nll" if average == "frame" else f"{split}_nll_seq"
        return Summary([float(r[name]) for r in self.chosen if _is_number(r.get(name))])

    @property
    def seeds(self) -> list[int]:
        return [replicate(r)[0] for r in self.chosen]

    @property
    def best_run(self) -> dict | None:
        """The best seed at the chosen learning rate (lowest validation NLL)."""
        runs = self.chosen
        return min(runs, key=lambda r: r["valid_nll"]) if runs else None


def _is_number(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def completed(run: dict) -> bool:
    """A run that may take part in the learning-rate choice: finished (``done``, which
    includes a run scored from its best state after it diverged) with a finite validation NLL.
    The test split never gates selection."""
    return run.get("status") == "done" and _is_number(run.get("valid_nll"))


def choose_lr(cell: Cell) -> None:
    """Fill ``cell.lr_scores``, ``compared_seeds`` and ``chosen_lr`` (see the module docstring)."""
    by_lr: dict[float, dict[tuple[int, int], float]] = defaultdict(dict)
    fresh = cell.fresh
    for r in cell.runs:
        if completed(r) and not (fresh and is_fresh(r)):
            by_lr[_lr_key(r["config"]["lr"])][replicate(r)] = float(r["valid_nll"])
    if not by_lr:
        return
    shared = set.intersection(*(set(seeds) for seeds in by_lr.values()))
    cell.compared_seeds = sorted(shared)
    for lr, seeds in by_lr.items():
        values = [seeds[s] for s in shared] if shared else list(seeds.values())
        cell.lr_scores[lr] = (float(np.mean(values)), len(values))
    if searching(cell):
        return
    cell.chosen_lr = min(cell.lr_scores, key=lambda lr: (cell.lr_scores[lr][0], lr))


def searching(cell: Cell) -> bool:
    """Whether the cell's learning-rate search is unfinished: a run outside the ``seeds``
    stage (reproduce's stage 2) is still queued or running, or failed (a rerun retries it)."""
    return any(r["status"] in (*UNFINISHED, "failed") and not is_fresh(r) for r in cell.runs)


def build_cells(runs: list[dict]) -> list[Cell]:
    """Group runs into cells and choose each cell's learning rate.

    Runs whose configs differ in anything but learning rate and seed (hidden size, batch size,
    epochs, ablations, ...) belong to different cells: the differing settings are added to the
    form label, so no mean ever mixes two setups.
    """
    base: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in runs:
        cfg = r["config"]
        base[(cfg["dataset"], cfg["unit"], form_label(cfg))].append(r)
    cells = []
    for (dataset, unit, form), group in base.items():
        keys = sorted({k for r in group for k in r["config"]} - _NOT_CELL_KEYS)
        varying = [k for k in keys if len({repr(r["config"].get(k)) for r in group}) > 1]
        split: dict[tuple, list[dict]] = defaultdict(list)
        for r in group:
            split[tuple(r["config"].get(k) for k in varying)].append(r)
        for values, members in sorted(split.items(), key=lambda kv: repr(kv[0])):
            extra = _settings_label(dict(zip(varying, values, strict=True)), members[0]["config"])
            label = ", ".join(x for x in (form, extra) if x)
            cell = Cell(dataset, unit, label, members, setting=extra)
            choose_lr(cell)
            cells.append(cell)
    return sorted(cells, key=_cell_order)


def _cell_order(cell: Cell) -> tuple:
    names = list(paper.DATASETS)
    d = names.index(cell.dataset) if cell.dataset in names else len(names)
    u = paper.UNITS.index(cell.unit) if cell.unit in paper.UNITS else len(paper.UNITS)
    return (d, cell.dataset, u, cell.unit, not cell.is_paper_form, cell.form)


@dataclass
class PairedTest:
    """Cell ``a`` against cell ``b`` (two units of one data set) on the test NLL of matching
    seeds (paired t-test)."""

    dataset: str
    a: Cell
    b: Cell
    seeds: list[tuple[int, int]]  # the paired replicates (seed, batch order)
    diffs: list[float]  # a minus b, per replicate
    t: float
    p: float
    p_holm: float = math.nan  # Holm-adjusted over the tests of its family
    family: int = 0  # how many tests that family has (Holm's m)

    @property
    def mean_diff(self) -> float:
        return float(np.mean(self.diffs)) if self.diffs else math.nan

    @property
    def verdict(self) -> str:
        if len(self.seeds) < MIN_PAIRED_SEEDS:
            return f"too few seeds to test ({len(self.seeds)} paired; {MIN_PAIRED_SEEDS} needed)"
        if not math.isfinite(self.p_holm):
            return "no test possible (identical differences)"
        if self.p_holm < 0.05:
            better = self.a if self.mean_diff < 0 else self.b
            return f"{paper.UNIT_LABELS.get(better.unit, better.unit)} lower (Holm p < 0.05)"
        return "no significant difference (Holm p ≥ 0.05)"


GATED_AGAINST_TANH = (("gru", "tanh"), ("lstm", "tanh"))
# Table 2's unit contrasts: one Holm family per data set (issue 23)
UNIT_CONTRASTS = (("gru", "lstm"), *GATED_AGAINST_TANH)
# With 2 seeds the t-test has one degree of freedom: a 6.9-nat gap read as "no significant
# difference". Below 3 paired seeds the table says the test was not made instead.
MIN_PAIRED_SEEDS = 3


def paired_tests(
    cells: list[Cell],
    pairs: tuple[tuple[str, str], ...] = (("gru", "lstm"),),
    *,
    per_dataset: bool = False,
) -> list[PairedTest]:
    """For each ``(a, b)`` unit pair, every form of ``a`` against every form of ``b`` of the
    same data set and settings (:attr:`Cell.setting`: the authors' protocol is not contrasted
    with the paper's, nor one hidden size with another), with Holm's correction over all the
    tests returned, or, with ``per_dataset``, over each data set's tests (its family)."""
    tests = []
    for first, second in pairs:
        for a in cells:
            if a.unit != first:
                continue
            for b in cells:
                if b.unit != second or b.dataset != a.dataset or b.setting != a.setting:
                    continue  # a unit contrast compares units under the same settings
                tests.append(_paired(a, b))
    testable = [t for t in tests if math.isfinite(t.p)]
    if per_dataset:
        for name in dict.fromkeys(t.dataset for t in testable):
            holm([t for t in testable if t.dataset == name])
    else:
        holm(testable)
    return tests


def paired(a: Cell, b: Cell) -> PairedTest:
    """Cell ``a`` against cell ``b`` of any units or forms (the ablations: a variant against its
    full unit), as :func:`paired_tests` pairs them; Holm's correction is the caller's
    (:func:`holm`)."""
    return _paired(a, b)


def _paired(a: Cell, b: Cell) -> PairedTest:
    """Pairs runs by replicate (seed and batch order); cells whose reported runs include the
    selection runs (not :attr:`Cell.fresh`) are not tested."""
    if not (a.fresh and b.fresh):
        return PairedTest(a.dataset, a, b, [], [], math.nan, math.nan)
    x = {replicate(r): float(r["test_nll"]) for r in a.chosen}
    y = {replicate(r): float(r["test_nll"]) for r in b.chosen}
    seeds = sorted(set(x) & set(y))
    diffs = [x[s] - y[s] for s in seeds]
    t = p = math.nan
    if len(seeds) >= MIN_PAIRED_SEEDS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.ttest_rel([x[s] for s in seeds], [y[s] for s in seeds])
        t, p = float(res.statistic), float(res.pvalue)
    return PairedTest(a.dataset, a, b, seeds, diffs, t, p)


def holm(tests: list[PairedTest]) -> None:
    """Set ``p_holm``: Holm's step-down correction for testing several pairs at once."""
    m = len(tests)
    running = 0.0
    for i, t in enumerate(sorted(tests, key=lambda t: t.p)):
        running = max(running, min(1.0, (m - i) * t.p))
        t.p_holm = running
        t.family = m


_PROTOCOL_LABELS = {"authors": "authors' protocol"}


def _settings_label(settings: dict, config: dict | None = None) -> str:
    """The label of a cell's distinguishing settings. Where the protocol preset differs
    (``--protocol authors``), the preset names them all: the values it implies (batch 1, ...;
    :func:`_implied`) are not repeated, and the paper's protocol, the default, adds nothing
    to the label."""
    settings = dict(settings)
    if "protocol" in settings:
        protocol = settings["protocol"]
        settings = {
            k: v
            for k, v in settings.items()
            if k == "protocol" or not _implied(protocol, k, v, config or {})
        }
    protocol = settings.pop("protocol", None)
    parts = [_PROTOCOL_LABELS.get(protocol, f"protocol={protocol}")]
    if protocol in (None, "paper"):
        parts = []
    return ", ".join(parts + [_setting(k, v) for k, v in settings.items()])


def _implied(protocol, key: str, value, config: dict) -> bool:
    """Whether ``protocol`` implies ``key = value`` for a run of ``config``: its preset's
    value, or RunConfig's default for a field another preset sets (the paper's protocol),
    where the task's default batch size and output-layer noise count as the default they
    resolve to (stored configs hold either), and early stopping's patience is the paper's
    default or, for the authors' protocol (no early stopping), the epoch cap."""
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(RunConfig)
        if f.default is not dataclasses.MISSING and (f.name in AUTHORS or f.name == "patience")
    }
    implied = {**defaults, **preset(protocol or "paper")}
    if protocol == "authors":
        implied["patience"] = config.get("max_epochs", AUTHORS["max_epochs"])
    if key not in implied:
        return False
    if value == implied[key]:
        return True
    task = task_of(config["dataset"]) if config.get("dataset") else None
    resolved = {"batch_size": DEFAULT_BATCH_SIZE, "noise_output": DEFAULT_NOISE_OUTPUT}
    return (
        implied[key] is None
        and key in resolved
        and task is not None
        and (value == resolved[key].get(task))
    )


def _setting(key: str, value) -> str:
    """How a varying setting names a cell: ``hidden=64``, ``hidden=paper size``, ``bptt=off``."""
    if value is None:
        return f"{key}={'paper size' if key == 'hidden' else 'off'}"
    return f"{key}={value}"
