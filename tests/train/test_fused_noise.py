"""The fused weight noise (rnnbench.train.fused_noise) against WeightNoise's torch loop."""

from __future__ import annotations

import math

import pytest
import torch

from rnnbench.train import fused_noise
from rnnbench.train.protocol import WeightNoise


class TorchLoop(WeightNoise):
    """WeightNoise with the fused path switched off: the reference."""

    def _fused(self, weights):
        return None


def test_runs_merge_only_where_one_draw_gives_the_same_numbers():
    assert fused_noise.runs([32, 48, 20]) == [(0, 100)]  # 16 divides all but the last
    assert fused_noise.runs([32, 20, 48]) == [(0, 52), (52, 100)]  # 20: a tail of its own
    assert fused_noise.runs([32, 8, 48]) == [(0, 32), (32, 40), (40, 88)]  # 8 < 16
    assert fused_noise.runs([6, 16]) == [(0, 6), (6, 22)]
    assert fused_noise.runs([16]) == [(0, 16)]


@pytest.mark.parametrize("sizes", [[12672, 5184, 108], [12144, 6348], [32, 16, 17], [48, 4048]])
def test_one_draw_over_a_run_equals_one_draw_per_tensor(sizes):
    # the premise of fused_noise.runs: torch's normal_ on consecutive tensors
    a, b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    apart = torch.cat([torch.empty(s).normal_(generator=a) for s in sizes])
    row = torch.empty(sum(sizes))
    for start, stop in fused_noise.runs(sizes):
        row[start:stop].normal_(generator=b)
    assert torch.equal(row, apart)
    assert torch.equal(a.get_state(), b.get_state())


def _bits(t):
    return t.detach().contiguous().view(torch.int32)


def _same(a, b) -> bool:
    """Bit for bit, NaN included."""
    return torch.equal(_bits(a), _bits(b))


def _weights(k: int, shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn((k, *s), generator=g) * 0.3) for s in shapes]


SHAPES = {
    "lstm": [(144, 88), (144, 36), (3, 36), (88, 36)],  # merges the first three
    "gru": [(138, 88), (138, 46), (88, 46)],
    "small": [(8, 5), (2, 3), (17,), (40, 7)],  # sizes below 16: nothing merges
}


@pytest.mark.parametrize("shapes", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("members", [None, [True, False, True]])
def test_the_fused_noise_equals_the_torch_loop_bit_for_bit(shapes, members):
    fast, slow = _weights(3, shapes), _weights(3, shapes)
    with torch.no_grad():  # NaN and inf weights stay NaN and inf
        for ws in (fast, slow):
            ws[0][1, 0, 0] = math.nan
            ws[-1][2].view(-1)[-1] = math.inf
    clean = [w.detach().clone() for w in fast]
    ptrs = [w.data_ptr() for w in fast]
    a, b = WeightNoise([5, 6, 7], 0.075), TorchLoop([5, 6, 7], 0.075)
    for _ in range(3):
        with a.applied(fast, members), b.applied(slow, members):
            assert a._fast[1] is not None  # the fused path ran
            for f, s, c in zip(fast, slow, clean, strict=True):
                assert _same(f, s)
                assert not _same(f[0], c[0])
                if members is not None:  # an idle member's weights keep no noise
                    assert _same(f[1], c[1])
        for f, c, p in zip(fast, clean, ptrs, strict=True):  # back exactly, in the same tensor
            assert _same(f, c) and f.data_ptr() == p
        for k in range(3):
            assert torch.equal(a.member_state(k), b.member_state(k))


def test_a_gradient_set_inside_the_block_lands_on_the_clean_parameter():
    (w,) = _weights(2, [(16, 4)])
    clean = w.detach().clone()
    noise = WeightNoise([1, 2], 0.5)
    with noise.applied([w]):
        (w * 2).sum().backward()  # autograd through the noisy weights
        assert not torch.equal(w.detach(), clean)
    assert torch.equal(w.detach(), clean)
    assert torch.equal(w.grad, torch.full_like(clean, 2.0))


def test_the_fused_noise_restores_the_weights_on_error():
    ws = _weights(2, SHAPES["gru"])
    clean = [w.detach().clone() for w in ws]
    with pytest.raises(RuntimeError), WeightNoise([1, 2], 0.5).applied(ws):
        raise RuntimeError("boom")
    assert all(torch.equal(w.detach(), c) for w, c in zip(ws, clean, strict=True))


def test_float64_and_noncontiguous_weights_take_the_torch_loop():
    assert not fused_noise.usable([torch.zeros(2, 3, 4, dtype=torch.float64)])
    assert not fused_noise.usable([torch.zeros(2, 4, 3).transpose(1, 2)])
    assert not fused_noise.usable([])
    assert fused_noise.usable([torch.zeros(2, 3, 4)])  # and the machine's add is an FMA


def test_new_weights_get_new_buffers():
    noise = WeightNoise([1, 2], 0.075)
    first, second = _weights(2, SHAPES["gru"]), _weights(2, SHAPES["lstm"], seed=1)
    for ws in (first, second, first):
        clean = [w.detach().clone() for w in ws]
        with noise.applied(ws):
            assert all(not torch.equal(w.detach(), c) for w, c in zip(ws, clean, strict=True))
        assert all(torch.equal(w.detach(), c) for w, c in zip(ws, clean, strict=True))
