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
import shlex
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rnnbench import __version__
from rnnbench.analysis import units
from rnnbench.analysis.gates import BINS, HIGH, LOW
from rnnbench.errors import RnnbenchError
from rnnbench.report import paper
from rnnbench.report.ablation_cells import (  # noqa: F401 - the study's cells, re-exported
    THRESHOLD,
    VariantCell,
    _num,
    comparisons,
    final_rows,
    full_unit,
    speed_rows,
    untrained_cells,
    variant_cells,
)
from rnnbench.report.ablation_figures import differences_figure, gradflow_figure
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
from rnnbench.report.html import to_html
from rnnbench.report.samples import samples_section
from rnnbench.report.stores import open_stores
from rnnbench.report.tables import fmt, fmt_lr
from rnnbench.report.untrained import VERDICT as UNTRAINED

SWEEP = "ablate"
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
    "holm_tests",
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
    cells: list[VariantCell],
    folders: list[Path],
    *,
    data_dir=None,
    compute: bool = True,
    skip: frozenset[int] = frozenset(),
) -> tuple[list[dict], list[dict], list[str]]:
    """Gradient-flow and gate rows of each cell's best fresh run, and notes on what is
    missing. Computed from the checkpoint where it exists (and ``compute``), else taken from
    an earlier ``gradflow.csv`` / ``gates.csv`` in ``folders``. Cells in ``skip`` (``id``s:
    the cells that did not train, whose best states are near-initial) get none."""
    import torch

    from rnnbench.analysis.gates import gate_use
    from rnnbench.analysis.gradflow import flow_batch, gradient_flow
    from rnnbench.data.registry import load_dataset

    old_flow = _previous(folders, "gradflow.csv")
    old_gates = _previous(folders, "gates.csv")
    flow, gates, notes = [], [], []
    for v in cells:
        run = v.cell.best_run
        if run is None or id(v) in skip:
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
    family = next((r["holm_tests"] for r in rows if r.get("holm_tests") not in ("", None)), 0)
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
                f"{_f(r['test_nll_mean'])} ± {_f(r['test_nll_std'])}"
                if r.get("test_nll_mean") not in ("", None)
                else "—",
                ci,
                diff,
                _f(r["p_holm"]),
                (r["verdict"] or "(reference)")
                + (f": {r['note']}" if r["verdict"] == UNTRAINED else ""),
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
            f"initial-weight seed and batch order); paired t-test, Holm's correction over the "
            f"{family} tests of this report. A cell whose every run diverged before learning "
            'is reported as "did not train": no statistics, and not in Holm\'s family '
            "(rnnbench.report.untrained). Recurrent parameters in the paper's convention (one "
            "bias per gate)."
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

    untrained = untrained_cells(cells, data_dir)
    tests, family = comparisons(cells, untrained)
    final = final_rows(cells, tests, task_of, untrained, family)
    speed = speed_rows(cells, lambda key: epochs.get(key, []))
    folders = [p for p in paths if p.is_dir()] + [out]
    flow, gates, missing = checkpoint_analyses(
        cells, folders, data_dir=data_dir, compute=analyses, skip=frozenset(untrained)
    )

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
    plugins = sorted({units.label(v.unit, "") for v in cells if units.is_plugin(v.unit)})
    if plugins:
        blocks.append(
            Para(
                f"Plug-in units ({', '.join(plugins)}; docs/units.md) are matched the same way "
                "and tested against both full units, one row each (vs LSTM, vs GRU)."
            )
        )
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
