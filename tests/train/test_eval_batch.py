"""The evaluation batch (rnnbench.train.metrics.eval_batch_size): wider on CPU only where a
split's sequences all have one length, and the same per-sequence NLLs as at batch 4 within
float32 rounding, on the real FSDD-A and JSB data."""

from __future__ import annotations

import numpy as np
import torch

from rnnbench.data.batching import iterate_batches
from rnnbench.data.dataset import Sequence
from rnnbench.data.registry import load_dataset
from rnnbench.models import SequenceModel
from rnnbench.train.metrics import (
    EQUAL_LENGTH_STEPS,
    EVAL_BATCH_SIZE,
    eval_batch_size,
    split_scores,
)


def per_sequence_nll(model, seqs, batch_size: int) -> torch.Tensor:
    """Each sequence's summed NLL ``(K, S)``, in the split's order, at ``batch_size``."""
    parts = []
    for batch in iterate_batches(seqs, batch_size, seed=0, epoch=0, shuffle=False):
        per, _ = model.step_nll(batch.x, batch.y, batch.mask)
        parts.append(per.sum(1).double())  # (K, B)
    return torch.cat(parts, 1)


def test_equal_lengths_widen_the_cpu_batch_only():
    fsdd, jsb = load_dataset("fsdd-a"), load_dataset("jsb")
    valid = fsdd.split("valid")
    steps = len(valid[0])
    assert {len(s) for s in valid} == {steps}  # fixed-length segments
    assert eval_batch_size(valid) == max(4, EQUAL_LENGTH_STEPS // steps) > EVAL_BATCH_SIZE["cpu"]
    assert eval_batch_size(valid, "cuda") == EVAL_BATCH_SIZE["cuda"]
    assert eval_batch_size(jsb.split("valid")) == EVAL_BATCH_SIZE["cpu"]  # pieces vary
    long = [Sequence(np.tile(s.inputs, (100, 1)), np.tile(s.targets, (100, 1))) for s in valid[:3]]
    assert eval_batch_size(long) == EVAL_BATCH_SIZE["cpu"]  # long rows: never below 4
    assert eval_batch_size([]) == EVAL_BATCH_SIZE["cpu"]


def test_the_wider_batch_gives_each_sequence_its_nll_within_float32_rounding():
    fsdd = load_dataset("fsdd-a")
    seqs = fsdd.split("valid")[:70]  # two full batches and a partial one at the wider size
    model = SequenceModel(
        "lstm", fsdd.in_dim, fsdd.out_dim, 20, head=fsdd.head, population=2, seeds=[0, 1]
    ).eval()
    wide = eval_batch_size(seqs)
    assert wide > 4
    with torch.no_grad():
        narrow_rows = per_sequence_nll(model, seqs, 4)
        wide_rows = per_sequence_nll(model, seqs, wide)
        default = split_scores(model, seqs)
        at_4 = split_scores(model, seqs, batch_size=4)
    assert narrow_rows.shape == wide_rows.shape == (2, len(seqs))
    assert torch.isfinite(narrow_rows).all()
    torch.testing.assert_close(wide_rows, narrow_rows, rtol=2e-6, atol=0)
    for key in ("frame", "sequence"):
        torch.testing.assert_close(default[key], at_4[key], rtol=2e-6, atol=0)
