"""The fused optimiser kernels (rnnbench.train.fused) against the per-tensor torch code they
replace, written out here as the reference: the same parameters and state within float
rounding (torch's vectorised sqrt is sometimes one ulp off the correctly rounded one the
kernels use; every other operation is the same in the same order)."""

from __future__ import annotations

import pytest
import torch

from rnnbench.train import authors, fused
from rnnbench.train.protocol import (
    PopulationRMSProp,
    WeightNoise,
    clip_member_grad_norms,
    noise_seed,
)

SHAPES = [(4, 12, 3), (4, 12), (4, 2, 6), (4, 5)]


def _per_member(mask, like):
    return mask.view((-1,) + (1,) * (like.dim() - 1))


def reference_rmsprop(params, grads, square_avg, momentum_buffer, lr, active, decay, mu, eps):
    for p, g, v, b in zip(params, grads, square_avg, momentum_buffer, strict=True):
        keep = _per_member(active, p)
        new_v = v * decay + (1.0 - decay) * g * g
        avg = new_v.sqrt() + eps
        new_b = b * mu + g / avg if mu else g / avg
        new_p = p - _per_member(lr, p) * new_b
        v.copy_(torch.where(keep, new_v, v))
        b.copy_(torch.where(keep, new_b, b))
        p.copy_(torch.where(keep, new_p, p))


def reference_clip(grads, max_norm):
    k = grads[0].shape[0]
    norms = sum(g.reshape(k, -1).double().pow(2).sum(1) for g in grads).sqrt()
    if max_norm:
        clip = torch.isfinite(norms) & (norms > max_norm)
        scale = torch.where(clip, max_norm / norms, torch.ones_like(norms))
        for g in grads:
            g.mul_(_per_member(scale.to(g.dtype), g))
    return norms


def reference_authors(params, grads, square_avg, momentum_buffer, lr, active, decay, mu, eps, c):
    k = params[0].shape[0]
    new, sq = [], torch.zeros(k, dtype=torch.float64)
    for g, v, u, p in zip(grads, square_avg, momentum_buffer, params, strict=True):
        new_v = v * decay + (1.0 - decay) * g * g
        rms = torch.clamp(new_v.sqrt(), min=eps)
        new_u = u * mu - _per_member(lr, p) * (g / rms)
        sq += new_u.reshape(k, -1).double().pow(2).sum(1)
        new.append((new_v, new_u))
    norms = sq.sqrt()
    scale = c / torch.clamp(norms, min=c) if c else torch.ones_like(norms)
    for (p, v, u), (new_v, new_u) in zip(
        zip(params, square_avg, momentum_buffer, strict=True), new, strict=True
    ):
        keep = _per_member(active, p)
        new_p = p + _per_member(scale.to(p.dtype), p) * new_u
        v.copy_(torch.where(keep, new_v, v))
        u.copy_(torch.where(keep, new_u, u))
        p.copy_(torch.where(keep, new_p, p))
    return norms


def _setup(dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in SHAPES]
    return params, gen


def _grads(params, gen, nan_member=None, big=(1.0,) * 4):
    scale = torch.tensor(big)
    grads = [
        torch.randn(p.shape, generator=gen, dtype=p.dtype) * _per_member(scale, p).to(p.dtype)
        for p in params
    ]
    if nan_member is not None:
        grads[1][nan_member, 3] = float("nan")
    return grads


def _close(got, want, dtype):
    tol = 2e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(got, want, rtol=tol, atol=tol, equal_nan=True)


def _clone(ts):
    return [t.detach().clone() for t in ts]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_population_rmsprop_is_bitwise_the_per_tensor_torch_update(dtype, momentum):
    params, gen = _setup(dtype)
    lrs = [1e-3, 3e-3, 1e-2, 0.3]
    opt = PopulationRMSProp(params, lrs, decay=0.95, momentum=momentum, eps=1e-6)
    opt.scale_lr(0.7)
    ref_p, ref_v, ref_b = _clone(params), _clone(opt.square_avg), _clone(opt.momentum_buffer)
    for step in range(6):
        active = torch.tensor([True, step < 3, True, True])
        grads = _grads(params, gen, nan_member=3 if step == 4 else None)
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        assert opt._live() is not None  # the fused path runs
        opt.step(active)
        reference_rmsprop(ref_p, grads, ref_v, ref_b, opt.lr, active, 0.95, momentum, 1e-6)
        for got, want in zip(
            params + opt.square_avg + opt.momentum_buffer, ref_p + ref_v + ref_b, strict=True
        ):
            _close(got.detach(), want, dtype)  # the NaN member: NaN where the reference has
    assert torch.isnan(params[1][3]).any() and not torch.isnan(params[1][:3]).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("max_norm", [0.0, 1.0])
def test_clipping_matches_the_per_tensor_torch_clip(dtype, max_norm):
    params, gen = _setup(dtype)
    grads = _grads(params, gen, nan_member=2, big=(0.01, 3.0, 3.0, 100.0))
    want_grads = _clone(grads)
    want = reference_clip(want_grads, max_norm)
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    got = clip_member_grad_norms(params, max_norm)
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0, equal_nan=True)
    assert torch.isnan(got[2]) and got[0] < 1 < got[1]
    for p, w in zip(params, want_grads, strict=True):
        # the float32 scale is computed from a norm summed in another order: at most one ulp
        torch.testing.assert_close(p.grad, w, rtol=2e-7 if dtype == torch.float32 else 1e-15,
                                   atol=0, equal_nan=True)  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("clip", [0.0, 1.0])
def test_authors_rmsprop_matches_the_per_tensor_torch_update(dtype, clip):
    params, gen = _setup(dtype, seed=1)
    lrs = [1e-3, 3e-2, 1e-1, 1.0]
    opt = authors.AuthorsRMSProp(params, lrs, decay=0.95, momentum=0.9, eps=0.01, clip=clip)
    ref_p, ref_v, ref_u = _clone(params), _clone(opt.square_avg), _clone(opt.momentum_buffer)
    for step in range(6):
        active = torch.tensor([True, True, step < 2, True])
        grads = _grads(params, gen, nan_member=0 if step == 5 else None, big=(5.0,) * 4)
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        assert opt._live() is not None
        got = opt.step(active)
        want = reference_authors(ref_p, grads, ref_v, ref_u, opt.lr, active, 0.95, 0.9, 0.01, clip)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=0, equal_nan=True)
        for a, b in zip(
            params + opt.square_avg + opt.momentum_buffer, ref_p + ref_v + ref_u, strict=True
        ):
            _close(a.detach(), b, dtype)
    assert torch.isnan(params[1][0]).any() and not torch.isnan(params[1][1:]).any()


def test_the_torch_path_runs_where_the_kernels_cannot():
    params = [torch.zeros(2, 3, dtype=torch.float16), torch.zeros(2, 3).t()]
    assert not fused.usable(params[:1]) and not fused.usable(params[1:])
    p = torch.zeros(2, 6, 2).transpose(1, 2).requires_grad_()  # not contiguous
    opt = PopulationRMSProp([p], [0.1, 0.2], decay=0.9, momentum=0.0, eps=1e-6)
    p.grad = torch.ones_like(p)
    assert opt._live() is None
    opt.step(torch.tensor([True, False]))
    assert (p[0] < 0).all() and (p[1] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weight_noise_draws_what_per_member_randn_and_stack_drew(dtype):
    # the old WeightNoise.applied: a fresh randn per member and weight, stacked
    shapes = [(3, 8, 5), (3, 40, 7), (3, 2, 3), (3, 17)]  # sizes below and above 16 (randn's
    weights = [torch.zeros(s, dtype=dtype, requires_grad=True) for s in shapes]  # vector path)
    noise = WeightNoise([5, 6, 7], 0.075)
    gens = [torch.Generator().manual_seed(noise_seed(s)) for s in (5, 6, 7)]
    for _ in range(3):
        with noise.applied(weights):
            for w in weights:
                want = torch.stack(
                    [torch.randn(w.shape[1:], generator=g, dtype=dtype) for g in gens]
                )
                assert torch.equal(w.detach(), torch.zeros_like(want).add_(want, alpha=0.075))
        assert all(not w.detach().any() for w in weights)  # put back exactly
    weights.append(torch.ones(3, 4, dtype=dtype))  # another set of weights: new buffers
    with noise.applied(weights):
        assert weights[-1].ne(1).all()
