"""The in-memory data set: :class:`Sequence` and :class:`Dataset`.

Arrays are float32 numpy arrays and may be read-only views shared between sequences (and
between calls, through the per-process cache): copy before writing to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rnnbench.errors import RnnbenchError

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Sequence:
    """One training example: ``inputs (T, in_dim)`` and ``targets (T, out_dim)``, float32.

    ``source`` names where it came from (a file, or a speaker and split) for messages.
    """

    inputs: np.ndarray
    targets: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


@dataclass
class Dataset:
    """A named data set with train/valid/test splits (see docs/DESIGN.md, ``rnnbench.data``)."""

    name: str
    kind: str  # "music" | "speech"
    in_dim: int
    out_dim: int
    head: str  # "bernoulli" | "gmm"
    task: str  # "music" | "speech": selects the paper's model sizes
    splits: dict[str, list[Sequence]]
    meta: dict = field(default_factory=dict)
    extra_info: dict = field(default_factory=dict)

    def split(self, name: str) -> list[Sequence]:
        """The sequences of split ``"train"``, ``"valid"`` or ``"test"``."""
        if name not in self.splits:
            raise RnnbenchError(f"Unknown split {name!r}; use one of {', '.join(SPLITS)}.")
        return self.splits[name]

    def info(self, batch_size: int | None = None) -> dict:
        """Counts per split, as printed by ``rnnbench data info NAME --json``.

        Music ``steps`` counts frames of the piano rolls (a sequence of T frames gives T-1
        model steps); speech ``steps`` counts model time steps. ``padding`` is the fraction of
        padded (wasted) steps when a split is cut into batches of ``batch_size`` (default:
        the training default of the task, 4 for music and 16 for speech).
        """
        from rnnbench.data.batching import padding_fraction
        from rnnbench.train.config import DEFAULT_BATCH_SIZE

        if batch_size is None:
            batch_size = DEFAULT_BATCH_SIZE[self.task]

        splits = {}
        for name in SPLITS:
            seqs = self.splits[name]
            model_steps = int(sum(len(s) for s in seqs))
            frames = model_steps + len(seqs) if self.kind == "music" else model_steps
            splits[name] = {
                "sequences": len(seqs),
                "steps": frames,
                "model_steps": model_steps,
                "padding": round(padding_fraction(seqs, batch_size), 4) if seqs else 0.0,
            }
        out = {
            "name": self.name,
            "kind": self.kind,
            "task": self.task,
            "dim": self.in_dim,
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "head": self.head,
            "splits": splits,
            "batch_size": batch_size,
            "padding": splits["train"]["padding"],
        }
        out.update(self.extra_info)
        out["meta"] = {k: _plain(v) for k, v in self.meta.items()}
        return out


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return value
