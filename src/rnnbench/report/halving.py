r"""Successive halving in the report, and its replay on a full search's curves (issue 14).

Report helpers: :func:`departures` (the banner's line), :func:`protocol_note` (``table2.csv``'s
``protocol`` column) and :func:`full_search_estimate` (the Compute section's estimate of what
a full search would have cost).

Replay (:func:`replay`; ``python scripts/halving_replay.py --store PATH``): from a *full*
search's per-epoch validation curves of every candidate (a store or an exported report folder)
it makes the cuts of :mod:`rnnbench.train.halving` without retraining. A member's trajectory
does not depend on which others share its population (to float rounding), so under halving
each candidate follows its full-search curve up to the epoch it is stopped at. Per cell it
reports the search's worker time with and without halving, whether halving chooses the same
rate, and if not how much worse that rate is on validation and test, against the spread of the
cell's fresh seeds.

Worker time of the replayed search is an estimate: the population's epoch time is fitted as
:math:`D(K) = a + bK` (least squares over the full search's epochs, :math:`K` the members
that trained in the epoch; the full search's own epochs, from 10 members down to 1, span the
range), and the halving search costs :math:`\sum_e D(K_h(e))` over its epochs. The full
search's worker time is measured (the store's ``seconds``).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rnnbench.train import halving

__all__ = [
    "departures",
    "protocol_note",
    "quick_note",
    "full_search_estimate",
    "epoch_cost",
    "CellReplay",
    "replay",
    "replay_table",
    "main",
]

Epochs = Callable[[str], list[dict]]


# -- report helpers ---------------------------------------------------------------------------


def _strategies(runs: list[dict]) -> list[str]:
    found = []
    for r in runs:
        text = halving.describe(r["config"])
        if text and text not in found:
            found.append(text)
    return found


def departures(runs: list[dict]) -> list[str]:
    """The departures banner's line for runs whose search used successive halving."""
    found = _strategies(runs)
    if not found:
        return []
    n = sum(1 for r in runs if halving.is_halted(r))
    return [
        f"learning rates chosen by {' / '.join(found)}: {n} candidate run"
        f"{'' if n == 1 else 's'} stopped at a rung (protocol: every candidate trained to its "
        "own stopping rule)"
    ]


def quick_note(runs: list[dict]) -> list[str]:
    """:func:`departures` as sentences, for the quick-run banner."""
    return [f"{d[0].upper()}{d[1:]}." for d in departures(runs)]


def protocol_note(runs: list[dict]) -> str:
    """ "; search: successive halving (...)" for ``table2.csv``'s protocol column, or ""."""
    found = _strategies(runs)
    return f"; search: {' / '.join(found)}" if found else ""


def epoch_cost(durations: Sequence[tuple[int, float]]) -> Callable[[int], float]:
    """``D(K) = a + bK`` fitted by least squares to ``(K, seconds)`` epoch durations; the
    proportional ``D(K) = cK`` when K never varies or the fit is not positive."""
    pairs = [(k, s) for k, s in durations if k > 0 and math.isfinite(s) and s >= 0]
    if not pairs:
        return lambda k: 0.0
    c = sum(s for _, s in pairs) / sum(k for k, _ in pairs)
    ks = {k for k, _ in pairs}
    if len(ks) > 1:
        n = len(pairs)
        mk = sum(k for k, _ in pairs) / n
        ms = sum(s for _, s in pairs) / n
        sxx = sum((k - mk) ** 2 for k, _ in pairs)
        b = sum((k - mk) * (s - ms) for k, s in pairs) / sxx
        a = ms - b * mk
        if a >= 0 and b > 0:
            return lambda k: a + b * k if k > 0 else 0.0
    return lambda k: c * k


def _durations(runs: list[dict], epochs: Epochs) -> tuple[dict[int, float], dict[int, int]]:
    """Per epoch of one population: its duration (from any member's cumulative ``seconds``) and
    how many members trained in it."""
    duration: dict[int, float] = {}
    members: dict[int, int] = {}
    for r in runs:
        rows = sorted(epochs(r["key"]), key=lambda e: int(e["epoch"]))
        previous = 0.0
        for e in rows:
            t = int(e["epoch"])
            members[t] = members.get(t, 0) + 1
            if e.get("seconds") is not None:
                duration.setdefault(t, float(e["seconds"]) - previous)
                previous = float(e["seconds"])
    return duration, members


def full_search_estimate(runs: list[dict], epochs: Epochs) -> tuple[float, float] | None:
    """What one halving search population would have cost as a full search: ``(low, high)``
    worker seconds, or None when no member was stopped at a rung.

    A stopped member would have trained on for at least as long as its patience allowed
    without a new best (to ``min(best_epoch + patience, max_epochs)``: it was still running at
    the rung, so its early stopping had not fired) and at most to ``max_epochs``; the epochs so
    added are priced with :func:`epoch_cost` fitted on this population's own epochs.
    """
    stopped = [r for r in runs if halving.is_halted(r)]
    if not stopped:
        return None
    duration, members = _durations(runs, epochs)
    cost = epoch_cost([(members[t], d) for t, d in duration.items()])
    spent = sum(cost(k) for k in members.values())
    measured = sum(duration.values()) or spent

    def extra_cost(until: Callable[[dict], int]) -> float:
        alive = dict(members)
        for r in stopped:
            for t in range(int(r.get("epochs") or 0) + 1, until(r) + 1):
                alive[t] = alive.get(t, 0) + 1
        return sum(cost(k) for k in alive.values()) - spent

    def low(r: dict) -> int:
        c = r["config"]
        return min(int(r.get("best_epoch") or 0) + int(c["patience"]), int(c["max_epochs"]))

    def high(r: dict) -> int:
        return int(r["config"]["max_epochs"])

    return measured + extra_cost(low), measured + extra_cost(high)


# -- replay -----------------------------------------------------------------------------------


@dataclass
class CellReplay:
    """One cell's search replayed with halving (see the module docstring)."""

    dataset: str
    unit: str
    candidates: int
    member_epochs_full: int
    member_epochs_halving: int
    seconds_full: float  # measured
    seconds_halving: float  # estimated
    lr_full: float | None
    lr_halving: float | None
    valid_full: float | None
    valid_halving: float | None
    test_full: float | None  # the search run's test NLL at that rate (seed 0)
    test_halving: float | None
    fresh_mean: float | None  # the fresh seeds' mean test NLL at the full search's rate
    fresh_std: float | None
    stopped: int  # candidates stopped at a rung
    # the Compute section's estimate of the full search, made from the replayed halving runs
    estimate: tuple[float, float] | None = None

    @property
    def same(self) -> bool:
        return self.lr_full is not None and self.lr_full == self.lr_halving

    @property
    def saving(self) -> float:
        return self.seconds_full / self.seconds_halving if self.seconds_halving else math.nan


def _best_so_far(rows: list[dict], epoch: int) -> float:
    values = [
        float(e["valid_nll"])
        for e in rows
        if int(e["epoch"]) <= epoch
        and e.get("valid_nll") is not None
        and math.isfinite(float(e["valid_nll"]))
    ]
    return min(values) if values else math.inf


def _choose(scores: dict[float, float]) -> float | None:
    usable = {lr: s for lr, s in scores.items() if math.isfinite(s)}
    return min(usable, key=lambda lr: (usable[lr], lr)) if usable else None


def replay_cell(cell, epochs: Epochs, *, eta: int, min_epochs: int) -> CellReplay | None:
    """Replay one finished cell's search (None when it has no search runs with curves)."""
    from rnnbench.report.results import _lr_key, completed, is_fresh

    search = [r for r in cell.runs if not is_fresh(r) and r["status"] in ("done", "diverged")]
    curves = {r["key"]: sorted(epochs(r["key"]), key=lambda e: int(e["epoch"])) for r in search}
    if not search or any(not curves[r["key"]] for r in search):
        return None
    cap = int(search[0]["config"]["max_epochs"])
    trained = {r["key"]: int(curves[r["key"]][-1]["epoch"]) for r in search}
    until = dict(trained)  # epochs each member trains under halving
    halted: set[str] = set()
    for e in halving.rungs(min_epochs, eta, cap):
        running = [r for r in search if r["key"] not in halted and trained[r["key"]] > e]
        groups: dict[float, list[dict]] = {}
        for r in running:
            groups.setdefault(_lr_key(r["config"]["lr"]), []).append(r)
        scores = {
            lr: sum(_best_so_far(curves[r["key"]], e) for r in rs) / len(rs)
            for lr, rs in groups.items()
        }
        for lr in halving.cut(scores, eta).stopped:
            for r in groups[lr]:
                halted.add(r["key"])
                until[r["key"]] = e

    def valid(r: dict, cut_short: bool) -> float:
        if cut_short and r["key"] in halted:
            return _best_so_far(curves[r["key"]], until[r["key"]])
        return float(r["valid_nll"]) if completed(r) else math.inf

    def by_lr(cut_short: bool) -> dict[float, float]:
        values: dict[float, list[float]] = {}
        for r in search:
            values.setdefault(_lr_key(r["config"]["lr"]), []).append(valid(r, cut_short))
        return {lr: sum(v) / len(v) for lr, v in values.items()}

    full, cut = by_lr(False), by_lr(True)
    lr_full, lr_cut = _choose(full), _choose(cut)

    def test_at(lr: float | None) -> float | None:
        tests = [
            float(r["test_nll"])
            for r in search
            if lr is not None
            and _lr_key(r["config"]["lr"]) == lr
            and r.get("test_nll") is not None
            and math.isfinite(float(r["test_nll"]))
        ]
        return sum(tests) / len(tests) if tests else None

    fresh = [
        float(r["test_nll"])
        for r in cell.runs
        if is_fresh(r)
        and r["status"] == "done"
        and lr_full is not None
        and _lr_key(r["config"]["lr"]) == lr_full
        and r.get("test_nll") is not None
    ]
    mean = sum(fresh) / len(fresh) if fresh else None
    std = (
        math.sqrt(sum((x - mean) ** 2 for x in fresh) / (len(fresh) - 1))
        if len(fresh) >= 2
        else None
    )
    duration, members = _durations(search, epochs)
    cost = epoch_cost([(members[t], d) for t, d in duration.items()])
    alive: dict[int, int] = {}
    for r in search:
        for t in range(1, until[r["key"]] + 1):
            alive[t] = alive.get(t, 0) + 1
    estimate = _estimate_from_replay(search, curves, until, halted, eta, min_epochs)
    return CellReplay(
        estimate=estimate,
        dataset=cell.dataset,
        unit=cell.label,
        candidates=len(full),
        member_epochs_full=sum(trained.values()),
        member_epochs_halving=sum(until.values()),
        seconds_full=max(float(r.get("seconds") or 0.0) for r in search),
        seconds_halving=sum(cost(k) for k in alive.values()),
        lr_full=lr_full,
        lr_halving=lr_cut,
        valid_full=full.get(lr_full) if lr_full is not None else None,
        valid_halving=cut.get(lr_cut) if lr_cut is not None else None,
        test_full=test_at(lr_full),
        test_halving=test_at(lr_cut),
        fresh_mean=mean,
        fresh_std=std,
        stopped=len(halted),
    )


def _estimate_from_replay(search, curves, until, halted, eta, min_epochs):
    """:func:`full_search_estimate` on the replayed halving search, as the report would make
    it from a real one: a check of that estimate against the measured full search."""
    runs, rows = [], {}
    for r in search:
        kept = [e for e in curves[r["key"]] if int(e["epoch"]) <= until[r["key"]]]
        rows[r["key"]] = kept
        config = {**r["config"], "search": "halving", "search_eta": eta}
        config["search_min_epochs"] = min_epochs
        if r["key"] not in halted:
            runs.append({**r, "config": config})
            continue
        best = min(
            (e for e in kept if e.get("valid_nll") is not None),
            key=lambda e: (float(e["valid_nll"]), int(e["epoch"])),
            default=None,
        )
        runs.append(
            {
                **r,
                "config": config,
                "status": "done",
                "error": f"{halving.HALTED} (replayed)",
                "epochs": until[r["key"]],
                "best_epoch": None if best is None else int(best["epoch"]),
            }
        )
    return full_search_estimate(runs, lambda key: rows[key])


def replay(
    store_paths, *, eta: int = halving.DEFAULT_ETA, min_epochs: int = halving.DEFAULT_MIN_EPOCHS
) -> tuple[list[CellReplay], list[str]]:
    """Replay every finished cell of the stores (or export folders) at ``store_paths``;
    returns the replays and the labels of the cells left out (unfinished, or no curves)."""
    from rnnbench.report.results import build_cells, searching
    from rnnbench.report.stores import open_stores

    out, skipped = [], []
    with open_stores(store_paths) as sources:
        for cell in build_cells(sources.runs):
            label = f"{cell.dataset} {cell.label}"
            if searching(cell) or any(
                r["config"].get("search", "full") != "full" for r in cell.runs
            ):
                skipped.append(label)
                continue
            done = replay_cell(cell, sources.epochs, eta=eta, min_epochs=min_epochs)
            if done is None:
                skipped.append(label)
            else:
                out.append(done)
    return out, skipped


def _f(x: float | None, digits: int = 3, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def replay_table(cells: list[CellReplay]) -> str:
    """The replay as a Markdown table, with a total row."""
    head = (
        "| data set | unit | rates | stopped at a rung | member-epochs full → halving | "
        "worker h full → halving (est.) | saving | lr full | lr halving | Δ valid | "
        "Δ test (search runs) | fresh seeds' test: mean ± std | Compute's estimate of the "
        "full search, h |"
    )
    lines = [head, "|" + "---|" * 13]
    for c in cells:
        delta_v = delta_t = None
        if not c.same and c.valid_halving is not None and c.valid_full is not None:
            delta_v = c.valid_halving - c.valid_full
        if not c.same and c.test_halving is not None and c.test_full is not None:
            delta_t = c.test_halving - c.test_full
        same = "same" if c.same else f"{c.lr_halving:.3g}" if c.lr_halving else "—"
        lines.append(
            f"| {c.dataset} | {c.unit} | {c.candidates} | {c.stopped} | "
            f"{c.member_epochs_full} → {c.member_epochs_halving} | "
            f"{_h(c.seconds_full)} → {_h(c.seconds_halving)} | {c.saving:.1f}× | "
            f"{c.lr_full:.3g} | {same} | {_f(delta_v, signed=True) if not c.same else '0'} | "
            f"{_f(delta_t, signed=True) if not c.same else '0'} | "
            f"{_f(c.fresh_mean)} ± {_f(c.fresh_std)} | "
            + (f"{_h(c.estimate[0])} – {_h(c.estimate[1])} |" if c.estimate else "— |")
        )
    if cells:
        full = sum(c.seconds_full for c in cells)
        cut = sum(c.seconds_halving for c in cells)
        same = sum(1 for c in cells if c.same)
        lines.append(
            f"| all | | | {sum(c.stopped for c in cells)} | "
            f"{sum(c.member_epochs_full for c in cells)} → "
            f"{sum(c.member_epochs_halving for c in cells)} | {_h(full)} → {_h(cut)} | "
            f"{full / cut if cut else math.nan:.1f}× | | same rate in {same} of {len(cells)} | "
            "| | | |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python scripts/halving_replay.py --store PATH [--store PATH] [--eta N]
    [--min-epochs R]``: print the replay table."""
    from rnnbench.errors import RnnbenchError

    p = argparse.ArgumentParser(
        prog="scripts/halving_replay.py",
        description="Replay successive halving on a full search's per-epoch curves.",
    )
    p.add_argument("--store", action="append", required=True, help="a store or export folder")
    p.add_argument("--eta", type=int, default=halving.DEFAULT_ETA)
    p.add_argument("--min-epochs", type=int, default=halving.DEFAULT_MIN_EPOCHS)
    args = p.parse_args(argv)
    try:
        if args.eta < 2 or args.min_epochs < 1:
            raise RnnbenchError("--eta must be 2 or more and --min-epochs 1 or more; fix them.")
        cells, skipped = replay(args.store, eta=args.eta, min_epochs=args.min_epochs)
    except RnnbenchError as exc:
        print(f"rnnbench: {exc}", file=sys.stderr)
        return 2
    print(f"Replay: η = {args.eta}, first rung at epoch {args.min_epochs}\n")
    print(replay_table(cells))
    if skipped:
        print(f"\nNot replayed (unfinished, halving runs, or no curves): {', '.join(skipped)}")
    return 0
