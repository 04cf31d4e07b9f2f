"""Successive halving in the report: the replay on a full search's curves, the Compute
estimate, and the [search] table of sweep files."""

from __future__ import annotations

import math

import pytest

from rnnbench.errors import RnnbenchError
from rnnbench.report import halving as report_halving
from rnnbench.store import Store
from rnnbench.sweeps.grid import parse_sweep
from rnnbench.train import halving
from rnnbench.train.config import RunConfig

# A full search of 4 rates, 12 epochs, per-epoch validation curves v(t) = end + gap / t:
# 1e-2 is best early but stops at epoch 4; 1e-4 is slow but best in the end.
CURVES = {  # lr: (end, gap, epochs trained)
    1e-2: (8.40, 0.1, 4),
    1e-3: (8.30, 0.5, 12),
    3e-4: (8.25, 1.5, 12),
    1e-4: (7.90, 4.0, 12),
}


def curve(lr: float) -> list[float]:
    end, gap, n = CURVES[lr]
    return [end + gap / t for t in range(1, n + 1)]


def fill(path) -> None:
    with Store(path) as store:
        for lr in CURVES:
            c = RunConfig(dataset="jsb", unit="gru", lr=lr, seed=0, max_epochs=12, patience=3)
            key = c.key()
            store.start_run(key, c.to_dict(), f"runs/{key}", labels={"stage": "lr"})
            seconds, rows = 0.0, []
            for t, v in enumerate(curve(lr), 1):
                seconds += 4.0 if t <= 4 else 3.0  # 4 members until epoch 4, then 3
                rows.append({"epoch": t, "valid_nll": v, "train_nll": v, "seconds": seconds})
            store.log_epochs(key, rows)
            store.finish_run(
                key,
                "done",
                {
                    "valid_nll": min(curve(lr)),
                    "test_nll": min(curve(lr)) + 0.05,
                    "epochs": len(rows),
                    "best_epoch": len(rows),
                    "seconds": seconds,
                },
            )
        # two fresh seeds at the full search's rate
        for seed, test in ((1, 8.2), (2, 8.4)):
            c = RunConfig(
                dataset="jsb",
                unit="gru",
                lr=1e-4,
                seed=seed,
                data_seed=seed,
                max_epochs=12,
                patience=3,
            )
            store.start_run(c.key(), c.to_dict(), "x", labels={"stage": "seeds"})
            store.finish_run(c.key(), "done", {"valid_nll": 8.2, "test_nll": test, "epochs": 12})


def test_replay_cuts_the_slow_rate_that_a_full_search_chooses(tmp_path):
    fill(tmp_path / "results.db")
    (cell,), skipped = report_halving.replay(tmp_path / "results.db", eta=2, min_epochs=2)
    assert skipped == []
    # rung 2: 4 running -> keep 2 by best so far (1e-2: 8.45, 1e-3: 8.55; 3e-4 9.0, 1e-4 10.1)
    # rung 4: 1e-2 stops at 4 by itself; 1e-3 alone is kept; rung 8: 1 kept
    assert cell.stopped == 2
    assert cell.member_epochs_full == 4 + 12 * 3
    assert cell.member_epochs_halving == 2 + 2 + 4 + 12
    assert cell.lr_full == 1e-4 and cell.lr_halving == 1e-3 and not cell.same
    assert cell.valid_full == pytest.approx(7.9 + 4 / 12)
    assert cell.valid_halving == pytest.approx(8.3 + 0.5 / 12)
    assert cell.test_halving - cell.test_full == pytest.approx(cell.valid_halving - cell.valid_full)
    assert cell.fresh_mean == pytest.approx(8.3) and cell.fresh_std == pytest.approx(0.1414, 1e-3)
    # epoch time 1 s per member: a + bK fits a = 0, b = 1
    assert cell.seconds_full == pytest.approx(4 * 4 + 8 * 3)
    assert cell.seconds_halving == pytest.approx(cell.member_epochs_halving)
    table = report_halving.replay_table([cell])
    assert "| jsb | GRU (reset before) | 4 | 2 |" in table and "same rate in 0 of 1" in table
    # a first rung late enough keeps the slow rate: the same choice
    (late,), _ = report_halving.replay(tmp_path / "results.db", eta=2, min_epochs=8)
    assert late.same


def test_epoch_cost_fits_a_line_or_falls_back_to_proportional():
    cost = report_halving.epoch_cost([(10, 12.0), (4, 6.0), (1, 3.0), (1, 3.0)])
    assert cost(10) == pytest.approx(12.0) and cost(1) == pytest.approx(3.0)
    flat = report_halving.epoch_cost([(3, 6.0), (3, 6.0)])
    assert flat(1) == pytest.approx(2.0)


def test_the_full_search_estimate_of_a_halving_population():
    def run(lr, epochs, best, error=None):
        c = RunConfig(
            dataset="jsb",
            unit="gru",
            lr=lr,
            max_epochs=10,
            patience=2,
            search="halving",
            search_eta=2,
            search_min_epochs=2,
        )
        return {
            "key": str(lr),
            "config": c.to_dict(),
            "status": "done",
            "epochs": epochs,
            "best_epoch": best,
            "error": error,
            "seconds": float(epochs),
        }

    halted = f"{halving.HALTED} at epoch 2 (rung 1 of 3): ..."
    runs = [run(1e-3, 10, 9), run(1e-4, 2, 2, halted)]
    rows = {
        "0.001": [{"epoch": t, "seconds": 2.0 * min(t, 2) + max(0, t - 2)} for t in range(1, 11)],
        "0.0001": [{"epoch": t, "seconds": 2.0 * t} for t in range(1, 3)],
    }
    low, high = report_halving.full_search_estimate(runs, lambda key: rows[key])
    measured = 2 * 2 + 8 * 1
    # 1 s per member-epoch; the stopped run adds epochs 3..4 (best 2 + patience 2) or 3..10
    assert (low, high) == (pytest.approx(measured + 2), pytest.approx(measured + 8))
    assert report_halving.full_search_estimate(runs[:1], lambda key: rows[key]) is None
    assert report_halving.departures([{**r, "config": r["config"]} for r in runs]) == [
        "learning rates chosen by successive halving (η = 2, rungs at epochs 2, 4, 8): 1 "
        "candidate run stopped at a rung (protocol: every candidate trained to its own "
        "stopping rule)"
    ]
    assert not math.isnan(low)


def test_a_sweep_file_sets_the_search_in_its_own_table():
    spec = {
        "datasets": ["jsb"],
        "units": ["gru"],
        "lr": {"values": [1e-3, 1e-4]},
        "search": {"strategy": "halving", "eta": 4, "min_epochs": 5},
    }
    _, (pop,) = parse_sweep(spec)
    assert {(c.search, c.search_eta, c.search_min_epochs) for c in pop.configs} == {
        ("halving", 4, 5)
    }
    with pytest.raises(RnnbenchError, match="unknown key"):
        parse_sweep({**spec, "search": {"strategy": "halving", "rungs": 3}})
    with pytest.raises(RnnbenchError, match="RunConfig search"):
        parse_sweep({**spec, "search": {"strategy": "asha"}})
