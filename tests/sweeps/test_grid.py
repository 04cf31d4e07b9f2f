"""Learning-rate candidates, populations and sweep-file validation."""

import hashlib
import math

import numpy as np
import pytest

from rnnbench.errors import RnnbenchError
from rnnbench.models import match_hidden
from rnnbench.sweeps.grid import (
    Population,
    group_populations,
    load_sweep,
    lr_candidates,
    parse_sweep,
    stable_seed,
)
from rnnbench.train.config import RunConfig

BASE = {
    "datasets": ["jsb"],
    "units": ["gru"],
    "hidden": [8],
    "seeds": 2,
    "lr": {"values": [1e-3, 1e-4]},
}


def test_lr_candidates_are_deterministic_in_range_and_counted():
    a = lr_candidates(10, seed=stable_seed("jsb", "gru"))
    assert a == lr_candidates(10, seed=stable_seed("jsb", "gru"))
    assert len(a) == 10 and len(set(a)) == 10
    assert all(math.exp(-12) <= lr <= math.exp(-6) for lr in a)
    assert a != lr_candidates(10, seed=stable_seed("jsb", "lstm"))
    top = lr_candidates(3, seed=1, low=-7.5, high=-6)
    assert len(top) == 3 and all(math.exp(-7.5) <= lr <= math.exp(-6) for lr in top)
    with pytest.raises(RnnbenchError):
        lr_candidates(0, seed=1)


def _ks_uniform(values) -> float:
    """The Kolmogorov-Smirnov p-value of ``values`` against U(0, 1)."""
    from scipy import stats

    return stats.kstest(values, "uniform").pvalue


def test_lr_candidates_are_uniform_in_natural_log_lr():
    """ln lr ~ U(low, high), the paper's draw, as reproduce uses it: 10 candidates per data set,
    pooled over 300 data-set names (3,000 rates), and one large draw."""
    low, high = -12.0, -6.0
    pooled = [
        lr for k in range(300) for lr in lr_candidates(10, seed=stable_seed(f"set{k}"), low=low)
    ]
    big = lr_candidates(3000, seed=7, low=low, high=high)
    for rates in (pooled, big):
        u = [(math.log(lr) - low) / (high - low) for lr in rates]
        assert _ks_uniform(u) > 1e-3
        # binned: each sixth of the range (one unit of ln lr) holds 500 ± 5 sigma of 3,000
        counts = [sum(k / 6 <= x < (k + 1) / 6 for x in u) for k in range(6)]
        assert all(abs(c - 500) < 5 * math.sqrt(3000 * (1 / 6) * (5 / 6)) for c in counts)
    # The check has the power to see the likely mistake, rates uniform in lr itself:
    # nearly all of them would land in the top unit of ln lr.
    rng = np.random.default_rng(7)
    wrong = rng.uniform(math.exp(low), math.exp(high), size=3000)
    assert _ks_uniform([(math.log(lr) - low) / (high - low) for lr in wrong]) < 1e-12


def test_stable_seed_does_not_depend_on_the_python_process():
    # sha256-based: a fixed value, unlike hash() of a str
    assert stable_seed("jsb", "gru") == stable_seed("jsb", "gru")
    assert stable_seed("jsb", "gru", base=0) == int(hashlib.sha256(b"jsb/gru").hexdigest()[:8], 16)


def test_group_populations_by_group_key():
    configs = [
        RunConfig(dataset="jsb", unit=u, lr=lr, seed=s)
        for u in ("gru", "lstm")
        for lr in (1e-3, 1e-4)
        for s in (0, 1)
    ]
    pops = group_populations(configs, {"sweep": "x"})
    assert [len(p.configs) for p in pops] == [4, 4]
    assert [p.configs[0].unit for p in pops] == ["gru", "lstm"]
    with pytest.raises(ValueError):
        Population([RunConfig(dataset="jsb", unit="gru"), RunConfig(dataset="jsb", unit="lstm")])


def test_parse_sweep_builds_one_population_per_form_and_size():
    spec = {
        **BASE,
        "units": ["tanh", "lstm", "gru"],
        "forms": ["paper", "cudnn"],
        "hidden": [8, 16],
        "train": {"max_epochs": 3},
    }
    name, pops = parse_sweep(spec)
    # tanh: 1 form, lstm: 2, gru: 2 -> 5 x 2 sizes
    assert name == "sweep" and len(pops) == 10
    assert all(len(p.configs) == 4 for p in pops)  # 2 rates x 2 seeds
    forms = {(p.configs[0].unit, p.configs[0].peephole, p.configs[0].reset) for p in pops}
    assert ("lstm", False, "before") in forms and ("gru", False, "after") in forms
    assert all(c.max_epochs == 3 for p in pops for c in p.configs)


def test_parse_sweep_budgets():
    spec = {k: v for k, v in BASE.items() if k != "hidden"}
    _, pops = parse_sweep({**spec, "units": ["lstm"], "budgets": ["paper", 20000]})
    hidden = [p.configs[0].hidden for p in pops]
    assert hidden[0] is None  # RunConfig's paper size
    assert hidden[1] == match_hidden("music", "lstm", 20000, peephole=True)
    assert 30 < hidden[1] < 45


def test_parse_sweep_log_uniform_rates():
    spec = {**BASE, "lr": {"candidates": 5, "low": -9, "high": -7, "seed": 3}, "seeds": [4]}
    _, pops = parse_sweep(spec)
    lrs = [c.lr for c in pops[0].configs]
    assert len(lrs) == 5 and all(math.exp(-9) <= lr <= math.exp(-7) for lr in lrs)
    assert [c.seed for c in pops[0].configs] == [4] * 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "unknown key.*colour"),
        ({"units": ["lstm", "rnn"]}, "unknown unit 'rnn'"),
        ({"datasets": ["jsb", "mnist"]}, "unknown data set 'mnist'"),
        ({"datasets": []}, "non-empty list"),
        ({"forms": ["fancy"]}, "unknown form 'fancy'"),
        ({"units": ["lstm"], "forms": ["reset-after"]}, "applies to lstm"),
        ({"budgets": [1000]}, "both budgets and hidden"),
        ({"hidden": [0]}, "positive"),
        ({"seeds": 0}, "seeds"),
        ({"seeds": [1, 1]}, "distinct"),
        ({"lr": {"values": [1e-3], "candidates": 3}}, "mixes values"),
        ({"lr": {"values": [-1.0]}}, "positive"),
        ({"lr": {"candidates": 3, "low": -6, "high": -9}}, "empty"),
        ({"lr": {"candidates": 3, "low": 1e-5, "high": 1e-3}}, "natural logs"),
        ({"lr": {"count": 3}}, "unknown key.*count.*\\[lr\\]"),
        ({"train": {"lr": 1e-3}}, "unknown key.*lr.*\\[train\\]"),
        ({"train": {"max_epochs": 0}}, "max_epochs"),
        ({"train": {"init": "xavier"}}, "init"),
        ({"name": ""}, "name"),
    ],
)
def test_sweep_validation_errors(change, message):
    with pytest.raises(RnnbenchError, match=message):
        parse_sweep({**BASE, **change}, where="grid.toml")


def test_load_sweep_reads_toml_and_explains_bad_files(tmp_path):
    path = tmp_path / "my-grid.toml"
    path.write_text('datasets = ["jsb"]\nunits = ["gru"]\nhidden = [8]\n[lr]\nvalues = [1e-3]\n')
    name, pops = load_sweep(path)
    assert name == "my-grid" and len(pops) == 1 and pops[0].labels == {"sweep": "my-grid"}
    path.write_text("datasets = [jsb\n")
    with pytest.raises(RnnbenchError, match="not valid TOML"):
        load_sweep(path)
    with pytest.raises(RnnbenchError, match="does not exist"):
        load_sweep(tmp_path / "missing.toml")


def test_the_example_sweep_file_is_valid():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "sweep.toml"
    name, pops = load_sweep(example)
    assert name == "gate-placement"
    assert len(pops) == 10  # tanh 1 + lstm 2 + gru 2 forms, x 2 budgets
