"""kill -9 of a sweep searching by successive halving: the resumed sweep makes the same cuts.

The harness of ``test_kill.py`` (a real ``rnnbench sweep`` in a subprocess on a tiny data set)
with a ``[search]`` table: one population of 6 rates, rungs at epochs 2, 4 and 8 (η 2). The
sweep is killed once after a random number of epochs past the first rung, then resumed; every
run's status, NLLs, epochs and ``error`` (which names its rung) must equal an uninterrupted
sweep's.
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from rnnbench.store import Store
from tests.sweeps.test_kill import command, epochs_done, final, write_tiny_music

pytestmark = pytest.mark.slow


def write_grid(folder):
    data = folder / "tiny.pickle"
    write_tiny_music(data)
    grid = folder / "grid.toml"
    grid.write_text(
        f'name = "halving"\ndatasets = ["music:{data}"]\nunits = ["gru"]\nhidden = [6]\n'
        "seeds = 1\n[lr]\nvalues = [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]\n"
        "[train]\nmax_epochs = 10\npatience = 10\nbatch_size = 4\n"
        '[search]\nstrategy = "halving"\neta = 2\nmin_epochs = 2\n'
    )
    return grid


def errors(store_path):
    with Store(store_path) as store:
        return {r["key"]: r["error"] for r in store.runs()}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and sessions")
def test_kill_9_between_rungs_then_resume_makes_the_same_cuts(tmp_path):
    grid = write_grid(tmp_path)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(
        command(grid, tmp_path / "ref"), check=True, env=env, timeout=300, capture_output=True
    )
    reference = final(tmp_path / "ref" / "results.db")
    cuts = errors(tmp_path / "ref" / "results.db")
    # rungs 2, 4, 8: 6 rates -> 3 -> 2 -> 1 (none stops on its own: patience 10)
    assert sorted(v[5] for v in reference.values()) == [2, 2, 2, 4, 8, 10]
    assert sum(1 for e in cuts.values() if e and "successive halving" in e) == 5

    out = tmp_path / "killed"
    target = 6 * 2 + random.Random(7).randint(1, 3)  # past the first rung, before the last
    proc = subprocess.Popen(
        command(grid, out),
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while proc.poll() is None and epochs_done(out) < target:
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert 6 * 2 <= epochs_done(out) < sum(v[5] for v in reference.values())
    subprocess.run(command(grid, out), check=True, env=env, timeout=300, capture_output=True)
    assert final(out / "results.db") == reference
    assert errors(out / "results.db") == cuts
