"""One process per run folder and one sweep per store: rnnbench.locks and where it is used."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rnnbench.errors import RnnbenchError
from rnnbench.locks import LockBusy, hold
from rnnbench.store import Store
from rnnbench.sweeps import run_sweep
from rnnbench.sweeps.grid import Population
from rnnbench.train import checkpoint as ckpt
from rnnbench.train.config import RunConfig
from rnnbench.train.population import train_population

HOLDER = """
import sys, time
from rnnbench.locks import hold
with hold(sys.argv[1], "busy"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_holder_is_refused_and_named(tmp_path):
    path = tmp_path / "x.lock"
    owner = rf"taken by pid {os.getpid()} on {socket.gethostname()}; wait"
    first = hold(path, "taken by {owner}; wait")
    second = hold(path, "taken by {owner}; wait")
    with first, pytest.raises(LockBusy, match=owner), second:
        pass
    with hold(path, "free again"):  # released at the end of the block
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "x.lock"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy, match=f"pid {proc.pid}"), hold(path, "held by {owner}"):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    with hold(path, "still held"):  # the kernel dropped the dead process's lock
        pass


def _config(**kw) -> RunConfig:
    base = dict(dataset="jsb", unit="gru", hidden=4, batch_size=2, max_epochs=1, patience=1)
    return RunConfig(**{**base, **kw})


def test_a_run_folder_in_training_is_not_trained_twice(tiny, tmp_path):
    configs = [_config(lr=1e-3), _config(lr=3e-3)]
    dirs = [tmp_path / c.key() for c in configs]
    dirs[1].mkdir()
    (dirs[1] / "metrics.jsonl").write_text("untouched\n")
    message = rf"The run folder {dirs[1]} is being trained by pid {os.getpid()}.*wait for that"
    with hold(dirs[1] / ckpt.LOCK, "x"), pytest.raises(RnnbenchError, match=message):
        train_population(configs, out_dirs=dirs, dataset=tiny)
    assert (dirs[1] / "metrics.jsonl").read_text() == "untouched\n"
    assert not (dirs[0] / ckpt.LAST).exists()
    results = train_population(configs, out_dirs=dirs, dataset=tiny)  # free now
    assert [r["status"] for r in results] == ["done", "done"]


def test_a_second_sweep_on_one_store_stops_before_touching_a_run(tmp_path):
    store = Store(tmp_path / "results.db")
    pop = Population([_config(lr=1e-3)], {"stage": "lr"})
    with hold(Path(str(store.path) + ".lock"), "x"):
        start = time.monotonic()
        with pytest.raises(
            RnnbenchError,
            match=r"Another rnnbench sweep \(pid \d+ on .*\) is "
            r"using the store .*results\.db; wait for it",
        ):
            run_sweep([pop], store=store, out=tmp_path, workers=1, progress=False)
        assert time.monotonic() - start < 5
    assert store.runs() == [] and not (tmp_path / "runs").exists()
