"""The module surface: runnable docstring examples, argument checks, torch-like attributes."""

import doctest

import pytest
import torch

import rnnbench.nn.gru
import rnnbench.nn.lstm
import rnnbench.nn.rnn
from rnnbench.errors import RnnbenchError
from rnnbench.nn import GRU, LSTM, RNN


@pytest.mark.parametrize("module", [rnnbench.nn.rnn, rnnbench.nn.lstm, rnnbench.nn.gru])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("make", [lambda: RNN(3, 4), lambda: GRU(3, 4), lambda: LSTM(3, 4)])
def test_wrong_state_shape_is_refused(make):
    unit = make()
    bad = torch.zeros(1, 5, 4)
    hx = (bad, bad) if isinstance(unit, LSTM) else bad
    with pytest.raises(RuntimeError, match=r"hidden(\[0\])? size"):  # torch's messages
        unit(torch.zeros(6, 2, 3), hx)
    with pytest.raises(RuntimeError, match="input.size"):  # as torch.nn
        unit(torch.zeros(6, 2, 5))


def test_bad_form_or_scheme_raises_one_clear_error():
    with pytest.raises(RnnbenchError):
        GRU(3, 4, reset="sideways")
    with pytest.raises(RnnbenchError):
        LSTM(3, 4, init="xavier")
    with pytest.raises(RnnbenchError):
        RNN(3, 4, backend="cuda")


def test_torch_like_attributes():
    unit = LSTM(3, 4, batch_first=True)
    assert (unit.num_layers, unit.bidirectional, unit.hidden_size) == (1, False, 4)
    unit.flatten_parameters()
    assert "peephole=True" in repr(unit)
    assert "reset='before'" in repr(GRU(3, 4))


def test_float64_and_paper_init_modules_train():
    unit = GRU(3, 4, init="paper").double()
    out, h_n = unit(torch.randn(5, 2, 3, dtype=torch.float64))
    out.sum().backward()
    assert unit.weight_hh_l0.grad.dtype == torch.float64
    assert h_n.shape == (1, 2, 4)
