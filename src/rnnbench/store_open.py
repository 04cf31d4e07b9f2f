"""Opening a results store's SQLite file: read-write connections, and read-only ones that
work on read-only folders and files (``immutable`` when no sweep holds the store, else a
snapshot of the database and its write-ahead log), with one-sentence errors
(:func:`_explain`). Used by :class:`rnnbench.store.Store`.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from rnnbench.errors import RnnbenchError

BUSY_TIMEOUT_MS = 120_000


def _sqlite_connect(target, *, uri: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(
        target,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
        uri=uri,
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection, also where the store's folder or mount is read-only.

    ``mode=ro`` first: it sees concurrent writers, but in WAL mode it needs the ``-shm`` file,
    which a read-only folder cannot hold. Then, only where that failed, ``immutable=1`` (no
    locks, no ``-shm``): safe because nothing can be writing the store through a folder this
    process cannot write, provided no sweep holds ``<store>.lock`` (checked: a holder on another
    mount's writable view would be changing the file under us). Writes left in a ``-wal`` file
    (a writer that died) are invisible to ``immutable=1``, so then the store and its ``-wal``
    are read from a private temporary copy, where SQLite merges them.
    """
    uri = path.resolve().as_uri()
    try:
        conn = _sqlite_connect(f"{uri}?mode=ro", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.Error as exc:
        first = exc
    if not path.is_file():
        raise _explain(first, path) from first
    if _sweep_lock_held(path):
        raise RnnbenchError(
            f"The results store {path} is being written by a sweep and its folder is read-only "
            "here, so it cannot be read consistently; wait for the sweep to end, or read it "
            "where the folder is writable."
        )
    wal = path.with_name(path.name + "-wal")
    try:
        if wal.is_file() and wal.stat().st_size > 0:
            conn = _snapshot(path, wal)
        else:
            conn = _sqlite_connect(f"{uri}?mode=ro&immutable=1", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except (sqlite3.Error, OSError) as exc:
        raise _explain(first, path) from exc


def _sweep_lock_held(path: Path) -> bool:
    """Whether a live sweep holds ``<store>.lock`` (see :func:`rnnbench.sweeps.run_sweep`)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    try:
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _snapshot(path: Path, wal: Path) -> sqlite3.Connection:
    """Copy the store and its ``-wal`` to a private temporary folder and open the copy."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="rnnbench-store-"))
    copy = folder / path.name
    shutil.copyfile(path, copy)
    shutil.copyfile(wal, folder / wal.name)
    conn = _sqlite_connect(copy, uri=False)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # merges the -wal
    import atexit

    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return conn


def _explain(exc: sqlite3.Error, path: Path) -> RnnbenchError:
    text = str(exc).lower()
    if "full" in text:
        return RnnbenchError(
            f"The disk holding the results store {path} is full: free some space and run the "
            "command again (finished runs are kept)."
        )
    if "readonly" in text or "unable to open" in text or "permission" in text:
        return RnnbenchError(
            f"Cannot write the results store {path}: make its folder writable or choose "
            "another file with --store."
        )
    if "not a database" in text or "malformed" in text:
        return RnnbenchError(
            f"{path} is not a readable rnnbench results store: point --store at another file."
        )
    return RnnbenchError(f"The results store {path} failed ({exc}): check the file and retry.")
