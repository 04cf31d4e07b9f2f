"""Each member's own minibatches, read together: :func:`population_batches` (issue 22).

The members of a population may read different batch orders (``data_seed``: a cell's fresh
seeds), so that they train together instead of one after another. Each member reads exactly
the windows it would read alone (:func:`rnnbench.data.batching.iterate_batches` with its own
``data_seed``, the population's ``batch_size`` and ``bptt``), in the same order; update ``u``
of the population is update ``u`` of every member that still has a window. A member's
windows are stacked along the population dimension and padded to the longest window's steps
and widest batch of that update, with mask 0:

.. math:: x \\in \\mathbb{R}^{K \\times T \\times B \\times I}, \\quad
    m_{k,t,b} = 1 \\iff \\text{step } t \\text{ of row } b \\text{ is a real step of member } k.

Padded steps leave the state unchanged and add nothing to the loss
(:func:`rnnbench.nn.functional.run_unit`), so a member's loss and gradient are those of its
window alone, up to float rounding (products of other sizes). A member with no window left
in an epoch (with ``bptt``, members cut different numbers of windows) is *idle*: all mask 0,
no weight noise drawn, no update. Each member's truncated-BPTT carry is its own
(:func:`carry_state`). The batch order is a pure function of ``(data_seed, epoch)``, so a
member's checkpoint at an epoch's end (its config) is all a resume needs.

When every member reads the same order (a learning-rate search), the batches are the shared
``(T, B, I)`` ones of before, unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import zip_longest

import torch
from torch import Tensor

from rnnbench.data.batching import Batch, iterate_batches

__all__ = ["PopulationBatch", "population_batches", "carry_state"]


@dataclass
class PopulationBatch:
    """One update of a population.

    ``x (T, B, I)``, ``y (T, B, O)``, ``mask (T, B)`` shared by every member, or ``(K, T, B,
    I)``, ``(K, T, B, O)``, ``(K, T, B)`` with each member's own window; ``carry (K,)`` bool:
    member ``k`` continues its previous window's rows (truncated BPTT); ``live (K,)`` bool:
    member ``k`` has a window at this update (False: idle, see the module docstring);
    ``steps``: each member's window length in steps (0 when idle); ``window``: for a shared
    batch, ``(seqs, rows, start)``: ``x`` is the padded window from step ``start`` of the
    sequences ``seqs[i]`` for ``i`` in ``rows`` (the compiled update finds its keys from them,
    :class:`rnnbench.nn.sparse_input.KeyTable`), else None.
    """

    x: Tensor
    y: Tensor
    mask: Tensor
    carry: Tensor
    live: Tensor
    steps: list[int]
    window: tuple | None = None

    @property
    def shared(self) -> bool:
        """Whether every member reads the same window (``x`` without the member dimension)."""
        return self.mask.dim() == 2


def population_batches(seqs, configs: Sequence, epoch: int) -> Iterator[PopulationBatch]:
    """Yield the updates of ``epoch`` for members ``configs`` (one ``group_key``) on ``seqs``."""
    given, seqs = seqs, list(seqs)  # the list given: the compiled update keys its table on it
    cfg = configs[0]
    orders = list(dict.fromkeys(c.data_seed for c in configs))
    k = len(configs)

    def windows(seed: int) -> Iterator[Batch]:
        return iterate_batches(seqs, cfg.batch_size, seed=seed, epoch=epoch, bptt=cfg.bptt)

    if len(orders) == 1:
        # every update's live and carry flags are one of these (read only: shared by batches)
        live = torch.ones(k, dtype=torch.bool)
        carry = {c: torch.full((k,), c) for c in (False, True)}
        for batch in windows(orders[0]):
            yield PopulationBatch(
                x=batch.x,
                y=batch.y,
                mask=batch.mask,
                carry=carry[batch.carry],
                live=live,
                steps=[batch.x.shape[0]] * k,
                window=(given if isinstance(given, list) else seqs, batch.index, batch.start),
            )
        return
    which = [orders.index(c.data_seed) for c in configs]
    for found in zip_longest(*(windows(seed) for seed in orders)):
        yield _stack([found[i] for i in which])


def _stack(members: list[Batch | None]) -> PopulationBatch:
    """Each member's window (None: idle) stacked and padded with mask 0."""
    real = [b for b in members if b is not None]
    T = max(b.x.shape[0] for b in real)
    B = max(b.x.shape[1] for b in real)
    K = len(members)
    x = real[0].x.new_zeros(K, T, B, real[0].x.shape[2])
    y = real[0].y.new_zeros(K, T, B, real[0].y.shape[2])
    mask = real[0].mask.new_zeros(K, T, B)
    for k, b in enumerate(members):
        if b is None:
            continue
        t, w = b.x.shape[:2]
        x[k, :t, :w] = b.x
        y[k, :t, :w] = b.y
        mask[k, :t, :w] = b.mask
    return PopulationBatch(
        x=x,
        y=y,
        mask=mask,
        carry=torch.tensor([b is not None and b.carry for b in members]),
        live=torch.tensor([b is not None for b in members]),
        steps=[0 if b is None else b.x.shape[0] for b in members],
    )


def carry_state(state, carry: Tensor, rows: int):
    """The state an update starts from: the previous update's for the members that carry
    (``carry (K,)``, truncated BPTT), zeros for the others, fitted to ``rows`` batch rows
    (a member's own rows come first; the rest is padding). ``state`` is the model's state
    (a tuple of ``(K, B, H)`` tensors or None entries), or None; None when no member carries.
    """
    if state is None or not bool(carry.any()):
        return None
    if bool(carry.all()) and all(s is None or s.shape[1] == rows for s in state):
        return state
    return tuple(None if s is None else _fit(s, carry, rows) for s in state)


def _fit(s: Tensor, carry: Tensor, rows: int) -> Tensor:
    out = s.new_zeros(s.shape[0], rows, *s.shape[2:])
    n = min(rows, s.shape[1])
    keep = carry.to(s.device).view(-1, *([1] * (s.dim() - 1)))
    out[:, :n] = torch.where(keep, s[:, :n], s.new_zeros(()))
    return out
