"""The Ray engine is quiet by default and stops on SIGTERM as the local engine does (issue 25
§3): interrupted runs go back to queued, exit 130, no native stack dump, none of Tune's output."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sweeps.test_kill import write_grid

pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]


def _statuses(db: Path) -> list[str]:
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return [r[0] for r in conn.execute("SELECT status FROM runs")]
    except sqlite3.Error:
        return []


def _epochs(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM epochs").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and /proc")
def test_sigterm_puts_ray_runs_back_to_queued_quietly(tmp_path):
    grid = write_grid(tmp_path)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    for name in ("RAY_AIR_NEW_OUTPUT", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "rnnbench.cli", "sweep", str(grid), "--out", str(out)]
    argv += ["--engine", "ray", "--workers", "1", "--threads", "1", "--no-progress"]
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        db = out / "results.db"
        while time.monotonic() < deadline and proc.poll() is None:
            if "running" in _statuses(db) and _epochs(db) >= 1:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        assert "running" in _statuses(db), "the sweep never started a run"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = stdout.decode(errors="replace") + stderr.decode(errors="replace")
    assert proc.returncode == 130, text
    assert "SIGTERM received" not in text
    assert "TUNE_WARN" not in text and "TensorBoard" not in text and "Configuration for" not in text
    assert "rnnbench: interrupted; finished results are saved." in text
    assert "running" not in _statuses(db) and "queued" in _statuses(db)
