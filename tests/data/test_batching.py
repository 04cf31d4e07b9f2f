"""Bucketed, deterministic, masked minibatches and truncated-BPTT windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnbench.data import batching, load_dataset
from rnnbench.data.batching import iterate_batches, padding_fraction, plan_batches
from rnnbench.data.dataset import Sequence
from rnnbench.errors import RnnbenchError


def _seqs(lengths, in_dim=3, out_dim=2):
    out = []
    for i, n in enumerate(lengths):
        x = np.full((n, in_dim), i, dtype=np.float32) + np.arange(n, dtype=np.float32)[:, None]
        out.append(Sequence(inputs=x, targets=x[:, :out_dim] + 0.5, source=str(i)))
    return out


def test_batches_cover_every_sequence_once_with_masks():
    rng = np.random.default_rng(1)
    seqs = _seqs(rng.integers(1, 40, size=53).tolist())
    batches = list(iterate_batches(seqs, 8, seed=3, epoch=0))
    rows = np.concatenate([b.index for b in batches])
    assert sorted(rows.tolist()) == list(range(53))
    for b in batches:
        t, n = b.mask.shape
        assert b.x.shape == (t, n, 3) and b.y.shape == (t, n, 2) and not b.carry
        assert b.x.dtype == b.y.dtype == b.mask.dtype == torch.float32
        for j, i in enumerate(b.index):
            length = len(seqs[i])
            assert b.mask[:, j].sum() == length and b.mask[:length, j].all()
            np.testing.assert_array_equal(b.x[:length, j].numpy(), seqs[i].inputs)
            np.testing.assert_array_equal(b.y[:length, j].numpy(), seqs[i].targets)
            assert not b.x[length:, j].any() and not b.y[length:, j].any()


def test_a_batch_of_one_row_is_that_row_unpadded():
    """Batch 1 (the authors' protocol) takes a shortcut: the same arrays as padding gives,
    float64 rows cast as padding casts them, an empty row too."""
    seqs = _seqs([5, 1, 0])
    seqs.append(Sequence(inputs=np.linspace(0, 1, 12).reshape(4, 3), targets=np.ones((4, 2))))
    for i, s in enumerate(seqs):
        x, y, mask = batching._pad([s])
        want = batching._pad([s, _seqs([0])[0]])  # the general path (a second, empty row)
        for got, ref in zip((x, y, mask), want, strict=True):
            assert got.dtype == torch.float32 and got.is_contiguous()
            assert torch.equal(got, ref[:, :1]), i
        assert mask.shape == (len(s), 1) and x.shape == (len(s), 1, 3) and y.shape[2] == 2


def test_deterministic_for_seed_and_epoch():
    seqs = _seqs(list(range(1, 60)))

    def order(seed, epoch, shuffle=True):
        return [
            b.index.tolist()
            for b in iterate_batches(seqs, 5, seed=seed, epoch=epoch, shuffle=shuffle)
        ]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    fixed = order(0, 0, shuffle=False)
    assert fixed == order(5, 9, shuffle=False)
    assert [i for b in fixed for i in b] == list(range(59))  # sorted by length


def test_bucketing_keeps_padding_low():
    seqs = load_dataset("jsb").split("train")
    bucketed = padding_fraction(seqs, 16)
    lengths = np.array([len(s) for s in seqs])
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(seqs))
    random = [lengths[perm[i : i + 16]] for i in range(0, len(seqs), 16)]
    naive = 1 - lengths.sum() / sum(b.max() * b.size for b in random)
    assert bucketed < 0.1 < naive
    real = sum(b.steps for b in iterate_batches(seqs, 16, seed=0, epoch=0))
    slots = sum(b.mask.numel() for b in iterate_batches(seqs, 16, seed=0, epoch=0))
    assert bucketed == pytest.approx(1 - real / slots)


def test_truncated_bptt_windows_carry_state():
    seqs = _seqs([23, 7, 15, 23])
    full = list(iterate_batches(seqs, 4, seed=0, epoch=0))
    windows = list(iterate_batches(seqs, 4, seed=0, epoch=0, bptt=10))
    assert len(full) == 1 and [w.x.shape[0] for w in windows] == [10, 10, 3]
    assert [w.carry for w in windows] == [False, True, True]
    assert [w.start for w in windows] == [0, 10, 20]
    for w in windows:
        np.testing.assert_array_equal(w.index, full[0].index)
    torch.testing.assert_close(torch.cat([w.x for w in windows]), full[0].x)
    torch.testing.assert_close(torch.cat([w.mask for w in windows]), full[0].mask)
    assert [w.carry for w in iterate_batches(seqs, 4, seed=0, epoch=0, bptt=50)] == [False]


def test_bad_arguments():
    with pytest.raises(RnnbenchError, match="batch_size"):
        plan_batches([1, 2], 0)
    with pytest.raises(RnnbenchError, match="bptt"):
        list(iterate_batches(_seqs([3]), 2, seed=0, epoch=0, bptt=0))
    assert list(iterate_batches([], 4, seed=0, epoch=0)) == []


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 300), min_size=1, max_size=200),
    batch=st.integers(1, 20),
    seed=st.integers(0, 5),
    epoch=st.integers(0, 5),
)
def test_plan_is_a_partition(lengths, batch, seed, epoch):
    plan = plan_batches(lengths, batch, seed=seed, epoch=epoch)
    flat = np.concatenate(plan)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert all(1 <= b.size <= batch for b in plan)
    assert 0.0 <= padding_fraction(lengths, batch, seed=seed, epoch=epoch) <= 1.0
