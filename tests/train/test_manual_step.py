"""The training update without autograd (rnnbench.train.manual_step) against the autograd pass.

One update: every fused unit and form and a few variants, both heads, shared and per-member
batches with an idle member, a carried state, the gather and the dense projection, the paper's
and the authors' loss: the same NLLs, steps, losses, final state and gradients within float32
rounding, and NaN where autograd has NaN. Training: populations trained through either pass
(weight noise, truncated BPTT, members with their own batch orders and idle members, the
authors' batch 1) end with the same parameters and scores within float32 rounding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnbench import head_loss
from rnnbench.heads import BernoulliHead, GaussianMixtureHead
from rnnbench.models import SequenceModel
from rnnbench.nn import sparse_input
from rnnbench.train import manual_step
from rnnbench.train.config import RunConfig
from rnnbench.train.population import train_population

from .test_head_loss import _speech
from .test_seed_population import many_short

# (unit, variant, peephole, reset)
FORMS = [
    ("tanh", "", False, "before"),
    ("lstm", "", True, "before"),
    ("lstm", "", False, "before"),
    ("gru", "", False, "before"),
    ("gru", "", False, "after"),
    ("lstm", "cifg", True, "before"),
    ("lstm", "nfg", False, "before"),
    ("lstm", "noaf", True, "before"),
    ("gru", "mgu", False, "before"),
    ("gru", "nrg", False, "before"),
    ("gru", "nug", False, "after"),
]
FORM_IDS = [f"{u}-{v or 'full'}-{'peep' if p else r}" for u, v, p, r in FORMS]
K, T, B, H = 3, 9, 4, 7


class _Cfg:
    def __init__(self, protocol="paper"):
        self.protocol = protocol


def _model(unit, variant, peephole, reset, head, in_dim, out_dim):
    return SequenceModel(
        unit, in_dim, out_dim, H, head=head, population=K, peephole=peephole, reset=reset,
        variant=variant, seeds=[3, 4, 5],
    )  # fmt: skip


def _batch(music: bool, per_member: bool, in_dim: int, out_dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lead = (K, T, B) if per_member else (T, B)
    if music:
        x = (torch.rand(*lead, in_dim, generator=g) < 0.1).float()
        y = (torch.rand(*lead, out_dim, generator=g) < 0.1).float()
    else:
        x = torch.randn(*lead, in_dim, generator=g)
        y = torch.randn(*lead, out_dim, generator=g)
    mask = torch.ones(lead)
    mask[..., T - 3 :, 0] = 0  # the first row ends early
    y[..., T - 1, 0, :] = float("nan")  # garbage on a padded step reaches nothing
    if per_member:
        mask[1, 5:] = 0  # member 1's window is shorter
        mask[2] = 0  # member 2 is idle
    return x, y, mask


def _state(unit, seed=1):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(K, B, H, generator=g) * 0.5
    return (h, torch.randn(K, B, H, generator=g) * 0.5 if unit == "lstm" else None)


def _run(pass_cls, model, cfg, batch, state, shared):
    for p in model.parameters():
        p.grad = None
    x, y, mask = batch
    nll_sum, n, loss, new_state = pass_cls(model, cfg)(x, y, mask, state, shared)
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return nll_sum.detach(), n, loss.detach(), new_state, grads


def _close(a, b, rel=2e-5):
    assert torch.equal(torch.isfinite(a), torch.isfinite(b))
    fin = torch.isfinite(b)
    if fin.any():
        scale = max(b[fin].abs().max().item(), 1e-30)
        assert (a[fin] - b[fin]).abs().max().item() <= rel * scale


def _assert_same_update(model, cfg, batch, state, shared):
    got = _run(manual_step.ManualPass, model, cfg, batch, state, shared)
    want = _run(manual_step.AutogradPass, model, cfg, batch, state, shared)
    for a, b in zip(got[:3], want[:3], strict=True):
        _close(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32))
    for a, b in zip(got[3], want[3], strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            _close(a, b.detach())
    assert set(got[4]) == set(want[4]) == {n for n, _ in model.named_parameters()}
    for name in want[4]:
        assert got[4][name].is_contiguous()
        _close(got[4][name], want[4][name])


@pytest.mark.parametrize(("unit", "variant", "peephole", "reset"), FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("per_member", [False, True], ids=["shared", "own-batches"])
def test_one_music_update_equals_autograds(unit, variant, peephole, reset, per_member):
    model = _model(unit, variant, peephole, reset, BernoulliHead(88), 88, 88)
    assert manual_step.manual_usable(model)
    batch = _batch(True, per_member, 88, 88)
    with sparse_input.enabled():  # at these sizes the dense projection runs
        _assert_same_update(model, _Cfg(), batch, _state(unit), not per_member)


@pytest.mark.parametrize("protocol", ["paper", "authors"])
@pytest.mark.parametrize("per_member", [False, True], ids=["shared", "own-batches"])
def test_the_gather_and_the_authors_loss_equal_autograds(protocol, per_member, monkeypatch):
    monkeypatch.setattr(sparse_input, "MIN_WORK", 0)
    planned = []
    real = sparse_input.plan
    monkeypatch.setattr(
        sparse_input, "plan", lambda x, w: planned.append(real(x, w)) or planned[-1]
    )
    model = _model("gru", "", False, "before", BernoulliHead(88), 88, 88)
    with sparse_input.enabled():
        _assert_same_update(
            model, _Cfg(protocol), _batch(True, per_member, 88, 88), None, not per_member
        )
    assert planned and all(p is not None for p in planned)  # both passes gathered


@pytest.mark.parametrize("unit", ["lstm", "gru", "tanh"])
def test_one_speech_update_equals_autograds(unit):
    model = _model(unit, "", unit == "lstm", "before", GaussianMixtureHead(10, 20), 20, 10)
    assert manual_step.manual_usable(model)
    _assert_same_update(model, _Cfg(), _batch(False, False, 20, 10), _state(unit), True)


@pytest.mark.parametrize("kernel", [True, False], ids=["bernoulli-kernel", "torch-head"])
def test_nan_weights_give_nan_where_autograd_does(kernel, monkeypatch):
    monkeypatch.setattr(head_loss, "_KERNEL", kernel)
    model = _model("lstm", "", True, "before", BernoulliHead(88), 88, 88)
    with torch.no_grad():
        model.weight_hh_l0[1, 3, 2] = float("nan")
        model.weight_out[2, 0, 0] = float("inf")
    for per_member in (False, True):
        batch = _batch(True, per_member, 88, 88)
        if kernel:  # no padding: autograd reads a padded step's h = 0 (inf * 0 = NaN)
            batch = (batch[0], torch.nan_to_num(batch[1]), torch.ones_like(batch[2]))
        _assert_same_update(model, _Cfg(), batch, None, not per_member)
    got = _run(manual_step.ManualPass, model, _Cfg(), _batch(True, False, 88, 88), None, True)
    assert torch.isfinite(got[0]).tolist() == [True, False, False]
    grads = got[4]
    assert torch.isnan(grads["weight_out"][1]).all() and torch.isnan(grads["bias_out"][1]).all()
    assert torch.isfinite(grads["weight_out"][0]).all()
    assert not torch.isfinite(grads["weight_hh_l0"][2]).all()  # through W_out's inf column
    if kernel:  # member 2's padded steps (h = 0, logit NaN) never reach W_out's gradient
        assert torch.isfinite(grads["weight_out"][2]).all()
        assert torch.isfinite(grads["bias_out"][2]).all()


def test_select_falls_back_to_autograd_where_the_manual_pass_cannot_run(monkeypatch):
    def build(**kw):
        args = dict(head=BernoulliHead(88), population=2)
        return SequenceModel(kw.pop("unit", "gru"), 88, 88, 5, **{**args, **kw})

    cfg = _Cfg()
    assert isinstance(manual_step.select(build(), cfg), manual_step.ManualPass)
    assert isinstance(manual_step.select(build(backend="torch"), cfg), manual_step.AutogradPass)
    assert isinstance(manual_step.select(build().double(), cfg), manual_step.AutogradPass)
    assert type(build(unit="mingru")) is not SequenceModel  # a plug-in unit's UnitModel
    assert isinstance(manual_step.select(build(unit="mingru"), cfg), manual_step.AutogradPass)
    monkeypatch.setattr(manual_step, "_ENABLED", False)
    assert isinstance(manual_step.select(build(), cfg), manual_step.AutogradPass)


def _train(dataset, configs, root, manual, monkeypatch):
    monkeypatch.setattr(manual_step, "_ENABLED", manual)
    used = []
    real = manual_step.select
    monkeypatch.setattr(
        manual_step, "select", lambda m, c: used.append(type(real(m, c))) or real(m, c)
    )
    dirs = [root / str(manual) / c.key() for c in configs]
    results = train_population(configs, out_dirs=dirs, dataset=dataset)
    assert set(used) == {manual_step.ManualPass if manual else manual_step.AutogradPass}
    states = [torch.load(d / "last.pt", weights_only=True) for d in dirs]
    metrics = [[json.loads(line) for line in (d / "metrics.jsonl").open()] for d in dirs]
    return results, states, metrics


def _assert_same_training(dataset, configs, tmp_path, monkeypatch, *, atol, atol_ih=None):
    runs = [_train(dataset, configs, tmp_path, m, monkeypatch) for m in (True, False)]
    (res_m, states_m, metrics_m), (res_a, states_a, metrics_a) = runs
    for a, b in zip(res_m, res_a, strict=True):
        for key in ("train_nll", "valid_nll", "test_nll"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-5)
        assert a["updates"] == b["updates"] > 0
        assert a["status"] == b["status"]
    for a, b in zip(metrics_m, metrics_a, strict=True):
        for key in ("train_nll", "valid_nll", "updates"):
            np.testing.assert_allclose([r[key] for r in a], [r[key] for r in b], rtol=1e-5)
    for sm, sa in zip(states_m, states_a, strict=True):
        for name in sa["model"]:
            got, want = sm["model"][name], sa["model"][name]
            if atol_ih is not None and name == "weight_ih_l0":  # a few rare keys' columns
                off = (got - want).abs() > atol + 1e-4 * want.abs()
                assert off.float().mean().item() <= 0.01
                torch.testing.assert_close(got, want, rtol=1e-4, atol=atol_ih)
            else:
                torch.testing.assert_close(got, want, rtol=1e-4, atol=atol)
        torch.testing.assert_close(sm["noise_rng"], sa["noise_rng"], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("unit", "variant", "bptt"),
    [("lstm", "", 5), ("gru", "", None), ("tanh", "", 4), ("lstm", "nig", None), ("gru", "mgu", 5)],
)
def test_training_with_own_batch_orders_idle_members_and_noise_is_the_same(
    unit, variant, bptt, data_root, tmp_path, monkeypatch
):
    """Members with their own batch orders that fall idle (bptt), weight noise on (the
    default 0.075), clipping, RMSProp, two epochs. Weights to 1e-4: RMSProp divides a note's
    tiny gradient by its own RMS, so rounding can turn such a step (as in test_population);
    the input weights: at most 1% of them past 1e-4, none past 3e-3. RMSProp turns a rarely
    sounding key's column's rounding into steps: the head in torch ops through autograd (the
    fused head switched off) moved them up to 4.2e-4 from the fused head's, the Bernoulli
    kernel up to 1.7e-3 (gru-mgu; 2.6e-4 the others), while the kernel's gradients of one
    update are as close to float64's as torch's float32 ones (tests/nn/test_bernoulli_kernel)
    and the other parameters move by about 1e-6."""
    many = many_short(data_root, 40)
    configs = [
        RunConfig(
            dataset="jsb",
            unit=unit,
            variant=variant,
            hidden=6,
            batch_size=2,
            bptt=bptt,
            max_epochs=2,
            lr=lr,
            seed=s,
            data_seed=d,
        )  # fmt: skip
        for lr, s, d in ((1e-3, 1, 1), (3e-3, 2, 2), (2e-3, 3, 0))
    ]
    assert configs[0].weight_noise > 0
    _assert_same_training(many, configs, tmp_path, monkeypatch, atol=1e-4, atol_ih=3e-3)


def test_the_authors_batch_1_training_is_the_same(tiny, tmp_path, monkeypatch):
    from rnnbench.train.presets import with_preset

    fields = dict(dataset="jsb", unit="gru", hidden=6, max_epochs=2, protocol="authors")
    configs = [
        RunConfig(**with_preset({**fields, "lr": lr, "seed": s}))
        for lr, s in ((1e-3, 0), (3e-3, 1))
    ]
    assert configs[0].batch_size == 1
    _assert_same_training(tiny, configs, tmp_path, monkeypatch, atol=1e-4)


def test_speech_training_is_the_same(tmp_path, monkeypatch):
    configs = [
        RunConfig(
            dataset="fsdd-a", unit="lstm", hidden=6, batch_size=2, max_epochs=2, lr=lr, seed=s
        )
        for lr, s in ((1e-3, 0), (3e-3, 1))
    ]
    _assert_same_training(_speech(), configs, tmp_path, monkeypatch, atol=1e-5)


@pytest.mark.parametrize("per_member", [False, True], ids=["shared", "own-batches"])
def test_the_gather_with_its_bias_is_the_projection_bit_for_bit(per_member, monkeypatch):
    monkeypatch.setattr(sparse_input, "MIN_WORK", 0)
    model = _model("lstm", "", True, "before", BernoulliHead(88), 88, 88)
    x, _, _ = _batch(True, per_member, 88, 88)
    w, b = model.weight_ih_l0.detach(), model.bias_ih_l0.detach()
    with sparse_input.enabled():
        keys = sparse_input.plan(x, w)
        want = sparse_input.project(x, w, b)
    assert keys is not None and want is not None
    got = sparse_input.gather(w, *keys, b).view_as(want)
    assert torch.equal(got, want)
    d_xw = torch.randn(K, T * B, w.shape[1], generator=torch.Generator().manual_seed(2))
    d_w, d_b = sparse_input.scatter_with_bias(d_xw, *keys, 88)
    assert torch.equal(d_w, sparse_input.scatter(d_xw, *keys, 88))
    _close(d_b, d_xw.sum(1), rel=1e-6)
