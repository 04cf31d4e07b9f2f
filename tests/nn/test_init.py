"""The "torch" and "paper" initialisation schemes: names, shapes, bounds, orthogonality,
determinism."""

import math

import pytest
import torch

from rnnbench.nn import GRU, LSTM, RNN
from rnnbench.nn.init import init_unit

# (cell, gates, peephole)
UNITS = [("tanh", 1, False), ("lstm", 4, True), ("lstm", 4, False), ("gru", 3, False)]


def generator(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("scheme", ["torch", "paper"])
@pytest.mark.parametrize(("cell", "gates", "peephole"), UNITS)
def test_names_and_shapes(cell, gates, peephole, scheme):
    params = init_unit(cell, 7, 5, peephole=peephole, scheme=scheme, generator=generator(0))
    expected = {
        "weight_ih_l0": (gates * 5, 7),
        "weight_hh_l0": (gates * 5, 5),
        "bias_ih_l0": (gates * 5,),
        "bias_hh_l0": (gates * 5,),
    }
    if peephole:
        expected["weight_ch_l0"] = (3, 5)
    assert {name: tuple(p.shape) for name, p in params.items()} == expected
    assert list(params) == list(expected)
    no_bias = init_unit(cell, 7, 5, bias=False, scheme=scheme, generator=generator(0))
    assert list(no_bias) == ["weight_ih_l0", "weight_hh_l0"]


@pytest.mark.parametrize(("cell", "gates", "peephole"), UNITS)
def test_torch_scheme_is_uniform_within_one_over_sqrt_hidden(cell, gates, peephole):
    params = init_unit(cell, 30, 40, peephole=peephole, generator=generator(1))
    bound = 1 / math.sqrt(40)
    for p in params.values():
        assert p.abs().max().item() <= bound
        assert p.abs().max().item() > 0.9 * bound


@pytest.mark.parametrize(("cell", "gates", "peephole"), UNITS)
def test_paper_scheme(cell, gates, peephole):
    H = 20
    params = init_unit(cell, 30, H, peephole=peephole, scheme="paper", generator=generator(2))
    assert 0.09 < params["weight_ih_l0"].abs().max().item() <= 0.1
    if peephole:
        assert params["weight_ch_l0"].abs().max().item() <= 0.1
    assert params["bias_ih_l0"].abs().max().item() == 0
    assert params["bias_hh_l0"].abs().max().item() == 0
    blocks = params["weight_hh_l0"].double().split(H)
    assert len(blocks) == gates
    for block in blocks:
        assert torch.allclose(block @ block.T, torch.eye(H, dtype=torch.float64), atol=1e-6)
    assert not torch.allclose(blocks[0], blocks[-1]) or gates == 1


@pytest.mark.parametrize("scheme", ["torch", "paper"])
def test_same_generator_seed_gives_same_weights(scheme):
    a = init_unit("lstm", 6, 4, peephole=True, scheme=scheme, generator=generator(3))
    b = init_unit("lstm", 6, 4, peephole=True, scheme=scheme, generator=generator(3))
    c = init_unit("lstm", 6, 4, peephole=True, scheme=scheme, generator=generator(4))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["weight_ih_l0"], c["weight_ih_l0"])


def test_float64_request():
    params = init_unit("gru", 3, 4, scheme="paper", dtype=torch.float64, generator=generator(0))
    assert all(p.dtype == torch.float64 for p in params.values())


@pytest.mark.parametrize("make", [lambda: RNN(3, 4), lambda: LSTM(3, 4), lambda: GRU(3, 4)])
def test_modules_follow_the_global_seed_and_accept_a_generator(make):
    torch.manual_seed(5)
    first = dict(make().named_parameters())
    torch.manual_seed(5)
    second = dict(make().named_parameters())
    assert all(torch.equal(first[n], second[n]) for n in first)
    module = make()
    module.reset_parameters(generator(9))
    again = make()
    again.reset_parameters(generator(9))
    again_params = dict(again.named_parameters())
    assert all(torch.equal(v, again_params[n]) for n, v in module.named_parameters())


def test_a_module_holds_what_init_unit_draws_from_the_same_seed():
    torch.manual_seed(7)
    expected = init_unit("lstm", 3, 4, peephole=True, scheme="paper")
    torch.manual_seed(7)
    unit = LSTM(3, 4, init="paper")
    assert all(torch.equal(getattr(unit, n), expected[n]) for n in expected)
