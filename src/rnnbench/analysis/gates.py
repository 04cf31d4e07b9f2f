r"""Gate use: the distribution of each sigmoid gate's activations over a data set's real steps.

For a gate :math:`g \in (0, 1)^H` (LSTM input, forget and output gates ``i f o``; GRU reset
and update gates ``r z``; a variant's own) and every real step of every sequence of a split,
every unit's activation :math:`g_{t,j}` is one sample. Reported per gate: the mean, the
fraction below 0.1 (closed), the fraction above 0.9 (open) and a 10-bin histogram on [0, 1].
A gate that is almost always open (e.g. a forget gate above 0.9) is one the trained model
barely uses as a gate. Activations come from the torch loop's ``trace`` hook
(:func:`rnnbench.nn.functional.run_unit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

LOW, HIGH = 0.1, 0.9
BINS = 10


@dataclass
class GateStats:
    """Running counts of one gate's activations."""

    n: int = 0
    total: float = 0.0
    below: int = 0
    above: int = 0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))

    def add(self, values) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        self.n += v.size
        self.total += float(v.sum())
        self.below += int((v < LOW).sum())
        self.above += int((v > HIGH).sum())
        self.histogram += np.histogram(np.clip(v, 0.0, 1.0), bins=BINS, range=(0.0, 1.0))[0]

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")

    @property
    def frac_below(self) -> float:
        return self.below / self.n if self.n else float("nan")

    @property
    def frac_above(self) -> float:
        return self.above / self.n if self.n else float("nan")


def add_trace(stats: dict[str, GateStats], trace: list[dict], mask) -> None:
    """Add one batch's ``trace`` (one dict of ``(K, B, H)`` activations per step) to
    ``stats``, keeping the real steps of ``mask (T, B)`` only (None: all)."""
    for t, gates in enumerate(trace):
        rows = None if mask is None else (mask[t] > 0)
        for name, act in gates.items():
            values = act if rows is None else act[:, rows]
            stats.setdefault(name, GateStats()).add(values.detach().cpu().numpy())


@torch.no_grad()
def gate_use(model, seqs, *, batch_size: int = 32) -> dict[str, GateStats]:
    """The gate statistics of ``model`` (a SequenceModel) over every real step of ``seqs``."""
    from rnnbench.analysis.units import unit_arguments
    from rnnbench.data.batching import iterate_batches
    from rnnbench.nn.functional import run_unit

    stats: dict[str, GateStats] = {}
    for batch in iterate_batches(seqs, batch_size, seed=0, epoch=0, shuffle=False):
        trace: list[dict] = []
        if getattr(model, "plugin", None) is not None:  # a plug-in unit: its gates() hook
            from rnnbench.units.model import plugin_trace

            add_trace(stats, plugin_trace(model, batch.x, batch.mask), batch.mask)
            continue
        run_unit(
            model.unit,
            batch.x,
            mask=batch.mask,
            backend="torch",
            trace=trace,
            **unit_arguments(model),
        )
        add_trace(stats, trace, batch.mask)
    return stats
