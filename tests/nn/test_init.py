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


# ---- init="torch" draws what torch.nn draws (issue 26) -----------------------------------------

# (our class, our form, torch's class, arguments both take)
CUDNN_FORMS = [
    pytest.param(RNN, {}, torch.nn.RNN, {}, id="tanh"),
    pytest.param(RNN, {}, torch.nn.RNN, {"nonlinearity": "relu"}, id="relu"),
    pytest.param(LSTM, {"peephole": False}, torch.nn.LSTM, {}, id="lstm"),
    pytest.param(LSTM, {"peephole": False}, torch.nn.LSTM, {"proj_size": 3}, id="lstm_proj"),
    pytest.param(GRU, {"reset": "after"}, torch.nn.GRU, {}, id="gru"),
]


def assert_same_state(ours, native):
    a, b = ours.state_dict(), native.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize(("ours_cls", "form", "native_cls", "common"), CUDNN_FORMS)
def test_a_seeded_construction_is_torchs_tensor_for_tensor(
    ours_cls, form, native_cls, common, num_layers, bidirectional, bias
):
    """torch.manual_seed(s); rnnbench.nn.LSTM(..., peephole=False) == torch.nn.LSTM(...), and
    the global generator is left where torch leaves it (the next draw is the same)."""
    args = (10, 20, num_layers)
    kwargs = dict(bias=bias, bidirectional=bidirectional, **common)
    torch.manual_seed(0)
    native = native_cls(*args, **kwargs)
    after_native = torch.rand(4)
    torch.manual_seed(0)
    ours = ours_cls(*args, **kwargs, **form)
    assert torch.equal(torch.rand(4), after_native)
    assert_same_state(ours, native)
    # the same with a dtype, and for reset_parameters() on the global generator
    torch.manual_seed(1)
    native = native_cls(*args, **kwargs, dtype=torch.float64)
    native.reset_parameters()
    torch.manual_seed(1)
    ours = ours_cls(*args, **kwargs, **form, dtype=torch.float64)
    ours.reset_parameters()
    assert_same_state(ours, native)


def test_the_issue_example():
    torch.manual_seed(0)
    ours = LSTM(10, 20, 2, peephole=False)
    torch.manual_seed(0)
    assert_same_state(ours, torch.nn.LSTM(10, 20, 2))


@pytest.mark.parametrize(
    "make",
    [
        lambda: LSTM(4, 5, 2, bidirectional=True),  # peephole=True: weight_ch after the biases
        lambda: LSTM(4, 5, 2, proj_size=2, bidirectional=True),  # weight_hr, then weight_ch
        lambda: GRU(4, 5, 2, bidirectional=True),  # reset="before": torch.nn.GRU's draws
        lambda: LSTM(4, 5, 2, bias=False, dtype=torch.float64),
    ],
)
def test_the_paper_forms_draw_every_parameter_in_registration_order(make):
    """The documented order: each layer and direction's weight_ih, weight_hh, bias_ih,
    bias_hh, weight_hr, weight_ch, each from U(-1/sqrt(H), 1/sqrt(H)) in its own dtype."""
    torch.manual_seed(2)
    module = make()
    names = [n for n, _ in module.named_parameters()]
    kinds = [n.rsplit("_l", 1)[0] for n in names[: len(module._all_weights[0])]]
    order = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_ch"]
    assert kinds == [k for k in order if k in kinds]
    torch.manual_seed(2)
    bound = 1 / math.sqrt(module.hidden_size)
    for name, p in module.named_parameters():
        assert torch.equal(p, torch.empty_like(p).uniform_(-bound, bound)), name
    if isinstance(module, GRU):
        torch.manual_seed(2)
        after = dict(GRU(4, 5, 2, bidirectional=True, reset="after").named_parameters())
        assert all(torch.equal(p, after[n]) for n, p in module.named_parameters())


@pytest.mark.parametrize(
    ("cls", "variant", "rows"),
    [(LSTM, "nig", ["f", "g", "o"]), (LSTM, "cifg", ["i", "g", "o"]), (GRU, "nug", ["r", "n"])],
)
def test_a_variant_keeps_the_full_units_rows_of_its_gates(cls, variant, rows):
    """A variant draws each tensor at the full unit's shape, then keeps its gates' rows, so
    it shares the full unit's weights (peepholes included) and advances the RNG as it does."""
    full_gates = ["i", "f", "g", "o"] if cls is LSTM else ["r", "z", "n"]
    H = 5
    keep = torch.cat(
        [torch.arange(full_gates.index(g) * H, (full_gates.index(g) + 1) * H) for g in rows]
    )
    torch.manual_seed(4)
    full = cls(4, H, 2)
    after_full = torch.rand(2)
    torch.manual_seed(4)
    part = cls(4, H, 2, variant=variant)
    assert torch.equal(torch.rand(2), after_full)
    for name, p in part.named_parameters():
        if name.startswith("weight_ch"):
            continue
        assert torch.equal(p, getattr(full, name)[keep]), name


def test_init_paper_modules_keep_init_units_draws_with_a_projection():
    torch.manual_seed(7)
    expected = init_unit("lstm", 3, 4, peephole=True, scheme="paper", proj_size=2)
    torch.manual_seed(7)
    unit = LSTM(3, 4, init="paper", proj_size=2)
    assert list(expected) == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0", "weight_ch_l0"
    ]  # fmt: skip
    assert all(torch.equal(getattr(unit, n), expected[n]) for n in expected)
    blocks = unit.weight_hh_l0.double().split(4)  # H x R blocks with orthonormal columns
    for block in blocks:
        torch.testing.assert_close(
            block.T @ block, torch.eye(2, dtype=torch.float64), atol=1e-6, rtol=0
        )
