"""The ablation analyses against hand-computed cases: speed of learning, gradient flow, gate use."""

import math

import numpy as np
import pytest
import torch

from rnnbench.analysis import units
from rnnbench.analysis.gates import GateStats, add_trace, gate_use
from rnnbench.analysis.gradflow import gradient_flow
from rnnbench.analysis.speed import (
    area_under_curve,
    epochs_to_threshold,
    extended,
    seconds_to_threshold,
)
from rnnbench.data.dataset import Sequence
from rnnbench.errors import RnnbenchError
from rnnbench.models import SequenceModel
from rnnbench.nn.functional import run_unit


def test_time_to_threshold_and_area_on_synthetic_curves():
    valid = [10.0, 8.0, 6.0, 5.0, 5.5]
    assert epochs_to_threshold(valid, 6.0) == 3  # the first epoch at or below
    assert epochs_to_threshold(valid, 4.9) is None
    assert epochs_to_threshold([None, math.nan, 3.0], 4.0) == 3
    assert seconds_to_threshold(valid, [1.0, 2.5, 4.0, 6.0, 7.0], 8.0) == 2.5
    assert seconds_to_threshold(valid, [1, 2, 3, 4, 5], 1.0) is None
    # trapezoids: (10+8)/2 + (8+6)/2 + (6+5)/2 + (5+5.5)/2 = 9 + 7 + 5.5 + 5.25
    assert area_under_curve(valid) == pytest.approx(26.75)
    # a run that stopped at epoch 3 keeps its best (6) to epoch 5: 9 + 7 + 6 + 6
    assert area_under_curve([10.0, 8.0, 6.0], span=5) == pytest.approx(28.0)
    assert list(extended([7.0, math.nan, 5.0], 4)) == [7.0, 5.0, 5.0, 5.0]
    assert math.isnan(area_under_curve([]))


def test_gradient_flow_of_a_one_unit_tanh_rnn_is_the_product_of_its_jacobians():
    torch.manual_seed(0)
    model = SequenceModel("tanh", 1, 1, 1, head="bernoulli", init="torch", backend="torch")
    model = model.double()
    with torch.no_grad():
        model.weight_hh_l0.fill_(0.9)
    T, B = 6, 3
    x = torch.randn(T, B, 1, dtype=torch.float64)
    y = (torch.rand(T, B, 1) > 0.5).double()
    flow = gradient_flow(model, x, y)
    assert [r["distance"] for r in flow] == list(range(T - 1, -1, -1))
    assert all(r["grad_c"] is None for r in flow)
    # Closed form: dL/dh_T = w_out (sigmoid(a_T) - y_T); dL/dh_t = dL/dh_{t+1} w (1 - h_{t+1}^2).
    with torch.no_grad():
        out, _, _ = run_unit(
            "tanh",
            x,
            model.weight_ih_l0,
            model.weight_hh_l0,
            model.bias_ih_l0,
            model.bias_hh_l0,
            backend="torch",
        )
        h = out[0, :, :, 0]  # (T, B)
        w_out, b_out = float(model.weight_out[0, 0, 0]), float(model.bias_out[0, 0])
        g = w_out * (torch.sigmoid(w_out * h[-1] + b_out) - y[-1, :, 0])
        expected = [None] * T
        expected[T - 1] = g.abs().mean()
        for t in range(T - 2, -1, -1):
            g = g * 0.9 * (1 - h[t + 1] ** 2)
            expected[t] = g.abs().mean()
    for t in range(T):
        assert flow[t]["grad_h"] == pytest.approx(float(expected[t]), rel=1e-10)


def test_gradient_flow_equals_rerunning_the_unit_from_each_state():
    torch.manual_seed(1)
    model = SequenceModel("lstm", 3, 3, 4, head="bernoulli", peephole=False, backend="torch")
    model = model.double()
    T = 5
    x = torch.randn(T, 2, 3, dtype=torch.float64)
    y = (torch.rand(T, 2, 3) > 0.5).double()
    flow = gradient_flow(model, x, y)
    with torch.no_grad():
        _, (h, c) = model.forward(x[:2], None, None)  # the state after step t = 1
    h, c = h.clone().requires_grad_(), c.clone().requires_grad_()
    params, _ = model.forward(x[2:], None, (h, c))
    loss = model.head.nll(params[:, -1:], y[-1:]).sum()
    gh, gc = torch.autograd.grad(loss, [h, c])
    assert flow[3]["distance"] == 1
    assert flow[1]["grad_h"] == pytest.approx(float(gh.norm(dim=-1).mean()), rel=1e-10)
    # BPTT's cell-state gradient adds the path through h_t = o_t tanh(c_t) to the partial one.
    o = h.detach() / torch.tanh(c.detach())
    total = gc + gh * o * (1 - torch.tanh(c.detach()) ** 2)
    assert flow[1]["grad_c"] == pytest.approx(float(total.norm(dim=-1).mean()), rel=1e-8)


def test_gate_fractions_on_a_constructed_activation_set():
    stats = GateStats()
    stats.add([0.05, 0.0, 0.5, 0.95, 1.0, 0.9, 0.1, 0.6])
    assert stats.n == 8 and stats.mean == pytest.approx(4.1 / 8)
    assert stats.frac_below == pytest.approx(2 / 8)  # 0.05 and 0.0 (0.1 is not below)
    assert stats.frac_above == pytest.approx(2 / 8)  # 0.95 and 1.0 (0.9 is not above)
    assert stats.histogram.sum() == 8 and stats.histogram[0] == 2 and stats.histogram[-1] == 3
    # padded steps are left out
    collected: dict = {}
    trace = [{"z": torch.tensor([[[0.0], [1.0]]])}, {"z": torch.tensor([[[0.0], [1.0]]])}]
    add_trace(collected, trace, torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    assert collected["z"].n == 3 and collected["z"].frac_below == pytest.approx(2 / 3)


def test_the_trace_records_the_gates_the_unit_computes():
    torch.manual_seed(2)
    model = SequenceModel("gru", 3, 3, 4, head="bernoulli", backend="torch")
    x = torch.randn(4, 2, 3)
    trace: list = []
    run_unit("gru", x, backend="auto", trace=trace, **units.unit_arguments(model))
    assert len(trace) == 4 and set(trace[0]) == {"r", "z"}
    # the first step from h = 0: z = sigmoid(W_z x + b_iz + b_hz)
    w, b = model.weight_ih_l0[0], model.bias_ih_l0[0] + model.bias_hh_l0[0]
    z = torch.sigmoid(x[0] @ w[4:8].T + b[4:8])
    assert torch.allclose(trace[0]["z"][0], z, atol=1e-6)
    lstm = SequenceModel("lstm", 3, 3, 4, head="bernoulli")
    seqs = [Sequence(np.ones((5, 3), np.float32), np.ones((5, 3), np.float32))]
    stats = gate_use(lstm, seqs)
    assert set(stats) == {"i", "f", "o"} and stats["i"].n == 5 * 4


def test_variant_specs_and_matching():
    assert units.parse("lstm") == ("lstm", "") and units.parse("gru:after") == ("gru", "after")
    assert units.config_fields("lstm", "np") == {"peephole": False}
    assert units.variant_of({"unit": "gru", "reset": "after"}) == "after"
    assert units.variant_of({"unit": "lstm", "peephole": True}) == ""
    # the paper's budget gives the full units the paper's sizes, np a few more units
    assert units.hidden_size("music", "lstm", "") == 36
    assert units.hidden_size("speech", "gru", "") == 227
    assert units.hidden_size("music", "lstm", "np") >= 36
    for bad in ("tanh", "lstm:nope"):
        with pytest.raises(RnnbenchError, match="--variants"):
            units.parse(bad)


def test_the_gradient_flow_batch_is_the_longest_rows_cut_to_the_shortest_of_them():
    from rnnbench.analysis.gradflow import flow_batch

    seqs = [
        Sequence(np.full((n, 2), n, np.float32), np.full((n, 1), -n, np.float32))
        for n in (3, 9, 5, 7)
    ]
    x, y = flow_batch(seqs, batch_size=2)
    assert x.shape == (7, 2, 2) and y.shape == (7, 2, 1)
    assert x[:, 0].eq(9).all() and x[:, 1].eq(7).all() and y[:, 1].eq(-7).all()
    assert flow_batch(seqs, batch_size=2, max_steps=4)[0].shape == (4, 2, 2)


def test_the_trace_records_the_gates_a_variant_keeps():
    torch.manual_seed(3)
    x = torch.randn(3, 2, 3)
    for unit, variant, gates in (
        ("gru", "mgu", {"f"}),
        ("gru", "nrg", {"z"}),
        ("lstm", "nog", {"i", "f"}),
        ("lstm", "cifg", {"i", "f", "o"}),
    ):
        model = SequenceModel(unit, 3, 3, 4, head="bernoulli", variant=variant)
        trace: list = []
        out, _, _ = run_unit(unit, x, trace=trace, **units.unit_arguments(model))
        assert len(trace) == 3 and set(trace[0]) == gates, (unit, variant)
        plain, _, _ = run_unit(unit, x, backend="numba", **units.unit_arguments(model))
        assert torch.allclose(out, plain, atol=1e-5)  # the trace changes nothing
        if variant == "cifg":
            assert torch.allclose(trace[1]["f"], 1 - trace[1]["i"])
