"""How far each unfinished cell got: the report's "Progress of unfinished cells" section.

A grid takes many hours and is resumed across sessions, so a report built half-way says, for
each cell with runs still queued or running, the stage it is in (the learning-rate search or the
extra seeds), how many of that stage's runs finished, the furthest epoch its unfinished runs
reached against the epoch cap, and the lowest validation NLL any epoch of the cell's runs has
reached so far. That NLL is provisional: it is read from the per-epoch rows the sweep writes
while a run trains (``Store.epochs``), it is not an early-stopped result, and it changes as
training goes on. Diverged and failed runs never count towards it, as in the learning-rate
choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rnnbench.report import paper
from rnnbench.report.document import Table
from rnnbench.report.results import UNFINISHED, Cell
from rnnbench.report.tables import fmt, fmt_lr
from rnnbench.store import FINISHED

STAGES = {"lr": "learning-rate search", "seeds": "seeds"}  # in the order reproduce runs them


@dataclass
class Best:
    """The lowest validation NLL of one epoch of one run so far."""

    valid_nll: float
    lr: float
    epoch: int


@dataclass
class Progress:
    """Where one unfinished cell stands (see the module docstring)."""

    cell: Cell
    stage: str | None  # the store's stage label of the runs in progress
    finished: int  # runs of the stage done or diverged
    failed: int  # runs of the stage that failed (a resumed sweep trains them again)
    total: int  # runs of the stage in the store
    epoch: int  # furthest epoch of the stage's unfinished runs (0: none started)
    caps: list[int]  # max_epochs of the stage's runs
    best: Best | None


def cell_progress(cell: Cell, curves: dict[str, list[dict]]) -> Progress | None:
    """Where ``cell`` stands, or None when none of its runs is queued or running.

    ``curves`` maps a run key to its per-epoch rows; a run missing from it has none. When
    runs of several stages are unfinished, the earliest stage is the one reported.
    """
    if not cell.unfinished:
        return None
    stage = min((r.get("stage") for r in cell.unfinished), key=_stage_order)
    members = [r for r in cell.runs if r.get("stage") == stage]
    active = [r for r in members if r["status"] in UNFINISHED]
    return Progress(
        cell=cell,
        stage=stage,
        finished=sum(r["status"] in FINISHED for r in members),
        failed=sum(r["status"] == "failed" for r in members),
        total=len(members),
        epoch=max((int(e["epoch"]) for r in active for e in curves.get(r["key"], ())), default=0),
        caps=sorted({int(r["config"]["max_epochs"]) for r in members if _has_cap(r)}),
        best=best_so_far(cell.runs, curves),
    )


def best_so_far(runs: list[dict], curves: dict[str, list[dict]]) -> Best | None:
    """The lowest finite per-epoch validation NLL of ``runs``, diverged and failed runs aside."""
    best = None
    for run in runs:
        if run["status"] in ("diverged", "failed"):
            continue
        for e in curves.get(run["key"], ()):
            v = e.get("valid_nll")
            if isinstance(v, int | float) and math.isfinite(v) and (best is None or v < best[0]):
                best = (float(v), float(run["config"]["lr"]), int(e["epoch"]))
    return Best(*best) if best else None


def _stage_order(stage: str | None) -> tuple[int, str]:
    names = list(STAGES)
    return (names.index(stage) if stage in names else len(names), stage or "")


def _has_cap(run: dict) -> bool:
    return run["config"].get("max_epochs") is not None


def stage_text(stage: str | None) -> str:
    """A stage label as the report prints it."""
    if stage is None:
        return "training (no stage label)"
    return STAGES.get(stage, stage)


def progress_table(rows: list[Progress]) -> Table:
    """One row per unfinished cell: stage, runs finished, epochs, provisional best NLL."""
    body = []
    for p in rows:
        finished = f"{p.finished} / {p.total}" + (f" ({p.failed} failed)" if p.failed else "")
        cap = "/".join(map(str, p.caps)) or "—"
        body.append(
            [
                paper.dataset_info(p.cell.dataset).label,
                p.cell.label,
                stage_text(p.stage),
                finished,
                f"{p.epoch} / {cap}",
                fmt(p.best.valid_nll) if p.best else "—",
                f"lr {fmt_lr(p.best.lr)}, epoch {p.best.epoch}" if p.best else "—",
            ]
        )
    return Table(
        [
            "data set",
            "unit",
            "stage",
            "runs finished",
            "furthest epoch / cap",
            "best valid NLL so far (provisional)",
            "reached at",
        ],
        body,
        caption=(
            "Runs finished: the stage's runs that are done or diverged, of all its runs in the "
            "store (the seeds stage is queued only once the learning-rate search has finished). "
            "Furthest epoch: the most epochs any of the stage's unfinished runs has trained, "
            "against max_epochs (early stopping may end a run sooner). Best valid NLL so far: "
            "the lowest validation NLL of any epoch of the cell's runs (diverged and failed runs "
            "aside), with the learning rate and epoch of that run. It is PROVISIONAL: not an "
            "early-stopped result, not on the test set, and it will change as training goes on."
        ),
        numeric=[False, False, False, True, True, True, False],
    )
