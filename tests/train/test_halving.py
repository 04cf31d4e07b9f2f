"""Successive halving: rung arithmetic, cuts on synthetic curves, and inside train_population."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rnnbench.errors import RnnbenchError
from rnnbench.train import halving
from rnnbench.train.config import RunConfig
from rnnbench.train.population import train_population


def cfg(**kw) -> RunConfig:
    base = dict(dataset="jsb", unit="gru", hidden=8, batch_size=2, max_epochs=5, patience=50)
    base.update(kw)
    return RunConfig(**base)


# -- rung arithmetic ------------------------------------------------------------------------


def test_rungs_are_r_times_powers_of_eta_below_the_cap():
    assert halving.rungs(9, 3, 500) == [9, 27, 81, 243]
    assert halving.rungs(9, 3, 243) == [9, 27, 81]  # a rung at the cap is no rung
    assert halving.rungs(9, 3, 244) == [9, 27, 81, 243]
    assert halving.rungs(2, 2, 17) == [2, 4, 8, 16]
    assert halving.rungs(10, 3, 10) == []  # the first rung past the cap: none at all
    assert halving.rung_number(27, 9, 3, 500) == 2
    assert halving.rung_number(28, 9, 3, 500) is None
    assert halving.rung_number(729, 9, 3, 500) is None  # past the cap
    assert [halving.keep_count(n, 3) for n in (1, 2, 3, 4, 10)] == [1, 1, 1, 2, 4]


def test_cut_keeps_ceil_n_over_eta_ties_to_the_smaller_rate():
    scores = {1e-3: 8.5, 3e-4: 8.4, 1e-4: 8.4, 3e-5: 9.0, 1e-5: 11.0}
    c = halving.cut(scores, 3)
    assert c.kept == (1e-4, 3e-4)  # 8.4 tie: the smaller rate ranks first
    assert c.stopped == (1e-3, 3e-5, 1e-5)
    assert c.cutoff == 8.4
    # a non-finite score ranks last whatever its rate
    assert halving.cut({1e-3: math.nan, 1e-4: 9.0}, 2).kept == (1e-4,)


def test_fewer_members_than_eta_still_keeps_one():
    c = halving.cut({1e-3: 8.0, 1e-4: 7.0}, 3)
    assert c.kept == (1e-4,) and c.stopped == (1e-3,)
    assert halving.cut({1e-3: 8.0}, 3).stopped == ()


def decide(config, epoch, rows):
    """rows: (lr, best, running)."""
    lrs, best, running = zip(*rows, strict=True)
    return halving.decide(config, epoch, lrs, best, running, last=best)


def test_decide_only_at_rungs_and_only_among_members_still_training():
    c = cfg(search="halving", search_eta=3, search_min_epochs=2, max_epochs=20)
    rows = [
        (1e-2, 7.0, False),  # stopped early (patience) or diverged: out of the competition
        (1e-3, 8.0, True),
        (3e-4, 8.1, True),
        (1e-4, 8.2, True),
        (3e-5, 9.0, True),
    ]
    assert decide(c, 3, rows) == {}  # no rung
    stopped = decide(c, 2, rows)
    assert sorted(stopped) == [3, 4]  # 4 running: keep ceil(4/3) = 2 (1e-3, 3e-4)
    assert stopped[4].startswith("stopped by successive halving at epoch 2 (rung 1 of 3)")
    assert "the 2 of 4 rates kept were at or below 8.100" in stopped[4]
    # the full search never cuts, whatever its epoch
    assert decide(cfg(max_epochs=20), 2, rows) == {}


def test_decide_cuts_whole_rates_by_their_mean_over_seeds():
    c = cfg(search="halving", search_eta=2, search_min_epochs=1, max_epochs=5)
    rows = [(1e-3, 8.0, True), (1e-3, 9.0, True), (1e-4, 8.4, True), (1e-4, 8.4, True)]
    assert sorted(decide(c, 1, rows)) == [0, 1]  # mean 8.5 loses to 8.4
    # one rate (the fresh seeds of reproduce): never cut
    assert decide(c, 1, [(1e-3, 8.0, True), (1e-3, 9.0, True)]) == {}


def test_config_fields_are_checked_normalised_and_leave_old_keys_alone():
    # A key stored before the search fields existed (pinned): the fields at their defaults
    # are left out of the key.
    assert RunConfig(dataset="jsb", unit="gru", lr=1e-3, seed=0).key() == "bc1c7e59ee679fe8"
    full = RunConfig(dataset="jsb", unit="gru", search_eta=5, search_min_epochs=2)
    assert full.key() == RunConfig(dataset="jsb", unit="gru").key()  # ignored at "full"
    a = RunConfig(dataset="jsb", unit="gru", search="halving")
    b = RunConfig(dataset="jsb", unit="gru", search="halving", search_eta=4)
    assert len({full.key(), a.key(), b.key()}) == 3
    assert RunConfig.from_dict(a.to_dict()) == a
    for bad in (
        {"search": "asha"},
        {"search": "halving", "search_eta": 1},
        {"search": "halving", "search_min_epochs": 0},
        {"search": "halving", "search_eta": 2.5},
    ):
        with pytest.raises(RnnbenchError, match="RunConfig search"):
            RunConfig(dataset="jsb", unit="gru", **bad)
    assert halving.describe(a.to_dict()) == (
        "successive halving (η = 3, rungs at epochs 27, 81, 243)"
    )
    assert halving.describe(full.to_dict()) is None


# -- inside train_population ----------------------------------------------------------------

LRS = [1e-4, 1e-3, 3e-3, 1e-2, 3e-2]


def population(**kw):
    return [
        cfg(lr=lr, seed=0, search="halving", search_eta=2, search_min_epochs=1, **kw) for lr in LRS
    ]


def run(configs, root, tiny, **kw):
    dirs = [root / c.key() for c in configs]
    return train_population(configs, out_dirs=dirs, dataset=tiny, **kw), dirs


def lines(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_population_stops_the_rates_behind_at_each_rung(tiny, tmp_path):
    configs = population()
    results, dirs = run(configs, tmp_path, tiny)
    # rungs 1, 2 and 4 (η 2, cap 5): 5 -> 3 -> 2 -> 1 rates
    epochs = sorted(r["epochs"] for r in results)
    assert epochs == [1, 1, 2, 4, 5]
    for r, d in zip(results, dirs, strict=True):
        assert r["status"] == "done" and math.isfinite(r["valid_nll"])
        if r["epochs"] < 5:
            assert halving.HALTED in r["error"]
            assert f"at epoch {r['epochs']} (rung" in r["error"]
            assert lines(d)[-1]["status"] == "done"
            assert torch.load(d / "last.pt", weights_only=True)["halted"] == r["error"]
        else:
            assert r["error"] is None
    # the cut at rung 2 followed the best validation NLL so far among the 3 rates left
    left = [(c, d) for c, d, r in zip(configs, dirs, results, strict=True) if r["epochs"] >= 2]
    at2 = {c.lr: min(x["valid_nll"] for x in lines(d) if x["epoch"] <= 2) for c, d in left}
    kept = sorted(at2, key=lambda lr: (at2[lr], lr))[:2]
    survived = sorted(c.lr for c, r in zip(configs, results, strict=True) if r["epochs"] > 2)
    assert survived == sorted(kept)


def test_a_kill_between_rungs_resumes_to_the_same_cuts(tiny, tmp_path):
    configs = population()
    straight, _ = run(configs, tmp_path / "straight", tiny)

    class Interrupt(Exception):
        pass

    def crash(k, record):
        if record["epoch"] == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(configs, tmp_path / "resumed", tiny, on_epoch=crash)
    dirs = [tmp_path / "resumed" / c.key() for c in configs]
    # A crash between two members' checkpoint writes: one member is still at epoch 2.
    survivor = next(d for d in dirs if torch.load(d / "last.pt", weights_only=True)["epoch"] == 3)
    (survivor / "prev.pt").replace(survivor / "last.pt")
    resumed, _ = run(configs, tmp_path / "resumed", tiny)
    for a, b in zip(straight, resumed, strict=True):
        assert {n: v for n, v in a.items() if n not in ("seconds", "checkpoint")} == {
            n: v for n, v in b.items() if n not in ("seconds", "checkpoint")
        }
