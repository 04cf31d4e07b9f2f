"""kill -9 robustness: a real tiny sweep killed at random moments resumes to the same numbers.

The sweep runs ``rnnbench sweep`` in a subprocess on a tiny piano-roll data set the test
writes itself (``music:FILE``), so every kill lands somewhere in real training: in an epoch,
in a checkpoint write, in a store transaction. After each kill the store must pass SQLite's
integrity check; after the last resume every run's final NLLs and per-epoch metrics must equal
those of an uninterrupted sweep, bitwise (CPU).
"""

import contextlib
import os
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rnnbench.store import Store

pytestmark = pytest.mark.slow


def write_tiny_music(path: Path) -> None:
    rng = random.Random(0)

    def song(length):
        return [sorted(rng.sample(range(48, 72), rng.randint(1, 3))) for _ in range(length)]

    data = {
        split: [song(rng.randint(12, 30)) for _ in range(n)]
        for split, n in (("train", 12), ("valid", 4), ("test", 4))
    }
    path.write_bytes(pickle.dumps(data, protocol=2))


def write_grid(folder: Path) -> Path:
    data = folder / "tiny.pickle"
    write_tiny_music(data)
    grid = folder / "grid.toml"
    grid.write_text(
        f'name = "kill"\ndatasets = ["music:{data}"]\nunits = ["gru", "lstm"]\nhidden = [6]\n'
        "seeds = 2\n[lr]\nvalues = [1e-3, 3e-3]\n"
        "[train]\nmax_epochs = 12\npatience = 12\nbatch_size = 4\n"
    )
    return grid


def command(grid: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rnnbench.cli",
        "sweep",
        str(grid),
        "--out",
        str(out),
        "--workers",
        "2",
        "--no-progress",
    ]


def session_alive(sid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    return True
            except (ProcessLookupError, PermissionError):
                continue
    return False


def final(store_path: Path) -> dict:
    store = Store(store_path)
    assert store.integrity_check() == "ok"
    out = {}
    for run in store.runs():
        epochs = [
            (e["epoch"], e["train_nll"], e["valid_nll"], e["updates"])
            for e in store.epochs(run["key"])
        ]
        out[run["key"]] = (
            run["status"],
            run["train_nll"],
            run["valid_nll"],
            run["test_nll"],
            run["best_epoch"],
            run["epochs"],
            epochs,
        )
    store.close()
    return out


def epochs_done(out: Path) -> int:
    """Epoch lines written so far to the run folders' metrics.jsonl (training progress)."""
    total = 0
    for path in (out / "runs").glob("*/metrics.jsonl"):
        with contextlib.suppress(OSError):
            total += path.read_bytes().count(b"\n")
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and sessions")
def test_kill_9_at_random_moments_then_resume_equals_an_uninterrupted_sweep(tmp_path):
    grid = write_grid(tmp_path)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(
        command(grid, tmp_path / "ref"), check=True, env=env, timeout=300, capture_output=True
    )
    reference = final(tmp_path / "ref" / "results.db")
    assert len(reference) == 8 and {v[0] for v in reference.values()} <= {"done", "diverged"}
    total = sum(len(v[-1]) for v in reference.values())

    # Kill when training has reached a random number of epochs, plus a random fraction of an
    # epoch, so kills land in epochs, checkpoint writes and store transactions alike.
    rng = random.Random(1234)
    out = tmp_path / "killed"
    progress = []
    for _ in range(3):
        target = epochs_done(out) + rng.randint(1, total // 4)
        proc = subprocess.Popen(
            command(grid, out),
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while proc.poll() is None and epochs_done(out) < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while session_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # the workers die with the parent (PR_SET_PDEATHSIG)
        assert not session_alive(proc.pid), "orphaned worker processes after kill -9"
        conn = sqlite3.connect(out / "results.db")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        progress.append(epochs_done(out))
    assert 0 < progress[0] < total  # at least the first kill landed mid-sweep
    subprocess.run(command(grid, out), check=True, env=env, timeout=300, capture_output=True)
    assert final(out / "results.db") == reference
