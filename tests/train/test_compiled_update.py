"""The update in one numba call (rnnbench.train.compiled_update) against the old path.

Populations trained with the compiled update and with the old pieces (weight noise, the pass
without autograd, clipping, RMSProp) end bit for bit the same: parameters, optimiser state,
noise generators, per-epoch NLLs and results, for every cell, the paper's and the authors'
protocol, members with their own batch orders that fall idle, a member that diverges, and a
run resumed from a checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rnnbench.nn import sparse_input
from rnnbench.train import compiled_update
from rnnbench.train import population as population_
from rnnbench.train.config import RunConfig
from rnnbench.train.population import train_population

from .test_seed_population import many_short


@pytest.fixture(autouse=True)
def _gather_always(monkeypatch):
    """The gather (the compiled update's condition) on the tests' small products too."""
    monkeypatch.setattr(sparse_input, "MIN_WORK", 0)


def _train(dataset, configs, root, compiled, monkeypatch, calls=None):
    monkeypatch.setattr(compiled_update, "_ENABLED", compiled)
    real = compiled_update.CompiledUpdate.__call__
    counted = {"compiled": 0, "idle": 0}

    def counting(self, batch, *args, **kwargs):
        done = real(self, batch, *args, **kwargs)
        counted["compiled"] += done is not None
        counted["idle"] += done is not None and not bool(batch.live.all())
        return done

    monkeypatch.setattr(compiled_update.CompiledUpdate, "__call__", counting)
    dirs = [root / ("compiled" if compiled else "old") / c.key() for c in configs]
    results = train_population(configs, out_dirs=dirs, dataset=dataset)
    if calls is not None:
        calls.append(counted)
    states = [torch.load(d / "last.pt", weights_only=True) for d in dirs]
    metrics = [[json.loads(line) for line in (d / "metrics.jsonl").open()] for d in dirs]
    return results, states, metrics


def _same(a, b):
    """Bit for bit, NaN equal to NaN."""
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert (
            torch.equal(a, b)
            or torch.equal(a.isnan(), b.isnan())
            and torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
        )
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            if key != "seconds":
                _same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


def _assert_same(dataset, configs, tmp_path, monkeypatch, calls=None):
    calls = [] if calls is None else calls
    new = _train(dataset, configs, tmp_path, True, monkeypatch, calls)
    old = _train(dataset, configs, tmp_path, False, monkeypatch)
    assert calls[0]["compiled"] > 0  # the compiled update ran
    (res_c, states_c, metrics_c), (res_o, states_o, metrics_o) = new, old
    for a, b in zip(res_c, res_o, strict=True):
        _same({k: v for k, v in a.items() if k not in ("seconds", "checkpoint")},
              {k: v for k, v in b.items() if k not in ("seconds", "checkpoint")})  # fmt: skip
    for a, b in zip(metrics_c, metrics_o, strict=True):
        _same([{k: v for k, v in r.items() if k != "seconds"} for r in a],
              [{k: v for k, v in r.items() if k != "seconds"} for r in b])  # fmt: skip
    for a, b in zip(states_c, states_o, strict=True):
        for key in ("model", "optimizer", "noise_rng", "best_model", "status", "why", "updates"):
            _same(a[key], b[key])
    return new


def _configs(unit, *, bptt=None, seeds=((1e-3, 1, 0), (3e-3, 2, 0)), max_epochs=2, **extra):
    return [
        RunConfig(
            dataset="jsb",
            unit=unit,
            hidden=6,
            batch_size=2,
            bptt=bptt,
            max_epochs=max_epochs,
            lr=lr,
            seed=s,
            data_seed=d,
            **extra,
        )  # fmt: skip
        for lr, s, d in seeds
    ]


@pytest.fixture(scope="module")
def many(data_root):
    return many_short(data_root)  # 80: two batch orders cut different numbers of windows


@pytest.mark.parametrize(
    ("unit", "peephole", "bptt"),
    [("lstm", True, 5), ("lstm", False, None), ("gru", False, None), ("tanh", False, 4)],
)
def test_the_paper_protocol_trains_bit_for_bit_the_same(
    unit, peephole, bptt, many, tmp_path, monkeypatch
):
    """Weight noise (0.075, the output layer too), clipping, RMSProp, truncated BPTT, two
    members reading their own batch orders and falling idle (bptt) beside one reading the
    shared order."""
    configs = _configs(
        unit, bptt=bptt, peephole=peephole, seeds=((1e-3, 1, 1), (3e-3, 2, 2), (2e-3, 3, 0))
    )
    assert configs[0].weight_noise > 0 and configs[0].clip > 0
    calls = []
    _assert_same(many, configs, tmp_path, monkeypatch, calls)
    assert calls[0]["idle"] > 0 or not bptt  # members without a window at some updates


@pytest.mark.parametrize("unit", ["gru", "lstm"])
def test_the_authors_protocol_trains_bit_for_bit_the_same(unit, tiny, tmp_path, monkeypatch):
    from rnnbench.train.presets import with_preset

    fields = dict(dataset="jsb", unit=unit, hidden=6, max_epochs=2, protocol="authors")
    configs = [
        RunConfig(**with_preset({**fields, "lr": lr, "seed": s}))
        for lr, s in ((1e-3, 0), (3e-3, 1))
    ]
    assert configs[0].batch_size == 1 and not configs[0].noise_output
    _assert_same(tiny, configs, tmp_path, monkeypatch)


def test_no_noise_and_no_clipping_train_the_same(tiny, tmp_path, monkeypatch):
    configs = _configs("gru", weight_noise=0.0, clip=0.0)
    _assert_same(tiny, configs, tmp_path, monkeypatch)


def test_the_gru_with_its_reset_after_trains_the_same(tiny, tmp_path, monkeypatch):
    configs = _configs("gru", reset="after")
    assert configs[0].reset == "after"
    _assert_same(tiny, configs, tmp_path, monkeypatch)


def test_a_diverging_member_stops_as_before(tiny, tmp_path, monkeypatch):
    """A rate so high that a member's weights overflow: NaN or inf reach its loss or its
    gradient, it is frozen and marked diverged with the same reason, the other trains on."""
    configs = _configs("tanh", seeds=((1e-3, 1, 0), (1e36, 2, 0)), clip=0.0)
    res, states, _ = _assert_same(tiny, configs, tmp_path, monkeypatch)
    assert res[0]["status"] == "done"
    assert res[1]["status"] == "diverged" and states[1]["why"]


@pytest.mark.parametrize("noise", [True, False])
def test_nan_input_weights_take_the_old_pass(noise, tiny, tmp_path, monkeypatch):
    """A NaN in one member's input weights: the driver's check of the weights the gather reads
    (the noisy ones, or the clean ones without noise) stops it and the update runs the old
    pass on those weights; the dense product spreads the NaN as before, and the population
    trains bit for bit as the old path (whose plan refused the clean weights)."""
    configs = _configs("lstm", **({} if noise else {"weight_noise": 0.0}))
    assert bool(configs[0].weight_noise) == noise
    real = population_._Population.__init__

    def poisoned(self, *args, **kwargs):
        real(self, *args, **kwargs)
        if self.k < 2:  # the population left after member 1 stopped
            return
        with torch.no_grad():
            self.model.weight_ih_l0[1, 0, 5] = float("nan")

    monkeypatch.setattr(population_._Population, "__init__", poisoned)
    old_passes = []
    real_old = compiled_update.CompiledUpdate._old_pass
    monkeypatch.setattr(
        compiled_update.CompiledUpdate,
        "_old_pass",
        lambda self, *a: old_passes.append(1) or real_old(self, *a),
    )
    res, states, _ = _assert_same(tiny, configs, tmp_path, monkeypatch)
    assert old_passes
    assert res[1]["status"] == "diverged" and res[0]["status"] == "done"


class _Interrupt(Exception):
    pass


def test_resume_after_interruption_gives_the_same_result(many, tmp_path, monkeypatch):
    """Interrupted after epoch 2 of 4 and resumed from the checkpoints: the same run as the
    one trained straight, bit for bit, and as the old path's."""
    monkeypatch.setattr(compiled_update, "_ENABLED", True)
    configs = _configs("lstm", bptt=5, seeds=((1e-3, 1, 1), (3e-3, 2, 2)), max_epochs=4)
    dirs = [tmp_path / "resumed" / c.key() for c in configs]

    def stop(k, record):
        if record["epoch"] == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_population(configs, out_dirs=dirs, dataset=many, on_epoch=stop)
    assert torch.load(dirs[0] / "last.pt", weights_only=True)["epoch"] == 2
    resumed = train_population(configs, out_dirs=dirs, dataset=many)
    straight, states, _ = _assert_same(many, configs, tmp_path, monkeypatch)
    for a, b in zip(resumed, straight, strict=True):
        assert a["test_nll"] == b["test_nll"] and a["updates"] == b["updates"]
    for d, state in zip(dirs, states, strict=True):
        again = torch.load(d / "last.pt", weights_only=True)
        for key in ("model", "optimizer", "noise_rng"):
            _same(again[key], state[key])


def test_the_nll_sums_leave_the_band_where_float32_order_decides_to_torch():
    """``_sums``: finite totals settled, totals past float32's largest value in every order
    set to inf, NaN kept, and the band near it left undecided (torch's sum decides)."""
    import numpy as np

    from rnnbench.train import compiled_driver

    big = np.float32(np.finfo(np.float32).max) / 4
    rows = np.array([[1.0, 2.0, 3.0, 4.0], [big, big, big, big * 0.5]], np.float32)
    total, decided = compiled_driver._sums(rows)
    assert decided and total[0] == 10.0 and total[1] == float(big) * 3.5
    rows[1] = big  # exactly float32's largest value in float64: every order is at the edge
    total, decided = compiled_driver._sums(rows)
    assert not decided
    rows[1] = big * 2  # twice it: every order overflows
    total, decided = compiled_driver._sums(rows)
    assert decided and total[1] == np.inf and torch.from_numpy(rows).sum(1)[1] == np.inf
    rows[0, 1] = np.nan
    total, decided = compiled_driver._sums(rows)
    assert decided and np.isnan(total[0])


@pytest.mark.parametrize("authors", [False, True])
def test_the_separate_step_is_the_fused_optimizers_step(authors):
    """``compiled_driver.step`` (the step after torch's finite check) is ``fused``'s."""
    import numpy as np

    from rnnbench.train import compiled_driver, fused

    g = torch.Generator().manual_seed(0)
    shapes = [(3, 4, 5), (3, 4), (3, 2, 6)]
    params = [torch.randn(s, generator=g) for s in shapes]
    grads = [torch.randn(s, generator=g) for s in shapes]
    v = [torch.rand(s, generator=g) for s in shapes]
    b = [torch.randn(s, generator=g) for s in shapes]
    lr = torch.tensor([1e-3, 2e-3, 3e-3])
    active = torch.tensor([True, False, True])
    rms = {"decay": 0.95, "momentum": 0.9, "eps": 1e-2 if authors else 1e-6}
    want = [[t.clone() for t in ts] for ts in (params, v, b)]
    if authors:
        fused.authors_step(want[0], grads, want[1], want[2], lr, active, clip=1.0, **rms)
    else:
        fused.rmsprop_step(want[0], grads, want[1], want[2], lr, active, **rms)

    def flat(ts):
        return tuple(t.numpy().reshape(3, -1) for t in ts)

    scratch = tuple(np.empty_like(a) for a in flat(params))
    scratch2 = tuple(np.empty_like(a) for a in flat(params))
    f32 = np.float32
    compiled_driver.step(
        flat(grads), flat(params), flat(v), flat(b), scratch, scratch2, lr.numpy(),
        active.numpy(), f32(0.95), f32(1.0 - 0.95), f32(0.9), f32(rms["eps"]), authors, 1.0,
    )  # fmt: skip
    for got, exp in zip((params, v, b), want, strict=True):
        for x, y in zip(got, exp, strict=True):
            assert torch.equal(x, y)


@pytest.mark.parametrize("authors", [False, True])
@pytest.mark.parametrize(
    ("shared", "members", "K"), [(True, 1, 3), (False, 3, 3), (True, 1, 1), (False, 1, 1)]
)
def test_the_masks_in_one_call_are_the_numpy_ones(authors, shared, members, K):
    """``_masks``: the counts, the loss's scale, the driver's mask and the real steps of a
    shared ``(T, B)`` mask and of per-member ones with an idle member (no step at all)."""
    import numpy as np

    T, B = 5, 2
    rng = np.random.default_rng(0)
    m = (rng.random((members, T, B)) < 0.7).astype(np.float32)
    if not shared:
        m[members // 2] = 0  # idle
    count, n, scale, kmask, real = compiled_update._masks(m, K, shared, authors)
    on = m > 0
    if shared:
        want_n = int(on.sum())
        assert count == want_n
        want_scale = (np.float32(1) / np.asarray(want_n, np.float32)) * np.ones(K, np.float32)
    else:
        want_n = np.maximum(on.sum((1, 2)).astype(np.float32), np.float32(1))
        assert n.dtype == np.float32 and (n == want_n).all() and n[members // 2] == 1
        want_scale = (np.float32(1) / want_n) * np.ones(K, np.float32)
    if authors:
        want_scale = np.ones(K, np.float32)
    assert scale.dtype == np.float32 and (scale == want_scale).all()
    assert kmask.shape == (K, T, B) and (kmask == np.broadcast_to(m, (K, T, B))).all()
    assert real.dtype == np.bool_ and (real == on.reshape(-1, T * B)).all()
