"""The speech head's numba pass (rnnbench.nn.kernels.mixture.head_pass, through
rnnbench.head_loss.mixture_pass) against autograd through GaussianMixtureHead.nll.

The reference is the model's code before any fusion, in float64 from the same float32
inputs: ``baddbmm`` for the head parameters, the padded targets zeroed,
``GaussianMixtureHead.nll``, the padded steps zeroed, each member's sum times its factor, and
autograd's gradients. The kernel runs in float32: the NLL within 2e-6 of the largest
(relative), the gradients within 2e-5."""

from __future__ import annotations

import pytest
import torch

from rnnbench import head_loss
from rnnbench.heads import GaussianMixtureHead
from rnnbench.nn.kernels import mixture


def reference(head, out, weight, bias, y, mask, scale, dtype=torch.float64):
    """Per-step NLL ``(K, R)`` and the gradients of ``sum_k scale_k sum_r nll`` in ``out``,
    ``weight``, ``bias``, through autograd in ``dtype``."""
    k, t, b, h = out.shape
    leaves = [v.detach().to(dtype).clone().requires_grad_() for v in (out, weight, bias)]
    o, w, bb = leaves
    a = torch.baddbmm(bb.unsqueeze(1), o.reshape(k, t * b, h), w.transpose(1, 2))
    a = a.reshape(k, t, b, -1)
    real = torch.ones(t, b, dtype=torch.bool) if mask is None else mask > 0
    y = torch.where(real.unsqueeze(-1), y, y.new_zeros(())).to(dtype)
    per = torch.where(real, head.nll(a, y), 0.0)
    (per.sum((1, 2)) * scale.to(dtype)).sum().backward()
    return [per.detach().reshape(k, t * b)] + [v.grad for v in leaves]


def inputs(k, t, b, h, head, *, seed=0, per_member=False, w_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    p = head.n_outputs
    out = torch.tanh(torch.randn(k, t, b, h, generator=g))
    weight = torch.randn(k, p, h, generator=g) * w_scale
    bias = torch.randn(k, p, generator=g)
    lead = (k, t, b) if per_member else (t, b)
    y = torch.randn(*lead, head.out_dim, generator=g)
    mask = torch.ones(lead)
    mask[..., t - 3 :, 0] = 0  # the first sequence ends early
    y[..., t - 1, 0, :] = float("nan")  # garbage on a padded step reaches nothing
    if per_member:
        mask[1, 4:] = 0  # member 1's window is shorter
        mask[k - 1] = 0  # the last member is idle
    scale = torch.rand(k, generator=g) + 0.1
    return out, weight, bias, y, mask, scale


def error(got, want) -> float:
    """The largest difference over the finite entries, relative to the largest of them."""
    fin = torch.isfinite(want)
    if not fin.any():
        return 0.0
    g, w = got.reshape(want.shape)[fin].double(), want[fin].double()
    return ((g - w).abs().max() / w.abs().max().clamp(min=1e-30)).item()


def assert_close(got, want, rel):
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert error(got, want) <= rel


def check(head, out, weight, bias, y, mask, scale, rel=2e-5):
    rows, d_out, d_w, d_b = head_loss.mixture_pass(head, out, weight, bias, y, mask, scale)
    assert all(v.dtype == torch.float32 for v in (rows, d_out, d_w, d_b))
    want = reference(head, out, weight, bias, y, mask, scale)
    assert_close(rows, want[0], 2e-6)
    k, t, b, h = out.shape
    assert d_out.shape == (k, t, b, h) and d_w.shape == weight.shape and d_b.shape == bias.shape
    # where float32 autograd is itself far from float64 (large weights: the products cancel),
    # the kernel may be as far as twice that
    want32 = reference(head, out, weight, bias, y, mask, scale, torch.float32)
    for got, ref, ref32 in zip((d_out, d_w, d_b), want[1:], want32[1:], strict=True):
        assert_close(got, ref, max(rel, 2 * error(ref32, ref)))
    # the evaluation's pass (no gradient) gives the same NLL
    only = head_loss.mixture_pass(head, out, weight, bias, y, mask)
    assert len(only) == 1 and torch.equal(only[0], rows)
    return rows, d_out, d_w, d_b


HEADS = [GaussianMixtureHead(10, 20), GaussianMixtureHead(3, 4, min_std=0.1)]


@pytest.mark.parametrize("per_member", [False, True], ids=["shared", "own-batches"])
@pytest.mark.parametrize("head", HEADS, ids=["speech", "small"])
@pytest.mark.parametrize(("h", "w_scale"), [(5, 1.0), (61, 0.2), (7, 8.0)])
def test_nll_and_gradients_equal_autograds(per_member, head, h, w_scale):
    """Shared and per-member targets and masks, padded steps with NaN targets, an idle
    member, a short window, per-member factors; moderate and far-off members."""
    check(head, *inputs(3, 9, 4, h, head, per_member=per_member, w_scale=w_scale))


def test_without_a_mask_every_step_counts():
    head = HEADS[0]
    out, weight, bias, y, _, scale = inputs(2, 6, 3, 5, head, seed=1)
    check(head, out, weight, bias, torch.nan_to_num(y), None, scale)


def test_the_edges_of_softplus_and_float_range():
    """Scale pre-activations past softplus's threshold 20 (identity, derivative exactly 1),
    at 20 itself, far below 0 (sigma at its floor, the derivative 0), at 0 and near the
    switch of the logarithm's two ranges (e^-|s| = sqrt(2) - 1); a component's mean 1e30
    away (z**2 overflows float32 where its responsibility is 0): autograd's values in
    float64 and float32 autograd's finite pattern."""
    head = GaussianMixtureHead(2, 3, min_std=1e-3)
    k, t, b, h = 2, 3, 2, 1
    out = torch.ones(k, t, b, h)
    weight = torch.zeros(k, head.n_outputs, h)
    bias = torch.zeros(k, head.n_outputs)
    s_slice = slice(3 + 6, None)
    bias[0, s_slice] = torch.tensor([25.0, 20.0, -200.0, -90.0, 0.0, 0.8813736])
    weight[0, s_slice, 0] = torch.tensor([0.5, 0.0, 3.0, -3.0, 1e-6, 0.0])
    bias[1, 3:5] = 1e30
    bias[1, s_slice] = -5.0
    y = torch.randn(t, b, 2, generator=torch.Generator().manual_seed(1))
    scale = torch.tensor([1.0, 0.25])
    got = check(head, out, weight, bias, y, None, scale)
    want32 = reference(head, out, weight, bias, y, None, scale, torch.float32)
    for a, w in zip(got, want32, strict=True):
        assert torch.equal(torch.isfinite(a), torch.isfinite(w))


def test_scales_whose_product_overflows():
    """Scales near float32's largest (1e37): their product over the 10 dimensions overflows
    float64, so the kernel sums the logarithms one by one."""
    head = GaussianMixtureHead(10, 3)
    out = torch.ones(1, 2, 2, 1)
    weight = torch.zeros(1, head.n_outputs, 1)
    weight[0, :3, 0] = torch.tensor([0.1, -0.2, 0.3])
    bias = torch.zeros(1, head.n_outputs)
    bias[0, 3 + 30 :] = 1e37
    bias[0, 3 + 30 : 3 + 40] = 2.0
    y = torch.randn(2, 2, 10, generator=torch.Generator().manual_seed(2))
    rows = check(head, out, weight, bias, y, None, torch.ones(1))[0]
    assert torch.isfinite(rows).all()


def test_nan_and_inf_reach_the_nll_and_gradients_of_their_member_only():
    head = HEADS[0]
    out, weight, bias, y, mask, scale = inputs(4, 6, 2, 5, head, seed=4)
    out[1, 2, 1, 0] = float("nan")  # a real step of member 1
    weight[2, 3, 1] = float("inf")  # a mean of member 2
    bias[3, 0] = float("inf")  # a mixture logit of member 3
    out[0, 5, 0, :] = float("nan")  # a padded step of member 0: reaches nothing
    rows, d_out, d_w, d_b = head_loss.mixture_pass(head, out, weight, bias, y, mask, scale)
    nll = rows.sum(1)
    assert torch.isfinite(nll[0]) and not torch.isfinite(nll[1:]).any()
    assert torch.isfinite(d_w[0]).all() and torch.isfinite(d_b[0]).all()
    assert torch.isfinite(d_out[0]).all()
    for k in (1, 2, 3):
        assert not torch.isfinite(d_w[k]).all()
    # autograd agrees but on the padded steps, which it multiplies by 0 (0 * NaN)
    out[0, 5, 0, :] = 0.0
    want = reference(head, out, weight, bias, y, mask, scale)
    got = head_loss.mixture_pass(head, out, weight, bias, y, mask, scale)
    real = (mask > 0).reshape(-1)
    assert_close(got[0], want[0], 2e-6)
    assert_close(got[1].reshape(4, 12, 5)[:, real], want[1].reshape(4, 12, 5)[:, real], 2e-5)
    assert (got[1].reshape(4, 12, 5)[:, ~real] == 0).all()
    for a, b in zip(got[2:], want[2:], strict=True):
        assert_close(a, b, 2e-5)


def test_the_logarithm_is_log1p_within_an_ulp():
    x = torch.cat(
        [torch.linspace(0, 1, 200_001), torch.logspace(-44, 0, 2001), torch.tensor([0.41421356])]
    ).float()
    got = torch.empty_like(x)
    mixture._log1p_all(x.numpy(), got.numpy())
    want = torch.log1p(x.double())
    pos = want > 0
    rel = ((got.double() - want).abs() / want)[pos]
    assert rel.max().item() < 1.2e-7  # one float32 ulp
    assert got[0].item() == 0.0
    nan = torch.tensor([float("nan")])
    mixture._log1p_all(nan.numpy(), got[:1].numpy())
    assert torch.isnan(got[0])


def test_step_nll_runs_the_kernel_and_matches_the_torch_head(monkeypatch):
    head = HEADS[0]
    out, weight, bias, y, mask, _ = inputs(3, 7, 2, 6, head, seed=5)
    called = []
    real = mixture.head_pass
    monkeypatch.setattr(mixture, "head_pass", lambda *a: called.append(1) or real(*a))
    got = head_loss.step_nll(head, out, weight, bias, y, mask)
    assert called
    monkeypatch.setattr(head_loss, "_KERNEL", False)
    want = head_loss.step_nll(head, out, weight, bias, y, mask)
    assert len(called) == 1
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    assert not head_loss.mixture_kernel(head, out.double())
    assert not head_loss.mixture_kernel(head, out)  # _KERNEL off


def test_many_steps_in_one_block():
    """The FSDD-A training batch's shape (768 steps, 61 units, 420 parameters)."""
    head = HEADS[0]
    out, weight, bias, y, mask, scale = inputs(1, 48, 16, 61, head, seed=6, w_scale=0.1)
    check(head, out, weight, bias, torch.nan_to_num(y), torch.ones_like(mask), scale)


def test_the_manual_training_pass_runs_the_kernel(monkeypatch):
    """The speech model's training update (rnnbench.train.manual_step) calls the kernel,
    and switching it off (``head_loss._KERNEL``) gives the same update within rounding."""
    from rnnbench.models import SequenceModel
    from rnnbench.train import manual_step

    class Cfg:
        protocol = "paper"

    model = SequenceModel("lstm", 20, 10, 6, head="gmm", population=2, peephole=True)
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(8, 3, 20, generator=g), torch.randn(8, 3, 10, generator=g)
    mask = torch.ones(8, 3)
    called = []
    real = mixture.head_pass
    monkeypatch.setattr(mixture, "head_pass", lambda *a: called.append(1) or real(*a))
    results = []
    for kernel in (True, False):
        monkeypatch.setattr(head_loss, "_KERNEL", kernel)
        for p in model.parameters():
            p.grad = None
        loss = manual_step.select(model, Cfg())(x, y, mask, None, True)[2]
        results.append([loss] + [p.grad.clone() for p in model.parameters()])
    assert len(called) == 1
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_blocks_dimension_major_order_is_a_permutation_of_the_heads_outputs():
    C, D = 4, 3
    perm = mixture._dim_major(C, D).tolist()
    assert sorted(perm) == list(range(C * (1 + 2 * D)))
    assert perm[:C] == list(range(C))  # the logits stay first
    assert perm[C + 1 * C + 2] == C + 2 * D + 1  # the mean of component 2, dimension 1
    assert perm[C + C * D + 0 * C + 3] == C + C * D + 3 * D + 0  # the scale of 3, dimension 0
