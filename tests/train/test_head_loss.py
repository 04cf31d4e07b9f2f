"""The fused output layer and loss (rnnbench.head_loss) against autograd through the heads.

The reference is the code the fused function replaced, written out here: ``baddbmm`` for the
head parameters, the padded targets zeroed, ``head.nll``, the padded steps zeroed, the sum; its
gradients come from autograd. Float64 agrees to 1e-10, float32 to about 1e-5 (relative)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnbench import head_loss
from rnnbench.data.dataset import Dataset, Sequence
from rnnbench.heads import BernoulliHead, GaussianMixtureHead
from rnnbench.models import SequenceModel
from rnnbench.train.config import RunConfig
from rnnbench.train.population import train_population

TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def reference(head, out, weight, bias, y, mask):
    k, t, b, h = out.shape
    flat = torch.baddbmm(bias.unsqueeze(1), out.reshape(k, t * b, h), weight.transpose(1, 2))
    params = flat.reshape(k, t, b, -1)
    if mask is None:
        return head.nll(params, y).sum((1, 2))
    real = mask > 0
    y = torch.where(real.unsqueeze(-1), y, y.new_zeros(()))
    per = head.nll(params, y)
    return torch.where(real, per, per.new_zeros(())).sum((1, 2))


def inputs(head, k, t, b, h, dtype, *, seed=0, scale=1.0, per_member=False):
    g = torch.Generator().manual_seed(seed)
    p = head.n_outputs
    out = torch.randn(k, t, b, h, generator=g, dtype=dtype)
    weight = torch.randn(k, p, h, generator=g, dtype=dtype) * scale
    bias = torch.randn(k, p, generator=g, dtype=dtype)
    lead = (k, t, b) if per_member else (t, b)
    if isinstance(head, BernoulliHead):
        y = (torch.rand(*lead, head.out_dim, generator=g) < 0.1).to(dtype)
    else:
        y = torch.randn(*lead, head.out_dim, generator=g, dtype=dtype)
    mask = torch.ones(lead, dtype=dtype)
    mask[..., t - 3 :, 0] = 0  # the first sequence ends early
    y[..., t - 1, 0, :] = float("nan")  # garbage in a padded target never reaches the loss
    return out, weight, bias, y, mask


def loss_and_grads(fn, head, out, weight, bias, y, mask, upstream):
    leaves = [t.detach().clone().requires_grad_() for t in (out, weight, bias)]
    loss = fn(head, *leaves, y, mask)
    (loss * upstream).sum().backward()
    return [loss.detach()] + [t.grad for t in leaves]


def assert_close(got, want, rel):
    for a, b in zip(got, want, strict=True):
        assert torch.equal(torch.isfinite(a), torch.isfinite(b))
        fin = torch.isfinite(b)
        scale = b[fin].abs().max() if fin.any() else 1.0
        assert ((a[fin] - b[fin]).abs().max() / scale).item() <= rel if fin.any() else True


HEADS = [BernoulliHead(88), GaussianMixtureHead(10, 20), GaussianMixtureHead(3, 4, min_std=0.1)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("head", HEADS, ids=["bernoulli", "gmm", "gmm-small"])
@pytest.mark.parametrize("per_member", [False, True])
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_loss_and_gradients_equal_autograds(dtype, head, per_member, scale):
    k, t, b, h = 3, 7, 4, 5
    args = inputs(head, k, t, b, h, dtype, scale=scale, per_member=per_member)
    upstream = torch.tensor([0.5, 1.0, 2.0], dtype=dtype)  # a per-member gradient (1/N)
    got = loss_and_grads(head_loss.member_nll, head, *args, upstream)
    want = loss_and_grads(reference, head, *args, upstream)
    assert all(torch.isfinite(w).all() for w in want)
    assert_close(got, want, TOL[dtype])


@pytest.mark.parametrize("head", HEADS[:2], ids=["bernoulli", "gmm"])
def test_without_a_mask_every_step_counts(head):
    args = list(inputs(head, 2, 5, 3, 4, torch.float64))
    args[3] = torch.nan_to_num(args[3])
    args[4] = None
    upstream = torch.ones(2, dtype=torch.float64)
    got = loss_and_grads(head_loss.member_nll, head, *args, upstream)
    assert_close(got, loss_and_grads(reference, head, *args, upstream), 1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_mixture_at_the_edges_of_softplus_and_float_range(dtype):
    """Scales past softplus's threshold 20 (identity, derivative exactly 1) and far below 0
    (sigma at its floor, the derivative underflowing to 0), means far from the target (z**2
    overflows float32 where that component's responsibility is 0): the same values and the
    same finite pattern as autograd, no NaN where it has none."""
    head = GaussianMixtureHead(2, 3, min_std=1e-3)
    k, t, b, h = 2, 3, 2, 1
    out = torch.ones(k, t, b, h, dtype=dtype)
    weight = torch.zeros(k, head.n_outputs, h, dtype=dtype)
    bias = torch.zeros(k, head.n_outputs, dtype=dtype)
    c, d = 3, 2
    s_slice = slice(c + c * d, None)
    # member 0: scales 25 (linear), -200 (floor, zero derivative), 0
    bias[0, s_slice] = torch.tensor([25.0, 25.0, -200.0, -200.0, 0.0, 0.0])
    weight[0, s_slice, 0] = torch.tensor([0.5, -0.5, 3.0, -3.0, 0.1, 0.2])
    # member 1: one component's mean 1e30 away (z**2 overflows float32), the others near
    bias[1, c : c + 2] = 1e30
    bias[1, s_slice] = -5.0
    y = torch.randn(t, b, d, generator=torch.Generator().manual_seed(1), dtype=dtype)
    mask = torch.ones(t, b, dtype=dtype)
    upstream = torch.tensor([1.0, 0.25], dtype=dtype)
    got = loss_and_grads(head_loss.member_nll, head, out, weight, bias, y, mask, upstream)
    want = loss_and_grads(reference, head, out, weight, bias, y, mask, upstream)
    assert torch.isfinite(want[0]).all() and torch.isfinite(want[2]).all()
    # member 1's NLL is about 5e4 per step, where float32 autograd's responsibilities are off
    # by 2e-4 (relative) from the exact ones; so the reference is autograd in float64, and the
    # finite pattern must be float32 autograd's too
    exact = loss_and_grads(
        reference, head, *(t.double() for t in (out, weight, bias, y, mask)), upstream.double()
    )
    assert_close([t.double() for t in got], exact, TOL[dtype])
    for a, b in zip(got, want, strict=True):
        assert torch.equal(torch.isfinite(a), torch.isfinite(b))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_head_narrower_than_twice_the_hidden_size(dtype):
    """The backward's other product order (``G W``, taken where ``P <= 2 H``, Nottingham's
    88 notes against 100 units) gives autograd's gradients too."""
    head = BernoulliHead(8)
    args = inputs(head, 2, 5, 3, 6, dtype)
    upstream = torch.tensor([0.5, 2.0], dtype=dtype)
    got = loss_and_grads(head_loss.member_nll, head, *args, upstream)
    assert_close(got, loss_and_grads(reference, head, *args, upstream), TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_mixture_where_the_product_of_the_scales_overflows(dtype):
    """Scales near float32's largest (1e37): their product over the 10 dimensions overflows
    even float64, so the kernel sums the logarithms one by one: finite, autograd's values."""
    head = GaussianMixtureHead(10, 3)
    k, t, b, h = 1, 2, 2, 1
    out = torch.ones(k, t, b, h, dtype=dtype)
    weight = torch.zeros(k, head.n_outputs, h, dtype=dtype)
    bias = torch.zeros(k, head.n_outputs, dtype=dtype)
    bias[0, 3 + 30 :] = 1e37  # every scale pre-activation: sigma = 1e37 (softplus linear)
    bias[0, 3 + 30 : 3 + 40] = 2.0  # but the first component's
    weight[0, :3, 0] = torch.tensor([0.1, -0.2, 0.3], dtype=dtype)  # a gradient for out too
    y = torch.randn(t, b, 10, generator=torch.Generator().manual_seed(2), dtype=dtype)
    upstream = torch.ones(1, dtype=dtype)
    got = loss_and_grads(head_loss.member_nll, head, out, weight, bias, y, None, upstream)
    want = loss_and_grads(reference, head, out, weight, bias, y, None, upstream)
    assert all(torch.isfinite(w).all() for w in want)
    assert_close(got, want, TOL[dtype])


def test_the_mixture_with_a_floor_whose_product_underflows():
    """min_std = 1e-40 and scales at the floor: the product of 10 scales underflows float64,
    so the kernel sums the logarithms one by one (not log(0) = -inf)."""
    head = GaussianMixtureHead(10, 2, min_std=1e-40)
    dtype = torch.float64
    out = torch.ones(1, 2, 2, 1, dtype=dtype)
    weight = torch.zeros(1, head.n_outputs, 1, dtype=dtype)
    weight[0, :2, 0] = torch.tensor([0.1, -0.2], dtype=dtype)
    bias = torch.zeros(1, head.n_outputs, dtype=dtype)
    bias[0, 2 + 20 :] = -200.0  # softplus(-200) = 1e-87: sigma = 1e-40 + 1e-87
    bias[0, 2 : 2 + 10] = 1e-41  # the first component's means at the targets
    bias[0, 2 + 10 : 2 + 20] = 2e-40  # the second's two scales away
    y = torch.full((2, 2, 10), 1e-41, dtype=dtype)
    upstream = torch.ones(1, dtype=dtype)
    got = loss_and_grads(head_loss.member_nll, head, out, weight, bias, y, None, upstream)
    want = loss_and_grads(reference, head, out, weight, bias, y, None, upstream)
    assert torch.isfinite(want[0]).all()
    assert_close(got, want, TOL[dtype])


@pytest.mark.parametrize("head", HEADS[:2], ids=["bernoulli", "gmm"])
def test_nan_reaches_the_loss_and_gradient_of_its_member_only(head):
    out, weight, bias, y, mask = inputs(head, 3, 6, 2, 4, torch.float32)
    out[1, 2, 1, 0] = float("nan")  # a real step of member 1
    got = loss_and_grads(head_loss.member_nll, head, out, weight, bias, y, mask, torch.ones(3))
    want = loss_and_grads(reference, head, out, weight, bias, y, mask, torch.ones(3))
    assert torch.isnan(got[0][1]) and torch.isfinite(got[0][[0, 2]]).all()
    assert torch.isnan(got[2][1]).any() and torch.isfinite(got[2][[0, 2]]).all()
    assert_close(got, want, TOL[torch.float32])


@pytest.mark.parametrize("head", HEADS[:2], ids=["bernoulli", "gmm"])
def test_step_nll_without_gradients_is_the_heads(head):
    out, weight, bias, y, mask = inputs(head, 2, 6, 3, 4, torch.float32)
    got = head_loss.step_nll(head, out, weight, bias, y, mask)
    params = torch.baddbmm(bias.unsqueeze(1), out.reshape(2, 18, 4), weight.transpose(1, 2))
    real = mask > 0
    per = head.nll(params.reshape(2, 6, 3, -1), torch.where(real.unsqueeze(-1), y, 0.0))
    want = torch.where(real, per, 0.0)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    assert (got[:, ~real] == 0).all()


@pytest.mark.parametrize(("head", "unit"), [("bernoulli", "gru"), ("gmm", "lstm")])
def test_the_model_gives_the_same_nll_and_gradients_either_way(head, unit, monkeypatch):
    in_dim, out_dim = (88, 88) if head == "bernoulli" else (20, 10)
    model = SequenceModel(unit, in_dim, out_dim, 6, head=head, population=2)
    head_obj = model.head
    x, _, _, y, mask = inputs(head_obj, 1, 9, 3, in_dim, torch.float32, per_member=False)
    x = x[0].abs() if head == "gmm" else (x[0] > 1).float()
    y = torch.nan_to_num(y)
    results = {}
    for fused in (True, False):
        monkeypatch.setattr(head_loss, "_ENABLED", fused)
        assert head_loss.usable(model, y) is fused
        model.zero_grad()
        nll_sum, n, _ = model.nll(x, y, mask)
        (nll_sum / n).sum().backward()
        with torch.no_grad():
            per, _ = model.step_nll(x, y, mask)
        results[fused] = [nll_sum.detach(), per] + [p.grad.clone() for p in model.parameters()]
        assert n == int(mask.sum())
    for a, b in zip(results[True], results[False], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_torch_backend_and_other_heads_keep_autograd():
    y = torch.zeros(3, 2, 10)
    assert head_loss.usable(SequenceModel("lstm", 20, 10, 4, head="gmm"), y)
    assert not head_loss.usable(SequenceModel("lstm", 20, 10, 4, head="gmm", backend="torch"), y)
    assert not head_loss.usable(SequenceModel("lstm", 20, 10, 4, head="gmm").half(), y)
    assert not head_loss.usable(
        SequenceModel("lstm", 20, 10, 4, head="gmm"), y.clone().requires_grad_()
    )

    class Other(GaussianMixtureHead):
        pass

    assert not head_loss.usable(SequenceModel("lstm", 20, 10, 4, head=Other(10, 20)), y)


def _speech(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)

    def seq(n, tag):
        frames = (rng.standard_normal(((n + 2), 10)) * 0.5).astype(np.float32)
        inputs = np.concatenate([frames[:n], frames[1 : n + 1]], axis=1)  # 20 samples in
        return Sequence(inputs, frames[2:], f"{tag}{n}")  # the next 10

    splits = {
        "train": [seq(n, "tr") for n in (12, 10, 9)],
        "valid": [seq(n, "va") for n in (8, 7)],
        "test": [seq(6, "te")],
    }
    return Dataset(
        name="tiny-speech", kind="speech", in_dim=20, out_dim=10, head="gmm", task="speech",
        splits=splits,
    )  # fmt: skip


def _train(dataset, configs, root):
    dirs = [root / c.key() for c in configs]
    results = train_population(configs, out_dirs=dirs, dataset=dataset)
    states = [torch.load(d / "last.pt", weights_only=True)["model"] for d in dirs]
    valid = [
        [json.loads(line)["valid_nll"] for line in (d / "metrics.jsonl").read_text().splitlines()]
        for d in dirs
    ]
    return results, states, valid


@pytest.mark.parametrize("task", ["music", "speech"])
def test_training_is_the_same_with_the_fused_loss(task, tiny, tmp_path, monkeypatch):
    """A population trained a few epochs (weight noise, clipping, RMSProp, evaluation) through
    the fused loss and through autograd: the same scores; for speech also the same weights
    (music's rarely sounding notes have near-zero gradients whose RMSProp step float rounding
    can flip, as in tests/train/test_population.py)."""
    dataset = tiny if task == "music" else _speech()
    name = "jsb" if task == "music" else "fsdd-a"
    configs = [
        RunConfig(dataset=name, unit="lstm", hidden=6, batch_size=2, max_epochs=3, lr=lr, seed=s)
        for lr, s in ((1e-3, 0), (3e-3, 1))
    ]
    runs = {}
    for fused in (True, False):
        monkeypatch.setattr(head_loss, "_ENABLED", fused)
        runs[fused] = _train(dataset, configs, tmp_path / str(fused))
    (res_f, states_f, valid_f), (res_a, states_a, valid_a) = runs[True], runs[False]
    for a, b in zip(res_f, res_a, strict=True):
        for key in ("train_nll", "valid_nll", "test_nll"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-5)
        assert a["updates"] == b["updates"] > 0
    np.testing.assert_allclose(valid_f, valid_a, rtol=1e-5, atol=1e-5)
    if task == "speech":
        for sf, sa in zip(states_f, states_a, strict=True):
            for name_ in sf:
                torch.testing.assert_close(sf[name_], sa[name_], rtol=1e-4, atol=1e-5)
