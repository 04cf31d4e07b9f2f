r"""Speed of learning from per-epoch validation curves: time to a threshold, area under the curve.

For a run with validation NLLs :math:`v_1, \dots, v_E` (epochs 1..E) and a threshold
:math:`\theta` (the ablation report uses the full unit's mean final validation NLL
:math:`\times 1.05`):

- epochs to the threshold: the first epoch :math:`e` with :math:`v_e \le \theta` (None when
  the run never reaches it); seconds to the threshold: the run's cumulative wall-clock
  seconds per model at that epoch (:func:`rnnbench.report.figures.per_model_seconds`);
- area under the validation curve over epochs :math:`1..N`:
  :math:`A = \sum_{e=1}^{N-1} (v_e + v_{e+1}) / 2` (trapezoids, nat·epochs), where a run that
  stopped early (:math:`E < N`) keeps its best value :math:`\min_e v_e` from :math:`E + 1`
  on (the early-stopped model is its best state). :math:`N` is the longest curve compared, so
  every variant of a data set is measured over the same span; lower is faster learning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _finite(values: Sequence) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def epochs_to_threshold(valid: Sequence[float | None], threshold: float) -> int | None:
    """The first epoch (1-based) whose validation NLL is at most ``threshold``, or None."""
    for epoch, v in enumerate(_finite(valid), start=1):
        if math.isfinite(v) and v <= threshold:
            return epoch
    return None


def seconds_to_threshold(
    valid: Sequence[float | None], clock: Sequence[float], threshold: float
) -> float | None:
    """``clock`` (cumulative seconds at the end of each epoch) at :func:`epochs_to_threshold`."""
    epoch = epochs_to_threshold(valid, threshold)
    return None if epoch is None else float(clock[epoch - 1])


def extended(valid: Sequence[float | None], span: int) -> np.ndarray:
    """The curve over ``span`` epochs: after its last epoch, its best value (non-finite
    values, an epoch that diverged, count as missing and are filled the same way)."""
    v = np.array(_finite(valid), dtype=float)
    good = v[np.isfinite(v)]
    if good.size == 0:
        return np.full(span, np.nan)
    best = float(good.min())
    v = np.where(np.isfinite(v), v, best)
    if v.size >= span:
        return v[:span]
    return np.concatenate([v, np.full(span - v.size, best)])


def area_under_curve(valid: Sequence[float | None], span: int | None = None) -> float:
    """Trapezoid area under the validation curve over epochs 1..``span`` (default: its own
    length), in nat·epochs; the curve is :func:`extended` to ``span``. NaN for an empty curve."""
    span = len(valid) if span is None else int(span)
    if span < 1 or not len(valid):
        return math.nan
    v = extended(valid, span)
    if span == 1:
        return 0.0 if np.isfinite(v[0]) else math.nan
    return float(np.sum((v[:-1] + v[1:]) / 2))
