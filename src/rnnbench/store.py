"""The SQLite results store: the single source of truth for every run of every engine.

One file (default ``./rnnbench-results/results.db``), standard library ``sqlite3`` only, in WAL
mode with a busy timeout, so several processes can read and write it at once without losing a
row. Every write is one short ``BEGIN IMMEDIATE`` transaction; a process killed at any moment
leaves the file consistent (SQLite's journal rolls back the unfinished transaction).

Tables
------
``runs``: one row per run (one population member), keyed by ``RunConfig.key()``:

- ``key`` (primary key), ``config`` (the full config as JSON);
- config fields as columns, for filtering: ``dataset``, ``unit``, ``form``
  (``"plain"`` for tanh, ``"peephole"`` / ``"no-peephole"`` for LSTM, ``"reset-before"`` /
  ``"reset-after"`` for GRU), ``peephole``, ``reset``, ``hidden``, ``lr``, ``seed``,
  ``batch_size``, ``max_epochs``, ``group_key`` (``RunConfig.group_key()``: members of one
  population share it);
- labels set by the caller: ``sweep`` (a sweep's name, or ``"reproduce"``), ``stage``
  (``"lr"`` for the learning-rate search, ``"seeds"`` for the extra seeds of ``reproduce``),
  ``quick`` (1 for ``reproduce --quick`` runs, whose numbers do not follow the paper's protocol);
- ``status``: queued, running, done, failed, diverged;
- ``run_dir``, ``checkpoint`` (the best checkpoint's path), final ``train_nll``, ``valid_nll``,
  ``test_nll`` (frame-weighted, the paper's metric) and ``train_nll_seq``, ``valid_nll_seq``,
  ``test_nll_seq`` (the mean over sequences of each one's NLL per step), ``best_epoch``,
  ``epochs``, ``updates``, ``seconds``, ``params``;
- ``error`` (the last failure's message; on a ``done`` run that diverged after its best epoch,
  the flag "diverged at epoch E after its best at B (scored from its best state): why"),
  ``attempts`` (how many times the run was started);
- software versions ``python``, ``torch``, ``numpy``, ``rnnbench`` and ``host`` of the last start;
- timestamps (ISO 8601, UTC): ``created``, ``started``, ``finished``, ``updated``.

``epochs``: one row per (``key``, ``epoch``) with ``train_nll``, ``valid_nll``, ``updates``,
``seconds``; written by upsert, so a resumed run that writes an epoch again is harmless.

``meta``: store-wide ``name -> value`` strings: ``quick = "1"`` for a ``reproduce --quick`` store;
``commands``, a JSON list of ``{"command", "at", "host"}``, one per ``train``, ``sweep`` or
``reproduce`` call that trained into the store (see :meth:`Store.add_command`), so a report
rebuilt later still names the commands that trained its runs.

NaN is stored as NULL by SQLite; a diverged run's NLLs may therefore read back as None.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rnnbench.errors import RnnbenchError
from rnnbench.store_open import (
    _explain,
    _open_readonly,
    _sqlite_connect,
)

DEFAULT_PATH = Path("rnnbench-results") / "results.db"
STATUSES = ("queued", "running", "done", "failed", "diverged")
FINISHED = ("done", "diverged")
SCHEMA_VERSION = 1

# Columns filled from the config dict at start/queue time.
CONFIG_COLUMNS = (
    "dataset",
    "unit",
    "form",
    "peephole",
    "reset",
    "hidden",
    "lr",
    "seed",
    "batch_size",
    "max_epochs",
)
# Columns filled from train_population's result dict at finish time.
RESULT_COLUMNS = (
    "train_nll",
    "valid_nll",
    "test_nll",
    "train_nll_seq",
    "valid_nll_seq",
    "test_nll_seq",
    "best_epoch",
    "epochs",
    "updates",
    "seconds",
    "params",
    "checkpoint",
)
LABEL_COLUMNS = ("sweep", "stage", "quick")
# Columns added after stores were written: a writable store gains them when opened; a store
# read as it is lacks them, and its runs read them as absent (None).
# ``imported``: the export folder a finished run was copied from (:meth:`Store.import_run`).
LATER_COLUMNS = {
    "train_nll_seq": "REAL",
    "valid_nll_seq": "REAL",
    "test_nll_seq": "REAL",
    "imported": "TEXT",
}
EPOCH_COLUMNS = ("train_nll", "valid_nll", "updates", "seconds")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    dataset TEXT, unit TEXT, form TEXT, peephole INTEGER, reset TEXT, hidden INTEGER,
    lr REAL, seed INTEGER, batch_size INTEGER, max_epochs INTEGER, group_key TEXT,
    sweep TEXT, stage TEXT, quick INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'queued',
    run_dir TEXT, checkpoint TEXT,
    train_nll REAL, valid_nll REAL, test_nll REAL,
    train_nll_seq REAL, valid_nll_seq REAL, test_nll_seq REAL,
    best_epoch INTEGER, epochs INTEGER, updates INTEGER, seconds REAL, params INTEGER,
    error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    python TEXT, torch TEXT, numpy TEXT, rnnbench TEXT, host TEXT,
    created TEXT, started TEXT, finished TEXT, updated TEXT
);
CREATE INDEX IF NOT EXISTS runs_filter ON runs (dataset, unit, status);
CREATE INDEX IF NOT EXISTS runs_group ON runs (group_key);
CREATE TABLE IF NOT EXISTS epochs (
    key TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    train_nll REAL, valid_nll REAL, updates INTEGER, seconds REAL,
    PRIMARY KEY (key, epoch)
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
"""


def now() -> str:
    """The current UTC time as ISO 8601 text, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def form_of(config: dict) -> str:
    """The unit's form as one word: plain (tanh), peephole/no-peephole, reset-before/after;
    a variant (issue 13) by its name, followed by ``-no-peephole`` / ``-reset-after`` when
    it departs from the paper's form there (``nig``, ``nig-no-peephole``, ``mgu-reset-after``).
    """
    unit = config.get("unit")
    variant = config.get("variant") or ""
    if variant:
        if unit == "lstm" and not config.get("peephole", True):
            return f"{variant}-no-peephole"
        if unit == "gru" and config.get("reset", "before") == "after":
            return f"{variant}-reset-after"
        return variant
    if unit == "lstm":
        return "peephole" if config.get("peephole", True) else "no-peephole"
    if unit == "gru":
        return f"reset-{config.get('reset', 'before')}"
    return "plain"


def software_versions() -> dict[str, str | None]:
    """Versions of Python, torch, numpy and rnnbench, read without importing the packages."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "numpy", "rnnbench"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _group_key(config: dict) -> str | None:
    """``RunConfig.group_key()`` when the config is a full RunConfig dict, else None."""
    try:
        from rnnbench.train.config import RunConfig

        return RunConfig.from_dict(config).group_key()
    except Exception:  # a partial config (tests, foreign tools) simply has no group
        return None


class Store:
    """The SQLite results store at ``path``; safe to use from several processes at once.

    Each process (and each forked child) opens its own connection on first use. Every public
    method is one transaction. Use as a context manager, or call :meth:`close`.
    ``readonly=True`` (``report``, ``runs``) opens an existing store without writing to it, not
    even its schema: it reads a store on a read-only mount, and never waits on a sweep's writes.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else DEFAULT_PATH
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._skipped: set = set()  # keys of bad rows already named (see _row)
        if readonly:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RnnbenchError(
                f"Cannot create the folder {self.path.parent} for the results store "
                f"({exc.strerror}): choose a writable place with --out or --store."
            ) from exc
        with self._write() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
            for name, kind in LATER_COLUMNS.items():
                if name not in have:  # a store written before the column existed
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- connection -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if self.readonly:
            conn = _open_readonly(self.path)
            self._conn, self._pid = conn, os.getpid()
            return conn
        try:
            conn = _sqlite_connect(self.path, uri=False)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"could not switch to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from exc
        self._conn, self._pid = conn, os.getpid()
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with BEGIN IMMEDIATE so writers queue, never deadlock."""
        if self.readonly:
            raise RnnbenchError(
                f"The results store {self.path} was opened read-only: open it with "
                "Store(path) to write."
            )
        conn = self._connect()
        try:
            # A Ctrl-C that struck an earlier write between its BEGIN and its try can leave a
            # transaction open; every later BEGIN would then fail (and the sweep's cleanup,
            # putting interrupted runs back to queued, was lost with it).
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from exc

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._connect().execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from exc

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------------

    @staticmethod
    def _config_values(config: dict) -> dict[str, Any]:
        values = {name: config.get(name) for name in CONFIG_COLUMNS if name != "form"}
        values["form"] = form_of(config)
        if values["peephole"] is not None:
            values["peephole"] = int(bool(values["peephole"]))
        values["group_key"] = _group_key(config)
        values["config"] = json.dumps(config, sort_keys=True)
        return values

    @staticmethod
    def _labels(labels: dict | None) -> dict[str, Any]:
        labels = dict(labels or {})
        unknown = set(labels) - set(LABEL_COLUMNS)
        if unknown:
            raise ValueError(f"unknown store labels {sorted(unknown)}; known: {LABEL_COLUMNS}")
        if "quick" in labels:
            labels["quick"] = int(bool(labels["quick"]))
        return labels

    def queue_run(
        self, key: str, config: dict, run_dir: str, *, labels: dict | None = None
    ) -> None:
        """Record a planned run as ``queued``; a run already in the store is left as it is."""
        values = self._config_values(config)
        values.update(self._labels(labels))
        values.update(key=key, run_dir=str(run_dir), status="queued", created=now(), updated=now())
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO runs ({columns}) VALUES ({marks}) ON CONFLICT(key) DO NOTHING",
                tuple(values.values()),
            )

    def start_run(
        self, key: str, config: dict, run_dir: str, *, labels: dict | None = None
    ) -> None:
        """Mark a run ``running`` (creating it if new): attempts + 1, versions, host, time."""
        values = self._config_values(config)
        values.update(self._labels(labels))
        values.update(software_versions())
        stamp = now()
        values.update(
            key=key,
            run_dir=str(run_dir),
            status="running",
            host=socket.gethostname(),
            started=stamp,
            updated=stamp,
            error=None,
        )
        columns = ", ".join([*values, "created", "attempts"])
        marks = ", ".join(["?"] * len(values) + ["?", "1"])
        updates = ", ".join(f"{name} = excluded.{name}" for name in values if name != "key")
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO runs ({columns}) VALUES ({marks}) ON CONFLICT(key) DO UPDATE SET "
                f"{updates}, attempts = runs.attempts + 1",
                (*values.values(), stamp),
            )

    def log_epoch(self, key: str, record: dict) -> None:
        """Upsert one epoch's metrics (``record["epoch"]`` and the EPOCH_COLUMNS present)."""
        self.log_epochs(key, [record])

    def log_epochs(self, key: str, records: Iterable[dict]) -> None:
        """Upsert several epochs of one run in one transaction."""
        rows = [(key, int(r["epoch"]), *(r.get(name) for name in EPOCH_COLUMNS)) for r in records]
        if not rows:
            return
        columns = ", ".join(EPOCH_COLUMNS)
        updates = ", ".join(f"{name} = excluded.{name}" for name in EPOCH_COLUMNS)
        with self._write() as conn:
            conn.executemany(
                f"INSERT INTO epochs (key, epoch, {columns}) VALUES (?, ?, ?, ?, ?, ?) "
                f"ON CONFLICT(key, epoch) DO UPDATE SET {updates}",
                rows,
            )
            conn.execute("UPDATE runs SET updated = ? WHERE key = ?", (now(), key))

    def finish_run(
        self, key: str, status: str, result: dict | None = None, error: str | None = None
    ) -> None:
        """Record a run's end: its status, the result columns present in ``result``, the error.

        ``error`` defaults to ``result["error"]``: why a diverged run diverged, in one sentence.
        """
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; known: {STATUSES}")
        values: dict[str, Any] = {
            name: result[name] for name in RESULT_COLUMNS if result and name in result
        }
        if result and result.get("hidden") is not None:
            values["hidden"] = int(result["hidden"])
        if "checkpoint" in values and values["checkpoint"] is not None:
            values["checkpoint"] = str(values["checkpoint"])
        stamp = now()
        if error is None and result:
            error = result.get("error")
        values.update(status=status, error=error, updated=stamp)
        if status in FINISHED or status == "failed":
            values["finished"] = stamp
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE runs SET {assignments} WHERE key = ?", (*values.values(), key)
            )
            if cursor.rowcount == 0:
                raise KeyError(f"run {key} is not in the store {self.path}")

    def set_status(self, keys: Iterable[str], status: str, *, only: Iterable[str] = ()) -> None:
        """Set the status of several runs; with ``only``, just those whose status is in it."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; known: {STATUSES}")
        only = tuple(only)
        where = f" AND status IN ({', '.join('?' * len(only))})" if only else ""
        with self._write() as conn:
            conn.executemany(
                f"UPDATE runs SET status = ?, updated = ? WHERE key = ?{where}",
                [(status, now(), key, *only) for key in keys],
            )

    def set_meta(self, name: str, value: Any) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name, str(value)),
            )

    def add_command(self, command: str) -> None:
        """Append ``command`` (a training command line) to the store's ``commands`` list."""
        with self._write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE name = 'commands'").fetchone()
            commands = _command_list(row[0] if row else None)
            commands.append({"command": command, "at": now(), "host": socket.gethostname()})
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('commands', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (json.dumps(commands),),
            )

    def import_run(self, row: dict, epochs: Iterable[dict], source: str) -> bool:
        """Copy a finished run trained elsewhere into the store, with its epochs: ``row`` maps
        the ``runs`` columns to values (``config`` as JSON text; unknown columns are dropped),
        ``source`` (the export folder) goes into its ``imported`` column. A run the store holds
        finished already is kept as it is; an unfinished one is replaced. Returns whether the
        run was copied. Sweeps count an imported run as finished without its run folder."""
        return self.import_runs([(row, epochs)], source) == 1

    def import_runs(self, runs: Iterable[tuple[dict, Iterable[dict]]], source: str) -> int:
        """:meth:`import_run` for several (row, epochs) pairs in one transaction: all are
        copied or none. Returns how many were copied. The rows are checked by the caller
        (:func:`rnnbench.exports_schema.read_exports`)."""
        runs = [(row, list(epochs)) for row, epochs in runs]
        for row, _ in runs:
            if row.get("status") not in FINISHED:
                raise ValueError(f"only finished runs are imported, not {row.get('status')!r}")
        copied = 0
        with self._write() as conn:
            have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
            for row, epochs in runs:
                key = row["key"]
                found = conn.execute("SELECT status FROM runs WHERE key = ?", (key,)).fetchone()
                if found is not None and found[0] in FINISHED:
                    continue
                # an empty cell takes the column's default (quick 0, attempts 0)
                values = {c: v for c, v in row.items() if c in have and v is not None}
                values["imported"] = source
                conn.execute("DELETE FROM runs WHERE key = ?", (key,))
                conn.execute("DELETE FROM epochs WHERE key = ?", (key,))
                conn.execute(
                    f"INSERT INTO runs ({', '.join(values)}) "
                    f"VALUES ({', '.join('?' * len(values))})",
                    tuple(values.values()),
                )
                conn.executemany(
                    f"INSERT INTO epochs (key, epoch, {', '.join(EPOCH_COLUMNS)}) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(key, int(e["epoch"]), *(e.get(c) for c in EPOCH_COLUMNS)) for e in epochs],
                )
                copied += 1
        return copied

    # -- reads ------------------------------------------------------------------------------

    def _row(self, row: sqlite3.Row) -> dict | None:
        """A run row as a dict (``config`` parsed); None, named once on stderr, for a row that
        :func:`rnnbench.exports_schema.stored_run_problem` refuses (an edited or crafted row
        imported before the exports were checked), so one bad row never stops a read."""
        from rnnbench.exports_schema import stored_run_problem

        run = dict(row)
        problem = stored_run_problem(run)
        if problem is not None:
            if run.get("key") not in self._skipped:
                self._skipped.add(run.get("key"))
                print(
                    f"warning: skipped run {str(run.get('key'))[:40]!r} of the results store "
                    f"{self.path}: its {problem}; delete the row or train the run again.",
                    file=sys.stderr,
                )
            return None
        run["config"] = json.loads(run["config"])
        if run.get("peephole") is not None:
            run["peephole"] = bool(run["peephole"])
        run["quick"] = bool(run.get("quick"))
        return run

    def get_run(self, key: str) -> dict | None:
        """One run as a dict of its columns (``config`` parsed), or None (also for a bad row)."""
        rows = self._read("SELECT * FROM runs WHERE key = ?", (key,))
        return self._row(rows[0]) if rows else None

    def runs(
        self,
        dataset: str | None = None,
        unit: str | None = None,
        status: str | Iterable[str] | None = None,
        **where: Any,
    ) -> list[dict]:
        """Runs matching the filters (any column by name via ``where``), oldest first.

        ``status`` may be one status or several.
        """
        clauses: list[str] = []
        params: list[Any] = []
        filters = {"dataset": dataset, "unit": unit, **where}
        for name, value in filters.items():
            if value is None:
                continue
            if name not in _COLUMNS:
                raise ValueError(f"unknown run column {name!r}")
            clauses.append(f"{name} = ?")
            params.append(value)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(statuses)
        sql = "SELECT * FROM runs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created, dataset, unit, form, hidden, lr, seed, key"
        return [run for row in self._read(sql, params) if (run := self._row(row)) is not None]

    def epochs(self, key: str) -> list[dict]:
        """Per-epoch metrics of one run, in epoch order."""
        rows = self._read("SELECT * FROM epochs WHERE key = ? ORDER BY epoch", (key,))
        return [dict(row) for row in rows]

    def meta(self) -> dict[str, str]:
        return {row["name"]: row["value"] for row in self._read("SELECT * FROM meta")}

    def commands(self) -> list[dict]:
        """The training commands recorded by :meth:`add_command`, oldest first."""
        return _command_list(self.meta().get("commands"))

    def integrity_check(self) -> str:
        """SQLite's own check: ``"ok"`` when the file is sound."""
        return self._read("PRAGMA integrity_check")[0][0]


def _command_list(value: str | None) -> list[dict]:
    """The ``commands`` meta value as a list; an unreadable value (hand-edited) counts as none."""
    try:
        commands = json.loads(value) if value else []
    except json.JSONDecodeError:
        return []
    if not isinstance(commands, list):
        return []
    return [c for c in commands if isinstance(c, dict) and isinstance(c.get("command"), str)]


_COLUMNS = frozenset(
    {
        "key",
        "config",
        *CONFIG_COLUMNS,
        "group_key",
        *LABEL_COLUMNS,
        "status",
        "run_dir",
        *RESULT_COLUMNS,
        "error",
        "attempts",
        "python",
        "torch",
        "numpy",
        "rnnbench",
        "host",
        "created",
        "started",
        "finished",
        "updated",
    }
)
