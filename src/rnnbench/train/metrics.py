r"""The paper's metric: average negative log-likelihood per time step, in nats.

For a split with sequences :math:`s` of :math:`T_s` predicted steps,

.. math::
    \mathrm{NLL} = \frac{\sum_s \sum_{t=1}^{T_s} \mathrm{nll}_{s,t}}{\sum_s T_s},

a step-weighted (frame-weighted) average over the whole split, not a mean of per-sequence
means: a long sequence counts for more than a short one.

- Music: :math:`\mathrm{nll}_{s,t}` is the summed binary cross-entropy over the 88 notes of
  predicted frame :math:`t+1` (the model reads frames :math:`1..T-1` and predicts
  :math:`2..T`, so a piano roll of :math:`T` frames contributes :math:`T-1` steps).
- Speech: :math:`\mathrm{nll}_{s,t}` is the Gaussian-mixture NLL of the 10 samples predicted
  at step :math:`t`.

Evaluation runs the noise-free weights without gradients; padding steps are masked out.

:func:`split_scores` also gives the *per-sequence* average, the mean over sequences of each
sequence's mean per-step NLL, :math:`\frac{1}{S}\sum_s \frac{1}{T_s}\sum_t
\mathrm{nll}_{s,t}`, which some papers report instead (every piece counts the same).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "EQUAL_LENGTH_STEPS",
    "EVAL_BATCH_SIZE",
    "average_nll",
    "eval_batch_size",
    "split_nll",
    "split_scores",
]

# Sequences per evaluation batch, by device type. Fixed per device, so that a member's score
# does not depend on its population or its training batch size (scores at other batch sizes
# agree to ~1e-7). On CPU small batches are fastest: the batch, sorted by length, pads to its
# longest row, and a (K, T, B, ...) tensor of long rows outgrows the caches. A population of
# 10 LSTMs scores MuseData's validation split in 1.9 s at 4 against 6.9 s at 64; batch 4 was
# as fast or faster on every set (docs/training.md). A GPU needs wide batches instead.
EVAL_BATCH_SIZE = {"cpu": 4, "cuda": 64}

# Steps per evaluation batch on CPU when every sequence of a split has the same length (the
# speech sets' fixed-length segments): no batch pads, so the small batches' reason is gone and
# wider ones amortise the per-batch work. FSDD-A's validation split (48-step segments), one
# LSTM of 61 units, one thread, CPU s: 0.54 at batch 4, 0.38 at 8, 0.33 at 16, 0.28 at 32,
# 0.27 at 64 (issue 22); the per-step NLLs agree within float32 rounding at every batch size.
EQUAL_LENGTH_STEPS = 1536


def eval_batch_size(seqs: Sequence, device: str | torch.device = "cpu") -> int:
    """Sequences per evaluation batch: :data:`EVAL_BATCH_SIZE` of the device type, or on CPU,
    where every sequence of ``seqs`` has the same length ``T``, ``EQUAL_LENGTH_STEPS // T``
    if that is more. Depends on the split alone, never on the population or training batch."""
    kind = torch.device(device).type
    size = EVAL_BATCH_SIZE.get(kind, EVAL_BATCH_SIZE["cuda"])
    lengths = {len(s) for s in seqs}
    if kind == "cpu" and len(lengths) == 1:
        steps = lengths.pop()
        if steps > 0:
            size = max(size, EQUAL_LENGTH_STEPS // steps)
    return size


def average_nll(nll_sum: Tensor, n_steps: int | float) -> Tensor:
    """Summed NLL ``(K,)`` over ``n_steps`` real steps → NLL per step ``(K,)`` (float64)."""
    if n_steps <= 0:
        return torch.full_like(nll_sum, float("nan"), dtype=torch.float64)
    return nll_sum.double() / float(n_steps)


@torch.no_grad()
def split_nll(
    model, seqs: Sequence, *, device: str | torch.device = "cpu", batch_size: int | None = None
) -> Tensor:
    """Average NLL per step of every member on ``seqs`` (see the module docstring).

    Args:
        model: a :class:`rnnbench.models.SequenceModel` (population of ``K``).
        seqs: the sequences of a split (``.inputs``, ``.targets``).
        batch_size: sequences per batch (None: :func:`eval_batch_size`).

    Returns:
        ``(K,)`` float64 on CPU; NaN for every member when ``seqs`` is empty.
    """
    return split_scores(model, seqs, device=device, batch_size=batch_size)["frame"]


@torch.no_grad()
def split_scores(
    model, seqs: Sequence, *, device: str | torch.device = "cpu", batch_size: int | None = None
) -> dict[str, Tensor]:
    """Both averages of every member on ``seqs``: ``{"frame": (K,), "sequence": (K,)}``
    float64 on CPU — the frame-weighted NLL per step (the paper's metric, :func:`split_nll`)
    and the mean over sequences of each sequence's NLL per step. NaN when ``seqs`` is empty
    (a sequence with no predicted step is left out of the per-sequence mean)."""
    from rnnbench.data.batching import iterate_batches
    from rnnbench.train import compiled_eval

    if batch_size is None:
        batch_size = eval_batch_size(seqs, device)
    fast = compiled_eval.sums(model, seqs, device=device, batch_size=batch_size)
    if fast is not None:  # the same sums from one numba call (rnnbench.train.compiled_eval)
        total, per_seq, steps, sequences = fast
        return {"frame": average_nll(total, steps), "sequence": average_nll(per_seq, sequences)}
    total = None
    per_seq = None
    steps = 0
    sequences = 0
    for batch in iterate_batches(seqs, batch_size, seed=0, epoch=0, shuffle=False):
        x, y, mask = (t.to(device) for t in (batch.x, batch.y, batch.mask))
        per, _ = model.step_nll(x, y, mask)
        rows = per.sum(1).detach().double().cpu()  # (K, B)
        lengths = mask.sum(0).double().cpu()  # (B,)
        real = lengths > 0
        part = rows.sum(1)
        means = (rows[:, real] / lengths[real]).sum(1)
        total = part if total is None else total + part
        per_seq = means if per_seq is None else per_seq + means
        steps += int(lengths.sum())
        sequences += int(real.sum())
    if total is None:
        k = next(model.parameters()).shape[0]
        nan = torch.full((k,), float("nan"), dtype=torch.float64)
        return {"frame": nan, "sequence": nan.clone()}
    return {"frame": average_nll(total, steps), "sequence": average_nll(per_seq, sequences)}
