"""The local engine with injected fake trainers: skipping, retries, failures, divergence."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rnnbench.errors import RnnbenchError
from rnnbench.store import Store
from rnnbench.sweeps import common, local
from rnnbench.sweeps.grid import Population
from rnnbench.sweeps.local import run_local
from rnnbench.train.config import RunConfig
from tests.sweeps.fakes import fake_train, valid_nll

REPO = Path(__file__).resolve().parents[2]
LRS = [math.exp(-9), math.exp(-8), math.exp(-7), math.exp(-6.2)]  # the last one diverges


def population(dataset="jsb", unit="gru", lrs=LRS, seeds=(0,), **labels):
    configs = [RunConfig(dataset=dataset, unit=unit, lr=lr, seed=s) for lr in lrs for s in seeds]
    return Population(configs, labels)


def calls(out):
    log = out / "runs" / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [json.loads(line)["keys"] for line in lines]


def sweep(tmp_path, pops, **kwargs):
    store = Store(tmp_path / "results.db")
    kwargs = {"workers": 2, "progress": False, "train_fn": fake_train, **kwargs}
    summary = run_local(pops, store=store, out=tmp_path, **kwargs)
    return store, summary


def test_runs_everything_and_skips_finished_runs_on_rerun(tmp_path):
    pops = [population("jsb"), population("nottingham", "lstm", stage="lr")]
    store, summary = sweep(tmp_path, pops)
    assert summary["done"] == 6 and summary["diverged"] == 2 and summary["failed"] == 0
    runs = store.runs()
    assert len(runs) == 8
    assert {r["status"] for r in runs if r["lr"] > 1e-3} == {"diverged"}
    assert all(r["status"] == "done" for r in runs if r["lr"] < 1e-3)
    done = store.runs(dataset="jsb", status="done")
    assert sorted(r["valid_nll"] for r in done) == sorted(valid_nll(lr) for lr in LRS[:3])
    assert [e["epoch"] for e in store.epochs(done[0]["key"])] == [1, 2]
    assert {r["stage"] for r in store.runs(dataset="nottingham")} == {"lr"}
    assert len(calls(tmp_path)) == 2

    store, summary = sweep(tmp_path, pops)
    assert len(calls(tmp_path)) == 2  # nothing trained again
    assert summary["skipped"] == 8

    # A finished run whose best checkpoint vanished is trained again, alone.
    victim = done[0]
    (tmp_path / "runs" / victim["key"] / "best.pt").unlink()
    sweep(tmp_path, pops)
    assert calls(tmp_path)[-1] == [victim["key"]]


def test_a_failing_population_is_retried_then_failed_and_the_sweep_goes_on(tmp_path):
    pops = [population("boom", lrs=LRS[:2]), population("flaky", lrs=LRS[:1]), population("jsb")]
    store, summary = sweep(tmp_path, pops, retries=2)
    boom = store.runs(dataset="boom")
    assert [r["status"] for r in boom] == ["failed", "failed"]
    assert boom[0]["error"].startswith("ValueError: boom")
    assert boom[0]["attempts"] == 3  # the first try and two retries
    flaky = store.runs(dataset="flaky")
    assert [r["status"] for r in flaky] == ["done"] and flaky[0]["attempts"] == 2
    assert len(store.runs(dataset="jsb", status=["done", "diverged"])) == 4
    assert summary["failed"] == 2


def test_no_retries(tmp_path):
    store, _ = sweep(tmp_path, [population("flaky", lrs=LRS[:1])], retries=0, workers=1)
    assert store.runs()[0]["status"] == "failed"


def test_a_worker_that_dies_costs_one_attempt(tmp_path):
    store, summary = sweep(tmp_path, [population("die", lrs=LRS[:1])], workers=1)
    run = store.runs()[0]
    assert run["status"] == "done" and run["attempts"] == 2


def test_diverged_runs_never_win_the_learning_rate(tmp_path):
    chained = []

    def then(pop, runs):
        lr = common.best_lr(runs)
        chained.append(lr)
        if pop.labels.get("stage") != "lr":
            return []
        configs = [RunConfig(dataset="jsb", unit="gru", lr=lr, seed=s) for s in (1, 2)]
        return [Population(configs, {"stage": "seeds"})]

    # NaN validation at the largest rate; a tiny NLL sent for a diverged run must not count.
    store, _ = sweep(tmp_path, [population(stage="lr")], then=then, workers=1)
    assert chained[0] == LRS[1]
    seeds = store.runs(stage="seeds")
    assert [r["seed"] for r in seeds] == [1, 2] and {r["lr"] for r in seeds} == {LRS[1]}
    fake = [
        {"status": "diverged", "valid_nll": 0.0, "config": {"lr": 1.0}},
        {"status": "done", "valid_nll": 5.0, "config": {"lr": 0.1}},
        {"status": "failed", "valid_nll": None, "config": {"lr": 0.2}},
        {"status": "done", "valid_nll": math.nan, "config": {"lr": 0.3}},
    ]
    assert common.best_lr(fake) == 0.1
    assert common.best_lr(fake[:1]) is None


def test_chained_populations_run_before_the_next_search(tmp_path):
    # reproduce's seeds of a cell go ahead of the next cell's learning-rate search, so a grid
    # stopped half-way leaves finished cells.
    def then(pop, runs):
        if pop.labels.get("stage") != "lr":
            return []
        c = pop.configs[0]
        configs = [RunConfig(dataset=c.dataset, unit=c.unit, lr=LRS[0], seed=s) for s in (1, 2)]
        return [Population(configs, {"stage": "seeds"})]

    pops = [
        population("jsb", lrs=LRS[:2], stage="lr"),
        population("nottingham", lrs=LRS[:2], stage="lr"),
    ]
    sweep(tmp_path, pops, then=then, workers=1)
    keys = {
        tuple(sorted(r["key"] for r in Store(tmp_path / "results.db").runs(dataset=d, stage=st))): (
            d,
            st,
        )
        for d in ("jsb", "nottingham")
        for st in ("lr", "seeds")
    }
    order = [keys[tuple(sorted(k))] for k in calls(tmp_path)]
    assert order == [("jsb", "lr"), ("jsb", "seeds"), ("nottingham", "lr"), ("nottingham", "seeds")]


def test_a_member_that_finished_keeps_its_result_when_its_population_fails_later(tmp_path):
    store, summary = sweep(tmp_path, [population("early", lrs=LRS[:2])], workers=1, retries=0)
    first, second = (store.get_run(c.key()) for c in population("early", lrs=LRS[:2]).configs)
    assert first["status"] == "done" and first["valid_nll"] == valid_nll(LRS[0])
    assert [e["epoch"] for e in store.epochs(first["key"])] == [1, 2]
    assert second["status"] == "failed" and "early: the rest" in second["error"]


def test_a_search_with_a_failed_member_chains_nothing(tmp_path, capsys):
    # Seeds chosen among part of the candidates would be trained at a rate the finished search
    # may not choose: they wait until a rerun finishes the failed members.
    seen = []

    def then(pop, runs):
        seen.append(pop.name)
        return [Population([RunConfig(dataset="jsb", unit="gru", lr=LRS[0], seed=1)], {})]

    store, _ = sweep(tmp_path, [population("early", lrs=LRS[:2], stage="lr")], then=then, retries=0)
    assert seen == [] and len(store.runs()) == 2
    assert "1 of 2 runs did not finish" in capsys.readouterr().err


def test_a_full_disk_stops_the_sweep_with_one_sentence(tmp_path):
    with pytest.raises(RnnbenchError, match="disk is full.*finished runs are kept"):
        sweep(tmp_path, [population("full", lrs=LRS[:1])], workers=1)
    assert Store(tmp_path / "results.db").runs()[0]["status"] == "queued"


CTRL_C_SCRIPT = """
import signal
import sys
from pathlib import Path
from rnnbench.errors import RnnbenchError
from rnnbench.store import Store
from rnnbench.sweeps.grid import Population
from rnnbench.sweeps.local import run_local
from rnnbench.train.config import RunConfig
from tests.sweeps.fakes import fake_train

# As in a terminal: a test runner started in the background inherits SIGINT ignored, and
# Python then never raises KeyboardInterrupt.
signal.signal(signal.SIGINT, signal.default_int_handler)
out = Path(sys.argv[1])
pops = [Population([RunConfig(dataset="jsb", unit="gru", lr=1e-3)]),
        Population([RunConfig(dataset="slow", unit="gru", lr=1e-3)])]
try:
    run_local(pops, store=Store(out / "results.db"), out=out, workers=2, progress=False,
              train_fn=fake_train)
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_stops_cleanly_and_keeps_finished_runs(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, str(tmp_path)],
        cwd=REPO,
        start_new_session=True,
        stderr=subprocess.PIPE,
    )
    slow = tmp_path / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the slow run is half-way in training
        lines = [p.read_text().count("\n") for p in slow.glob("*/metrics.jsonl")]
        if any(n >= 3 for n in lines) and len(lines) == 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err
    store = Store(tmp_path / "results.db")
    assert store.runs(dataset="jsb")[0]["status"] == "done"
    assert store.runs(dataset="slow")[0]["status"] == "queued"
    assert store.integrity_check() == "ok"


def test_cuda_gets_one_worker_per_gpu_spread_over_the_gpus(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert local.default_workers("cuda") == 2 and local.default_workers("cuda:1") == 1
    assert local.default_workers("cpu") == local.cpu_cores()
    assert [local.worker_device("cuda", i) for i in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert local.worker_device("cuda:1", 1) == "cuda:1" and local.worker_device("cpu", 1) == "cpu"

    sweep(tmp_path, [population("jsb"), population("nottingham")], workers=None, device="cuda")
    log = (tmp_path / "runs" / "calls.log").read_text().splitlines()
    assert sorted(json.loads(line)["device"] for line in log) == ["cuda:0", "cuda:1"]


def test_a_resumed_search_chains_on_all_its_candidates_not_just_the_unfinished(tmp_path):
    # Session 3 found this in the paper grid: a search resumed with its best candidate already
    # finished chose its seeds' learning rate among the members still training.
    lrs = [math.exp(-9), math.exp(-8), math.exp(-7)]  # valid NLL lowest at e^-8
    seen = []

    def then(pop, runs):
        seen.append(sorted(r["config"]["lr"] for r in runs))
        if pop.labels.get("stage") != "lr":
            return []
        lr = common.best_lr(runs)
        return [Population([RunConfig(dataset="jsb", unit="gru", lr=lr, seed=1)], {"stage": "s"})]

    sweep(tmp_path, [population("jsb", lrs=lrs[1:2], stage="lr")])  # the best one, earlier
    sweep(tmp_path, [population("jsb", lrs=lrs, stage="lr")], then=then)
    assert len(calls(tmp_path)) == 3  # e^-8 was not trained again
    assert seen[0] == sorted(lrs)
    seeds = Store(tmp_path / "results.db").runs(stage="s")
    assert [r["config"]["lr"] for r in seeds] == [lrs[1]]
