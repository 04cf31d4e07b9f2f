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
# Store columns read back as numbers (the rest stay text; empty cells are NULL).
_INTEGER = {
    "peephole",
    "hidden",
    "seed",
    "batch_size",
    "max_epochs",
    "quick",
    "best_epoch",
    "epochs",
    "updates",
    "params",
    "attempts",
    "epoch",
}
_REAL = {
    "lr",
    "train_nll",
    "valid_nll",
    "test_nll",
    "train_nll_seq",
    "valid_nll_seq",
    "test_nll_seq",
    "seconds",
}


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

    The caller deletes the file's folder (``path.parent``) when done."""
    from rnnbench.store import Store

    folder = Path(folder)
    tmp = Path(tempfile.mkdtemp(prefix="rnnbench-exports-"))
    path = tmp / "results.db"
    Store(path).close()  # the schema
    try:
        runs = _read_csv(folder / RUNS_FILE)
        epochs = _read_csv(folder / EPOCHS_FILE) if (folder / EPOCHS_FILE).is_file() else []
        meta_path = folder / META_FILE
        meta = json.loads(meta_path.read_text("utf-8")) if meta_path.is_file() else {}
    except (OSError, ValueError, csv.Error) as exc:
        raise RnnbenchError(
            f"The exports in {folder} cannot be read ({exc}): restore {RUNS_FILE} and "
            f"{EPOCHS_FILE} from git, or point --store at a results.db."
        ) from exc
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        conn.execute("BEGIN")
        for run in runs:
            names = [c for c in run if c in have]
            conn.execute(
                f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [_value(c, run[c]) for c in names],
            )
        for e in epochs:
            conn.execute(
                f"INSERT OR REPLACE INTO epochs ({', '.join(EPOCH_FIELDS)}) VALUES (?,?,?,?,?,?)",
                [_value(c, e.get(c, "")) for c in EPOCH_FIELDS],
            )
        for name, value in meta.items():
            conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))
        conn.execute("COMMIT")
    except (sqlite3.Error, KeyError, ValueError) as exc:
        raise RnnbenchError(
            f"The exports in {folder} are not a complete rnnbench export ({exc}): restore them "
            "from git or rebuild them with `rnnbench report`."
        ) from exc
    finally:
        conn.close()
    return path


def import_finished(folder: str | Path, store) -> tuple[int, int]:
    """Copy the finished (done or diverged) runs of the exports in ``folder`` into ``store``
    (:meth:`rnnbench.store.Store.import_run`), with every epoch; runs the exports hold
    unfinished are left to train. Returns (runs copied, runs in the exports)."""
    from rnnbench.store import FINISHED

    folder = Path(folder)
    if not is_export(folder):
        raise RnnbenchError(
            f"{folder} holds no rnnbench exports ({RUNS_FILE}): give --resume-from a report "
            "folder that `rnnbench report` or `rnnbench ablate` wrote, such as docs/results/grid."
        )
    try:
        runs = _read_csv(folder / RUNS_FILE)
        epochs = _read_csv(folder / EPOCHS_FILE) if (folder / EPOCHS_FILE).is_file() else []
        by_key: dict[str, list[dict]] = {}
        for e in epochs:
            by_key.setdefault(e["key"], []).append({c: _value(c, e[c]) for c in EPOCH_FIELDS})
        rows = [{c: _value(c, v) for c, v in run.items()} for run in runs]
    except (OSError, ValueError, KeyError, csv.Error) as exc:
        raise RnnbenchError(
            f"The exports in {folder} cannot be read ({exc}): restore {RUNS_FILE} and "
            f"{EPOCHS_FILE} from git."
        ) from exc
    source = str(folder.resolve())
    copied = sum(
        store.import_run(row, by_key.get(row["key"], []), source)
        for row in rows
        if row.get("status") in FINISHED
    )
    return copied, len(rows)


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


def _value(column: str, text: str):
    if text == "" or text is None:
        return None
    if column in _INTEGER:
        return int(float(text))
    if column in _REAL:
        return float(text)
    return text


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
