"""minGRU and minLSTM: the log-space scan (training) equals the sequential step (evaluation,
sampling) in outputs and gradients; their counts and matched sizes."""

import pytest
import torch

from rnnbench.models import SequenceModel, count_params, paper_hidden
from rnnbench.units.builtin import MinGRU, MinGRU2, MinLSTM, MinLSTM2
from rnnbench.units.runner import run
from rnnbench.units.scan import g, log_g

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def _params(unit, dtype, k=2, i=5, h=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {
        n: (0.5 * torch.randn((k, *s), generator=gen, dtype=torch.float64))
        .to(dtype)
        .requires_grad_()
        for n, s in unit.shapes(i, h).items()
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "unit",
    [MinGRU(), MinLSTM(), MinGRU2(), MinLSTM2()],
    ids=["mingru", "minlstm", "mingru2", "minlstm2"],
)
@pytest.mark.parametrize("T", [30, 300])
def test_scan_equals_step_in_outputs_and_gradients(unit, dtype, T):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, 3, 5, generator=gen, dtype=torch.float64).to(dtype)
    mask = torch.ones(T, 3, dtype=dtype)
    mask[21:, 1] = 0  # a shorter row: padding at the end
    h0 = tuple(
        torch.rand(2, 3, 4, generator=gen, dtype=torch.float64).to(dtype) - 0.5 for _ in unit.state
    )
    weights = torch.randn(2, T, 3, 4, generator=gen, dtype=torch.float64).to(dtype)
    results = []
    for fn in ("sequence", "step"):
        p = _params(unit, dtype)
        if fn == "step":  # the runner picks sequence under autograd; force the step loop
            stepper = type("Stepper", (), {"state": unit.state, "step": unit.step})()
            out, final = run(stepper, p, x, 4, mask, h0)
        else:
            out, final = run(unit, p, x, 4, mask, h0)
        loss = (out * weights).sum() + sum((f**2).sum() for f in final)
        grads = torch.autograd.grad(loss, list(p.values()))
        results.append((out, final, grads))
    (o1, f1, g1), (o2, f2, g2) = results
    tol = TOL[dtype]  # relative to the values' scale (states reach about 5 here)
    assert (o1 - o2).abs().max() < tol * max(1.0, o2.abs().max().item())
    for a, b in zip(f1, f2, strict=True):  # every state tensor, the lower layer's too
        assert (a - b).abs().max() < tol * max(1.0, b.abs().max().item())
    assert (o1[:, 21:, 1] == 0).all()  # padded steps output 0
    for a, b in zip(g1, g2, strict=True):
        assert (a - b).abs().max() < tol * max(1.0, b.abs().max().item())


def test_g_and_log_g():
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    assert torch.allclose(torch.log(g(x)), log_g(x), atol=1e-12)
    assert (g(x) > 0).all()


def test_no_grad_runs_the_step_and_matches_training():
    model = SequenceModel("minlstm", 6, 6, 5, head="bernoulli", population=2)
    x = torch.rand(12, 3, 6)
    with torch.no_grad():
        evaluated, _ = model(x)
    trained, _ = model(x)
    assert (evaluated - trained).abs().max() < 1e-5


def test_counts_and_matching_like_the_variants():
    # matched by recurrent parameters to the full unit at the paper's size (Table 1)
    assert paper_hidden("music", "mingru") == 105  # 2H(88+1): 18,690 against the GRU's 18,630
    assert count_params("music", "mingru")["recurrent_params"] == 2 * 105 * 89
    assert paper_hidden("music", "minlstm") == 68  # 3H(88+1): 18,156 against 18,108
    assert count_params("music", "minlstm", 68)["recurrent_params"] == 3 * 68 * 89
    # the two-layer stacks, matched as a whole: layer 1 reads the 88 keys, layer 2 the H states
    assert paper_hidden("music", "mingru2") == 61  # 2H(89) + 2H(H + 1): 18,422 against 18,630
    assert count_params("music", "mingru2")["recurrent_params"] == 2 * 61 * 89 + 2 * 61 * 62
    assert paper_hidden("music", "minlstm2") == 45  # 3H(89) + 3H(H + 1): 18,225 against 18,108
    assert count_params("music", "minlstm2")["recurrent_params"] == 3 * 45 * 89 + 3 * 45 * 46


def test_the_stack_is_two_layers_the_second_reading_the_first():
    # mingru2's top state equals minGRU run on the states of a minGRU run on the input
    from rnnbench.units.builtin import _gru_layer_step

    unit, one = MinGRU2(), MinGRU()
    p = {n: t.detach()[0].double() for n, t in _params(unit, torch.float64, k=1).items()}
    lower = {n[:-1]: t for n, t in p.items() if n.endswith("1")}
    upper = {n: t for n, t in p.items() if not n.endswith("1")}
    x = torch.rand(7, 3, 5, dtype=torch.float64)
    zero = torch.zeros(3, 4, dtype=torch.float64)
    top, low = unit.sequence(p, x, (zero, zero))
    (want_low,) = one.sequence(lower, x, (zero,))
    (want_top,) = one.sequence(upper, want_low, (zero,))
    assert torch.allclose(low, want_low, atol=1e-12) and torch.allclose(top, want_top, atol=1e-12)
    # and the upper layer's gates depend on earlier inputs (a single layer's do not)
    x2 = x.clone()
    x2[0] += 1.0
    h1 = _gru_layer_step(p, x2[0], zero, "1")
    assert not torch.allclose(
        unit.gates(p, x2[1], (zero, h1))["z2"],
        unit.gates(p, x[1], (zero, _gru_layer_step(p, x[0], zero, "1")))["z2"],
    )


def test_gate_use_and_gradient_flow_of_the_min_units(tmp_path):
    from rnnbench.analysis.gates import gate_use
    from rnnbench.analysis.gradflow import flow_batch, gradient_flow
    from rnnbench.data.registry import load_dataset
    from tests.sweeps.test_kill import write_tiny_music

    write_tiny_music(tmp_path / "tiny.pickle")
    data = load_dataset(f"music:{tmp_path / 'tiny.pickle'}")
    for unit, gates in (
        ("mingru", {"z"}),
        ("minlstm", {"f", "i"}),
        ("mingru2", {"z1", "z2"}),
        ("minlstm2", {"f1", "f2"}),
    ):
        model = SequenceModel(unit, data.in_dim, data.out_dim, 6, head="bernoulli")
        used = gate_use(model, data.split("test"))
        assert set(used) == gates
        real = sum(len(s.inputs) for s in data.split("test"))
        assert all(s.n == real * 6 for s in used.values())
        if unit == "minlstm":  # f' + i' = 1
            assert abs(used["f"].mean + used["i"].mean - 1) < 1e-6
        x, y = flow_batch(data.split("valid"))
        flow = gradient_flow(model.double(), x.double(), y.double())
        assert len(flow) == x.shape[0] and flow[0]["grad_h"] > 0
