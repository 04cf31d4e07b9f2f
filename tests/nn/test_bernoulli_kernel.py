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


# ---- the products over the real steps only ----------------------------------------------------


def ragged(k, t, b, h, d, lengths, *, seed=7):
    """Member ``k``'s rows of lengths ``lengths[k]`` (padded at their ends, as the batches
    are), hidden states of 1e30 and NaN on every padded step (garbage that must reach
    nothing), targets NaN there."""
    out, weight, bias, y, _, scale = inputs(k, t, b, h, d, seed=seed, per_member=True)
    mask = torch.zeros(k, t, b)
    for m, row in enumerate(lengths):
        for j, n in enumerate(row):
            mask[m, :n, j] = 1.0
    pad = mask == 0
    out[pad] = torch.where(torch.arange(h) % 2 == 0, float("nan"), 1e30)
    y = torch.nan_to_num(y, nan=0.0)  # inputs() put NaN where these rows are real
    y[pad] = float("nan")
    return out, weight, bias, y, mask, scale


# rows from 0 steps to all of them; a member with one real step; one with none; one unpadded;
# one whose first row has none (a piece without a predicted step)
LENGTHS = [[12, 1, 5], [1, 0, 0], [0, 0, 0], [12, 12, 12], [0, 12, 7]]


def test_rows_of_very_different_lengths_equal_autograds():
    """Each member's own padding (the windows of a population of fresh seeds), garbage on the
    padded steps: the NLL and gradients are autograd's on the clean input, the padded steps'
    rows 0, and bit for bit those of the same input with zeros on the padded steps."""
    out, weight, bias, y, mask, scale = ragged(5, 12, 3, 9, 88, LENGTHS)
    pad = mask == 0
    clean = out.clone()
    clean[pad] = 0.0
    got = head_loss.bernoulli_pass(out, weight, bias, y, mask, scale)
    assert all(torch.isfinite(g).all() for g in got)
    want = reference(clean, weight, bias, torch.nan_to_num(y), mask, scale)
    assert_close(got[0], want[0], 1e-6)
    for g, ref in zip(got[1:], want[1:], strict=True):
        assert_close(g, ref, 2e-5)
    assert (got[0][pad.reshape(5, -1)] == 0).all() and (got[1][pad] == 0).all()
    assert (got[2][2] == 0).all() and (got[3][2] == 0).all()  # the member without a step
    zeroed = head_loss.bernoulli_pass(clean, weight, bias, y, mask, scale)
    for g, z in zip(got, zeroed, strict=True):
        assert torch.equal(g, z)
    assert torch.equal(head_loss.bernoulli_pass(out, weight, bias, y, mask)[0], got[0])


def test_a_member_reads_the_same_with_more_padding_around_it():
    """A member's window padded to a longer and wider update (a population of fresh seeds)
    gives bit for bit its NLL and gradients alone: the same real steps, in the same order."""
    both = ragged(2, 7, 2, 6, 88, [[7, 3], [7, 3]], seed=8)
    out, weight, bias, y, mask, scale = (v[:1].contiguous() for v in both)
    alone = head_loss.bernoulli_pass(out, weight, bias, y, mask, scale)
    big_out = torch.full((1, 15, 4, 6), float("nan"))
    big_out[:, :7, :2] = out
    big_y = torch.zeros(1, 15, 4, 88)
    big_y[:, :7, :2] = y
    big_mask = torch.zeros(1, 15, 4)
    big_mask[:, :7, :2] = mask
    wide = head_loss.bernoulli_pass(big_out, weight, bias, big_y, big_mask, scale)
    assert torch.equal(wide[0].view(1, 15, 4)[:, :7, :2], alone[0].view(1, 7, 2))
    assert torch.equal(wide[1][:, :7, :2], alone[1])
    assert (wide[1][:, 7:] == 0).all() and (wide[1][:, :, 2:] == 0).all()
    assert torch.equal(wide[2], alone[2]) and torch.equal(wide[3], alone[3])


@pytest.mark.parametrize("where", ["weight", "bias"])
def test_nan_in_a_padded_members_weights_reaches_its_nll_and_gradients(where):
    """NaN in the weights of members with padded steps reaches their NLL and every gradient
    (d_out on their real steps); the padded steps' rows stay 0; the others are untouched."""
    out, weight, bias, y, mask, scale = ragged(5, 12, 3, 9, 88, LENGTHS)
    clean = head_loss.bernoulli_pass(out, weight, bias, y, mask, scale)
    for k in (0, 1, 4):
        if where == "weight":
            weight[k, 5, 2] = float("nan")
        else:
            bias[k, 5] = float("nan")
    rows, d_out, d_w, d_b = head_loss.bernoulli_pass(out, weight, bias, y, mask, scale)
    real = mask > 0
    for k in (0, 1, 4):
        assert rows[k].sum().isnan() and d_w[k].isnan().any() and d_b[k].isnan().any()
        assert d_out[k][real[k]].isnan().any() and (d_out[k][~real[k]] == 0).all()
        assert (rows[k][~real[k].reshape(-1)] == 0).all()
    for k in (2, 3):  # no real step, and no padding
        for got, want in zip((rows, d_out, d_w, d_b), clean, strict=True):
            assert torch.equal(got[k], want[k])
    assert torch.isnan(
        head_loss.bernoulli_pass(out, weight, bias, y, mask)[0][[0, 1, 4]].sum(1)
    ).all()


def test_the_evaluation_with_few_padded_steps_reads_none_of_them():
    """One padded step in 40 (the evaluation then runs its product over every step): NaN and
    1e30 in its hidden state reach nothing; the NLL is autograd's and that of zeros there."""
    out, weight, bias, y, mask, scale = ragged(2, 20, 2, 9, 88, [[20, 19], [19, 20]], seed=9)
    clean = out.clone()
    clean[mask == 0] = 0.0
    (got,) = head_loss.bernoulli_pass(out, weight, bias, y, mask)
    assert torch.isfinite(got).all() and (got[mask.reshape(2, -1) == 0] == 0).all()
    assert torch.equal(got, head_loss.bernoulli_pass(clean, weight, bias, y, mask)[0])
    assert_close(got, reference(clean, weight, bias, torch.nan_to_num(y), mask, scale)[0], 1e-6)
    with_grad = head_loss.bernoulli_pass(out, weight, bias, y, mask, scale)
    assert_close(with_grad[0], got, 1e-6)
