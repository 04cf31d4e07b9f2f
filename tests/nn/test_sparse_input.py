"""The gathered input projection (rnnbench.nn.sparse_input) against the dense product."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnbench.nn import functional, sparse_input


def piano_roll(T=400, B=3, I=88, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, I, generator=gen) < 0.05).to(dtype)
    x[300:, 1] = 0  # a padded row: no key at all
    x[..., 80:] = 0  # keys that never sound
    return x


def weights(K=3, GH=60, I=88, dtype=torch.float32, seed=1):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(K, GH, I, generator=gen, dtype=dtype).requires_grad_()
    b = torch.randn(K, GH, generator=gen, dtype=dtype).requires_grad_()
    return w, b


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_gather_equals_the_dense_product_and_its_gradients(dtype, bias):
    x = piano_roll(dtype=dtype)
    w, b = weights(dtype=dtype)
    b = b if bias else None
    dense = functional.project_input(x, w, b)
    d_out = torch.randn(dense.shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
    want = torch.autograd.grad(dense, [w] + ([b] if bias else []), d_out)
    with sparse_input.enabled():
        assert sparse_input.project(x, w, b) is not None  # the gather runs
        gathered = functional.project_input(x, w, b)
    got = torch.autograd.grad(gathered, [w] + ([b] if bias else []), d_out)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(gathered, dense, rtol=tol, atol=tol)
    for g, h in zip(got, want, strict=True):
        torch.testing.assert_close(g, h, rtol=tol, atol=tol)
    # columns of keys that never sound get exactly zero gradient, as in the dense product
    silent = x.reshape(-1, 88).sum(0) == 0
    assert silent.any() and torch.equal(
        got[0][:, :, silent], torch.zeros_like(got[0][:, :, silent])
    )


def test_dense_product_runs_where_the_gather_would_not_be_exact_or_is_off():
    x = piano_roll()
    w, b = weights()
    assert sparse_input.project(x, w, b) is None  # not enabled
    with sparse_input.enabled():
        assert sparse_input.project(x, w, b) is not None
        assert sparse_input.project(x * 0.5, w, b) is None  # not binary
        nan = x.clone()
        nan[0, 0, 0] = float("nan")
        assert sparse_input.project(nan, w, b) is None
        assert sparse_input.project(torch.ones_like(x), w, b) is None  # not sparse
        assert sparse_input.project(x.expand(2, *x.shape), w, b) is None  # 2 inputs, 3 members
        assert sparse_input.project(x.clone().requires_grad_(), w, b) is None
        assert sparse_input.project(x.double(), w, b) is None  # dtypes differ
        assert sparse_input.project(x[:10], w, b) is None  # too small to gain
        bad = w.detach().clone()
        bad[1, 0, 5] = float("inf")  # a non-finite weight reaches every step densely
        assert sparse_input.project(x, bad, b) is None
        with sparse_input.enabled(False):
            assert sparse_input.project(x, w, b) is None


def test_population_training_with_the_gather_equals_the_dense_product(tmp_path, monkeypatch):
    from rnnbench.data.dataset import Dataset, Sequence
    from rnnbench.train.config import RunConfig
    from rnnbench.train.population import train_population

    gen = torch.Generator().manual_seed(3)

    def seqs(n):
        return [
            Sequence((torch.rand(12 - i, 88, generator=gen) < 0.05).float().numpy(),
                     (torch.rand(12 - i, 88, generator=gen) < 0.05).float().numpy())
            for i in range(n)
        ]  # fmt: skip

    data = Dataset("tiny", "music", 88, 88, "bernoulli", "music",
                   {"train": seqs(4), "valid": seqs(2), "test": seqs(2)})  # fmt: skip
    configs = [
        RunConfig(dataset="jsb", unit="gru", hidden=6, batch_size=2, max_epochs=2, lr=lr, seed=s)
        for lr, s in ((1e-3, 0), (1e-2, 1))
    ]
    calls = []
    real = sparse_input.project

    def counted(*args):
        out = real(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(sparse_input, "MIN_WORK", 0)  # the tiny model gathers too
    monkeypatch.setattr(sparse_input, "project", counted)
    gathered = train_population(configs, out_dirs=[tmp_path / "a", tmp_path / "b"], dataset=data)
    assert any(calls)
    monkeypatch.setattr(sparse_input, "project", lambda *args: None)
    dense = train_population(configs, out_dirs=[tmp_path / "c", tmp_path / "d"], dataset=data)
    for g, d in zip(gathered, dense, strict=True):
        for name in ("train_nll", "valid_nll", "test_nll"):
            assert g[name] == pytest.approx(d[name], rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gather_of_each_members_own_input_equals_the_dense_product(dtype):
    """Members reading their own minibatches (issue 22): ``x (K, T, B, I)``."""
    x = torch.stack([piano_roll(dtype=dtype, seed=s) for s in range(3)])
    x[1, 200:] = 0  # one member's window ends early: padding
    w, b = weights(dtype=dtype)
    dense = functional.project_input(x, w, b)
    d_out = torch.randn(dense.shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
    want = torch.autograd.grad(dense, [w, b], d_out)
    with sparse_input.enabled():
        assert sparse_input.project(x, w, b) is not None  # the gather runs
        gathered = functional.project_input(x, w, b)
    got = torch.autograd.grad(gathered, [w, b], d_out)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(gathered, dense, rtol=tol, atol=tol)
    for g, h in zip(got, want, strict=True):
        torch.testing.assert_close(g, h, rtol=tol, atol=tol)


@pytest.mark.parametrize("bias", [True, False])
def test_evaluation_gathers_with_the_bias_inside_and_equals_the_training_path(bias):
    """Without gradients :func:`project` runs :func:`gather` with the bias added in the kernel
    (no autograd node, no second pass); the values are those of the differentiable path, bit
    for bit."""
    x = piano_roll()
    w, b = weights()
    b = b if bias else None
    with sparse_input.enabled():
        trained = sparse_input.project(x, w, b)
        assert trained.requires_grad
        with torch.no_grad():
            evaluated = sparse_input.project(x, w, b)
        detached = sparse_input.project(x, w.detach(), None if b is None else b.detach())
    assert not evaluated.requires_grad and evaluated.shape == trained.shape
    assert torch.equal(evaluated, trained.detach())
    assert torch.equal(detached, trained.detach())


@pytest.mark.parametrize("value", [2.0, -1.0, 0.5, float("inf"), float("-inf"), float("nan")])
def test_the_keys_scan_refuses_any_value_but_0_and_1(value):
    x = piano_roll()
    w, b = weights()
    with sparse_input.enabled():
        assert sparse_input.plan(x, w) is not None
        for where in ((0, 0, 0), (399, 2, 87), (150, 1, 40)):  # first, last, middle
            bad = x.clone()
            bad[where] = value
            assert sparse_input.plan(bad, w) is None
    keys, ends = sparse_input._keys(x.reshape(-1, 88).numpy(), 1.0)
    want = [torch.nonzero(row).flatten().tolist() for row in x.reshape(-1, 88)]
    got = [keys[s:e].tolist() for s, e in zip([0, *ends[:-1]], ends, strict=True)]
    assert got == want


def _plans(table, seqs, batches, w):
    """(plan_arrays, plan_window) of every batch: (scanned, from the table)."""
    for b in batches:
        x = b.x.numpy()
        yield (
            sparse_input.plan_arrays(x, w),
            sparse_input.plan_window(table, (seqs, b.index, b.start), x, w),
        )


@pytest.mark.parametrize(("batch_size", "bptt"), [(4, None), (1, None), (7, 9), (16, 40)])
def test_the_key_table_plans_real_batches_as_the_scan_does(batch_size, bptt, data_root):
    """On JSB's training batches (frames without a key, padded steps, and with ``bptt``
    windows where a short row is all padding): the table's keys are the scan's."""
    from rnnbench.data.batching import iterate_batches
    from rnnbench.data.registry import load_dataset

    seqs = load_dataset("jsb", data_root).split("train")
    table = sparse_input.KeyTable(seqs)
    w = weights(K=1, GH=400, I=88)[0].detach().numpy()
    batches = list(iterate_batches(seqs, batch_size, seed=3, epoch=1, bptt=bptt))
    seen = {"empty frame": False, "padding row": False, "planned": 0}
    for (scanned, tabled), b in zip(_plans(table, seqs, batches, w), batches, strict=True):
        assert (scanned is None) == (tabled is None)  # None: a product below MIN_WORK
        if scanned is None:
            continue
        seen["planned"] += 1
        for got, want in zip(tabled, scanned, strict=True):
            assert got.dtype == want.dtype and got.shape == want.shape
            assert (got == want).all()
        frames = b.x.sum(-1)
        seen["empty frame"] |= bool(((frames == 0) & (b.mask > 0)).any())
        seen["padding row"] |= bool((b.mask.sum(0) == 0).any())
    assert seen["planned"] > 0.9 * len(batches) and seen["empty frame"]
    assert seen["padding row"] == (bptt is not None and batch_size > 1)


def test_the_key_table_falls_back_to_the_scan_and_keeps_the_plans_refusals(data_root):
    """A sequence with a value other than 0 or 1, another list of sequences: scanned (the
    same answer); too dense a window, weights not finite, too small a product: None."""
    from rnnbench.data.batching import iterate_batches
    from rnnbench.data.dataset import Sequence
    from rnnbench.data.registry import load_dataset

    seqs = list(load_dataset("jsb", data_root).split("train")[:12])
    odd = seqs[3].inputs.copy()
    odd[1, 7] = 0.5
    seqs[3] = Sequence(odd, seqs[3].targets)
    table = sparse_input.KeyTable(seqs)
    assert not table.binary[3] and table.binary[[0, 1, 2, 4]].all()
    w = weights(K=1, GH=400, I=88)[0].detach().numpy()
    batches = list(iterate_batches(seqs, 4, seed=0, epoch=0))
    for scanned, tabled in _plans(table, seqs, batches, w):
        assert (scanned is None) == (tabled is None)
        if scanned is not None:
            assert all((a == b).all() for a, b in zip(scanned, tabled, strict=True))
    assert any(scanned is None for scanned, _ in _plans(table, seqs, batches, w))
    other = [Sequence(s.inputs.copy(), s.targets) for s in seqs]  # not the table's objects
    assert table.window(other, batches[0].index, 0, *batches[0].x.shape[:2]) is None
    fine = [b for b in batches if 3 not in b.index.tolist()][0]
    window = (seqs, fine.index, fine.start)
    x = fine.x.numpy()
    assert sparse_input.plan_window(table, window, x, w) is not None
    bad = w.copy()
    bad[0, 5, 80] = float("nan")
    assert sparse_input.plan_window(table, window, x, bad) is None
    assert sparse_input.plan_window(table, window, x, w[:, :2]) is None  # below MIN_WORK
    dense = [Sequence(np.ones_like(s.inputs), s.targets) for s in seqs]
    assert (
        sparse_input.plan_window(sparse_input.KeyTable(dense), (dense, *window[1:]), x, w) is None
    )
