r"""Successive halving of a population's learning-rate candidates (issue 14).

The paper's search trains every candidate to its own stopping rule (early stopping or the epoch
cap). With ``RunConfig.search = "halving"`` the population also stops its hopeless candidates
at *rungs*, the epochs

.. math:: R = \{\, r\,\eta^i : i = 0, 1, \dots \,\}\ \cap\ [1, E)

with :math:`r` = ``search_min_epochs``, :math:`\eta` = ``search_eta`` and :math:`E` =
``max_epochs`` (a rung at or past the cap is no rung: every member stops there anyway). At the
end of rung epoch :math:`e`, the *candidates* are the learning rates with a member still
training (status ``running`` after that epoch's early-stopping and divergence checks); a
candidate's score is the mean over those members of their best validation NLL so far,

.. math:: s(\text{lr}) = \operatorname{mean}_{k:\ \text{lr}_k = \text{lr}}\ \min_{t \le e} v_{k,t},

and the :math:`\lceil n/\eta \rceil` candidates with the lowest :math:`(s, \text{lr})` (ties go
to the smaller rate, as in the final choice) go on; every running member of the others stops,
status ``done``, scored from its best state like a member that stopped early, with an ``error``
that says so (:func:`halted_text`: "stopped by successive halving at epoch 27 (rung 1 of 3):
...").

Why these choices:

- *Best so far, not the rung epoch's value*: the final choice compares best validation NLLs,
  and weight noise makes one epoch's value jumpy (0.05–0.3 nats from epoch to epoch on the
  music sets); the best so far is monotone and is what the trainer already keeps
  (:class:`rnnbench.train.protocol.EarlyStopping`, saved in ``last.pt``).
- *Only members still training compete*: a member that stopped before the rung (patience,
  divergence) has freed its compute already and keeps its result for the final choice;
  counting it would only cut more of the members still improving. So the decision needs
  nothing but the state of the members training together, which every ``last.pt`` holds:
  a run killed between rungs (or during one) resumes from its checkpoints and makes the same
  cuts, and the engines need nothing of their own (on Ray a population is one trial).
- *Grouped by rate*: a population of several seeds per rate cuts whole rates (the mean over
  seeds, as the final choice averages them); a population with one rate (each fresh seed of
  ``reproduce``) is never cut, since :math:`\lceil 1/\eta \rceil = 1`.

A member stopped at a rung can win the final choice only on a tie within float rounding:
every kept candidate's best so far was at most its best at that rung, and a best only falls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "STRATEGIES",
    "DEFAULT_ETA",
    "DEFAULT_MIN_EPOCHS",
    "HALTED",
    "rungs",
    "rung_number",
    "keep_count",
    "Cut",
    "cut",
    "decide",
    "halted_text",
    "is_halted",
    "describe",
]

STRATEGIES = ("full", "halving")
# Defaults (docs/training.md, "Successive halving"): η = 3, the usual factor (Jamieson &
# Talwalkar 2016; Li et al. 2017) that takes 10 candidates to 4, 2, 1; a first rung at epoch 27,
# after the fast (high) rates of the music sets have reached or neared their best (JSB: best
# epochs 16-92 for the rates above 2e-4), so that a slower rate is not judged by its speed
# alone; at epoch 9 the ranking is by speed and picks the wrong rate (the replay in
# docs/results/halving/README.md).
DEFAULT_ETA = 3
DEFAULT_MIN_EPOCHS = 27
HALTED = "stopped by successive halving"


def rungs(min_epochs: int, eta: int, max_epochs: int) -> list[int]:
    """The rung epochs ``r, r η, r η², ...`` strictly below ``max_epochs``."""
    if min_epochs < 1 or eta < 2:
        raise ValueError(f"rungs need min_epochs >= 1 and eta >= 2, got {min_epochs}, {eta}")
    out, e = [], int(min_epochs)
    while e < max_epochs:
        out.append(e)
        e *= int(eta)
    return out


def rung_number(epoch: int, min_epochs: int, eta: int, max_epochs: int) -> int | None:
    """1 for the first rung, 2 for the second, ...; None when ``epoch`` is no rung."""
    points = rungs(min_epochs, eta, max_epochs)
    return points.index(epoch) + 1 if epoch in points else None


def keep_count(n: int, eta: int) -> int:
    """How many of ``n`` candidates a rung keeps: ``ceil(n / eta)`` (at least 1 when n > 0)."""
    return -(-int(n) // int(eta))


@dataclass(frozen=True)
class Cut:
    """One rung's decision among candidate rates: ``kept`` and ``stopped`` rates in rank order,
    every candidate's ``scores``, and the ``cutoff`` (the last kept candidate's score)."""

    kept: tuple[float, ...]
    stopped: tuple[float, ...]
    scores: dict[float, float]

    @property
    def cutoff(self) -> float:
        return self.scores[self.kept[-1]] if self.kept else math.nan


def cut(scores: dict[float, float], eta: int) -> Cut:
    """Rank candidate rates by ``(score, lr)`` and keep ``ceil(n / eta)`` of them.

    A non-finite score ranks last (it cannot happen for a member still training, whose every
    validation NLL was finite, but a caller's curves may hold one).
    """

    def rank(lr: float) -> tuple:
        s = scores[lr]
        return (0, s, lr) if math.isfinite(s) else (1, 0.0, lr)

    order = sorted(scores, key=rank)
    m = keep_count(len(order), eta)
    return Cut(tuple(order[:m]), tuple(order[m:]), dict(scores))


def decide(
    config,
    epoch: int,
    lrs: Sequence[float],
    best: Sequence[float],
    running: Sequence[bool],
    last: Sequence[float | None] | None = None,
    best_epochs: Sequence[int] | None = None,
) -> dict[int, str]:
    """The members a population stops at the end of ``epoch``: ``{k: halted_text(...)}``.

    ``config``: the population's shared :class:`~rnnbench.train.config.RunConfig` (its
    ``search`` fields and ``max_epochs``); per member ``k``: its rate ``lrs[k]``, best
    validation NLL so far ``best[k]``, whether it is still training after this epoch
    ``running[k]``, and for the message its validation NLL of this epoch ``last[k]`` and its
    best epoch ``best_epochs[k]``. Empty for a full search, an epoch that is no rung, or a rung
    that keeps every candidate.
    """
    if config.search != "halving":
        return {}
    eta, r = config.search_eta, config.search_min_epochs
    number = rung_number(epoch, r, eta, config.max_epochs)
    if number is None:
        return {}
    members: dict[float, list[int]] = {}
    for k, (lr, alive) in enumerate(zip(lrs, running, strict=True)):
        if alive:
            members.setdefault(float(lr), []).append(k)
    scores = {lr: sum(best[k] for k in ks) / len(ks) for lr, ks in members.items()}
    decision = cut(scores, eta)
    total = len(rungs(r, eta, config.max_epochs))
    out = {}
    for lr in decision.stopped:
        for k in members[lr]:
            out[k] = halted_text(
                epoch,
                number,
                total,
                best=best[k],
                best_epoch=None if best_epochs is None else best_epochs[k],
                last=None if last is None else last[k],
                kept=len(decision.kept),
                candidates=len(scores),
                cutoff=decision.cutoff,
            )
    return out


def halted_text(
    epoch: int,
    rung: int,
    rungs_total: int,
    *,
    best: float,
    best_epoch: int | None,
    last: float | None,
    kept: int,
    candidates: int,
    cutoff: float,
) -> str:
    """The ``error`` flag of a member stopped at a rung, e.g. "stopped by successive halving at
    epoch 27 (rung 1 of 3): best valid 8.872 at epoch 27; the 4 of 10 rates kept
    were at or below 8.592 (scored from its best state)"."""
    at = f" at epoch {best_epoch}" if best_epoch else ""
    tail = f", last {last:.3f}" if last is not None and math.isfinite(last) else ""
    return (
        f"{HALTED} at epoch {epoch} (rung {rung} of {rungs_total}): best valid {best:.3f}{at}"
        f"{tail}; the {kept} of {candidates} rates kept were at or below {cutoff:.3f} "
        "(scored from its best state)"
    )


def is_halted(run: dict) -> bool:
    """Whether a stored run (a store row) was stopped by successive halving."""
    return run.get("status") == "done" and (run.get("error") or "").startswith(HALTED)


def describe(config: dict) -> str | None:
    """How a run's search stopped candidates, in words, or None for the paper's full search:
    "successive halving (η = 3, rungs at epochs 27, 81, 243)"."""
    if config.get("search", "full") != "halving":
        return None
    eta = int(config.get("search_eta", DEFAULT_ETA))
    r = int(config.get("search_min_epochs", DEFAULT_MIN_EPOCHS))
    points = rungs(r, eta, int(config.get("max_epochs", 500)))
    where = ", ".join(map(str, points)) if points else "none below the epoch cap"
    return f"successive halving (η = {eta}, rungs at epochs {where})"


def check_config(config, fail) -> None:
    """Validate and normalise a :class:`RunConfig`'s ``search`` fields (``fail(field, value,
    fix)`` raises); at ``"full"`` the others are reset to their defaults."""
    if config.search not in STRATEGIES:
        fail("search", config.search, f"use one of {', '.join(STRATEGIES)}")
    for name, low in (("search_eta", 2), ("search_min_epochs", 1)):
        value = getattr(config, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or int(value) != value
        ):
            fail(name, value, f"use an integer >= {low}")
        if value < low:
            fail(name, value, f"use an integer >= {low}")
        object.__setattr__(config, name, int(value))
    if config.search == "full":
        object.__setattr__(config, "search_eta", DEFAULT_ETA)
        object.__setattr__(config, "search_min_epochs", DEFAULT_MIN_EPOCHS)
