"""The gradient views remembered between clipping and the step (rnnbench.train.fused)."""

from __future__ import annotations

import numpy as np
import torch

from rnnbench.train import fused
from rnnbench.train.protocol import PopulationRMSProp, clip_member_grad_norms


def _grads(seed: int, shapes=((3, 4, 5), (3, 7))):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in shapes]


def test_the_views_follow_the_gradients_they_were_asked_for():
    first, second = _grads(0), _grads(1)
    views = fused.grad_views(first)
    assert all(np.shares_memory(v, t.numpy()) for v, t in zip(views, first, strict=True))
    assert fused.grad_views(first) is views  # the same tensors: remembered
    again = fused.grad_views(second)  # new tensors of the same shapes: their own views
    assert all(np.shares_memory(v, t.numpy()) for v, t in zip(again, second, strict=True))
    first[0].data = torch.zeros(3, 4, 5)  # a tensor given new memory is looked at again
    moved = fused.grad_views(first)
    assert np.shares_memory(moved[0], first[0].numpy())
    assert fused.grad_views([torch.zeros(3, 4, dtype=torch.float16)]) is None
    fused.forget_grads()


def test_clipping_then_the_step_equals_the_step_on_fresh_views():
    shapes = ((2, 6, 3), (2, 6))
    runs = []
    for remembered in (True, False):
        params = [torch.zeros(s) for s in shapes]
        opt = PopulationRMSProp(params, [0.1, 0.2], decay=0.9, momentum=0.5, eps=1e-6)
        for step in range(3):
            opt.zero_grad()
            for p, g in zip(params, _grads(step, shapes), strict=True):
                p.grad = g * 10
            if not remembered:
                fused.forget_grads()
            norms = clip_member_grad_norms(params, 1.0)
            if not remembered:
                fused.forget_grads()
            opt.step(torch.tensor([True, True]))
        runs.append((norms, [p.clone() for p in params]))
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))
    assert all(p.abs().sum() > 0 for p in runs[0][1])
