"""The music head's numba pass (rnnbench.nn.kernels.bernoulli, through
rnnbench.head_loss.bernoulli_pass) against autograd through BernoulliHead.nll.

The reference is the model's code before any fusion: ``baddbmm`` for the logits, the padded
targets zeroed, ``BernoulliHead.nll`` (``binary_cross_entropy_with_logits``), the padded steps
zeroed, each member's sum times its factor, and autograd's gradients. Float32 throughout; the
NLL within 1e-6 of the largest (relative), the gradients within 2e-5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnbench import head_loss
from rnnbench.heads import BernoulliHead
from rnnbench.nn.kernels import bernoulli


def reference(out, weight, bias, y, mask, scale):
    """Per-step NLL ``(K, R)`` and the gradients of ``sum_k scale_k sum_r nll`` in ``out``,
    ``weight``, ``bias``, through autograd."""
    k, t, b, h = out.shape
    head = BernoulliHead(weight.shape[1])
    leaves = [v.detach().clone().requires_grad_() for v in (out, weight, bias)]
    o, w, bb = leaves
    a = torch.baddbmm(bb.unsqueeze(1), o.reshape(k, t * b, h), w.transpose(1, 2))
    a = a.reshape(k, t, b, -1)
    real = torch.ones(t, b, dtype=torch.bool) if mask is None else mask > 0
    y = torch.where(real.unsqueeze(-1), y, y.new_zeros(()))
    per = torch.where(real, head.nll(a, y), 0.0)
    (per.sum((1, 2)) * scale).sum().backward()
    return [per.detach().reshape(k, t * b)] + [v.grad for v in leaves]


def inputs(k, t, b, h, d, *, seed=0, per_member=False, w_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(k, t, b, h, generator=g)
    weight = torch.randn(k, d, h, generator=g) * w_scale
    bias = torch.randn(k, d, generator=g)
    lead = (k, t, b) if per_member else (t, b)
    y = (torch.rand(*lead, d, generator=g) < 0.05).float()
    mask = torch.ones(lead)
    mask[..., t - 3 :, 0] = 0  # the first sequence ends early
    y[..., t - 1, 0, :] = float("nan")  # garbage on a padded step reaches nothing
    if per_member:
        mask[1, 4:] = 0  # member 1's window is shorter
        mask[k - 1] = 0  # the last member is idle
    scale = torch.rand(k, generator=g) + 0.1
    return out, weight, bias, y, mask, scale


def assert_close(got, want, rel):
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    fin = torch.isfinite(want)
    if fin.any():
        err = (got[fin] - want[fin]).abs().max() / want[fin].abs().max().clamp(min=1e-30)
        assert err.item() <= rel


def check(out, weight, bias, y, mask, scale, rel=2e-5):
    rows, d_out, d_w, d_b = head_loss.bernoulli_pass(out, weight, bias, y, mask, scale)
    want = reference(out, weight, bias, y, mask, scale)
    assert_close(rows, want[0], 1e-6)
    k, t, b, h = out.shape
    assert d_out.shape == (k, t, b, h) and d_w.shape == weight.shape and d_b.shape == bias.shape
    for got, ref in zip((d_out, d_w, d_b), want[1:], strict=True):
        assert_close(got, ref, rel)
    # the evaluation's pass (no gradient) gives the same NLL
    only = head_loss.bernoulli_pass(out, weight, bias, y, mask)
    assert len(only) == 1 and torch.equal(only[0], rows)
    return rows, d_out, d_w, d_b


@pytest.mark.parametrize("per_member", [False, True], ids=["shared", "own-batches"])
@pytest.mark.parametrize(("h", "d"), [(7, 88), (36, 88), (5, 3), (40, 17)])
@pytest.mark.parametrize("w_scale", [1.0, 30.0], ids=["moderate", "saturated"])
def test_nll_and_gradients_equal_autograds(per_member, h, d, w_scale):
    """Every unit of the output: shared and per-member targets and masks, padded steps with
    NaN targets, an idle member (0 everywhere), logits far into sigmoid's tails."""
    out, weight, bias, y, mask, scale = inputs(4, 9, 3, h, d, per_member=per_member)
    rows, d_out, d_w, d_b = check(out, weight * w_scale, bias, y, mask, scale)
    real = (mask > 0).expand(4, 9, 3).reshape(4, 27)
    assert (rows[~real] == 0).all() and (d_out.reshape(4, 27, h)[~real] == 0).all()
    if per_member:  # the idle member
        assert (d_w[3] == 0).all() and (d_b[3] == 0).all() and (rows[3] == 0).all()


def test_per_member_targets_with_a_shared_mask():
    out, weight, bias, y, mask, scale = inputs(3, 6, 2, 5, 88, seed=6, per_member=True)
    check(out, weight, bias, y, mask[0], scale)


def test_without_a_mask_and_with_soft_targets():
    out, weight, bias, _, _, scale = inputs(3, 6, 2, 8, 88, seed=1)
    y = torch.rand(6, 2, 88, generator=torch.Generator().manual_seed(2))
    check(out, weight, bias, y, None, scale)


def test_extreme_logits_and_a_product_that_overflows():
    """Logits of +-200 (exp underflows to 0; the NLL is the logit itself), of -90 to -104
    (exp below float32's normal range), and a frame of 2000 notes, whose product of
    ``1 + exp(-|a|)`` overflows float64 (then one logarithm per note)."""
    out, weight, bias, y, mask, scale = inputs(2, 5, 2, 3, 2000, seed=3)
    bias = bias * 0.0
    bias[:, :10] = torch.tensor([200.0, -200.0, 90.0, -90.0, 95.0, -100.0, 103.5, 0.0, -0.0, 20])
    weight[:, :10] = 0.0
    weight = weight * 0.01  # most logits near 0: prod(1 + e) about 2^2000
    check(out, weight, bias, y, mask, scale)


def test_nan_and_inf_reach_the_nll_and_gradients_of_their_member_only():
    out, weight, bias, y, mask, scale = inputs(4, 6, 2, 5, 88, seed=4)
    out[1, 2, 1, 0] = float("nan")  # a real step of member 1
    weight[2, 3, 1] = float("inf")
    bias[3, 5] = float("nan")
    out[0, 5, 0, :] = float("nan")  # a padded step of member 0: reaches nothing
    rows, d_out, d_w, d_b = head_loss.bernoulli_pass(out, weight, bias, y, mask, scale)
    nll = rows.sum(1)
    assert torch.isfinite(nll[0]) and not torch.isfinite(nll[1:]).any()
    assert torch.isfinite(d_w[0]).all() and torch.isfinite(d_b[0]).all()
    assert torch.isfinite(d_out[0]).all()
    for k in (1, 3):
        assert torch.isnan(d_w[k]).any() and torch.isnan(d_b[k]).any()
    assert not torch.isfinite(d_out[2]).all()  # through W's infinite entry
    # autograd agrees but on the padded steps, which it multiplies by 0 (0 * NaN, 0 * inf)
    out[0, 5, 0, :] = 0.0
    want = reference(out, weight, bias, y, mask, scale)
    got = head_loss.bernoulli_pass(out, weight, bias, y, mask, scale)
    real = (mask > 0).reshape(-1)
    assert_close(got[0], want[0], 1e-6)
    assert_close(got[1].reshape(4, 12, 5)[:, real], want[1].reshape(4, 12, 5)[:, real], 2e-5)
    assert (got[1].reshape(4, 12, 5)[:, ~real] == 0).all()
    for a, b in zip(got[2:], want[2:], strict=True):
        assert_close(a, b, 2e-5)


def test_the_exponential_is_torchs_within_an_ulp():
    t = -torch.cat([torch.linspace(0, 110, 200_001), torch.tensor([0.0, np.inf, 87.3, 103.9])])
    got = torch.empty_like(t)
    _exp_all(t.numpy(), got.numpy())
    want = torch.exp(t.double())
    normal = want >= torch.finfo(torch.float32).tiny
    rel = ((got.double() - want).abs() / want)[normal]
    assert rel.max().item() < 2.5e-7  # two float32 ulps
    sub = ~normal
    assert ((got.double() - want).abs()[sub] <= 2 * 2.0**-149).all()  # subnormal: one rounding
    assert got[-3].item() == 0.0  # exp(-inf)
    nan = torch.tensor([float("nan")])
    _exp_all(nan.numpy(), got[:1].numpy())
    assert torch.isnan(got[0])


_exp_all = bernoulli._exp_all


def test_step_nll_runs_the_kernel_and_matches_the_torch_head(monkeypatch):
    out, weight, bias, y, mask, _ = inputs(3, 7, 2, 6, 88, seed=5)
    head = BernoulliHead(88)
    called = []
    real = bernoulli.head_pass
    monkeypatch.setattr(bernoulli, "head_pass", lambda *a: called.append(1) or real(*a))
    got = head_loss.step_nll(head, out, weight, bias, y, mask)
    assert called
    monkeypatch.setattr(head_loss, "_KERNEL", False)
    want = head_loss.step_nll(head, out, weight, bias, y, mask)
    assert len(called) == 1
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    assert not head_loss.bernoulli_kernel(head, out.double())
