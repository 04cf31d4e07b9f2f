"""What every sweep engine shares: run folders, skipping finished runs, writing results,
counting runs and showing progress.

Only the process that runs the sweep (the local engine's parent, the Ray driver) writes the
results store; workers send their per-epoch records and results back to it. A run's folder is
``OUT/runs/<RunConfig.key()>``; the trainer keeps ``config.json``, ``metrics.jsonl``,
``best.pt`` and ``last.pt`` there.

A run is *finished* when the store says ``done`` or ``diverged`` and its best checkpoint
exists; a finished run is never trained again. Any other run is trained (again), and the
trainer resumes it from ``last.pt`` when that exists.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnbench.errors import RnnbenchError
from rnnbench.store import FINISHED, Store
from rnnbench.sweeps.estimate import Estimate, words
from rnnbench.sweeps.grid import Population
from rnnbench.train.config import RunConfig

# OSError numbers that retrying cannot fix: the sweep stops with one clear sentence.
FATAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}

# then(population, runs) -> more populations: how reproduce chains stage 2 after stage 1.
Then = Callable[[Population, list[dict]], list[Population]]


def run_dir(out: Path, config: RunConfig) -> Path:
    return Path(out) / "runs" / config.key()


def check_writable(folder: Path, what: str = "--out") -> None:
    """Create ``folder`` and prove it writable, or raise one clear sentence."""
    folder = Path(folder)
    probe = folder / f".rnnbench-write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise fatal_error(exc, folder, what) from exc


def fatal_error(exc: OSError, where: Path | str, what: str = "--out") -> RnnbenchError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return RnnbenchError(
            f"The disk is full while writing {where}: free some space (or choose another {what} "
            "folder) and run the same command again; finished runs are kept."
        )
    return RnnbenchError(
        f"Cannot write to {where} ({exc.strerror or exc}): make it writable or choose another "
        f"{what} folder."
    )


def is_fatal(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in FATAL_ERRNOS


def describe(exc: BaseException) -> str:
    """``Type: message`` first, then the traceback's last lines: what the store keeps."""
    head = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    tail = "".join(traceback.format_tb(exc.__traceback__)[-3:]).rstrip()
    return f"{head}\n{tail}" if tail else head


def is_finished(store: Store, config: RunConfig, out: Path) -> bool:
    """A run done or diverged whose folder holds its best checkpoint, or one copied from a
    committed report's exports (``--resume-from``): its numbers are in the store, its folder
    on the machine that trained it. A finished run with neither is trained again."""
    run = store.get_run(config.key())
    if run is None or run["status"] not in FINISHED:
        return False
    if run.get("imported"):
        return True
    folder = run_dir(out, config)
    checkpoint = run.get("checkpoint")
    return (folder / "best.pt").exists() or bool(checkpoint and Path(checkpoint).exists())


def plan(store: Store, population: Population, out: Path) -> Population | None:
    """The population's unfinished members (queued in the store), or None when all are done."""
    todo = [c for c in population.configs if not is_finished(store, c, out)]
    for c in todo:
        store.queue_run(c.key(), c.to_dict(), str(run_dir(out, c)), labels=population.labels)
    if not todo:
        return None
    whole = population.whole or population
    return Population(todo, dict(population.labels), population.name, whole=whole)


def planned_runs(populations: list[Population], then: Then | None) -> int:
    """The runs a sweep will hold: its populations' and, where ``then`` says how many it
    chains after a population (an attribute ``runs_after(population) -> int``), those too."""
    after = getattr(then, "runs_after", None)
    return sum(len(p.configs) + (after(p) if after else 0) for p in populations)


def chain(then: Then | None, store: Store, population: Population) -> list[Population]:
    """The populations ``then`` chains after ``population``, given the runs of *every* member
    it was planned with, including those already finished when the sweep resumed.

    Nothing is chained while a member is unfinished (failed, or interrupted): reproduce would
    choose its seeds' learning rate among part of the candidates, and train seeds at a rate
    that the finished search may not choose. Running the same command again retries them.
    """
    if then is None:
        return []
    whole = population.whole or population
    runs = member_runs(store, whole)
    unfinished = sum(1 for r in runs if r is None or r["status"] not in FINISHED)
    if unfinished:
        print(
            f"rnnbench: {whole.name}: {unfinished} of {len(runs)} runs did not finish, so what "
            "follows it (the seeds) waits; run the same command again to retry them.",
            file=sys.stderr,
        )
        return []
    return then(whole, runs)


def start(store: Store, population: Population, out: Path) -> None:
    for c in population.configs:
        store.start_run(c.key(), c.to_dict(), str(run_dir(out, c)), labels=population.labels)


def plain(value: Any) -> Any:
    """Results as plain Python (paths to str, numpy/tensor scalars to float/int)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def read_metrics(folder: Path) -> list[dict]:
    """The epoch records of a run folder's ``metrics.jsonl`` (torn last lines skipped)."""
    records = []
    try:
        lines = (Path(folder) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return records
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "epoch" in record:
            records.append(record)
    return records


def record_epoch(store: Store, config: RunConfig, record: dict) -> None:
    store.log_epoch(config.key(), record)


def record_results(store: Store, population: Population, out: Path, results: list[dict]) -> None:
    """Write train_population's per-member results (and every epoch of metrics.jsonl)."""
    for config, result in zip(population.configs, results, strict=True):
        record_result(store, config, out, result)


def record_result(store: Store, config: RunConfig, out: Path, result: dict) -> None:
    """Write one member's result (as soon as it finishes, and again with its population)."""
    key, folder = config.key(), run_dir(out, config)
    # The records sent live can miss an epoch when the sweep was killed; the run folder
    # has them all, and the upsert makes rewriting the others harmless.
    store.log_epochs(key, read_metrics(folder))
    status = result.get("status", "done")
    if status not in FINISHED:
        status = "diverged"
    if status == "done" and not _finite(result.get("valid_nll")):
        status = "diverged"
    result = dict(result)
    if config.hidden is not None:
        result.setdefault("hidden", config.hidden)
    store.finish_run(key, status, result)


def record_failure(store: Store, population: Population, error: str) -> None:
    """Mark the population's runs ``failed``, except members that had already finished."""
    for c in population.configs:
        row = store.get_run(c.key())
        if row is None or row["status"] not in FINISHED:
            store.finish_run(c.key(), "failed", error=error)


def requeue(store: Store, population: Population) -> None:
    """Interrupted members go back to ``queued`` (their last.pt is kept for the resume)."""
    store.set_status([c.key() for c in population.configs], "queued", only=["running"])


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def best_lr(runs: list[dict]) -> float | None:
    """The learning rate of the run with the lowest validation NLL among ``done`` runs.

    Diverged and failed runs (and any without a finite validation NLL) never count.
    Ties go to the smaller rate. None when no run qualifies.
    """
    usable = [r for r in runs if r["status"] == "done" and _finite(r.get("valid_nll"))]
    if not usable:
        return None
    best = min(usable, key=lambda r: (r["valid_nll"], r["config"]["lr"]))
    return float(best["config"]["lr"])


def member_runs(store: Store, population: Population) -> list[dict]:
    return [store.get_run(c.key()) for c in population.configs]


@dataclass
class Tally:
    total: int = 0
    planned: int = 0  # the runs the sweep will hold, chained ones included (the bar's total)
    done: int = 0
    diverged: int = 0
    failed: int = 0
    skipped: int = 0
    epochs: dict[Any, int] = field(default_factory=dict)  # latest epoch of each running task
    caps: dict[Any, int] = field(default_factory=dict)  # the epoch cap of each running task
    estimate: Estimate = field(default_factory=Estimate)  # time left (sweeps.estimate)

    def queued(self, task, population: Population) -> None:
        """A population to train (task ``task``): its epoch cap and the work it adds."""
        self.caps[task] = max(c.max_epochs for c in population.configs)
        self.estimate.queue(task, population.configs)

    def epoch(self, task, member: int, record: dict) -> None:
        """An epoch record of one member of task ``task``."""
        self.epochs[task] = max(self.epochs.get(task, 0), int(record["epoch"]))
        self.estimate.epoch(task, member, record)

    def ended(self, task, *, for_good: bool = True) -> None:
        """Task ``task`` stopped running; ``for_good``: nothing of it is left to train."""
        self.epochs.pop(task, None)
        if for_good:
            self.caps.pop(task, None)
            self.estimate.drop(task)

    def count(self, store: Store, population: Population, only=None) -> None:
        """Add the population's ``done`` and ``diverged`` runs (as the store has them);
        ``only``: the keys of the members to count (None: all)."""
        for c, run in zip(population.configs, member_runs(store, population), strict=True):
            if only is not None and c.key() not in only:
                continue
            if run and run["status"] == "done":
                self.done += 1
            elif run and run["status"] == "diverged":
                self.diverged += 1

    def counts(self) -> dict[str, int]:
        """What a sweep returns: total, done, diverged, failed, skipped (found finished)."""
        return {
            "total": self.total,
            "done": self.done,
            "diverged": self.diverged,
            "failed": self.failed,
            "skipped": self.skipped,
        }


class Display:
    """One tqdm bar over all runs of the sweep, on stderr: finished / total, ETA, states."""

    def __init__(self, enabled: bool, tally: Tally) -> None:
        self.tally = tally
        self.bar = None
        self.shown = time.monotonic()
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=max(tally.total, tally.planned),
                unit="run",
                file=sys.stderr,
                dynamic_ncols=True,
                desc="sweep",
                # tqdm's own estimate (time so far / runs so far) froze and jumped: ours is in
                # the postfix, from measured per-epoch costs (rnnbench.sweeps.estimate)
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                "[{elapsed}{postfix}]",
            )

    def update(self, running: int, finished_now: int = 0) -> None:
        if self.bar is None:
            return
        t = self.tally
        total = max(t.total, t.planned)
        if self.bar.total != total:
            self.bar.total = total
        if finished_now:
            self.bar.update(finished_now)
        epochs = ", ".join(
            f"{e}/{t.caps[k]}" if k in t.caps else str(e)
            for k, e in sorted(t.epochs.items(), key=lambda item: item[1])
        )
        left = words(t.estimate.left(max(0, t.planned - t.total)))
        self.bar.set_postfix_str(
            f"running {running}"
            + (f" (epoch {epochs})" if epochs else "")
            + (f" · {left}" if left else "")
            + f" · diverged {t.diverged} · failed {t.failed}",
            refresh=True,
        )

    def tick(self) -> None:
        """Refresh the clock and ETA between events (at most once a second)."""
        if self.bar is not None and time.monotonic() - self.shown >= 1.0:
            self.bar.refresh()
            self.shown = time.monotonic()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def admit(
    store: Store, population: Population, out: Path, tally: Tally, display: Display, running: int
) -> Population | None:
    """:func:`plan` the population and count it: its runs in the total, the finished ones as
    skipped (and done or diverged). ``running``: the tasks running now, for the display."""
    tally.total += len(population.configs)
    todo = plan(store, population, out)
    if todo is None:
        tally.count(store, population)
    elif len(todo.configs) < len(population.configs):  # its finished members count now (a
        # cell's fresh seeds, one population since issue 22, may be partly finished)
        left = {c.key() for c in todo.configs}
        tally.count(store, population, only={c.key() for c in population.configs} - left)
    skipped = len(population.configs) - (len(todo.configs) if todo else 0)
    tally.skipped += skipped
    display.update(running, skipped)
    return todo
