r"""Baselines on the same splits: what a model with no recurrent state scores on the music sets.

Two per-note models, fitted on the training split and scored on every split with the models'
metric (``docs/training.md``, "The metric"): the NLL of a predicted frame is the summed binary
cross-entropy over its notes; a piece of :math:`T` frames predicts frames :math:`2..T` from
frames :math:`1..T-1` (exactly the targets and inputs of :class:`rnnbench.data.dataset.Sequence`).

- **marginal**: note :math:`j` sounds with probability :math:`p_j`, independently of
  everything, the share of training target frames in which it sounds;
- **markov**: each note an independent two-state chain,
  :math:`P(y_{t,j} = 1 \mid x_{t,j} = s) = q_{j,s}`, :math:`s \in \{0, 1\}` the note in the
  previous frame, fitted from the training split's transitions (every input/target pair).

Both use add-half (Krichevsky–Trofimov) smoothing, so no probability is 0 or 1:

.. math::
    p_j = \frac{c_j + 1/2}{n + 1}, \qquad
    q_{j,s} = \frac{c_{j,s \to 1} + 1/2}{n_{j,s} + 1},

with :math:`c_j` the training target frames in which note :math:`j` sounds out of :math:`n`,
and :math:`c_{j,s\to1}` the transitions from state :math:`s` to on out of the
:math:`n_{j,s}` from :math:`s`. A note never heard in training gets :math:`p = 1/(2n+2)`; the
cost of hearing it later is then :math:`\ln(2n+2)` nats, large but finite.

Scores, per split, both averages (:func:`score`):

.. math::
    \text{frame-weighted} = \frac{\sum_s \sum_t \mathrm{nll}(s,t)}{\sum_s T_s}, \qquad
    \text{per sequence} = \frac{1}{S}\sum_s \frac{1}{T_s}\sum_t \mathrm{nll}(s,t),

:math:`T_s` the predicted steps of piece :math:`s`. The frame-weighted one is Table 2's metric.

Example::

    >>> from rnnbench.data.registry import load_dataset  # doctest: +SKIP
    >>> [r.as_dict() for r in music_baselines(load_dataset("jsb"))]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass

import numpy as np

from rnnbench.data.dataset import SPLITS, Dataset, Sequence
from rnnbench.errors import RnnbenchError

__all__ = [
    "ALPHA",
    "BASELINES",
    "BaselineScore",
    "fit_marginal",
    "fit_markov",
    "music_baselines",
    "score",
]

ALPHA = 0.5  # add-half (Krichevsky-Trofimov) pseudo-count per outcome
BASELINES = ("marginal", "markov")


@dataclass(frozen=True)
class BaselineScore:
    """One baseline on one split: NLL per step in nats, both averages."""

    dataset: str
    baseline: str
    split: str
    frame_weighted: float
    per_sequence: float
    sequences: int
    steps: int

    def as_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "baseline": self.baseline,
            "split": self.split,
            "frame_weighted": self.frame_weighted,
            "per_sequence": self.per_sequence,
            "sequences": self.sequences,
            "steps": self.steps,
        }


def _binary(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64) > 0.5


def fit_marginal(train: Seq[Sequence], alpha: float = ALPHA) -> np.ndarray:
    r"""``(D,)`` :math:`p_j = (c_j + \alpha) / (n + 2\alpha)` over the training targets."""
    on = sum(_binary(s.targets).sum(0) for s in train)
    n = sum(len(s) for s in train)
    return (on + alpha) / (n + 2 * alpha)


def fit_markov(train: Seq[Sequence], alpha: float = ALPHA) -> np.ndarray:
    r"""``(2, D)``: row :math:`s` holds :math:`q_{j,s} = (c_{j,s\to1} + \alpha) /
    (n_{j,s} + 2\alpha)`, the probability that note :math:`j` sounds after a frame where it was
    off (:math:`s = 0`) or on (:math:`s = 1`)."""
    d = train[0].targets.shape[1]
    from_state = np.zeros((2, d))
    to_on = np.zeros((2, d))
    for s in train:
        x, y = _binary(s.inputs), _binary(s.targets)
        from_state[1] += x.sum(0)
        from_state[0] += (~x).sum(0)
        to_on[1] += (x & y).sum(0)
        to_on[0] += (~x & y).sum(0)
    return (to_on + alpha) / (from_state + 2 * alpha)


def _step_nll(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(T,)``: summed binary cross-entropy of frames ``y (T, D)`` under ``p (T, D)`` or
    ``(D,)``."""
    return -np.where(y, np.log(p), np.log1p(-p)).sum(-1)


def _nll_per_step(baseline: str, params: np.ndarray, seq: Sequence) -> np.ndarray:
    y = _binary(seq.targets)
    if baseline == "marginal":
        return _step_nll(params, y)
    prev = _binary(seq.inputs)
    p = np.where(prev, params[1], params[0])
    return _step_nll(p, y)


def score(baseline: str, params: np.ndarray, seqs: Seq[Sequence]) -> tuple[float, float, int]:
    """``(frame_weighted, per_sequence, steps)`` NLL per step of ``seqs`` (see the module)."""
    if baseline not in BASELINES:
        raise RnnbenchError(f"Unknown baseline {baseline!r}; use one of {', '.join(BASELINES)}.")
    per_seq = [_nll_per_step(baseline, params, s) for s in seqs if len(s)]
    steps = sum(len(v) for v in per_seq)
    if not steps:
        return float("nan"), float("nan"), 0
    total = float(sum(v.sum() for v in per_seq))
    return total / steps, float(np.mean([v.mean() for v in per_seq])), steps


def music_baselines(dataset: Dataset, alpha: float = ALPHA) -> list[BaselineScore]:
    """Both baselines fitted on ``dataset``'s training split, scored on every split."""
    if dataset.head != "bernoulli":
        raise RnnbenchError(
            f"{dataset.name} is not a music data set: the per-note baselines need piano rolls; "
            "give a music set (jsb, nottingham, musedata, pianomidi)."
        )
    train = dataset.split("train")
    fitted = {"marginal": fit_marginal(train, alpha), "markov": fit_markov(train, alpha)}
    out = []
    for baseline, params in fitted.items():
        for split in SPLITS:
            seqs = dataset.split(split)
            frame, per_seq, steps = score(baseline, params, seqs)
            out.append(
                BaselineScore(dataset.name, baseline, split, frame, per_seq, len(seqs), steps)
            )
    return out
