"""The paper's forms (peephole LSTM, reset-before GRU): exact gradients, and what ties them to
the native forms."""

import pytest
import torch

from rnnbench.nn import GRU, LSTM, RNN
from rnnbench.nn.functional import run_unit

BACKENDS = ["torch", "numba"]

# (cell, gates, keyword arguments of run_unit)
PAPER_FORMS = [
    ("tanh", 1, {}),
    ("lstm", 4, {"peephole": True}),
    ("lstm", 4, {"peephole": False}),
    ("gru", 3, {"reset": "before"}),
    ("gru", 3, {"reset": "after"}),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("cell", "gates", "form"), PAPER_FORMS)
def test_gradcheck(cell, gates, form, backend):
    """Every input of run_unit, masked steps and two members included, float64."""
    gen = torch.Generator().manual_seed(1)
    K, T, B, I, H = 2, 4, 2, 3, 2

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)

    x, w_ih, w_hh = rand(T, B, I), rand(K, gates * H, I), rand(K, gates * H, H)
    b_ih, b_hh, h0 = rand(K, gates * H), rand(K, gates * H), rand(K, B, H)
    c0 = rand(K, B, H) if cell == "lstm" else None
    w_ch = rand(K, 3, H) if form.get("peephole") else None
    mask = torch.ones(T, B, dtype=torch.float64)
    mask[2:, 1] = 0

    def run(*args):
        x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_ch = args
        out, h_n, c_n = run_unit(
            cell,
            x,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            w_ch=w_ch,
            reset=form.get("reset", "before"),
            mask=mask,
            h0=h0,
            c0=c0,
            backend=backend,
        )
        return (out, h_n) if c_n is None else (out, h_n, c_n)

    assert torch.autograd.gradcheck(run, (x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_ch))


@pytest.mark.parametrize("backend", BACKENDS)
def test_peephole_lstm_with_zero_peepholes_equals_native(backend):
    torch.manual_seed(0)
    native = torch.nn.LSTM(4, 5).double()
    ours = LSTM(4, 5, backend=backend).double()
    with pytest.warns(UserWarning, match="peephole=False"):  # the form differs: said so
        missing = ours.load_state_dict(native.state_dict(), strict=False).missing_keys
    assert missing[0] == "weight_ch_l0" and "peephole=False" in missing[1]
    with torch.no_grad():
        ours.weight_ch_l0.zero_()
    x = torch.randn(7, 3, 4, dtype=torch.float64)
    (out, (h_n, c_n)), (ref, (ref_h, ref_c)) = ours(x), native(x)
    for a, b in [(out, ref), (h_n, ref_h), (c_n, ref_c)]:
        assert (a - b).abs().max().item() <= 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
def test_peepholes_change_the_output(backend):
    torch.manual_seed(0)
    ours = LSTM(4, 5, backend=backend)
    x = torch.randn(7, 3, 4)
    with_peepholes = ours(x)[0]
    with torch.no_grad():
        ours.weight_ch_l0.zero_()
    assert (with_peepholes - ours(x)[0]).abs().max().item() > 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_reset_before_and_after_differ_on_the_same_weights(backend):
    torch.manual_seed(0)
    before = GRU(4, 5, reset="before", backend=backend)
    after = GRU(4, 5, reset="after", backend=backend)
    weights = dict(before.named_parameters())  # the state dict's form would refuse
    after.load_state_dict(weights)
    x = torch.randn(7, 3, 4)
    assert (before(x)[0] - after(x)[0]).abs().max().item() > 1e-3
    native = torch.nn.GRU(4, 5)
    native.load_state_dict(weights)
    assert (after(x)[0] - native(x)[0]).abs().max().item() <= 1e-5


def test_paper_defaults():
    assert LSTM(2, 3).peephole is True
    assert GRU(2, 3).reset == "before"
    assert [n for n, _ in LSTM(2, 3).named_parameters()] == [
        "weight_ih_l0",
        "weight_hh_l0",
        "bias_ih_l0",
        "bias_hh_l0",
        "weight_ch_l0",
    ]
    assert LSTM(2, 3).weight_ch_l0.shape == (3, 3)
    assert RNN(2, 3, init="paper").bias_hh_l0.abs().max().item() == 0
