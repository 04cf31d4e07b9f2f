"""Cells that did not train: every run diverged before it learned anything (issue 23).

A run that diverges after it has learned is scored from its best state, and its cell is
compared like any other (docs/training.md). A cell whose every run diverged *before learning*
has no result to compare: its "best states" are near-initial checkpoints, and a difference
between them and a trained unit measures nothing about the unit but that it could not be
trained under the protocol. Such a cell is reported as "did not train (all runs diverged)": no
difference, no CI, no p-value and no gate statistics, and it is left out of Holm's family.

The rule, per cell (:func:`did_not_train`):

1. every run of the cell (the learning-rate search and the fresh seeds) diverged: status
   ``diverged`` (no best state), or ``done`` and scored from its best state after it diverged
   (:func:`rnnbench.report.tables.diverged_late`); and
2. no run learned:
   - on a music set, no run's best validation NLL is below the per-note marginal's (a model
     that learned anything at all learns how often each note sounds;
     :mod:`rnnbench.baselines`);
   - on any other set (no such reference), no run's best state is later than its first epoch.

A cell with an unfinished run is never judged.
"""

from __future__ import annotations

import math
from functools import cache

from rnnbench.report.results import UNFINISHED, Cell

VERDICT = "did not train (all runs diverged)"


def diverged(run: dict) -> bool:
    """Whether ``run`` diverged: without a best state, or after its best (scored from it,
    :func:`rnnbench.report.tables.diverged_late`)."""
    from rnnbench.train.population import DIVERGED_AFTER_BEST

    late = run["status"] == "done" and (run.get("error") or "").startswith(DIVERGED_AFTER_BEST)
    return run["status"] == "diverged" or late


@cache
def reference_nll(dataset: str, data_dir: str | None = None) -> float | None:
    """The per-note marginal's validation NLL on a music set (frame-weighted, nats per step),
    or None for another set or one whose data cannot be loaded here."""
    from rnnbench.baselines import music_baselines
    from rnnbench.data.registry import load_dataset
    from rnnbench.errors import RnnbenchError

    try:
        data = load_dataset(dataset, data_dir)
    except (RnnbenchError, OSError, ValueError):
        return None
    if getattr(data, "head", None) != "bernoulli":
        return None
    for row in music_baselines(data):
        if row.baseline == "marginal" and row.split == "valid":
            return float(row.frame_weighted)
    return None


def did_not_train(cell: Cell, data_dir=None) -> str | None:
    """The note for a cell whose every run diverged before learning (module docstring); None
    for a cell that trained, or still trains. The reference (:func:`reference_nll`) is loaded
    from ``data_dir`` only for a cell whose every run diverged."""
    runs = cell.runs
    if not runs or any(r["status"] in UNFINISHED for r in runs):
        return None
    if not all(diverged(r) for r in runs):
        return None
    reference = reference_nll(cell.dataset, None if data_dir is None else str(data_dir))
    scores = [float(r["valid_nll"]) for r in runs if _finite(r.get("valid_nll"))]
    if reference is not None:
        if any(s < reference for s in scores):
            return None
        against = f"the per-note marginal's {reference:.3f}"
    else:
        if any(int(r.get("best_epoch") or 0) > 1 for r in runs):
            return None
        against = "no best state after epoch 1"
    span = f"best validation NLL {min(scores):.3f}–{max(scores):.3f}" if scores else "no best state"
    return f"all {len(runs)} runs diverged before learning ({span}; {against})"


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def mark_untrained(cells: list[Cell], data_dir=None) -> None:
    """Set :attr:`Cell.untrained` on the cells that did not train: the report then shows them
    as such, with no mean, interval or paired test (:attr:`Cell.chosen` is empty)."""
    for cell in cells:
        cell.untrained = did_not_train(cell, data_dir) or ""
