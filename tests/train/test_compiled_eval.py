"""The evaluation pass in one numba call per split (rnnbench.train.compiled_eval) against the
old path of split_scores, on real JSB sequences: bit for bit the same frame and per-sequence
NLLs for every cell and form, members with different weights, NaN and inf weights, padded and
partial batches, with and without the gather; and a trained population's records the same."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnbench.data.dataset import Sequence
from rnnbench.data.registry import load_dataset
from rnnbench.models import SequenceModel
from rnnbench.nn import sparse_input
from rnnbench.nn.kernels import glue
from rnnbench.train import compiled_eval
from rnnbench.train.metrics import split_nll, split_scores

FORMS = [
    ("lstm", {"peephole": True}),
    ("lstm", {"peephole": False}),
    ("gru", {"reset": "before"}),
    ("gru", {"reset": "after"}),
    ("tanh", {}),
]


@pytest.fixture(scope="module")
def jsb(data_root):
    return load_dataset("jsb", data_root)


@pytest.fixture(scope="module")
def valid(jsb):
    # 20 pieces of different lengths (five padded batches of 4, long enough to gather), and
    # six cut to 6 frames (a batch of 4 and a partial one of 2: the dense product)
    pieces = jsb.split("valid")
    return pieces[:20] + [Sequence(s.inputs[:6], s.targets[:6]) for s in pieces[20:26]]


def _model(jsb, unit, hidden=12, k=3, **form):
    return SequenceModel(
        unit, jsb.in_dim, jsb.out_dim, hidden, head=jsb.head, population=k,
        seeds=list(range(7, 7 + k)), **form,
    ).eval()  # fmt: skip


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int64)


def _both(model, seqs, monkeypatch, **kw):
    """``split_scores`` by the compiled pass (which must run) and by the old path."""
    ran = []
    real = compiled_eval.sums
    monkeypatch.setattr(compiled_eval, "sums", lambda *a, **k: ran.append(real(*a, **k)) or ran[-1])
    new = split_scores(model, seqs, **kw)
    monkeypatch.setattr(compiled_eval, "sums", real)
    assert ran and ran[0] is not None  # the compiled pass ran
    monkeypatch.setattr(compiled_eval, "_ENABLED", False)
    old = split_scores(model, seqs, **kw)
    monkeypatch.setattr(compiled_eval, "_ENABLED", True)
    return new, old


def _assert_same(new, old):
    for key in ("frame", "sequence"):
        assert new[key].dtype == old[key].dtype == torch.float64
        assert torch.equal(_bits(new[key]), _bits(old[key])), (key, new[key], old[key])


@pytest.mark.parametrize("gathered", [True, False])
@pytest.mark.parametrize(("unit", "form"), FORMS)
def test_every_cell_scores_bit_for_bit_as_before(unit, form, gathered, jsb, valid, monkeypatch):
    model = _model(jsb, unit, **form)
    with sparse_input.enabled(gathered):
        split = compiled_eval._split(valid, 4)
        gathers = compiled_eval._gathers(split, model.weight_ih_l0.detach())
        # long batches gather, short ones take the dense product; none without the gather
        assert gathers.any() == gathered and not gathers.all()
        new, old = _both(model, valid, monkeypatch)
    _assert_same(new, old)
    assert torch.isfinite(new["frame"]).all()
    assert len(set(new["frame"].tolist())) == 3  # the members' own weights


def test_the_test_split_and_a_partial_batch_of_one(jsb, monkeypatch):
    """The final scoring's split (77 pieces: the last batch holds one) at population 10."""
    test = jsb.split("test")
    assert len(test) % 4 == 1
    model = _model(jsb, "lstm", hidden=8, k=10)
    for on in (True, False):
        with sparse_input.enabled(on):
            _assert_same(*_both(model, test, monkeypatch))
    old_nll = split_nll(model, test)  # split_nll reads the same scores
    monkeypatch.setattr(compiled_eval, "_ENABLED", False)
    assert torch.equal(old_nll, split_nll(model, test))


@pytest.mark.parametrize(
    "where",
    ["weight_hh_l0", "weight_out", "bias_out", "weight_ih_l0", "weight_ch_l0", "bias_hh_l0"],
)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_diverged_member_scores_non_finite_as_before(where, value, jsb, valid, monkeypatch):
    """A NaN or inf in one member's weights: its NLL is what the old path gives (NaN for NaN),
    the others' are unchanged; in W_ih it turns the gather off for every member (the dense
    product spreads it) as the plan's finite check does."""
    model = _model(jsb, "lstm", peephole=True)
    clean = split_scores(model, valid)["frame"]
    with torch.no_grad():
        getattr(model, where)[1].view(-1)[3] = value
    with sparse_input.enabled():
        split = compiled_eval._split(valid, 4)
        gathers = compiled_eval._gathers(split, model.weight_ih_l0.detach())
        assert gathers.any() == (where != "weight_ih_l0")
        new, old = _both(model, valid, monkeypatch)
    _assert_same(new, old)
    if value != value:  # NaN reaches the NLL (an inf may saturate a gate)
        assert new["frame"][1].isnan() and new["sequence"][1].isnan()
    assert torch.equal(new["frame"][[0, 2]], clean[[0, 2]])


def test_padding_and_sequences_without_steps(jsb, valid, monkeypatch):
    """Lengths from 1 to the longest in one batch, and pieces with no predicted step (left
    out of the per-sequence mean): as before; a batch of only such pieces is the old
    path's."""
    seqs = [valid[0], Sequence(valid[1].inputs[:0], valid[1].targets[:0]), valid[2]]
    seqs += [Sequence(s.inputs[: 1 + 7 * i], s.targets[: 1 + 7 * i]) for i, s in enumerate(valid)]
    model = _model(jsb, "gru")
    with sparse_input.enabled():
        _assert_same(*_both(model, seqs, monkeypatch))
        empty = [Sequence(s.inputs[:0], s.targets[:0]) for s in valid[:4]] + valid[4:9]
        assert compiled_eval.sums(model, empty, batch_size=4) is None


def test_a_batch_whose_products_take_different_thread_counts_runs_the_old_path(
    jsb, valid, monkeypatch
):
    """OpenBLAS runs each product on the thread count the old glue picks: a batch whose head
    would take another count than its cell runs the old path; the rest stays compiled."""
    model = _model(jsb, "tanh")
    monkeypatch.setattr(glue, "_threads", lambda work: 1 if work < 200_000 else 2)
    calls = []
    real = SequenceModel.step_nll
    monkeypatch.setattr(SequenceModel, "step_nll", lambda *a, **k: calls.append(1) or real(*a, **k))
    with sparse_input.enabled():
        new = split_scores(model, valid)
        assert 0 < len(calls) < 7  # the long batches, not all seven
        monkeypatch.setattr(compiled_eval, "_ENABLED", False)
        old = split_scores(model, valid)
    _assert_same(new, old)


@torch.no_grad()
def test_other_models_and_data_take_the_old_path(jsb, valid):
    seqs = valid[:5]
    assert compiled_eval.sums(_model(jsb, "lstm"), seqs, batch_size=4) is not None
    variant = SequenceModel("gru", jsb.in_dim, jsb.out_dim, 6, head=jsb.head, variant="mgu")
    on_torch = SequenceModel("lstm", jsb.in_dim, jsb.out_dim, 6, head=jsb.head, backend="torch")
    double = _model(jsb, "lstm").double()
    for model in (variant, on_torch, double):
        assert compiled_eval.sums(model.eval(), seqs, batch_size=4) is None
    half = [Sequence(s.inputs * 0.5, s.targets) for s in seqs]  # not binary
    assert compiled_eval.sums(_model(jsb, "lstm"), half, batch_size=4) is None
    assert compiled_eval.sums(_model(jsb, "lstm"), [], batch_size=4) is None
    with torch.enable_grad():  # split_scores runs without gradients
        assert compiled_eval.sums(_model(jsb, "lstm"), seqs, batch_size=4) is None


def test_a_split_is_batched_once(jsb, valid):
    first = compiled_eval._split(valid, 4)
    assert compiled_eval._split(valid, 4) is first
    assert compiled_eval._split(list(valid), 4) is not first  # another list: made afresh
    assert compiled_eval._split(valid, 2) is not first
    # its batches are iterate_batches' own
    from rnnbench.data.batching import iterate_batches

    for i, batch in enumerate(iterate_batches(valid, 4, seed=0, epoch=0, shuffle=False)):
        assert torch.equal(first.dense_x(i), batch.x)
        assert torch.equal(first.dense_y(i), batch.y)
        assert torch.equal(first.mask_of(i), batch.mask)


def test_a_population_trains_and_scores_the_same(tiny, tmp_path, monkeypatch):
    """Early stopping reads the validation NLLs and the results the test NLLs: a population
    trained with the compiled pass writes the same records as with the old one."""
    from rnnbench.train.config import RunConfig
    from rnnbench.train.population import train_population

    monkeypatch.setattr(sparse_input, "MIN_WORK", 0)  # the tiny set's batches gather too
    configs = [
        RunConfig(
            dataset="jsb", unit="lstm", hidden=6, batch_size=2, max_epochs=3, lr=lr, seed=s
        )  # fmt: skip
        for lr, s in ((1e-3, 1), (1e40, 2))  # the second diverges
    ]
    found, ran = {}, []
    real = compiled_eval.sums
    monkeypatch.setattr(compiled_eval, "sums", lambda *a, **k: ran.append(real(*a, **k)) or ran[-1])
    for on in (True, False):
        monkeypatch.setattr(compiled_eval, "_ENABLED", on)
        dirs = [tmp_path / str(on) / c.key() for c in configs]
        results = train_population(configs, out_dirs=dirs, dataset=tiny)
        records = [[json.loads(line) for line in (d / "metrics.jsonl").open()] for d in dirs]
        for rows in records:
            for row in rows:
                row.pop("seconds")
        found[on] = ([{k: v for k, v in r.items() if k not in ("seconds", "checkpoint")}
                      for r in results], records)  # fmt: skip
    assert sum(r is not None for r in ran) >= 3 + 3  # every epoch's, the final scores
    assert found[True] == found[False]
    assert np.isfinite(found[True][0][0]["test_nll"])
