"""The weight noise's draws in numba (rnnbench.train.noise_stream) against torch's normal_.

Bit for bit: the numbers and the generators' states after, on sizes with and without a
16-number tail, over the Mersenne Twister's twist, across consecutive draws, members falling
idle, states loaded in between (checkpoints), and whole populations trained and resumed."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from rnnbench.nn import sparse_input
from rnnbench.train import compiled_update, fused_noise, noise_stream
from rnnbench.train.config import RunConfig
from rnnbench.train.population import train_population
from rnnbench.train.protocol import WeightNoise

from ..conftest import REPO
from .test_seed_population import many_short

spec = importlib.util.spec_from_file_location(
    "normal_exhaustive", REPO / "scripts" / "normal_exhaustive.py"
)
normal_exhaustive = importlib.util.module_from_spec(spec)
spec.loader.exec_module(normal_exhaustive)

pytestmark = pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
    reason="torch's normal_ takes its scalar kernel here (noise_stream draws with torch)",
)


def _bits(a) -> np.ndarray:
    a = a.numpy() if isinstance(a, torch.Tensor) else a
    return np.ascontiguousarray(a).view(np.uint32)


def test_it_is_usable_on_this_machine():
    assert noise_stream.usable()


def _buffer(weights):
    noise = WeightNoise([0] * weights[0].shape[0], 0.075)
    fast = noise._fused(weights)
    assert fast is not None
    return fast


def _weights(k, shapes):
    return [torch.zeros((k, *s)) for s in shapes]


SIZES = [16, 17, 31, 100, 623, 624, 625, 1248, 5184, 12672, 20000, 100_003]


@pytest.mark.parametrize("seed", [0, 1, 20261208, 2**40 + 3])
def test_one_draw_equals_normal_for_every_size(seed):
    """Each size drawn alone, one after the other from one generator: the same numbers as
    ``normal_`` and the same generator state after each."""
    g, twin = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    for size in SIZES:
        fast = _buffer(_weights(1, [(size,)]))
        want = torch.empty(size).normal_(generator=twin)
        noise_stream.draw([g], fast)
        assert fast["_stream"][0] is not None  # the numba path drew
        assert np.array_equal(_bits(fast["noise"][0]), _bits(want))
        assert torch.equal(g.get_state(), twin.get_state())


def test_a_population_draws_as_its_members_would():
    """Three members, tensors merged into runs and not, members idle at some draws (their
    rows 0, their generators untouched), a state loaded in between (a resumed member)."""
    shapes = [(144, 88), (144, 36), (3, 36), (88, 36), (7, 5)]  # runs: 25776, 3168, 35
    weights = _weights(3, shapes)
    fast, ref = _buffer(weights), _buffer(_weights(3, shapes))
    gens = [torch.Generator().manual_seed(s) for s in (3, 4, 5)]
    refs = [torch.Generator().manual_seed(s) for s in (3, 4, 5)]
    saved = None
    for step in range(12):
        members = None if step % 3 == 0 else [True, step % 2 == 0, step % 4 != 1]
        if step == 5:
            saved = gens[1].get_state()
        if step == 9:  # member 1 goes back to its state of step 5, in both
            gens[1].set_state(saved)
            refs[1].set_state(saved)
        noise_stream.draw(gens, fast, members)
        noise_stream._torch_draws(refs, ref, members)
        assert fast["_stream"][0] is not None and "_stream" not in ref
        assert np.array_equal(_bits(fast["noise"]), _bits(ref["noise"]))
        for g, r in zip(gens, refs, strict=True):
            assert torch.equal(g.get_state(), r.get_state())


def test_chosen_uniforms_give_torchs_normals():
    """Uniforms chosen through the generator's state (scripts/normal_exhaustive.py, which sweeps
    all 2^24): the ends of [0, 1), the quarter turns where the sine's polynomial changes, and a
    random sample, in both places of a pair."""
    top = 1 << 24
    quarters = [(q * top) // 8 + d for q in range(8) for d in (-2, -1, 0, 1, 2)]
    special = np.array([0, 1, 2, top // 2, top - 2, top - 1] + quarters, np.int64) % top
    rng = np.random.default_rng(0)
    k = np.concatenate([special, rng.integers(0, top, 4096)]).astype(np.uint32)
    assert normal_exhaustive.mismatches(k, k[::-1].copy()) == 0
    assert normal_exhaustive.mismatches(k, np.zeros_like(k)) == 0  # the radius alone


def test_runs_under_16_numbers_take_torchs_own_calls():
    """A tensor of fewer than 16 numbers (torch's double-precision path): torch draws."""
    fast = _buffer(_weights(2, [(4, 3), (40,)]))
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    noise_stream.draw(gens, fast)
    assert fast["_stream"] == (None,)
    for s, row in zip((1, 2), fast["noise"], strict=True):
        g = torch.Generator().manual_seed(s)
        want = torch.cat(
            [torch.empty(12).normal_(generator=g), torch.empty(40).normal_(generator=g)]
        )
        assert np.array_equal(_bits(row), _bits(want))


def test_a_run_that_does_not_match_torch_is_never_used(monkeypatch):
    """The check compares with torch: a kernel off by one bit fails it."""
    real = noise_stream._draw

    def off(states, noise, *args):
        real(states, noise, *args)
        noise[0, 3] = np.nextafter(noise[0, 3], np.float32(np.inf))

    monkeypatch.setattr(noise_stream, "_draw", off)
    assert not noise_stream._matches_torch()
    monkeypatch.setattr(noise_stream, "_draw", real)
    assert noise_stream._matches_torch()


# -- whole populations, the compiled update's draws and the old path's


@pytest.fixture(autouse=True)
def _gather_always(monkeypatch):
    monkeypatch.setattr(sparse_input, "MIN_WORK", 0)


@pytest.fixture(scope="module")
def many(data_root):
    return many_short(data_root)


def _configs(unit, max_epochs=2, **extra):
    return [
        RunConfig(dataset="jsb", unit=unit, hidden=6, batch_size=2, bptt=5,
                  max_epochs=max_epochs, lr=lr, seed=s, data_seed=d, **extra)
        for lr, s, d in ((1e-3, 1, 1), (3e-3, 2, 2), (2e-3, 3, 0))
    ]  # fmt: skip


def _train(dataset, configs, root, **kwargs):
    dirs = [root / c.key() for c in configs]
    results = train_population(configs, out_dirs=dirs, dataset=dataset, **kwargs)
    states = [torch.load(d / "last.pt", weights_only=True) for d in dirs]
    metrics = [[json.loads(line) for line in (d / "metrics.jsonl").open()] for d in dirs]
    return results, states, metrics, dirs


def _assert_same(a, b):
    (res_a, states_a, metrics_a, _), (res_b, states_b, metrics_b, _) = a, b
    for x, y in zip(res_a, res_b, strict=True):
        skip = ("seconds", "checkpoint")
        assert {k: v for k, v in x.items() if k not in skip} == {
            k: v for k, v in y.items() if k not in skip
        }
    for x, y in zip(metrics_a, metrics_b, strict=True):
        assert [{k: v for k, v in r.items() if k != "seconds"} for r in x] == [
            {k: v for k, v in r.items() if k != "seconds"} for r in y
        ]
    for x, y in zip(states_a, states_b, strict=True):
        for key in ("model", "optimizer", "noise_rng", "best_model"):
            _equal(x[key], y[key])


def _equal(a, b):
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a.view(torch.uint8), b.view(torch.uint8))
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _equal(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _equal(x, y)
    else:
        assert a == b


@pytest.mark.parametrize(("unit", "compiled"), [("lstm", True), ("gru", True), ("gru", False)])
def test_populations_train_bit_for_bit_as_with_torchs_draws(
    unit, compiled, many, tmp_path, monkeypatch
):
    """The compiled update's draws (and the old path's) with noise_stream on and off, members
    with their own batch orders falling idle: the same parameters, optimiser state, noise
    generators and NLLs."""
    monkeypatch.setattr(compiled_update, "_ENABLED", compiled)
    configs = _configs(unit, peephole=unit == "lstm")
    calls = []
    real = noise_stream._draw
    monkeypatch.setattr(noise_stream, "_draw", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(noise_stream, "_ENABLED", True)
    new = _train(many, configs, tmp_path / "stream")
    assert calls  # the numba draws ran
    monkeypatch.setattr(noise_stream, "_ENABLED", False)
    _assert_same(new, _train(many, configs, tmp_path / "torch"))


class _Interrupt(Exception):
    pass


def test_a_resumed_run_equals_one_trained_straight_with_torchs_draws(many, tmp_path, monkeypatch):
    """Interrupted after epoch 2 of 4 and resumed with noise_stream, against the run trained
    straight with torch's draws: the generators' states in the checkpoints carry over."""
    monkeypatch.setattr(compiled_update, "_ENABLED", True)
    configs = _configs("lstm", max_epochs=4)

    def stop(k, record):
        if record["epoch"] == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        _train(many, configs, tmp_path / "resumed", on_epoch=stop)
    resumed, states, _, _ = _train(many, configs, tmp_path / "resumed")
    monkeypatch.setattr(noise_stream, "_ENABLED", False)
    straight, states_straight, _, _ = _train(many, configs, tmp_path / "straight")
    for a, b in zip(resumed, straight, strict=True):
        assert a["test_nll"] == b["test_nll"] and a["updates"] == b["updates"]
    for a, b in zip(states, states_straight, strict=True):
        for key in ("model", "optimizer", "noise_rng"):
            _equal(a[key], b[key])


def test_fused_noise_runs_are_the_spans_drawn():
    """``_spans`` reads the runs back from the buffer's parts (the premise of one plan)."""
    sizes = [144 * 88, 144 * 36, 108, 88 * 36]
    fast = _buffer(_weights(2, [(144, 88), (144, 36), (3, 36), (88, 36)]))
    assert noise_stream._spans(fast) == fused_noise.runs(sizes)
