"""Minibatches of variable-length sequences, bucketed by length, time-major, with masks.

How batches are formed for one epoch (:func:`plan_batches`):

1. with ``shuffle``, the sequences are permuted by a generator seeded with ``(seed, epoch)``;
2. the order is cut into chunks of ``batch_size * CHUNK_BATCHES`` sequences, and each chunk
   is sorted by length (stable), so sequences of similar length end up together;
3. each sorted chunk is cut into batches of ``batch_size`` (the last one of a chunk may be
   smaller);
4. with ``shuffle``, the order of the batches is permuted by the same generator.

Without ``shuffle`` all sequences are sorted by length once (no randomness), which is what
evaluation wants. The result depends only on (lengths, batch_size, seed, epoch, shuffle).

Padding sits at the end of each row (``mask`` 0 there). With ``bptt=N`` each batch is cut
into consecutive windows of at most N steps over the same rows; every window after the first
has ``carry=True``: continue from the previous window's final state (detached).
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence as Seq
from dataclasses import dataclass

import numpy as np
import torch

from rnnbench.errors import RnnbenchError

CHUNK_BATCHES = 32


@dataclass
class Batch:
    """One minibatch: ``x (T,B,I)``, ``y (T,B,O)``, ``mask (T,B)`` float32 tensors.

    ``carry`` is True when this batch continues the previous batch's rows (truncated BPTT);
    ``index`` holds the positions of the rows in the sequence list; ``start`` the first
    time step of this window within the rows.
    """

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    carry: bool
    index: np.ndarray
    start: int = 0

    @property
    def steps(self) -> int:
        """Real (unpadded) steps in the batch."""
        return int(self.mask.sum().item())


def plan_batches(
    lengths: Seq[int], batch_size: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True
) -> list[np.ndarray]:
    """Row indices of each batch, in order (see the module docstring)."""
    if batch_size < 1:
        raise RnnbenchError(f"batch_size must be at least 1, not {batch_size}.")
    lengths = np.asarray(lengths, dtype=np.int64)
    n = lengths.shape[0]
    if n == 0:
        return []
    if shuffle:
        rng = np.random.default_rng([int(seed), int(epoch)])
        order = rng.permutation(n)
        chunk = batch_size * CHUNK_BATCHES
    else:
        rng = None
        order = np.arange(n)
        chunk = n
    batches = []
    for lo in range(0, n, chunk):
        part = order[lo : lo + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, part.shape[0], batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def iterate_batches(
    seqs, batch_size: int, *, seed: int, epoch: int, shuffle: bool = True, bptt: int | None = None
) -> Iterator[Batch]:
    """Yield :class:`Batch` es covering every sequence of ``seqs`` once."""
    if bptt is not None and bptt < 1:
        raise RnnbenchError(f"bptt must be a positive number of steps or None, not {bptt}.")
    seqs = list(seqs)
    lengths = [len(s) for s in seqs]
    for rows in plan_batches(lengths, batch_size, seed=seed, epoch=epoch, shuffle=shuffle):
        x, y, mask = _pad([seqs[i] for i in rows])
        total = x.shape[0]
        if bptt is None or total <= bptt:
            yield Batch(x=x, y=y, mask=mask, carry=False, index=rows, start=0)
            continue
        for start in range(0, total, bptt):
            stop = min(start + bptt, total)
            yield Batch(
                x=x[start:stop],
                y=y[start:stop],
                mask=mask[start:stop],
                carry=start > 0,
                index=rows,
                start=start,
            )


def _pad(rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if len(rows) == 1:  # nothing to pad (the authors' batch 1): the row copied, mask 1
        x = np.array(rows[0].inputs, dtype=np.float32)
        y = np.array(rows[0].targets, dtype=np.float32)
        t = x.shape[0]
        mask = np.ones((t, 1), dtype=np.float32)
        return (
            torch.from_numpy(x.reshape(t, 1, x.shape[1])),
            torch.from_numpy(y.reshape(t, 1, y.shape[1])),
            torch.from_numpy(mask),
        )
    longest = max(len(s) for s in rows)
    in_dim = rows[0].inputs.shape[1]
    out_dim = rows[0].targets.shape[1]
    x = np.zeros((longest, len(rows), in_dim), dtype=np.float32)
    y = np.zeros((longest, len(rows), out_dim), dtype=np.float32)
    mask = np.zeros((longest, len(rows)), dtype=np.float32)
    for b, s in enumerate(rows):
        t = len(s)
        x[:t, b] = s.inputs
        y[:t, b] = s.targets
        mask[:t, b] = 1.0
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask)


def padding_fraction(
    seqs_or_lengths, batch_size: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True
) -> float:
    """Fraction of padded steps among all steps of the batches (0 = no waste).

    Accepts sequences or plain lengths. Truncated-BPTT windows do not change it.
    """
    items = list(seqs_or_lengths)
    lengths = np.asarray(
        [v if isinstance(v, int | np.integer) else len(v) for v in items], dtype=np.int64
    )
    batches = plan_batches(lengths, batch_size, seed=seed, epoch=epoch, shuffle=shuffle)
    slots = sum(int(lengths[b].max()) * b.shape[0] for b in batches)
    real = int(lengths.sum())
    return 0.0 if slots == 0 else (slots - real) / slots
