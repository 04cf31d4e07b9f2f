"""The ablation study's cells and tests (issue 13; plug-in units, issue 24): which cell is
compared with which, the final-NLL rows and the speed rows of ``rnnbench ablate``'s report.

A variant is tested against its full unit; a plug-in unit (:mod:`rnnbench.units`: minGRU,
minLSTM, a user's) against both full units (LSTM, GRU), one row each (``variant`` column
``vs lstm`` / ``vs gru``); paired by seed, Holm's correction over every test of the study (a
cell that did not train, :mod:`rnnbench.report.untrained`, is in no test).
Only names and stored numbers are used: nothing here imports a user's unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rnnbench.analysis import units
from rnnbench.analysis.speed import area_under_curve, epochs_to_threshold
from rnnbench.report import paper
from rnnbench.report.compute import epoch_sharing
from rnnbench.report.figures import per_model_seconds
from rnnbench.report.results import Cell, PairedTest, Summary, build_cells, holm, paired
from rnnbench.report.untrained import VERDICT as UNTRAINED
from rnnbench.report.untrained import did_not_train

THRESHOLD = 1.05  # the speed threshold: the full unit's final validation NLL + 5%


def _num(x) -> str:
    if x is None:
        return ""
    x = float(x)
    return f"{x:.10g}" if math.isfinite(x) else ""


@dataclass
class VariantCell:
    """One (data set, unit, variant) of the study and its runs' cell."""

    cell: Cell
    variant: str

    @property
    def dataset(self) -> str:
        return self.cell.dataset

    @property
    def unit(self) -> str:
        return self.cell.unit

    @property
    def label(self) -> str:
        return units.label(self.unit, self.variant)

    @property
    def hidden(self) -> int | None:
        sizes = {r["config"].get("hidden") for r in self.cell.runs}
        return sizes.pop() if len(sizes) == 1 else None


def variant_cells(runs: list[dict]) -> list[VariantCell]:
    """The study's cells in report order: data set, unit, full unit first, then the variants
    in the issue's order."""
    out = []
    for cell in build_cells(runs):
        if cell.unit not in units.UNITS and not units.is_plugin(cell.unit):
            continue
        out.append(VariantCell(cell, units.variant_of(cell.runs[0]["config"])))
    sets = list(paper.DATASETS)

    def order(v: VariantCell):
        names = units.names(v.unit)
        rank = names.index(v.variant) + 1 if v.variant in names else (0 if not v.variant else 99)
        d = sets.index(v.dataset) if v.dataset in sets else len(sets)
        u = units.UNITS.index(v.unit) if v.unit in units.UNITS else len(units.UNITS)
        return (d, v.dataset, u, v.unit, rank, v.cell.form)

    return sorted(out, key=order)


def full_unit(cells: list[VariantCell], v: VariantCell) -> VariantCell | None:
    """A variant's full unit; a plug-in unit's reference for speed is the GRU."""
    unit = "gru" if units.is_plugin(v.unit) else v.unit
    for other in cells:
        if other.dataset == v.dataset and other.unit == unit and not other.variant:
            return other
    return None


def references(cells: list[VariantCell], v: VariantCell) -> list[VariantCell]:
    """What a cell is tested against: a variant its full unit; a plug-in unit both full
    units (LSTM, GRU); a full unit nothing."""
    if units.is_plugin(v.unit):
        return [
            c for c in cells if c.dataset == v.dataset and c.unit in units.UNITS and not c.variant
        ]
    full = full_unit(cells, v)
    return [full] if v.variant and full is not None else []


def comparisons(cells: list[VariantCell], untrained: dict[int, str] | None = None):
    """Each variant against its full unit and each plug-in unit against both full units
    (``(id(cell), reference unit)`` -> test), Holm over all of them; a cell that did not train
    (``untrained``, :mod:`rnnbench.report.untrained`), or whose reference did not, is not
    compared. Returns ``(tests, family)``, ``family`` the number of tests Holm ran over."""
    untrained = untrained or {}
    tests = {
        (id(v), f.unit): paired(v.cell, f.cell)
        for v in cells
        for f in references(cells, v)
        if id(v) not in untrained and id(f) not in untrained
    }
    family = [t for t in tests.values() if math.isfinite(t.p)]
    holm(family)
    return tests, len(family)


def untrained_cells(cells: list[VariantCell], data_dir=None) -> dict[int, str]:
    """``id(variant cell)`` -> its note, for the cells that did not train."""
    out = {}
    for v in cells:
        note = did_not_train(v.cell, data_dir)
        if note:
            out[id(v)] = note
    return out


def _rows_of(cells, tests):
    """``(cell, test, variant column)``: a plug-in unit has one row per full unit."""
    for v in cells:
        if units.is_plugin(v.unit):
            for f in references(cells, v) or [None]:
                yield v, (tests.get((id(v), f.unit)) if f else None), f"vs {f.unit}" if f else ""
        else:
            yield v, tests.get((id(v), v.unit)), v.variant


def _verdict(test: PairedTest | None, reference: str = "the full unit") -> str:
    if test is None:
        return "no full unit to compare"
    if len(test.seeds) < 2:
        return "fewer than 2 paired seeds: no test"
    if not math.isfinite(test.p_holm):
        return "no test possible"
    if test.p_holm < 0.05:
        word = "lower" if test.mean_diff < 0 else "higher"
        return f"{word} than {reference} (Holm p < 0.05)"
    return "no significant difference (Holm p ≥ 0.05)"


def _reference(variant: str) -> str:
    """Whom a row is tested against: ``vs lstm`` -> "the LSTM"; a variant its full unit."""
    unit = variant[3:] if variant.startswith("vs ") else ""
    return f"the {units.label(unit, '')}" if unit else "the full unit"


def final_rows(
    cells: list[VariantCell],
    tests: dict[tuple, PairedTest],
    task_of,
    untrained: dict[int, str] | None = None,
    family: int = 0,
) -> list[dict]:
    untrained = untrained or {}
    rows = []
    for v, test, variant in _rows_of(cells, tests):
        if id(v) in untrained:
            rows.append(_untrained_row(v, variant, untrained[id(v)], task_of))
            continue
        te = v.cell.summary("test")
        lo, hi = te.ci95
        diffs = Summary(test.diffs if test else [])
        dlo, dhi = diffs.ci95
        rows.append(
            {
                **_identity(v, variant, task_of),
                "seeds": te.n,
                "test_nll_mean": _num(te.mean),
                "test_nll_std": _num(te.std),
                "ci95_low": _num(lo),
                "ci95_high": _num(hi),
                "diff_vs_full": _num(diffs.mean) if test else "",
                "diff_ci95_low": _num(dlo) if test else "",
                "diff_ci95_high": _num(dhi) if test else "",
                "paired_seeds": " ".join(str(s[0]) for s in test.seeds) if test else "",
                "t": _num(test.t) if test else "",
                "p": _num(test.p) if test else "",
                "p_holm": _num(test.p_holm) if test else "",
                "holm_tests": family if test else "",
                "verdict": "" if not variant else _verdict(test, _reference(variant)),
                "note": "" if v.cell.fresh else "no fresh seeds (selection runs reported)",
            }
        )
    return rows


def _identity(v: VariantCell, variant: str, task_of) -> dict:
    """A row's cell: data set, unit, variant, size, recurrent parameters and chosen rate."""
    hidden = v.hidden
    count = units.recurrent_count(task_of(v.dataset), v.unit, v.variant, hidden) if hidden else None
    return {
        "dataset": v.dataset,
        "unit": v.unit,
        "variant": variant or "full",
        "hidden": hidden if hidden is not None else "",
        "recurrent_params": count if count is not None else "",
        "lr": _num(v.cell.chosen_lr),
    }


def _untrained_row(v: VariantCell, variant: str, note: str, task_of) -> dict:
    """A cell that did not train: its size and rate, no statistics."""
    blank = ("test_nll_mean", "test_nll_std", "ci95_low", "ci95_high", "diff_vs_full")
    blank += ("diff_ci95_low", "diff_ci95_high", "paired_seeds", "t", "p", "p_holm", "holm_tests")
    return {
        **dict.fromkeys(blank, ""),
        **_identity(v, variant, task_of),
        "seeds": len(v.cell.chosen),
        "verdict": UNTRAINED,
        "note": note,
    }


def speed_rows(cells: list[VariantCell], epochs_of) -> list[dict]:
    """Per fresh seed: epochs and seconds to the threshold, and the area under its validation
    curve over the longest curve of its data set (:mod:`rnnbench.analysis.speed`)."""
    rows = []
    span: dict[str, int] = {}
    for v in cells:
        for r in v.cell.chosen:
            span[v.dataset] = max(span.get(v.dataset, 0), len(epochs_of(r["key"])))
    for v in cells:
        full = full_unit(cells, v)
        finals = full.cell.summary("valid") if full else Summary([])
        threshold = finals.mean * THRESHOLD if finals.n else math.nan
        for r in v.cell.chosen:
            recs = epochs_of(r["key"])
            valid = [e.get("valid_nll") for e in recs]
            # a cell's fresh seeds train as one population since issue 22: share its epochs
            sharing = epoch_sharing(r, v.cell.chosen, epochs_of)
            clock = per_model_seconds(recs, r.get("seconds"), sharing)
            epoch = epochs_to_threshold(valid, threshold) if math.isfinite(threshold) else None
            rows.append(
                {
                    "dataset": v.dataset,
                    "unit": v.unit,
                    "variant": v.variant or "full",
                    "key": r["key"],
                    "seed": r["config"].get("seed", 0),
                    "threshold": _num(threshold),
                    "epochs_to_threshold": "" if epoch is None else epoch,
                    "seconds_to_threshold": "" if epoch is None else _num(clock[epoch - 1]),
                    "auc": _num(area_under_curve(valid, span[v.dataset])) if recs else "",
                    "span": span[v.dataset],
                }
            )
    return rows
