"""What each cell cost to train: the report's "Compute" section.

Runs train in populations, and a run's ``seconds`` is the wall-clock time of its population's
epochs that it trained in (each epoch's training and validation, not the final scoring or the
time spent queued). The member that trained longest was in every epoch of its population, so
the population's worker time is the largest ``seconds`` among its members, however often it was
resumed. The members of one population share their first epoch's ``seconds`` exactly, which is
how they are grouped: by what actually trained together, never by the configs (the store's
``group_key`` of a run is the one it was stored with, and an export's rows keep theirs). A
stage's cost is the sum over its populations: the learning-rate search is one population; the
fresh seeds train as one population since issue 22 (each member reads its own batch order),
while the fresh seeds of earlier versions trained one after another, a population each, and
still count so. The cell's cost is the sum over its stages. Runs
without a stage or sweep label come from ``rnnbench train``, where each command trains one
population. Unfinished runs count with the seconds of their last recorded epoch. Cells trained
side by side (one worker each) overlap in wall-clock time, so the total is worker time, not
elapsed time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rnnbench.report import paper
from rnnbench.report.document import Table
from rnnbench.report.halving import full_search_estimate
from rnnbench.report.progress import stage_text
from rnnbench.report.results import UNFINISHED, Cell


@dataclass
class StageCost:
    """One stage of one cell: its runs, worker seconds and furthest epoch."""

    stage: str | None
    runs: int
    seconds: float
    epochs: int
    unfinished: bool
    started: bool  # any epoch trained
    # a search by successive halving: what the full search would have cost, (low, high)
    full_estimate: tuple[float, float] | None = None
    populations: int = 1  # how many populations trained the stage's runs
    population_epochs: int = 0  # epochs trained, summed over the stage's populations

    @property
    def per_epoch(self) -> float | None:
        """Worker seconds per epoch of a population (training and validation), or None."""
        return self.seconds / self.population_epochs if self.population_epochs else None


Epochs = Callable[[str], list[dict]]  # run key -> its per-epoch rows


def run_seconds(run: dict, epochs: Epochs) -> tuple[float, int]:
    """``(seconds, epochs)`` a run has trained: its final row, else its last recorded epoch."""
    if run.get("seconds") is not None and run["status"] not in UNFINISHED:
        return float(run["seconds"]), int(run.get("epochs") or 0)
    rows = [e for e in epochs(run["key"]) if e.get("seconds") is not None]
    if not rows:
        return 0.0, 0
    last = max(rows, key=lambda e: int(e["epoch"]))
    return float(last["seconds"]), int(last["epoch"])


def population_key(run: dict, epochs: Epochs) -> tuple:
    """The population ``run`` trained in: the members of one population share their first
    epoch's ``seconds`` exactly (it is the population's wall-clock time), so that, within the
    run's sweep and stage, is the key. A stage may be one population or several: the fresh
    seeds of a cell train together since issue 22, one after another before it (each then its
    own population). A run with no recorded epoch is a population of its own."""
    first = next((e for e in epochs(run["key"]) if int(e["epoch"]) == 1), None)
    seconds = None if first is None else first.get("seconds")
    origin = "train" if run.get("stage") is None and run.get("sweep") is None else "sweep"
    return (
        origin,
        run.get("sweep"),
        run.get("stage"),
        seconds,
        run["key"] if seconds is None else "",
    )


def epoch_sharing(run: dict, family: Iterable[dict], epochs: Epochs) -> dict[int, int]:
    """Epoch -> how many runs of ``family`` trained in that epoch of ``run``'s population:
    those with its stored ``group_key`` and stage and its :func:`population_key` (``run``
    itself always counts), what :func:`rnnbench.report.figures.per_model_seconds` divides an
    epoch's time by."""
    together = population_key(run, epochs)
    own = (run.get("group_key"), run.get("stage"))
    counts: Counter = Counter()
    for other in family:
        if other["key"] == run["key"] or (
            (other.get("group_key"), other.get("stage")) == own
            and population_key(other, epochs) == together
        ):
            counts.update({int(e["epoch"]) for e in epochs(other["key"])})
    if not counts:
        counts.update({int(e["epoch"]) for e in epochs(run["key"])})
    return dict(counts)


def stage_costs(cell: Cell, epochs: Epochs) -> list[StageCost]:
    """The cost of each stage of ``cell``, in the order the stages first appear; the
    populations of ``rnnbench train`` runs (no stage) add up into one row."""
    stages: dict[str | None, dict[tuple, list[dict]]] = {}
    for run in cell.runs:
        pops = stages.setdefault(run.get("stage"), {})
        pops.setdefault(population_key(run, epochs), []).append(run)
    out = []
    for stage, pops in stages.items():
        seconds, furthest, population_epochs = 0.0, 0, 0
        estimates = []
        for runs in pops.values():
            trained = [run_seconds(r, epochs) for r in runs]
            seconds += max(s for s, _ in trained)
            furthest = max(furthest, max(e for _, e in trained))
            population_epochs += max(e for _, e in trained)
            estimates.append((full_search_estimate(runs, epochs), max(trained)[0]))
        members = [r for runs in pops.values() for r in runs]
        out.append(
            StageCost(
                stage=stage,
                runs=len(members),
                seconds=seconds,
                epochs=furthest,
                unfinished=any(r["status"] in UNFINISHED for r in members),
                started=furthest > 0,
                full_estimate=_sum_estimates(estimates),
                populations=len(pops),
                population_epochs=population_epochs,
            )
        )
    return out


def _seeds_text(together: bool) -> str:
    """How the fresh seeds trained, as the caption says it: ``together`` (issue 22: a seeds
    stage had fewer populations than runs), else one after another (the earlier versions)."""
    if together:
        return (
            "the fresh seeds of a cell also train as one population, each reading its own "
            "batch order, where they trained after issue 22, and count once"
        )
    return "each fresh seed reads its own batch order and trains as a population of its own"


def _sum_estimates(estimates: list[tuple[tuple[float, float] | None, float]]):
    """The full-search estimates of a stage's populations summed (a population that halving
    did not cut counts with its measured time); None when halving cut none of them."""
    if all(est is None for est, _ in estimates):
        return None
    low = sum(est[0] if est else measured for est, measured in estimates)
    high = sum(est[1] if est else measured for est, measured in estimates)
    return (low, high)


def hours(seconds: float) -> str:
    """Seconds as the table prints them: minutes below an hour, else hours."""
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def per_epoch_text(seconds: float | None) -> str:
    """Seconds per population epoch as the table prints them ("" when none trained)."""
    if seconds is None:
        return ""
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def _state(cost: StageCost) -> str:
    if not cost.unfinished:
        return ""
    return " (still training)" if cost.started else " (queued)"


def compute_table(cells: list[Cell], epochs: Epochs) -> Table:
    """One row per cell and stage, and a total: runs, furthest epoch, worker time, worker
    seconds per population epoch."""
    body = []
    total = 0.0
    low = high = 0.0  # with halving: the full searches' estimated worker time
    halved = together = False
    for cell in cells:
        for cost in stage_costs(cell, epochs):
            together = together or (cost.stage == "seeds" and cost.populations < cost.runs)
            total += cost.seconds
            est = cost.full_estimate
            halved = halved or est is not None
            low += est[0] if est else cost.seconds
            high += est[1] if est else cost.seconds
            body.append(
                [
                    paper.dataset_info(cell.dataset).label,
                    cell.label,
                    stage_text(cost.stage) + _state(cost),
                    str(cost.runs),
                    str(cost.epochs),
                    hours(cost.seconds),
                    per_epoch_text(cost.per_epoch),
                    f"{hours(est[0])} – {hours(est[1])}" if est else "",
                ]
            )
    body.append(
        ["all", "", "", str(sum(len(c.runs) for c in cells)), "", hours(total), ""]
        + [f"{hours(low)} – {hours(high)}; saved {hours(low - total)} – {hours(high - total)}"]
    )
    header = ["data set", "unit", "stage", "runs", "furthest epoch", "worker time", "per epoch"]
    header.append("without successive halving (estimate)")
    if not halved:  # the paper's full search everywhere: no estimate column
        header.pop()
        body = [row[:-1] for row in body]
    caption = (
        "Worker time: the wall-clock time of the stage's populations, summed (the "
        f"learning-rate candidates train together as one population; {_seeds_text(together)}), "
        "from "
        "the seconds the store keeps per run: each epoch's training and validation, not "
        "the final scoring or the time in the queue. A stage still training counts its "
        "epochs so far. Cells that trained side by side overlap in wall-clock time, so the "
        "total is worker time, not elapsed time. Per epoch: the stage's worker time over the "
        "epochs its populations trained (one epoch of one population, all its members), so it "
        "is the trainer of the day the stage ran, on that day's machine and load: compare "
        "stages by it only where both ran alike."
    )
    if halved:
        caption += (
            " A search by successive halving stopped some candidates at a rung; the last "
            "column estimates what the full search would have cost: each stopped candidate "
            "trained on at least until its patience would have run out with no new best (its "
            "best epoch + patience) and at most to the epoch cap, the added epochs priced by a "
            "line a + bK fitted to the population's own epoch times against the K members that "
            "trained in them. An estimate, not a measurement (rnnbench.report.halving)."
        )
    return Table(
        header,
        body,
        caption=caption,
        numeric=[False, False, False, True, True, True, True, True][: len(header)],
    )
