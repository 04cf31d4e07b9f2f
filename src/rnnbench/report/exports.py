"""A results store as plain files, and back: what a committed report is rebuilt from.

A results store holds the only copy of every run's curves, and a store on a machine that is
replaced is lost (a whole grid's was, once). So every report folder also carries the store's
content as text, small enough to commit:

- ``store-runs.csv``: one row per run with every column of the store's ``runs`` table (the
  full ``config`` as JSON), the raw material of the learning-rate choice and of Table 2;
- ``store-epochs.csv``: one row per run and epoch (``key, epoch, train_nll, valid_nll,
  updates, seconds``), every epoch of every run, the search's candidates included;
- ``store-meta.json``: the store's ``meta`` values (the commands that trained it, ``quick``).

``rnnbench report --store FOLDER`` reads such a folder as it reads a store
(:func:`materialize` loads it into a temporary SQLite store), so a report committed with its
exports is rebuilt by one command, and exports of several cells or machines merge like stores.
``reproduce``/``sweep``/``ablate --resume-from FOLDER`` copy its finished runs into the
training store (:func:`import_finished`), so a study continues on a new machine from git.
Nothing here is pickled: CSV and JSON only.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
import tempfile
from pathlib import Path

from rnnbench.errors import RnnbenchError

RUNS_FILE = "store-runs.csv"
EPOCHS_FILE = "store-epochs.csv"
META_FILE = "store-meta.json"
EXPORT_FILES = (RUNS_FILE, EPOCHS_FILE, META_FILE)
EPOCH_FIELDS = ("key", "epoch", "train_nll", "valid_nll", "updates", "seconds")


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding exports (its ``store-runs.csv``)."""
    return (Path(path) / RUNS_FILE).is_file()


def collect(sources) -> dict:
    """What :func:`write_exports` writes, read from ``sources``
    (:class:`rnnbench.report.stores.Sources`) while they are open: the merged runs, every
    epoch of each, and the stores' meta values (their training commands merged)."""
    runs = sorted(sources.runs, key=lambda r: r["key"])
    meta: dict[str, str] = {}
    for store_meta in sources.metas:
        for name, value in store_meta.items():
            if name == "commands" and name in meta:
                meta[name] = json.dumps(json.loads(meta[name]) + json.loads(value or "[]"))
            else:
                meta.setdefault(name, value)
    return {
        "runs": runs,
        "epochs": {r["key"]: sources.epochs(r["key"]) for r in runs},
        "meta": meta,
    }


def write_exports(collected: dict, out: str | Path) -> None:
    """Write :func:`collect`'s runs, epochs and meta values into the folder ``out``."""
    out = Path(out)
    runs = collected["runs"]
    columns = _run_columns(runs)
    with open(out / RUNS_FILE, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for run in runs:
            row = {c: _cell(run.get(c)) for c in columns}
            row["config"] = json.dumps(run["config"], sort_keys=True)
            writer.writerow(row)
    with open(out / EPOCHS_FILE, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(EPOCH_FIELDS)
        for run in runs:
            for e in collected["epochs"][run["key"]]:
                writer.writerow([run["key"], *(_cell(e.get(c)) for c in EPOCH_FIELDS[1:])])
    text = json.dumps(collected["meta"], indent=1, sort_keys=True) + "\n"
    (out / META_FILE).write_text(text, "utf-8")


def materialize(folder: str | Path) -> Path:
    """Load the exports in ``folder`` into a new temporary SQLite store; return its path.

    The exports are checked first (:func:`rnnbench.exports_schema.read_exports`): a file that
    cannot be trusted is refused in one sentence; a bad row is named on stderr and left out.
    (:func:`rnnbench.report.stores.open_stores` marks each run read this way as ``confined``
    to ``folder``: its checkpoint, for samples, is looked for only inside it.)
    The caller deletes the file's folder (``path.parent``) when done."""
    from rnnbench.exports_schema import read_exports, warn_skipped
    from rnnbench.store import Store

    folder = Path(folder)
    found = read_exports(folder, strict=False)
    warn_skipped(found.skipped)
    tmp = Path(tempfile.mkdtemp(prefix="rnnbench-exports-"))
    path = tmp / "results.db"
    Store(path).close()  # the schema
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        conn.execute("BEGIN")
        for run in found.runs:
            # an empty cell takes the column's default (quick 0, attempts 0), as in a store
            values = {c: v for c, v in run.items() if c in have and v is not None}
            conn.execute(
                f"INSERT INTO runs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                list(values.values()),
            )
        for epochs in found.epochs.values():
            conn.executemany(
                f"INSERT INTO epochs ({', '.join(EPOCH_FIELDS)}) VALUES (?,?,?,?,?,?)",
                [[e[c] for c in EPOCH_FIELDS] for e in epochs],
            )
        for name, value in found.meta.items():
            conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise RnnbenchError(
            f"The exports in {folder} cannot be loaded ({exc}): restore them from git or "
            "rebuild them with `rnnbench report`."
        ) from exc
    finally:
        conn.close()
    return path


def import_finished(folder: str | Path, store) -> tuple[int, int]:
    """Copy the finished (done or diverged) runs of the exports in ``folder`` into ``store``
    (:meth:`rnnbench.store.Store.import_runs`), with every epoch; runs the exports hold
    unfinished are left to train. Returns (runs copied, runs in the exports).

    All or nothing: every file and row is checked first
    (:func:`rnnbench.exports_schema.read_exports`), and one bad row refuses the whole folder
    in one sentence naming the file, the row and the field, leaving ``store`` untouched."""
    from rnnbench.exports_schema import read_exports
    from rnnbench.store import FINISHED

    folder = Path(folder)
    if not is_export(folder):
        raise RnnbenchError(
            f"{folder} holds no rnnbench exports ({RUNS_FILE}): give --resume-from a report "
            "folder that `rnnbench report` or `rnnbench ablate` wrote, such as docs/results/grid."
        )
    found = read_exports(folder, strict=True)
    source = str(folder.resolve())
    finished = [
        (run, found.epochs.get(run["key"], [])) for run in found.runs if run["status"] in FINISHED
    ]
    return store.import_runs(finished, source), len(found.runs)


def _run_columns(runs: list[dict]) -> list[str]:
    from rnnbench.store import _COLUMNS, LATER_COLUMNS

    first = ["key", "config", "dataset", "unit", "form", "stage", "lr", "seed", "status"]
    rest = sorted((set(_COLUMNS) | set(LATER_COLUMNS)) - set(first))
    return first + rest


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    return str(value)
