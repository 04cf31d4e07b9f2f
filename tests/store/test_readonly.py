"""A results store in a read-only folder: ``runs`` and ``report`` read it (issue 12 §3).

WAL mode needs a writable ``-shm`` beside the store, so a plain ``mode=ro`` open fails there;
the store falls back to ``immutable=1`` (or a private copy when a ``-wal`` holds writes). The
folder is made read-only with chmod, which binds only a non-root user: as root, the check runs
in a subprocess as ``nobody`` (``setpriv``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rnnbench.store import Store

REPO = Path(__file__).resolve().parents[2]
CHECK = """
import sys
from rnnbench.cli import main
store = sys.argv[1]
assert main(["runs", "--store", store]) == 0
sys.exit(main(["report", "--store", store, "--out", sys.argv[2]]))
"""


def _fill(path: Path) -> None:
    config = {"dataset": "jsb", "unit": "gru", "lr": 1e-3, "seed": 0, "hidden": 4}
    with Store(path) as store:
        store.start_run("k1", config, "runs/k1")
        store.log_epoch("k1", {"epoch": 1, "train_nll": 9.0, "valid_nll": 9.5, "seconds": 1.0})
        store.finish_run(
            "k1", "done", {"train_nll": 9.0, "valid_nll": 9.5, "test_nll": 9.6, "best_epoch": 1}
        )


def _as_reader(store: Path, out: Path) -> subprocess.CompletedProcess:
    """Run ``runs`` and ``report`` on ``store``: as this user if not root, else as nobody."""
    cmd = [sys.executable, "-c", CHECK, str(store), str(out)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: no way to make a folder read-only")
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "HOME": str(out)}
    env["MPLCONFIGDIR"] = str(out / "mpl")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def ro_folder():
    """A folder a non-root reader can enter but not write (removed afterwards)."""
    base = Path(tempfile.mkdtemp(prefix="rnnbench-ro-"))
    base.chmod(0o755)
    folder, out = base / "results", base / "report"
    folder.mkdir()
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    yield folder, out
    folder.chmod(0o755)
    shutil.rmtree(base, ignore_errors=True)


def _read_only(folder: Path) -> None:
    for p in folder.iterdir():
        p.chmod(0o444)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | 0o005)


def test_runs_and_report_read_a_store_in_a_read_only_folder(ro_folder):
    folder, out = ro_folder
    _fill(folder / "results.db")
    assert not (folder / "results.db-wal").exists()  # closed cleanly
    _read_only(folder)
    done = _as_reader(folder / "results.db", out)
    assert done.returncode == 0, done.stderr
    assert "k1" in done.stdout and "Cannot write" not in done.stderr
    assert (out / "report.md").is_file()


def test_writes_left_in_the_wal_are_read_too(ro_folder):
    folder, out = ro_folder
    _fill(folder / "results.db")
    # A writer that died with its last transaction only in results.db-wal.
    writer = sqlite3.connect(folder / "results.db", isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("UPDATE runs SET test_nll = 7.25 WHERE key = 'k1'")
    shutil.copy(folder / "results.db", folder / "copy.db")
    shutil.copy(folder / "results.db-wal", folder / "copy.db-wal")
    writer.close()
    (folder / "results.db").unlink()
    (folder / "copy.db").rename(folder / "results.db")
    (folder / "copy.db-wal").rename(folder / "results.db-wal")
    assert (folder / "results.db-wal").stat().st_size > 0
    _read_only(folder)
    done = _as_reader(folder / "results.db", out)
    assert done.returncode == 0, done.stderr
    assert "7.25" in done.stdout
