"""The ablation report (issue 13): each unit variant against its full unit, from a store.

``build_ablation_report(stores, out)`` reads the runs that ``rnnbench ablate`` stored (sweep
label ``ablate``; ``rnnbench report`` leaves them out, :func:`reproduce_runs`) and writes, into
``out``:

- ``ablations.md`` and ``ablations.html`` (self-contained): the "Ablations" section;
- ``ablations.csv``: per data set and variant, the final test NLL of the fresh seeds (mean,
  std, 95% CI) and the paired test against the full unit (pairs by seed; Holm's correction
  over every test of the study), ``ablations.png`` (the differences with their CIs, one panel
  per data set);
- ``speed.csv``: per fresh seed, epochs and seconds to the threshold (the full unit's mean
  final validation NLL + 5%) and the area under the validation curve
  (:mod:`rnnbench.analysis.speed`);
- ``gradflow.csv`` and ``gradflow.png``: ‖∂L/∂h_t‖ against the distance to the loss, at
  initialisation and at the best checkpoint (:mod:`rnnbench.analysis.gradflow`);
- ``gates.csv``: gate use on the test split (:mod:`rnnbench.analysis.gates`);
- the "Samples" section (:mod:`rnnbench.report.samples`, as in the paper's report): one sample
  of each variant's best fresh seed, as audio and a picture beside a real excerpt, with the
  files in ``out/samples/`` (``samples=False``, ``ablate --no-samples``: left out);
- the store as text (``store-runs.csv``, ``store-epochs.csv``, ``store-meta.json``), so the
  folder rebuilds itself: ``rnnbench ablate --report-only --store FOLDER --out ...``.

Gradient flow and gate use need each cell's best checkpoint (``best.pt``, loaded with
``weights_only=True``), which is not committed: a run whose checkpoint is gone keeps the rows
of ``gradflow.csv`` / ``gates.csv`` found in a store folder given (or in ``out``), by run key.
"""

from __future__ import annotations

import csv
import math
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rnnbench import __version__
from rnnbench.analysis import units
from rnnbench.analysis.gates import BINS, HIGH, LOW
from rnnbench.analysis.speed import area_under_curve, epochs_to_threshold
from rnnbench.errors import RnnbenchError
from rnnbench.report import paper
from rnnbench.report.document import (
    Banner,
    Block,
    Bullets,
    Heading,
    Image,
    Para,
    Table,
    to_markdown,
)
from rnnbench.report.exports import EXPORT_FILES, collect, write_exports
from rnnbench.report.figures import per_model_seconds
from rnnbench.report.html import to_html
from rnnbench.report.results import Cell, PairedTest, Summary, build_cells, holm, paired
from rnnbench.report.samples import samples_section
from rnnbench.report.stores import open_stores
from rnnbench.report.tables import fmt, fmt_lr

SWEEP = "ablate"
THRESHOLD = 1.05  # the speed threshold: the full unit's final validation NLL + 5%
TITLE = "rnnbench: unit ablations (what each gate contributes)"
QUICK_BANNER = (
    "QUICK RUN: these numbers do not follow the paper's protocol (one data set, few variants, "
    "learning rates, seeds and epochs); they show that the pipeline works, nothing more."
)
ABLATION_FILES = (
    "ablations.md",
    "ablations.html",
    "ablations.csv",
    "ablations.png",
    "speed.csv",
    "gradflow.csv",
    "gradflow.png",
    "gates.csv",
    *EXPORT_FILES,
)
ABLATION_COLUMNS = [
    "dataset",
    "unit",
    "variant",
    "hidden",
    "recurrent_params",
    "lr",
    "seeds",
    "test_nll_mean",
    "test_nll_std",
    "ci95_low",
    "ci95_high",
    "diff_vs_full",
    "diff_ci95_low",
    "diff_ci95_high",
    "paired_seeds",
    "t",
    "p",
    "p_holm",
    "verdict",
    "note",
]
SPEED_COLUMNS = [
    "dataset",
    "unit",
    "variant",
    "key",
    "seed",
    "threshold",
    "epochs_to_threshold",
    "seconds_to_threshold",
    "auc",
    "span",
]
GRADFLOW_COLUMNS = [
    "dataset",
    "unit",
    "variant",
    "key",
    "state",
    "steps",
    "distance",
    "grad_h",
    "grad_c",
]
GATE_COLUMNS = [
    "dataset",
    "unit",
    "variant",
    "key",
    "gate",
    "n",
    "mean",
    f"frac_below_{LOW:g}",
    f"frac_above_{HIGH:g}",
    *(f"hist_{i}" for i in range(BINS)),
]


def is_ablation(run: dict) -> bool:
    """A run ``rnnbench ablate`` stored."""
    return run.get("sweep") == SWEEP


def reproduce_runs(runs: list[dict]) -> list[dict]:
    """The runs of the paper's report: every run but the ablations' (``rnnbench report`` on a
    store that also holds ablation runs reports exactly what it reported without them). One
    sentence when only ablation runs are left."""
    kept = [r for r in runs if not is_ablation(r)]
    if runs and not kept:
        raise RnnbenchError(
            "The store holds only ablation runs: build their report with `rnnbench ablate "
            "--report-only --store STORE`."
        )
    return kept


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


def comparisons(cells: list[VariantCell]) -> dict[tuple, PairedTest]:
    """Each variant against its full unit and each plug-in unit against both full units
    (``(id(cell), reference unit)`` -> test), Holm over all."""
    tests = {(id(v), f.unit): paired(v.cell, f.cell) for v in cells for f in references(cells, v)}
    holm([t for t in tests.values() if math.isfinite(t.p)])
    return tests


def _rows_of(cells, tests):
    """``(cell, test, variant column)``: a plug-in unit has one row per full unit."""
    for v in cells:
        if units.is_plugin(v.unit):
            for f in references(cells, v) or [None]:
                yield v, (tests.get((id(v), f.unit)) if f else None), f"vs {f.unit}" if f else ""
        else:
            yield v, tests.get((id(v), v.unit)), v.variant


def _verdict(test: PairedTest | None) -> str:
    if test is None:
        return "no full unit to compare"
    if len(test.seeds) < 2:
        return "fewer than 2 paired seeds: no test"
    if not math.isfinite(test.p_holm):
        return "no test possible"
    if test.p_holm < 0.05:
        return ("lower" if test.mean_diff < 0 else "higher") + " than the full unit (Holm p < 0.05)"
    return "no significant difference (Holm p ≥ 0.05)"


def final_rows(cells: list[VariantCell], tests: dict[tuple, PairedTest], task_of) -> list[dict]:
    rows = []
    for v, test, variant in _rows_of(cells, tests):
        te = v.cell.summary("test")
        lo, hi = te.ci95
        diffs = Summary(test.diffs if test else [])
        dlo, dhi = diffs.ci95
        hidden = v.hidden
        count = (
            units.recurrent_count(task_of(v.dataset), v.unit, v.variant, hidden) if hidden else None
        )
        rows.append(
            {
                "dataset": v.dataset,
                "unit": v.unit,
                "variant": variant or "full",
                "hidden": hidden if hidden is not None else "",
                "recurrent_params": count if count is not None else "",
                "lr": _num(v.cell.chosen_lr),
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
                "verdict": "" if not variant else _verdict(test),
                "note": "" if v.cell.fresh else "no fresh seeds (selection runs reported)",
            }
        )
    return rows


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
            clock = per_model_seconds(recs, r.get("seconds"), None)
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


# -- gradient flow and gate use from the best checkpoints -------------------------------------


def _checkpoint(run: dict) -> Path | None:
    for path in (run.get("checkpoint"), run.get("run_dir") and Path(run["run_dir"]) / "best.pt"):
        if path and Path(path).is_file():
            return Path(path)
    return None


def _previous(folders: list[Path], name: str) -> dict[str, list[dict]]:
    """Rows of ``name`` (gradflow.csv, gates.csv) in ``folders``, by run key."""
    found: dict[str, list[dict]] = {}
    for folder in folders:
        path = folder / name
        if not path.is_file():
            continue
        with open(path, newline="", encoding="utf-8") as f:
            rows = [row for row in csv.DictReader(f) if row.get("key")]
        for key in dict.fromkeys(row["key"] for row in rows):
            found.setdefault(key, [row for row in rows if row["key"] == key])
    return found


def checkpoint_analyses(
    cells: list[VariantCell], folders: list[Path], *, data_dir=None, compute: bool = True
) -> tuple[list[dict], list[dict], list[str]]:
    """Gradient-flow and gate rows of each cell's best fresh run, and notes on what is
    missing. Computed from the checkpoint where it exists (and ``compute``), else taken from
    an earlier ``gradflow.csv`` / ``gates.csv`` in ``folders``."""
    import torch

    from rnnbench.analysis.gates import gate_use
    from rnnbench.analysis.gradflow import flow_batch, gradient_flow
    from rnnbench.data.registry import load_dataset

    old_flow = _previous(folders, "gradflow.csv")
    old_gates = _previous(folders, "gates.csv")
    flow, gates, notes = [], [], []
    for v in cells:
        run = v.cell.best_run
        if run is None:
            continue
        ident = {"dataset": v.dataset, "unit": v.unit, "variant": v.variant or "full"}
        path = _checkpoint(run) if compute and units.can_build(v.unit) else None
        if path is None:
            if run["key"] in old_flow or run["key"] in old_gates:
                flow += old_flow.get(run["key"], [])
                gates += old_gates.get(run["key"], [])
            else:
                notes.append(f"{paper.dataset_info(v.dataset).label} {v.label}")
            continue
        best = torch.load(path, weights_only=True, map_location="cpu")
        dataset = load_dataset(run["config"]["dataset"], data_dir)
        hidden = int(best.get("hidden") or v.hidden)
        x, y = flow_batch(dataset.split("valid"))
        for state in ("init", "trained"):
            model = units.build_model(run["config"], dataset, hidden).double()
            if state == "trained":
                model.load_member_state(0, best["member_state"])
            for rec in gradient_flow(model, x.double(), y.double()):
                flow.append(
                    {
                        **ident,
                        "key": run["key"],
                        "state": state,
                        "steps": x.shape[0],
                        "distance": rec["distance"],
                        "grad_h": _num(rec["grad_h"]),
                        "grad_c": "" if rec["grad_c"] is None else _num(rec["grad_c"]),
                    }
                )
            if state == "trained":
                used = gate_use(model.float(), dataset.split("test"))
                if not used:  # a unit loop without the trace hook
                    notes.append(f"{paper.dataset_info(v.dataset).label} {v.label} (gate use)")
                for name, s in used.items():
                    gates.append(
                        {
                            **ident,
                            "key": run["key"],
                            "gate": name,
                            "n": s.n,
                            "mean": _num(s.mean),
                            f"frac_below_{LOW:g}": _num(s.frac_below),
                            f"frac_above_{HIGH:g}": _num(s.frac_above),
                            **{f"hist_{i}": int(c) for i, c in enumerate(s.histogram)},
                        }
                    )
    return flow, gates, notes


# -- figures ----------------------------------------------------------------------------------


def _figure(ncols: int, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * ncols + 0.6, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _finish(fig, path: Path, title: str, banner: str, footer: str) -> None:
    import textwrap

    heading = title + (f"\n{textwrap.fill(banner, 100)}" if banner else "")
    fig.suptitle(heading, fontsize=11, color="#b00000" if banner else "black")
    if footer:
        fig.text(0.5, -0.02, textwrap.fill(footer, 160), ha="center", va="top", fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Title": f"{title}. {banner}"})


def differences_figure(path: Path, rows: list[dict], banner: str, footer: str) -> bool:
    """Each variant's mean paired difference to its full unit with its 95% CI, one panel per
    data set; filled markers where Holm p < 0.05."""
    sets = list(dict.fromkeys(r["dataset"] for r in rows if r["diff_vs_full"] != ""))
    if not sets:
        return False
    fig, axes = _figure(len(sets), 0.5 + 0.45 * max(3, len(rows) / len(sets)))
    for ax, name in zip(axes, sets, strict=True):
        mine = [r for r in rows if r["dataset"] == name and r["diff_vs_full"] != ""]
        for i, r in enumerate(mine):
            d = float(r["diff_vs_full"])
            lo = float(r["diff_ci95_low"]) if r["diff_ci95_low"] else d
            hi = float(r["diff_ci95_high"]) if r["diff_ci95_high"] else d
            sig = r["p_holm"] != "" and float(r["p_holm"]) < 0.05
            color = "#1f77b4" if r["unit"] == "lstm" else "#d62728"
            ax.errorbar(
                d,
                i,
                xerr=[[d - lo], [hi - d]],
                fmt="o",
                color=color,
                mfc=color if sig else "white",
                capsize=3,
            )
        ax.set_yticks(range(len(mine)), [units.label(r["unit"], r["variant"]) for r in mine])
        ax.invert_yaxis()
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel("test NLL − full unit's (nats; paired by seed, 95% CI)")
        ax.set_title(paper.dataset_info(name).label, fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
    _finish(fig, path, "Variants against their full unit (filled: Holm p < 0.05)", banner, footer)
    return True


def gradflow_figure(path: Path, rows: list[dict], banner: str, footer: str) -> bool:
    """‖∂L/∂h_t‖ against the distance to the loss, per variant: trained solid, init dashed."""
    sets = list(dict.fromkeys(r["dataset"] for r in rows))
    if not sets:
        return False
    fig, axes = _figure(len(sets), 4.6)
    cmap = __import__("matplotlib").colormaps["tab20"]
    for ax, name in zip(axes, sets, strict=True):
        mine = [r for r in rows if r["dataset"] == name]
        keys = list(dict.fromkeys((r["unit"], r["variant"]) for r in mine))
        for i, (unit, variant) in enumerate(keys):
            for state, style in (("trained", "-"), ("init", "--")):
                pts = sorted(
                    (int(r["distance"]), float(r["grad_h"]))
                    for r in mine
                    if (r["unit"], r["variant"], r["state"]) == (unit, variant, state)
                    and r["grad_h"] != ""
                )
                if not pts:
                    continue
                d, g = zip(*pts, strict=True)
                ax.plot(
                    d,
                    np.maximum(g, 1e-30),
                    style,
                    color=cmap(i % 20),
                    lw=1.3,
                    label=units.label(unit, variant if variant != "full" else "")
                    if state == "trained"
                    else None,
                )
        ax.set_yscale("log")
        ax.set_xlabel("distance to the loss (steps)")
        ax.set_ylabel("mean ‖∂L/∂h_t‖")
        ax.set_title(
            f"{paper.dataset_info(name).label} (solid: trained; dashed: init)", fontsize=10
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    _finish(fig, path, "Gradient flow: how far back the error reaches", banner, footer)
    return True


# -- the report -------------------------------------------------------------------------------


def _num(x) -> str:
    if x is None:
        return ""
    x = float(x)
    return f"{x:.10g}" if math.isfinite(x) else ""


def _f(text: str, digits: int = 3) -> str:
    return fmt(float(text), digits) if text not in ("", None) else "—"


def _write_csv(path: Path, columns: list[str], rows: list[dict], protocol: str) -> None:
    """One CSV; its ``protocol`` column names the departures (or "the paper's protocol")."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(
            f, fieldnames=[*columns, "protocol"], extrasaction="ignore", restval=""
        )
        writer.writeheader()
        writer.writerows({**row, "protocol": protocol} for row in rows)


def _final_table(rows: list[dict]) -> Table:
    body = []
    for r in rows:
        ci = f"[{_f(r['ci95_low'])}, {_f(r['ci95_high'])}]" if r["ci95_low"] else "—"
        diff = (
            f"{_f(r['diff_vs_full'])} [{_f(r['diff_ci95_low'])}, {_f(r['diff_ci95_high'])}]"
            if r["diff_vs_full"]
            else "—"
        )
        body.append(
            [
                units.label(r["unit"], "" if r["variant"] == "full" else r["variant"]),
                str(r["hidden"]) or "—",
                f"{int(r['recurrent_params']):,}" if r["recurrent_params"] != "" else "—",
                fmt_lr(float(r["lr"])) if r["lr"] else "—",
                str(r["seeds"]),
                f"{_f(r['test_nll_mean'])} ± {_f(r['test_nll_std'])}",
                ci,
                diff,
                _f(r["p_holm"]),
                r["verdict"] or "(reference)",
            ]
        )
    return Table(
        [
            "variant",
            "units",
            "recurrent params",
            "lr",
            "fresh seeds",
            "test NLL",
            "95% CI",
            "− full unit [95% CI]",
            "Holm p",
            "verdict",
        ],
        body,
        caption=(
            "Test NLL per step (nats) of the fresh seeds at each variant's chosen rate: mean ± "
            "std, 95% t-interval. The difference to the full unit pairs runs by seed (same "
            "initial-weight seed and batch order); paired t-test, Holm's correction over every "
            "test of the study. Recurrent parameters in the paper's convention (one bias per "
            "gate)."
        ),
        numeric=[False, True, True, True, True, True, True, True, True, False],
    )


def _speed_table(rows: list[dict]) -> Table:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["unit"], r["variant"]), []).append(r)
    body = []
    for (unit, variant), rs in groups.items():
        reached = [r for r in rs if r["epochs_to_threshold"] != ""]
        ep = [float(r["epochs_to_threshold"]) for r in reached]
        sec = [float(r["seconds_to_threshold"]) for r in reached]
        auc = [float(r["auc"]) for r in rs if r["auc"] != ""]
        body.append(
            [
                units.label(unit, "" if variant == "full" else variant),
                _f(rs[0]["threshold"]),
                f"{len(reached)}/{len(rs)}",
                fmt(float(np.mean(ep)), 1) if ep else "—",
                fmt(float(np.mean(sec)), 1) if sec else "—",
                fmt(float(np.mean(auc)), 1) if auc else "—",
            ]
        )
    span = rows[0]["span"] if rows else "—"
    return Table(
        ["variant", "threshold", "seeds reaching it", "epochs", "seconds per model", "AUC"],
        body,
        caption=(
            "Threshold: the full unit's mean final validation NLL + 5%. Epochs and wall-clock "
            "seconds per model to the first epoch at or below it (means over the seeds that "
            f"reach it). AUC: trapezoid area under the validation curve over epochs 1–{span} "
            "(nat·epochs; a run that stopped early keeps its best value); lower is faster."
        ),
        numeric=[False, True, True, True, True, True],
    )


def _gate_table(rows: list[dict]) -> Table:
    body = [
        [
            units.label(r["unit"], "" if r["variant"] == "full" else r["variant"]),
            r["gate"],
            _f(r["mean"]),
            _f(r[f"frac_below_{LOW:g}"]),
            _f(r[f"frac_above_{HIGH:g}"]),
            f"{int(float(r['n'])):,}",
        ]
        for r in rows
    ]
    return Table(
        ["variant", "gate", "mean", f"< {LOW:g}", f"> {HIGH:g}", "activations"],
        body,
        caption=(
            "Sigmoid-gate activations of the best fresh seed's best checkpoint over every real "
            "step and unit of the test split: mean, and the fractions saturated closed "
            f"(< {LOW:g}) and open (> {HIGH:g}). gates.csv has a 10-bin histogram of each."
        ),
        numeric=[False, False, True, True, True, True],
    )


def build_ablation_report(
    store_paths,
    out_dir,
    *,
    quick: bool = False,
    command: str | None = None,
    analyses: bool = True,
    samples: bool = True,
    data_dir=None,
) -> Path:
    """Write the ablation report folder from one store or several (paths or export folders);
    return the folder. ``analyses`` False reuses earlier gradient-flow and gate rows only;
    ``samples`` False leaves out the Samples section."""
    from rnnbench.report.build import _trained_by, departures, reduced_banner
    from rnnbench.sweeps.grid import task_of

    out = Path(out_dir)
    paths = [
        Path(p) for p in ([store_paths] if isinstance(store_paths, str | Path) else store_paths)
    ]
    with open_stores(paths) as sources:
        runs = [r for r in sources.runs if is_ablation(r)]
        if not runs:
            raise RnnbenchError(
                f"{', '.join(map(str, paths))} holds no ablation runs: run `rnnbench ablate` "
                "first, or point --store at its results.db or report folder."
            )
        cells = variant_cells(runs)
        epochs = {r["key"]: sources.epochs(r["key"]) for v in cells for r in v.cell.chosen}
        exported = collect(sources)
        trained_by = _trained_by(sources)
        quick = quick or sources.quick or any(r.get("quick") for r in runs)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RnnbenchError(
            f"Cannot create the report folder {out} ({exc.strerror}): choose another with --report."
        ) from exc
    if command is None:
        command = shlex.join(
            [
                "rnnbench",
                "ablate",
                "--report-only",
                *(a for p in paths for a in ("--store", str(p))),
            ]
            + ["--report", str(out)]
        )
    # Departures from the protocol, as the paper's report names them; sizes are the study's
    # own matching, so they are not one.
    plain = [{**r, "config": {**r["config"], "hidden": None}} for r in runs]
    items = departures(plain, [v.cell for v in cells])
    banner = QUICK_BANNER if quick else reduced_banner(items)
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    footer = f"{command} | rnnbench {__version__} | {date}"

    tests = comparisons(cells)
    final = final_rows(cells, tests, task_of)
    speed = speed_rows(cells, lambda key: epochs.get(key, []))
    folders = [p for p in paths if p.is_dir()] + [out]
    flow, gates, missing = checkpoint_analyses(cells, folders, data_dir=data_dir, compute=analyses)

    protocol = banner or "the paper's protocol (learning-rate search, fresh seeds)"
    _write_csv(out / "ablations.csv", ABLATION_COLUMNS, final, protocol)
    _write_csv(out / "speed.csv", SPEED_COLUMNS, speed, protocol)
    _write_csv(out / "gradflow.csv", GRADFLOW_COLUMNS, flow, protocol)
    _write_csv(out / "gates.csv", GATE_COLUMNS, gates, protocol)
    write_exports(exported, out)

    blocks: list[Block] = [Heading(TITLE, 1)]
    if banner:
        blocks.append(Banner(banner))
    hosts = sorted({r["host"] for r in runs if r.get("host")})
    blocks += [
        Heading("Provenance", 2, "provenance"),
        Bullets(
            [
                trained_by,
                f"Report command: `{command}`",
                "Stores: " + ", ".join(f"`{p.resolve()}`" for p in paths),
                f"Ablation runs: {len(runs)}" + (f" on {', '.join(hosts)}" if hosts else ""),
                f"Report built {date} by rnnbench {__version__}",
            ]
        ),
        Heading("Ablations", 2, "ablations"),
        Para(
            "Each variant removes or changes one part of the paper's unit (the peephole LSTM, "
            "the reset-before GRU) and is parameter-matched to it: its recurrent layer has the "
            "parameter count closest to the full unit's (the paper's convention), so a variant "
            "without a gate gets more units. Every variant of a data set searched the same "
            "learning-rate candidates; the rate was chosen on the search runs' validation NLL "
            "and the numbers below are fresh seeds at that rate only. Method: docs/ablations.md."
        ),
    ]
    names = list(dict.fromkeys(v.dataset for v in cells))
    for name in names:
        label = paper.dataset_info(name).label
        blocks += [
            Heading(f"{label}: final test NLL", 3, f"final-{name}"),
            _final_table([r for r in final if r["dataset"] == name]),
        ]
    if differences_figure(out / "ablations.png", final, banner, footer):
        blocks.append(
            Image(
                out / "ablations.png",
                "Each variant's test NLL minus its full unit's, paired by seed, with 95% CIs "
                "(filled: Holm p < 0.05; left of 0: better than the full unit).",
            )
        )
    else:
        (out / "ablations.png").unlink(missing_ok=True)
    blocks.append(Heading("Speed of learning", 2, "speed"))
    for name in names:
        rows = [r for r in speed if r["dataset"] == name]
        if rows:
            blocks += [Heading(paper.dataset_info(name).label, 3), _speed_table(rows)]
    blocks += [
        Heading("Gradient flow", 2, "gradflow"),
        Para(
            "The mean norm of ∂L/∂h_t, L the NLL of the last step of one validation batch "
            "(its 8 longest sequences, cut to the shortest of them and to 400 steps), "
            "against the distance T − t to that loss, for each variant's "
            "best fresh seed at initialisation (dashed) and at its best checkpoint (solid); "
            "how far back the error reaches. Computed in one backward pass through the unit "
            "run step by step (rnnbench.analysis.gradflow); gradflow.csv has every point, "
            "and ∂L/∂c_t for the LSTMs."
        ),
    ]
    if gradflow_figure(out / "gradflow.png", flow, banner, footer):
        blocks.append(Image(out / "gradflow.png", "Gradient flow per variant."))
    else:
        (out / "gradflow.png").unlink(missing_ok=True)
        blocks.append(Para("No gradient flow: no best checkpoint or earlier gradflow.csv found."))
    blocks.append(Heading("Gate use", 2, "gates"))
    blocks.append(_gate_table(gates) if gates else Para("No gate use: no checkpoint found."))
    if missing:
        blocks.append(
            Para(
                "Without a checkpoint or earlier rows (gradient flow and gate use left out): "
                + ", ".join(missing)
                + "."
            )
        )
    if samples:
        blocks += samples_section([v.cell for v in cells], out, paths, data_dir=data_dir)
    if items and not quick:
        blocks += [Heading("Departures from the paper's protocol", 2), Bullets(items)]
    if banner:
        blocks.append(Banner(banner))
    title = (f"QUICK RUN, not the paper's protocol: {TITLE}") if quick else TITLE
    (out / "ablations.md").write_text(to_markdown(blocks), encoding="utf-8")
    (out / "ablations.html").write_text(to_html(blocks, title), encoding="utf-8")
    return out
