"""Tables 1 and 2 of the report, the learning-rate choice, the paired tests, and table2.csv."""

from __future__ import annotations

import csv
import math
from collections.abc import Collection, Mapping
from pathlib import Path

from rnnbench.errors import RnnbenchError
from rnnbench.report import paper
from rnnbench.report.document import Table
from rnnbench.report.results import Cell, PairedTest, replicate_label

CSV_COLUMNS = ["dataset", "unit", "split", "nll_mean", "nll_std", "seeds", "paper_nll"]
CSV_EXTRA = [
    "form",
    "lr",
    "seed_list",
    "ci95_low",
    "ci95_high",
    "diff_vs_paper",
    "diverged",
    "failed",
    "diverged_after_best",
    "nll_seq_mean",
    "nll_seq_std",
    "fresh_seeds",
    "note",
    "protocol",
    "provenance",
]


def fmt(x: float | None, digits: int = 3) -> str:
    """A number for a table, or an em dash when there is none."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}f}"


def fmt_lr(lr: float | None) -> str:
    return "—" if lr is None else f"{lr:.3g}"


def _signed(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:+.2f}"


# -- Table 1 ---------------------------------------------------------------------------------


def _our_counts(task: str, unit: str, hidden: int | None, peephole: bool) -> dict | None:
    """``rnnbench.models.count_params`` for one model, or None when it cannot say."""
    try:
        from rnnbench.models import count_params

        return count_params(task, unit, hidden, peephole=peephole)
    except (ImportError, RnnbenchError):
        return None


def _trained(count: int, paper_size: bool) -> str:
    """Table 1's last column: whether the stored runs used this row's size."""
    if count == 0:
        return "no (the paper's size, for reference)" if paper_size else "no"
    size = "the paper's size" if paper_size else "a size set for this study (e.g. --quick)"
    return f"yes, {count:,} run{'s' if count != 1 else ''} ({size})"


def table1(runs: list[dict]) -> Table:
    """Our parameter counts beside the paper's: the paper's sizes, and any other stored size."""
    rows = []
    for task in ("music", "speech"):
        for unit in ("lstm", "gru", "tanh"):
            models = {(None, True)}
            trained: dict = {}  # (hidden, peephole) -> runs of that size in the store(s)
            for r in runs:
                cfg = r["config"]
                if cfg.get("variant"):  # a variant's size is not Table 1's (docs/variants.md)
                    continue
                if cfg.get("unit") == unit and paper.dataset_info(cfg["dataset"]).task == task:
                    model = (cfg.get("hidden"), bool(cfg.get("peephole", True)) or unit != "lstm")
                    models.add(model)
                    trained[model] = trained.get(model, 0) + 1
            paper_units = paper.TABLE1_UNITS[task][unit]
            paper_params = paper.TABLE1_PARAMS[task][unit]
            exact = paper.TABLE1_EXACT[task]
            seen = set()
            by_size: dict = {}  # runs per (resolved size, peephole): None is the paper's size
            for hidden, peephole in models:
                counts = _our_counts(task, unit, hidden, peephole or unit != "lstm")
                size = counts["hidden"] if counts else hidden
                by_size[size, peephole] = by_size.get((size, peephole), 0) + trained.get(
                    (hidden, peephole), 0
                )
            for hidden, peephole in sorted(models, key=lambda m: (m[0] or 0, not m[1])):
                counts = _our_counts(task, unit, hidden, peephole or unit != "lstm")
                size = counts["hidden"] if counts else hidden
                if (size, peephole) in seen:
                    continue
                seen.add((size, peephole))
                rec = counts["recurrent_params"] if counts else None
                label = paper.UNIT_LABELS[unit]
                if unit == "lstm" and not peephole:
                    label += " (no peephole)"
                comparable = size == paper_units and (peephole or unit != "lstm")
                diff = "—"
                if rec is not None and comparable:
                    diff = f"{rec - paper_params:+,}" + ("" if exact else " (paper rounded)")
                rows.append(
                    [
                        task,
                        label,
                        str(paper_units),
                        "—" if size is None else str(size),
                        f"{paper_params:,}" if exact else f"≈{paper_params / 1000:.1f}k",
                        "—" if rec is None else f"{rec:,}",
                        diff,
                        "—" if counts is None else f"{counts['total_params']:,}",
                        _trained(by_size[size, peephole], size == paper_units),
                    ]
                )
    return Table(
        [
            "task",
            "unit",
            "paper units",
            "our units",
            "paper params",
            "our recurrent params",
            "ours − paper",
            "our whole model",
            "trained here",
        ],
        rows,
        caption=(
            "Recurrent params count the recurrent layer as the paper does: input and recurrent "
            "weights, one bias per gate, the LSTM's 3 peephole vectors. The whole model is one "
            "member as our modules hold it: two bias vectors per gate (PyTorch's layout) and the "
            "output layer. Music: 88 notes in and out; speech: 20 samples in, a 20-component "
            "Gaussian mixture over 10 samples out. The paper's music counts are rounded and its "
            "music inputs had 93–108 dims (ours 88), so they are not exactly comparable. "
            "Trained here: how many stored runs used the row's size (a row of the paper's size "
            "with none is there for reference; --quick trains smaller speech models)."
        ),
        numeric=[False, False, True, True, True, True, True, True, False],
    )


# -- Table 2 ---------------------------------------------------------------------------------


def _paper_rows(label: str, paper_row: str, seeds: str) -> list[list[str]]:
    """Table 2 rows, one per unit, with the paper's numbers only (``seeds`` says why)."""
    rows = []
    for unit in paper.UNITS:
        tr_p, te_p = paper.TABLE2[paper_row][unit]
        rows.append(
            [
                label,
                paper.UNIT_LABELS[unit],
                "—",
                seeds,
                "—",
                fmt(tr_p, 2),
                "—",
                "—",
                "—",
                fmt(te_p, 2),
                "—",
                "—",
            ]
        )
    return rows


def _divergence_text(cell: Cell) -> str:
    parts = []
    for status in ("diverged", "failed"):
        n_all = cell.count(status)
        if n_all:
            at = cell.chosen_lr is not None
            where = f" ({cell.count(status, cell.chosen_lr)} at chosen lr)" if at else ""
            parts.append(f"{n_all} {status}{where}")
    late = sum(1 for r in cell.runs if diverged_late(r))
    if late:
        parts.append(f"{late} diverged after their best (scored from it)")
    if cell.unfinished:
        parts.append(f"{len(cell.unfinished)} unfinished")
    return "; ".join(parts) or "0"


def diverged_late(run: dict) -> bool:
    """A ``done`` run scored from its best state after it diverged (its ``error`` says so)."""
    from rnnbench.train.population import DIVERGED_AFTER_BEST

    return run["status"] == "done" and (run.get("error") or "").startswith(DIVERGED_AFTER_BEST)


def _no_result_text(cell: Cell, started: Collection[str]) -> str:
    """Table 2's seeds column for a cell with no completed run.

    "in progress (see Progress)" when runs are still queued or running and one of its runs has
    per-epoch rows (keys in ``started``); "every run diverged" (or "... failed", "... diverged
    or failed") when every run has ended without a result; else "not run to completion".
    """
    if cell.unfinished and any(r["key"] in started for r in cell.runs):
        return "in progress (see Progress)"
    ended = {r["status"] for r in cell.runs}
    if cell.runs and ended <= {"diverged", "failed"}:
        return f"every run {' or '.join(sorted(ended))} (see Runs that diverged or failed)"
    return "not run to completion"


def table2(cells: list[Cell], started: Collection[str] = ()) -> Table:
    """Train and test NLL per cell (mean ± std over seeds at the chosen lr) beside the paper.

    ``started`` holds the keys of the runs with per-epoch rows in the store.
    """
    rows = []
    run_datasets = []
    for cell in cells:
        if cell.dataset not in run_datasets:
            run_datasets.append(cell.dataset)
        ref = paper.paper_nll(cell.dataset, cell.unit)
        tr, te = cell.summary("train"), cell.summary("test")
        if cell.chosen_lr is None:
            ours = ["—", _no_result_text(cell, started), "—", "—", "—", "—", "—", "—", "—"]
        elif cell.untrained:
            ours = [fmt_lr(cell.chosen_lr), f"did not train: {cell.untrained}", "—", "—", "—"]
            ours += ["—", "—", "—", "—", "—"]
        elif tr.n == 0:  # the rate is chosen; none of its fresh seeds has finished yet
            waiting = "in progress (see Progress)" if cell.unfinished else "none finished"
            ours = [fmt_lr(cell.chosen_lr), f"fresh seeds {waiting}", "—", "—", "—", "—", "—"]
            ours += ["—", "—", "—"]
        else:
            lo, hi = te.ci95
            seq = cell.summary("test", "sequence")
            ours = [
                fmt_lr(cell.chosen_lr),
                str(tr.n) + ("" if cell.fresh else " (incl. selection runs)"),
                f"{fmt(tr.mean)} ± {fmt(tr.std)}",
                fmt(ref[0], 2) if ref else "—",
                _signed(tr.mean - ref[0]) if ref else "—",
                f"{fmt(te.mean)} ± {fmt(te.std)}",
                f"[{fmt(lo)}, {fmt(hi)}]" if tr.n >= 2 else "—",
                fmt(ref[1], 2) if ref else "—",
                _signed(te.mean - ref[1]) if ref else "—",
                f"{fmt(seq.mean)} ± {fmt(seq.std)}" if seq.n else "—",
            ]
        if cell.chosen_lr is None:
            ours.append("—")
        if (cell.chosen_lr is None or tr.n == 0) and ref:
            ours[3], ours[7] = fmt(ref[0], 2), fmt(ref[1], 2)
        rows.append(
            [paper.dataset_info(cell.dataset).label, cell.label, *ours, _divergence_text(cell)]
        )
    # paper rows we have no runs for: music sets not run, and the private Ubisoft sets
    for name, info in paper.DATASETS.items():
        if info.paper_row and name not in run_datasets:
            rows += _paper_rows(info.label, info.paper_row, "not run")
    for label in paper.PAPER_ONLY.values():
        rows += _paper_rows(label, label, "paper only")
    return Table(
        [
            "data set",
            "unit",
            "lr",
            "seeds",
            "train NLL (ours)",
            "train (paper)",
            "Δ train",
            "test NLL (ours)",
            "test 95% CI",
            "test (paper)",
            "Δ test",
            "test NLL per sequence",
            "diverged / failed",
        ],
        rows,
        caption=(
            "NLL per time step in nats: mean ± sample standard deviation over the fresh seeds "
            "at the chosen learning rate (seeds that took no part in choosing it); 95% CI from "
            "the t-distribution; Δ = ours − paper (negative is better than the paper). The "
            "test NLL is frame-weighted (every predicted step of the split counts once, the "
            'paper\'s metric); "per sequence" is the mean over test sequences of each '
            "sequence's NLL per step, for papers that report that average. The paper's numbers "
            "are single runs. FSDD stands in for the private Ubisoft sets, so its rows have no "
            "paper value; the Ubisoft rows are the paper's, for reference."
        ),
        numeric=[False, False, True, True, True, True, True, True, True, True, True, True, False],
    )


def lr_table(cells: list[Cell]) -> Table:
    """How each cell's learning rate was chosen."""
    rows = []
    for cell in cells:
        lrs = sorted(cell.lr_scores)
        tried = sorted({float(r["config"]["lr"]) for r in cell.runs})
        score = cell.lr_scores.get(cell.chosen_lr, (math.nan, 0))
        seeds = ", ".join(replicate_label(s) for s in cell.compared_seeds) or "all search runs"
        rows.append(
            [
                paper.dataset_info(cell.dataset).label,
                cell.label,
                f"{len(tried)} ({fmt_lr(min(tried))} – {fmt_lr(max(tried))})" if tried else "0",
                str(len(lrs)),
                fmt_lr(cell.chosen_lr),
                fmt(score[0]),
                seeds,
                ", ".join(str(s) for s in cell.seeds) or "—",
            ]
        )
    return Table(
        [
            "data set",
            "unit",
            "candidate lrs (range)",
            "lrs with a completed run",
            "chosen lr",
            "mean valid NLL",
            "compared on seeds",
            "seeds reported",
        ],
        rows,
        caption=(
            "Each cell's learning rate is the candidate with the lowest mean validation NLL "
            "over the search runs (a run that diverged after its best epoch counts from its "
            "best state; runs that never reached a finite validation NLL, and failed runs, "
            "never count), compared on the seeds that completed at every candidate rate. "
            "Table 2 reports the fresh seeds at that rate, which took no part in the choice; "
            "a cell with none (a sweep without a seeds stage) reports the runs at that rate "
            "and is marked as including its selection runs."
        ),
        numeric=[False, False, True, True, True, True, False, False],
    )


def paired_table(
    tests: list[PairedTest], a: str = "GRU", b: str = "LSTM", *, family: str = ""
) -> Table:
    """The paired tests of one section; ``a`` and ``b`` name the two sides' columns;
    ``family`` says what Holm's correction ran over (default: every test of the table)."""
    rows = []
    for t in tests:
        rows.append(
            [
                paper.dataset_info(t.dataset).label,
                t.a.label,
                t.b.label,
                ", ".join(replicate_label(s) for s in t.seeds) or "none",
                fmt(t.mean_diff),
                fmt(t.t, 2),
                fmt(t.p, 3),
                fmt(t.p_holm, 3) + (f" (of {t.family})" if t.family else ""),
                t.verdict,
            ]
        )
    return Table(
        [
            "data set",
            a,
            b,
            "paired seeds",
            f"mean test NLL diff ({a} − {b})",
            "t",
            "p",
            "Holm p",
            "verdict",
        ],
        rows,
        caption=(
            "Paired t-test (scipy.stats.ttest_rel, two-sided) on the test NLL of runs with the "
            "same seed, each unit at its own chosen learning rate (the seed sets the initial "
            "weights and the weight-noise stream). Needs at least 3 matching seeds (else: too "
            "few seeds to test). The verdict uses Holm's correction over "
            + (
                family
                or "all the tests in this table, since every data set and form is one more test"
            )
            + "; the Holm p column gives the family's size (m) in brackets."
        ),
        numeric=[False, False, False, False, True, True, True, True, False],
    )


# -- table2.csv ------------------------------------------------------------------------------


def _csv_num(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return ""
    return f"{float(x):.10g}"


def write_table2_csv(
    path: Path, cells: list[Cell], protocol: Mapping, provenance: str, paper_only: str = ""
) -> None:
    """One row per (data set, unit form, split): ours beside the paper's; paper-only rows too.

    ``protocol`` maps each cell's ``(dataset, unit, form)`` to its rows' ``protocol`` column
    (:func:`rnnbench.report.marking.protocol_labels`); the paper-only rows get ``paper_only``.
    """
    rows = []
    seen = set()
    for cell in cells:
        seen.add(cell.dataset)
        ref = paper.paper_nll(cell.dataset, cell.unit)
        for split in ("train", "valid", "test"):
            s = cell.summary(split)
            seq = cell.summary(split, "sequence")
            ref_v = {"train": ref[0], "test": ref[1]}.get(split) if ref else None
            lo, hi = s.ci95
            note = "" if cell.chosen_lr is not None else "no completed run"
            note = f"did not train: {cell.untrained}" if cell.untrained else note
            rows.append(
                {
                    "dataset": cell.dataset,
                    "unit": cell.unit,
                    "split": split,
                    "nll_mean": _csv_num(s.mean),
                    "nll_std": _csv_num(s.std),
                    "seeds": s.n,
                    "paper_nll": _csv_num(ref_v),
                    "form": cell.form,
                    "lr": _csv_num(cell.chosen_lr),
                    "seed_list": " ".join(str(x) for x in cell.seeds),
                    "ci95_low": _csv_num(lo),
                    "ci95_high": _csv_num(hi),
                    "diff_vs_paper": _csv_num(s.mean - ref_v) if ref_v is not None else "",
                    "diverged": cell.count("diverged"),
                    "failed": cell.count("failed"),
                    "diverged_after_best": sum(1 for r in cell.runs if diverged_late(r)),
                    "nll_seq_mean": _csv_num(seq.mean),
                    "nll_seq_std": _csv_num(seq.std),
                    "fresh_seeds": int(cell.fresh),
                    "note": note,
                    "protocol": protocol.get((cell.dataset, cell.unit, cell.form), ""),
                }
            )
    extra = [
        (name, info.paper_row, "not run")
        for name, info in paper.DATASETS.items()
        if info.paper_row and name not in seen
    ]
    extra += [(name, label, "paper only") for name, label in paper.PAPER_ONLY.items()]
    for name, row, note in extra:
        for unit in paper.UNITS:
            for split, value in zip(("train", "test"), paper.TABLE2[row][unit], strict=True):
                rows.append(
                    {
                        "dataset": name,
                        "unit": unit,
                        "split": split,
                        "nll_mean": "",
                        "nll_std": "",
                        "seeds": 0,
                        "paper_nll": _csv_num(value),
                        "note": note,
                        "protocol": paper_only,
                    }
                )
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS + CSV_EXTRA, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "provenance": provenance})


RUNS_COLUMNS = [
    "key",
    "dataset",
    "unit",
    "form",
    "stage",
    "lr",
    "seed",
    "data_seed",
    "batch_size",
    "hidden",
    "status",
    "epochs",
    "best_epoch",
    "train_nll",
    "valid_nll",
    "test_nll",
    "train_nll_seq",
    "valid_nll_seq",
    "test_nll_seq",
    "seconds",
    "params",
    "error",
]


def write_runs_csv(path: Path, runs: list[dict]) -> None:
    """Every run of the store(s), one row each: its config's key fields, status and NLLs.

    The raw material of Table 2: anyone can redo the learning-rate choice or the statistics
    from it without the store."""
    from rnnbench.store import form_of

    ordered = sorted(
        runs,
        key=lambda r: (
            r["config"]["dataset"],
            r["config"]["unit"],
            r.get("stage") or "",
            r["config"]["lr"],
            r["config"].get("seed", 0),
        ),
    )
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=RUNS_COLUMNS, restval="")
        writer.writeheader()
        for r in ordered:
            c = r["config"]
            writer.writerow(
                {
                    "key": r["key"],
                    "dataset": c["dataset"],
                    "unit": c["unit"],
                    "form": form_of(c),
                    "stage": r.get("stage") or "",
                    "lr": _csv_num(c["lr"]),
                    "seed": c.get("seed", 0),
                    "data_seed": c.get("data_seed", 0),
                    "batch_size": c.get("batch_size", ""),
                    "hidden": r.get("hidden") or c.get("hidden") or "",
                    "status": r["status"],
                    "epochs": r.get("epochs") if r.get("epochs") is not None else "",
                    "best_epoch": r.get("best_epoch") if r.get("best_epoch") is not None else "",
                    **{
                        n: _csv_num(r.get(n))
                        for n in (
                            "train_nll",
                            "valid_nll",
                            "test_nll",
                            "train_nll_seq",
                            "valid_nll_seq",
                            "test_nll_seq",
                            "seconds",
                        )
                    },
                    "params": r.get("params") or "",
                    "error": r.get("error") or "",
                }
            )


def stopped_table(cells: list[Cell]) -> Table | None:
    """Every diverged or failed run with the reason its trainer gave; None when there is none."""
    rows = []
    for cell in cells:
        for run in cell.runs:
            if run["status"] not in ("diverged", "failed") and not diverged_late(run):
                continue
            rows.append(
                [
                    paper.dataset_info(cell.dataset).label,
                    cell.label,
                    fmt_lr(float(run["config"]["lr"])),
                    str(run["config"].get("seed", "—")),
                    run["status"],
                    str(run.get("epochs") or "—"),
                    run.get("error") or "not recorded (trained before rnnbench recorded reasons)",
                ]
            )
    if not rows:
        return None
    return Table(
        ["data set", "unit", "lr", "seed", "status", "epochs", "why"],
        rows,
        caption=(
            "A diverged run stopped because its loss, gradient or validation NLL stopped being "
            "finite; its weights stop changing. A run that diverged after a best epoch (status "
            "done) is scored from that best state and counts for the learning-rate choice like "
            "any other; one that diverged before any finite validation NLL never counts. "
            "A failed run raised an error (after the sweep's retries); rerunning the command "
            "retries it."
        ),
        numeric=[False, False, True, True, False, True, False],
    )
