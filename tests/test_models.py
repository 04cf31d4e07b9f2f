"""Sequence models (population = independent singles, masks, state, sampling) and counting."""

import pytest
import torch
from torch import nn

import rnnbench.nn as rnn_units
from rnnbench.errors import RnnbenchError
from rnnbench.heads import GaussianMixtureHead
from rnnbench.models import (
    TASKS,
    UNITS,
    SequenceModel,
    count_params,
    match_hidden,
    paper_hidden,
    recurrent_params,
    total_params,
)

# (unit, peephole, reset): every form of every unit.
FORMS = [
    ("tanh", False, "before"),
    ("lstm", True, "before"),
    ("lstm", False, "before"),
    ("gru", False, "before"),
    ("gru", False, "after"),
]
FORM_IDS = ["tanh", "lstm-peephole", "lstm-plain", "gru-before", "gru-after"]


def _model(unit, peephole=True, reset="before", *, task="music", hidden=6, **kw):
    in_dim, out_dim = (5, 5) if task == "music" else (6, 3)
    head = "bernoulli" if task == "music" else GaussianMixtureHead(out_dim, components=4)
    kw.setdefault("backend", "torch")
    return SequenceModel(
        unit, in_dim, out_dim, hidden, head=head, peephole=peephole, reset=reset, **kw
    )


def _batch(t, b, in_dim, out_dim, binary, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(t, b, in_dim, generator=g)
    if binary:
        y = (torch.rand(t, b, out_dim, generator=g) < 0.3).float()
    else:
        y = torch.randn(t, b, out_dim, generator=g)
    return x, y


@pytest.mark.parametrize(("unit", "peephole", "reset"), FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("task", ["music", "speech"])
def test_population_equals_single_models_with_the_same_seeds(unit, peephole, reset, task):
    seeds = [11, 3, 7]
    pop = _model(unit, peephole, reset, task=task, population=3, seeds=seeds)
    x, y = _batch(8, 3, pop.in_dim, pop.out_dim, binary=task == "music")
    mask = torch.ones(8, 3)
    mask[5:, 1] = 0
    params, (h, c) = pop(x, mask)
    nll_sum, n_steps, _ = pop.nll(x, y, mask)
    assert params.shape == (3, 8, 3, pop.head.n_outputs)
    assert nll_sum.shape == (3,) and n_steps == 21
    for k, seed in enumerate(seeds):
        one = _model(unit, peephole, reset, task=task, population=1, seeds=[seed])
        for name, value in one.member_state(0).items():
            assert torch.equal(pop.member_state(k)[name], value), name
        p1, (h1, c1) = one(x, mask)
        s1, n1, _ = one.nll(x, y, mask)
        torch.testing.assert_close(params[k], p1[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(h[k], h1[0], rtol=1e-5, atol=1e-6)
        if unit == "lstm":
            torch.testing.assert_close(c[k], c1[0], rtol=1e-5, atol=1e-6)
        else:
            assert c is None and c1 is None
        torch.testing.assert_close(nll_sum[k], s1[0], rtol=1e-5, atol=1e-5)
        assert n1 == n_steps


def test_members_differ_and_default_seeds():
    pop = _model("gru", population=2)
    assert pop.seeds == [0, 1]
    assert not torch.equal(pop.weight_ih_l0[0], pop.weight_ih_l0[1])
    again = _model("gru", population=4)
    assert torch.equal(again.weight_hh_l0[:2], pop.weight_hh_l0)


def test_parameter_names_shapes_and_weight_matrices():
    m = _model("lstm", True, population=2, hidden=6)
    shapes = {name: tuple(p.shape) for name, p in m.named_parameters()}
    assert shapes == {
        "weight_ih_l0": (2, 24, 5),
        "weight_hh_l0": (2, 24, 6),
        "bias_ih_l0": (2, 24),
        "bias_hh_l0": (2, 24),
        "weight_ch_l0": (2, 3, 6),
        "weight_out": (2, 5, 6),
        "bias_out": (2, 5),
    }
    names = {id(p): n for n, p in m.named_parameters()}
    assert [names[id(p)] for p in m.weight_matrices()] == [
        "weight_ih_l0",
        "weight_hh_l0",
        "weight_ch_l0",
        "weight_out",
    ]
    g = _model("gru", population=1)
    assert [names for names, _ in g.named_parameters()][-2:] == ["weight_out", "bias_out"]
    assert len(g.weight_matrices()) == 3


@pytest.mark.parametrize("init", ["paper", "torch"])
def test_output_layer_initialisation(init):
    m = _model("tanh", init=init, hidden=16, population=2)
    bound = 0.1 if init == "paper" else 1 / 16**0.5
    assert m.weight_out.abs().max() <= bound
    assert m.weight_out.abs().max() > bound / 2
    if init == "paper":
        assert torch.all(m.bias_out == 0)
    else:
        assert m.bias_out.abs().max() <= bound and m.bias_out.abs().max() > 0


def test_member_state_round_trip():
    a = _model("lstm", True, population=3, seeds=[1, 2, 3])
    b = _model("lstm", True, population=2, seeds=[8, 9])
    state = a.member_state(2)
    assert all(v.shape == p.shape[1:] for v, p in zip(state.values(), a.parameters(), strict=True))
    b.load_member_state(0, state)
    for name, value in b.member_state(0).items():
        assert torch.equal(value, state[name])
    x, _ = _batch(6, 2, 5, 5, binary=True)
    pa, _ = a(x)
    pb, _ = b(x)
    torch.testing.assert_close(pb[0], pa[2])
    assert not torch.equal(pb[1], pa[2])  # the other member is untouched
    # A copy, not a view: training the model later does not change a saved state.
    with torch.no_grad():
        a.weight_ih_l0.add_(1.0)
    assert torch.equal(b.member_state(0)["weight_ih_l0"], state["weight_ih_l0"])


def test_load_member_state_rejects_a_different_model():
    a = _model("lstm", True)
    plain = _model("lstm", False)
    with pytest.raises(RnnbenchError, match="missing"):
        plain.load_member_state(0, a.member_state(0))
    bigger = _model("lstm", True, hidden=7)
    with pytest.raises(RnnbenchError, match="shape"):
        a.load_member_state(0, bigger.member_state(0))
    with pytest.raises(RnnbenchError, match="does not exist"):
        a.member_state(1)


@pytest.mark.parametrize(("unit", "peephole", "reset"), FORMS, ids=FORM_IDS)
def test_padded_steps_contribute_no_nll(unit, peephole, reset):
    m = _model(unit, peephole, reset, task="speech", population=2)
    lengths = [7, 4, 1]
    x, y = _batch(7, 3, m.in_dim, m.out_dim, binary=False, seed=1)
    mask = torch.zeros(7, 3)
    for b, n in enumerate(lengths):
        mask[:n, b] = 1
        x[n:, b] = 1e3  # garbage in the padding
        y[n:, b] = float("nan")
    total, n_steps, (h, _) = m.nll(x, y, mask)
    assert n_steps == sum(lengths)
    alone = torch.zeros(2)
    for b, n in enumerate(lengths):
        s, count, (hb, _) = m.nll(x[:n, b : b + 1], y[:n, b : b + 1])
        assert count == n
        alone += s
        torch.testing.assert_close(h[:, b], hb[:, 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total, alone, rtol=1e-5, atol=1e-4)
    total.sum().backward()
    for p in m.parameters():
        assert torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0


def test_state_carries_across_windows():
    m = _model("lstm", True, population=2)
    x, y = _batch(10, 2, 5, 5, binary=True)
    full, _ = m(x)
    first, state = m(x[:6])
    second, _ = m(x[6:], state=SequenceModel.detach_state(state))
    torch.testing.assert_close(torch.cat([first, second], 1), full, rtol=1e-5, atol=1e-6)
    s_full, _, _ = m.nll(x, y)
    s1, _, st = m.nll(x[:6], y[:6])
    s2, _, _ = m.nll(x[6:], y[6:], state=st)
    torch.testing.assert_close(s1 + s2, s_full, rtol=1e-5, atol=1e-4)


def test_per_member_inputs():
    m = _model("gru", population=2)
    x, _ = _batch(4, 2, 5, 5, binary=True)
    other = x + 1
    both, _ = m(torch.stack([x, other]))
    torch.testing.assert_close(both[0], m(x)[0][0])
    torch.testing.assert_close(both[1], m(other)[0][1])


def test_music_sample_shapes_and_feedback():
    m = _model("lstm", True, population=3)
    s = m.sample(6, generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 6, 5)
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    again = m.sample(6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, again)
    assert m.sample(0).shape == (3, 0, 5)
    # Feeding back by hand gives the same frames: frame t+1 is drawn after reading frame t.
    seen = []
    forward = m.forward

    def record(x, mask=None, state=None):
        seen.append(x)
        return forward(x, mask, state)

    m.forward = record
    s = m.sample(4, generator=torch.Generator().manual_seed(5))
    assert seen[0].shape == (1, 1, 5) and torch.all(seen[0] == 0)
    for t in range(1, 4):
        torch.testing.assert_close(seen[t], s[:, t - 1].reshape(3, 1, 1, 5))


def test_speech_sample_feeds_back_the_last_samples():
    m = _model("gru", task="speech", population=2)  # 6 samples in, 3 predicted per step
    prime = torch.randn(4, 6)
    seen = []
    forward = m.forward

    def record(x, mask=None, state=None):
        seen.append(x)
        return forward(x, mask, state)

    m.forward = record
    s = m.sample(5, prime=prime, generator=torch.Generator().manual_seed(2))
    assert s.shape == (2, 5, 3)
    torch.testing.assert_close(seen[0], prime.unsqueeze(1))
    wave = torch.cat([prime[-1].expand(2, 6), s.reshape(2, -1)], dim=1)
    for t in range(1, 5):
        expected = wave[:, 3 * t : 3 * t + 6]
        torch.testing.assert_close(seen[t].reshape(2, 6), expected)
    with pytest.raises(RnnbenchError, match="prime must have shape"):
        m.sample(2, prime=torch.zeros(4, 5))


@pytest.mark.parametrize("unit", UNITS)
def test_auto_backend_matches_torch(unit):
    pytest.importorskip("rnnbench.nn.numba_backend")
    ref = _model(unit, population=2)
    auto = _model(unit, population=2, backend="auto")
    x, y = _batch(6, 2, 5, 5, binary=True)
    torch.testing.assert_close(auto.nll(x, y)[0], ref.nll(x, y)[0], rtol=1e-5, atol=1e-4)


def test_model_errors():
    with pytest.raises(RnnbenchError, match="unknown unit"):
        SequenceModel("elman", 4, 4, 3, head="bernoulli")
    with pytest.raises(RnnbenchError, match="seeds"):
        SequenceModel("gru", 4, 4, 3, head="bernoulli", population=2, seeds=[1])
    with pytest.raises(RnnbenchError, match="out_dim"):
        SequenceModel("gru", 20, 10, 3, head=GaussianMixtureHead(out_dim=5))
    with pytest.raises(RnnbenchError, match="unknown head"):
        SequenceModel("gru", 4, 4, 3, head="poisson")
    with pytest.raises(RnnbenchError, match="values per step"):
        SequenceModel("gru", 4, 4, 3, head="bernoulli")(torch.zeros(2, 1, 5))


# --------------------------------------------------------------------------- counting


def test_paper_speech_counts_exactly():
    expected = {"lstm": 169_065, "gru": 168_888, "tanh": 168_400}
    for unit, n in expected.items():
        h = paper_hidden("speech", unit)
        assert recurrent_params(unit, 20, h, True, convention="paper") == n
        assert count_params("speech", unit)["recurrent_params"] == n
        assert count_params("speech", unit)["paper_params"] == n
    assert [paper_hidden("speech", u) for u in ("lstm", "gru", "tanh")] == [195, 227, 400]
    assert [paper_hidden("music", u) for u in ("lstm", "gru", "tanh")] == [36, 46, 100]


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("task", ["music", "speech"])
def test_our_counts_equal_real_modules(task):
    i = TASKS[task]["in_dim"]
    h = {u: paper_hidden(task, u) for u in UNITS}
    torch_lstm = _numel(nn.LSTM(i, h["lstm"]))
    ours = {
        "lstm": _numel(rnn_units.LSTM(i, h["lstm"], peephole=True)),
        "gru": _numel(rnn_units.GRU(i, h["gru"])),
        "tanh": _numel(rnn_units.RNN(i, h["tanh"])),
    }
    assert ours["lstm"] == torch_lstm + 3 * h["lstm"]
    assert ours["gru"] == _numel(nn.GRU(i, h["gru"]))
    assert ours["tanh"] == _numel(nn.RNN(i, h["tanh"]))
    assert recurrent_params("lstm", i, h["lstm"], False) == torch_lstm
    for unit in UNITS:
        counts = count_params(task, unit)
        assert counts["recurrent_params_torch"] == ours[unit]
        # The paper counts one bias vector per gate where torch holds two.
        gates = {"lstm": 4, "gru": 3, "tanh": 1}[unit]
        assert counts["recurrent_params_torch"] - counts["recurrent_params"] == gates * h[unit]
        n_out = 88 if task == "music" else 20 * (1 + 2 * 10)
        head = nn.Linear(h[unit], n_out)
        assert counts["total_params"] == ours[unit] + _numel(head)
        model = SequenceModel(
            unit, i, TASKS[task]["out_dim"], h[unit], head=TASKS[task]["head"], population=2
        )
        assert model.param_count() == counts["total_params"]
        assert model.param_count(per_member=False) == 2 * counts["total_params"]


def test_exact_whole_model_counts():
    assert [count_params("speech", u)["total_params"] for u in UNITS] == [252_165, 265_329, 337_220]
    assert [count_params("music", u)["total_params"] for u in UNITS] == [21_508, 22_904, 27_888]
    assert total_params("gru", 20, 10, 227, head="gmm") == 265_329


def test_music_counts_and_the_paper_rounding():
    # With 88 inputs no convention gives Table 1's 19.8k / 20.2k / 20.1k ...
    assert [count_params("music", u)["recurrent_params"] for u in UNITS] == [18_108, 18_630, 18_900]
    # ... the paper's convention with a ~100-dimensional roll does (truncated to 0.1k).
    counts = [recurrent_params(u, 100, paper_hidden("music", u), convention="paper") for u in UNITS]
    assert counts == [19_836, 20_286, 20_100]
    assert [c // 100 * 100 for c in counts] == [19_800, 20_200, 20_100]


@pytest.mark.parametrize("unit", UNITS)
def test_match_hidden_gives_back_the_paper_sizes(unit):
    n = count_params("speech", unit)["recurrent_params"]
    assert match_hidden("speech", unit, n) == paper_hidden("speech", unit)


@pytest.mark.parametrize("count", ["paper", "torch", "total"])
@pytest.mark.parametrize("budget", [1, 500, 20_000, 123_457])
def test_match_hidden_is_the_closest(count, budget):
    key = {"paper": "recurrent_params", "torch": "recurrent_params_torch", "total": "total_params"}
    for unit in UNITS:
        h = match_hidden("music", unit, budget, count=count)
        best = abs(count_params("music", unit, h)[key[count]] - budget)
        for other in (h - 1, h + 1):
            if other >= 1:
                assert best <= abs(count_params("music", unit, other)[key[count]] - budget)


def test_counting_options_and_errors():
    assert recurrent_params("lstm", 20, 195, False, convention="paper") == 169_065 - 3 * 195
    assert recurrent_params("gru", 20, 227, bias=False) == 3 * 227 * 247
    assert recurrent_params("tanh", 20, 400, peephole=True) == 168_800  # peepholes: LSTM only
    assert count_params("speech", "lstm", peephole=False)["paper_params"] is None
    with pytest.raises(RnnbenchError, match="unknown task"):
        paper_hidden("video", "lstm")
    with pytest.raises(RnnbenchError, match="budget"):
        match_hidden("music", "lstm", 0)
    with pytest.raises(RnnbenchError, match="convention"):
        recurrent_params("lstm", 1, 1, convention="keras")
