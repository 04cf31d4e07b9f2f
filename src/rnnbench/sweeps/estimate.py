"""How long a sweep has left, from measured per-epoch costs per data set and unit.

tqdm's own estimate divides the time so far by the runs finished so far. A grid mixes runs whose
epochs cost very different times (a speech epoch costs many music epochs), and its runs finish
in bursts (a population's members together), so that estimate froze and then jumped: the quick
reproduction said "02:02 left" for five minutes with twelve to go. Here instead:

- every epoch record gives the cost of one epoch of its population (the wall-clock seconds
  between two epochs of its first member), kept per (data set, unit) as a running mean;
- each population still to train (queued, or running at epoch ``e``) has ``cap - e`` epochs
  left, ``cap`` its ``max_epochs``, at its (data set, unit) cost (the mean of all measured
  costs where that pair has none yet);
- populations that a sweep chains later (``reproduce``'s seeds) are counted as the same number
  of runs at the mean cost of a run's epochs so far;
- the sum is divided by the number of workers.

Early stopping usually ends runs before their cap, so the figure is an upper bound, and the
display says so ("at most 12m left"). Nothing is shown until one epoch has been measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Work:
    """One population still to train: its cell, its epoch cap, the epoch it reached, size."""

    cell: tuple[str, str]
    cap: int
    members: int
    epoch: int = 0


@dataclass
class Estimate:
    """Time left (:meth:`left`) from the work still to do and the costs measured so far."""

    workers: int = 1
    work: dict[Any, Work] = field(default_factory=dict)
    costs: dict[tuple[str, str], float] = field(default_factory=dict)  # seconds per epoch
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    last: dict[Any, float] = field(default_factory=dict)  # a task's latest cumulative seconds

    def queue(self, task, configs) -> None:
        """Register a population (its member configs: RunConfig objects or dicts)."""
        if not configs:
            return
        first = configs[0]
        cap = max(int(_field(c, "max_epochs") or 1) for c in configs)
        work = self.work.get(task)
        cell = (str(_field(first, "dataset")), str(_field(first, "unit")))
        self.work[task] = Work(cell, cap, len(configs), work.epoch if work else 0)

    def epoch(self, task, member: int, record: dict) -> None:
        """One epoch record of member ``member`` of ``task``: the epoch reached and, from the
        first member, the cost of that epoch."""
        work = self.work.get(task)
        if work is None:
            return
        work.epoch = max(work.epoch, int(record.get("epoch") or 0))
        seconds = record.get("seconds")
        if member != 0 or not isinstance(seconds, int | float):
            return
        previous = self.last.get(task)
        self.last[task] = float(seconds)
        if previous is None or seconds <= previous:
            return
        cost, n = seconds - previous, self.counts.get(work.cell, 0)
        self.costs[work.cell] = (self.costs.get(work.cell, 0.0) * n + cost) / (n + 1)
        self.counts[work.cell] = n + 1

    def drop(self, task) -> None:
        """A population that finished (or failed for good): nothing left to train."""
        self.work.pop(task, None)
        self.last.pop(task, None)

    def left(self, unplanned_runs: int = 0) -> float | None:
        """Seconds left at the epoch caps, or None before any epoch was measured."""
        if not self.costs:
            return None
        mean = sum(self.costs.values()) / len(self.costs)
        total = 0.0
        members = caps = 0
        for work in self.work.values():
            total += max(0, work.cap - work.epoch) * self.costs.get(work.cell, mean)
            members += work.members
            caps += work.cap
        if unplanned_runs > 0 and self.work:
            # chained runs: as many runs, in populations like the ones queued now
            per_run = caps / len(self.work) * mean / max(1, members / len(self.work))
            total += unplanned_runs * per_run
        parallel = max(1, min(self.workers, max(1, len(self.work))))
        return total / parallel


def _field(config, name: str):
    return config.get(name) if isinstance(config, dict) else getattr(config, name, None)


def words(seconds: float | None) -> str:
    """``"at most 2h05m left"``; empty when there is no estimate yet or nothing left."""
    if seconds is None or seconds <= 0:
        return ""
    minutes = int(seconds // 60 + (1 if seconds % 60 else 0))
    if minutes < 60:
        return f"at most {max(1, minutes)}m left"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"at most {hours}h{minutes:02d}m left"
    return f"at most {hours // 24}d{hours % 24:02d}h left"
