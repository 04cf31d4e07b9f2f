"""What a results store's rows may hold: the check applied to everything that comes from outside.

A committed report folder's exports (``store-runs.csv``, ``store-epochs.csv``,
``store-meta.json``; :mod:`rnnbench.report.exports`) are input that anyone may edit or craft, and
``--resume-from`` copies them into a training store, where they count as finished runs. So
before anything is imported, :func:`read_exports` checks

- the files: regular files (not symlinks, FIFOs or folders), at most :data:`MAX_BYTES` each
  (checked before reading), UTF-8, without git conflict markers;
- every row of ``store-runs.csv``: ``key``, ``config`` and ``status`` present; ``config`` a JSON
  object of known :class:`rnnbench.train.config.RunConfig` fields that makes a valid config whose
  :meth:`~rnnbench.train.config.RunConfig.key` is the row's ``key``; the config columns
  (``dataset``, ``unit``, ``lr``, ...) agree with it; numbers are numbers of the right kind,
  finite, in range (:data:`INT_RANGES`; a music NLL is a probability's negative log, so it is
  never below 0; a speech NLL is a density's and may be); text cells at most :data:`MAX_TEXT`
  characters;
- every row of ``store-epochs.csv``: a run of ``store-runs.csv``, an epoch number in range, each
  epoch once, finite numbers;
- ``store-meta.json``: a JSON object of text values.

``strict=True`` (``--resume-from``) refuses the whole folder in one sentence naming the file, the
row and the field, so nothing is imported; ``strict=False`` (``rnnbench report --store
FOLDER``) names each bad row on stderr and leaves it out.

A store written before these checks may already hold a bad row (imported from an edited export,
or edited by hand): :func:`stored_run_problem` is the lighter check :class:`rnnbench.store.Store`
applies to every row it reads, so ``runs``, ``report`` and a rerun name such a row and skip it
instead of crashing on it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rnnbench.errors import RnnbenchError

RUNS_FILE = "store-runs.csv"
EPOCHS_FILE = "store-epochs.csv"
META_FILE = "store-meta.json"
# The largest export file read: a full grid's store-epochs.csv is about 3 MB.
MAX_BYTES = {RUNS_FILE: 64 * 2**20, EPOCHS_FILE: 256 * 2**20, META_FILE: 2**20}
MAX_TEXT = 65_536  # characters of one text cell (a failed run's error holds a traceback's tail)
MAX_INT = 2**63 - 1  # SQLite's largest integer
MAX_EPOCH = 1_000_000
MAX_HIDDEN = 32_768  # hidden units; the paper's largest model has 400
MAX_NLL = 1e9  # a diverged run's NLL may be large, never beyond this
KEY = re.compile(r"[0-9a-f]{16}\Z")
CONFLICT_MARKERS = ("<<<<<<<", ">>>>>>>", "|||||||")

# Integer columns and their ranges (inclusive).
INT_RANGES = {
    "peephole": (0, 1),
    "quick": (0, 1),
    "hidden": (1, MAX_HIDDEN),
    "seed": (0, MAX_INT),
    "batch_size": (1, MAX_INT),
    "max_epochs": (1, MAX_EPOCH),
    "best_epoch": (0, MAX_EPOCH),
    "epochs": (0, MAX_EPOCH),
    "epoch": (0, MAX_EPOCH),
    "updates": (0, MAX_INT),
    "params": (0, MAX_INT),
    "attempts": (0, MAX_INT),
}
NLL_COLUMNS = (
    "train_nll",
    "valid_nll",
    "test_nll",
    "train_nll_seq",
    "valid_nll_seq",
    "test_nll_seq",
)
REAL_COLUMNS = ("lr", "seconds", *NLL_COLUMNS)
EPOCH_FIELDS = ("key", "epoch", "train_nll", "valid_nll", "updates", "seconds")


class RowProblem(ValueError):
    """One cell that fails the schema: ``field`` and what is wrong with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass
class Exports:
    """A checked export folder: typed run rows, each run's epochs, the meta values."""

    folder: Path
    runs: list[dict] = field(default_factory=list)
    epochs: dict[str, list[dict]] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # one sentence per row left out


# -- files ----------------------------------------------------------------------------------


def read_text(path: Path, limit: int | None = None) -> str:
    """The text of one export file, refused in one sentence when it is a symlink, not a regular
    file, larger than its limit, not UTF-8, or holds git conflict markers."""
    limit = MAX_BYTES.get(path.name, MAX_BYTES[RUNS_FILE]) if limit is None else limit
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise RnnbenchError(f"Cannot read {path} ({exc.strerror}): restore it from git.") from exc
    if stat.S_ISLNK(info.st_mode):
        raise RnnbenchError(
            f"{path} is a symbolic link; exports are read only from regular files: replace it "
            "with the file itself."
        )
    if not stat.S_ISREG(info.st_mode):
        raise RnnbenchError(f"{path} is not a regular file: restore the export from git.")
    if info.st_size > limit:
        raise RnnbenchError(
            f"{path} is {info.st_size:,} bytes, more than the {limit:,} an export may hold: "
            "restore it from git or rebuild it with `rnnbench report`."
        )
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise RnnbenchError(f"Cannot read {path} ({exc.strerror}): restore it from git.") from exc
    if len(data) > limit:  # grew while we looked
        raise RnnbenchError(f"{path} holds more than the {limit:,} bytes an export may hold.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RnnbenchError(
            f"{path} is not UTF-8 text (byte {exc.start}): restore it from git."
        ) from exc
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(CONFLICT_MARKERS) or line.rstrip() == "=======":
            raise RnnbenchError(
                f"{path} line {number} is a git conflict marker ({line[:7]}): resolve the "
                "merge conflict (or take one side with `git checkout --ours/--theirs`) first."
            )
    return text


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """The header and (line number, row) pairs of a CSV export."""
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        header = list(reader.fieldnames or [])
        for row in reader:
            if None in row:
                raise RnnbenchError(
                    f"{path} line {reader.line_num} has more cells than its header: restore "
                    "the file from git."
                )
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise RnnbenchError(
            f"{path} line {reader.line_num} is not valid CSV ({exc}): restore it from git."
        ) from exc
    return header, rows


# -- cells ----------------------------------------------------------------------------------


def _integer(name: str, value):
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise RowProblem(name, f"{value[:40]!r} is not a number") from None
            if not math.isfinite(number) or number != int(number):
                raise RowProblem(name, f"{value[:40]!r} is not a whole number") from None
            value = int(number)
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise RowProblem(name, f"{value!r} is not a whole number")
        value = int(value)
    elif not isinstance(value, int):
        raise RowProblem(name, f"{value!r} is not a whole number")
    low, high = INT_RANGES[name]
    if not low <= value <= high:
        raise RowProblem(name, f"{value} is outside {low}..{high}")
    return value


def _real(name: str, value, task: str | None, stored: bool = False):
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RowProblem(name, f"{value!r} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise RowProblem(name, f"{str(value)[:40]!r} is not a number") from None
    if stored and name in NLL_COLUMNS and number == math.inf:
        return number  # the store keeps a diverged run's infinite NLL; exports write it empty
    if not math.isfinite(number):
        raise RowProblem(name, f"{value} is not finite (a diverged NLL is stored empty)")
    if name == "lr" and not stored and not 0 < number <= 1e3:
        raise RowProblem(name, f"{number!r} is not a learning rate in (0, 1000]")
    if name == "seconds" and number < 0:
        raise RowProblem(name, f"{number!r} is negative")
    if name in NLL_COLUMNS:
        if abs(number) > MAX_NLL:
            raise RowProblem(name, f"{number!r} is beyond ±{MAX_NLL:g}")
        if task == "music" and number < 0:
            raise RowProblem(name, f"{number!r} is below 0, which a music NLL never is")
    return number


def _text(name: str, value):
    if value is None or value == "":
        return None if name != "key" else value
    if not isinstance(value, str):
        raise RowProblem(name, f"{value!r} is not text")
    if len(value) > MAX_TEXT:
        raise RowProblem(name, f"{len(value):,} characters, more than {MAX_TEXT:,}")
    return value


def typed(name: str, value, task: str | None = None, *, stored: bool = False):
    """One cell as the store holds it (int, float, text or None), checked; ``stored``: read
    from a store, where a diverged run's NLL may be +inf."""
    if name in INT_RANGES:
        return _integer(name, value)
    if name in REAL_COLUMNS:
        return _real(name, value, task, stored)
    return _text(name, value)


def parse_config(text) -> dict:
    """A ``config`` cell as a dict, or :class:`RowProblem`."""
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or not text:
        raise RowProblem("config", "empty (it must be the run's config as a JSON object)")
    try:
        config = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise RowProblem(
            "config", "not JSON (it must be the run's config as a JSON object)"
        ) from None
    if not isinstance(config, dict):
        raise RowProblem("config", f"a JSON {type(config).__name__}, not an object")
    return config


def _run_config(config: dict):
    """The :class:`RunConfig` of ``config``, or :class:`RowProblem`."""
    from rnnbench.train.config import RunConfig

    fields = RunConfig.__dataclass_fields__
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise RowProblem("config", f"unknown field(s) {', '.join(unknown)[:200]}")
    for name in ("dataset", "unit"):
        if name not in config:
            raise RowProblem("config", f"has no {name}")
    try:
        return RunConfig.from_dict(config)
    except RnnbenchError as exc:
        raise RowProblem("config", str(exc).rstrip(".")) from None
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise RowProblem("config", f"not a valid run config ({exc})") from None


def _config_types(config: dict) -> None:
    """Each known field of a stored config holds a value of its kind (a name, a number, a
    flag, or null where the field allows it). Values are not checked further: a store's rows
    came from this machine's training (or from tests and other tools, whose configs may be
    partial); unknown fields and units a plug-in adds are left alone."""
    from rnnbench.train.config import RunConfig

    for name, spec in RunConfig.__dataclass_fields__.items():
        if name not in config:
            continue
        value, kind = config[name], str(spec.type)
        if value is None and "None" in kind:
            continue
        if kind.startswith("bool"):
            ok = isinstance(value, int)  # a bool, or 0 and 1
        elif kind.startswith(("int", "float")):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise RowProblem("config", f"its {name} {str(value)[:40]!r} is not a {kind}")


def _task(dataset) -> str | None:
    from rnnbench.data.names import task_of

    return task_of(dataset) if isinstance(dataset, str) and dataset else None


# -- rows -----------------------------------------------------------------------------------


def check_run(cells: dict) -> dict:
    """A ``store-runs.csv`` row (text cells) as the store's typed row, or :class:`RowProblem`."""
    from rnnbench.store import STATUSES

    key = cells.get("key") or ""
    if not KEY.match(key):
        raise RowProblem("key", f"{key[:40]!r} is not a run key (16 hex digits)")
    config = parse_config(cells.get("config"))
    run_config = _run_config(config)
    if run_config.key() != key:
        raise RowProblem(
            "key", f"{key} is not the key of its config ({run_config.key()}): one was edited"
        )
    status = cells.get("status")
    if status not in STATUSES:
        raise RowProblem("status", f"{str(status)[:40]!r} is not one of {', '.join(STATUSES)}")
    task = _task(run_config.dataset)
    row = {name: typed(name, value, task) for name, value in cells.items() if name != "config"}
    row["config"] = json.dumps(config, sort_keys=True)
    expect = {
        "dataset": run_config.dataset,
        "unit": run_config.unit,
        "lr": run_config.lr,
        "seed": run_config.seed,
        "batch_size": run_config.batch_size,
        "max_epochs": run_config.max_epochs,
        "peephole": int(run_config.peephole),
        "reset": run_config.reset,
    }
    if run_config.hidden is not None:
        expect["hidden"] = run_config.hidden
    for name, want in expect.items():
        have = row.get(name)
        if have is not None and have != want:
            raise RowProblem(name, f"{have!r} differs from its config's {want!r}")
    _check_epochs(row)
    return row


def _check_epochs(row: dict) -> None:
    epochs, best = row.get("epochs"), row.get("best_epoch")
    if epochs is not None and best is not None and best > epochs:
        raise RowProblem("best_epoch", f"{best} is after the run's last epoch ({epochs})")
    cap = row.get("max_epochs")
    if epochs is not None and cap is not None and epochs > cap:
        raise RowProblem("epochs", f"{epochs} is more than the run's max_epochs ({cap})")


def check_epoch(cells: dict, task: str | None) -> dict:
    """A ``store-epochs.csv`` row as typed values, or :class:`RowProblem`."""
    row = {name: typed(name, cells.get(name), task) for name in EPOCH_FIELDS}
    if row["epoch"] is None:
        raise RowProblem("epoch", "empty")
    return row


def stored_run_problem(run: dict) -> str | None:
    """Why a row read from a store cannot be used (one phrase), or None: ``config`` must be a
    JSON object of valid field values (partial configs allowed), numbers of the right kind,
    finite and in range. ``run`` is the row as SQLite returns it (``config`` as text)."""
    from rnnbench.store import STATUSES

    try:
        config = parse_config(run.get("config"))
        _config_types(config)
        task = _task(config.get("dataset") or run.get("dataset"))
        for name, value in run.items():
            if name in INT_RANGES or name in REAL_COLUMNS:
                typed(name, value, task, stored=True)
            elif name != "config" and value is not None and not isinstance(value, str):
                raise RowProblem(name, f"{value!r} is not text")
        if run.get("status") not in STATUSES:
            raise RowProblem("status", f"{str(run.get('status'))[:40]!r} is not a status")
    except RowProblem as exc:
        return str(exc)
    return None


# -- folders --------------------------------------------------------------------------------


def _refuse(path: Path, line: int, key: str, problem: RowProblem, *, action: str) -> str:
    which = f" (run {key})" if key and KEY.match(key) else ""
    return f"{path} line {line}{which}, field {problem.field}: {problem.problem}; {action}"


def read_exports(folder: str | os.PathLike, *, strict: bool) -> Exports:
    """Read and check the exports in ``folder`` (see the module docstring)."""
    folder = Path(folder)
    found = Exports(folder)
    runs_path = folder / RUNS_FILE
    header, rows = _csv_rows(runs_path)
    missing = [c for c in ("key", "config", "status") if c not in header]
    if missing:
        raise RnnbenchError(
            f"{runs_path} has no {', '.join(missing)} column: it is not an rnnbench export; "
            "restore it from git or rebuild it with `rnnbench report`."
        )
    fix = "fix or restore the file from git (nothing was imported)."
    tasks: dict[str, str | None] = {}
    for line, cells in rows:
        try:
            run = check_run(cells)
        except RowProblem as exc:
            sentence = _refuse(runs_path, line, cells.get("key") or "", exc, action=fix)
            if strict:
                raise RnnbenchError(sentence) from None
            found.skipped.append(sentence)
            continue
        if run["key"] in tasks:
            sentence = _refuse(
                runs_path,
                line,
                run["key"],
                RowProblem("key", "a second row of this run"),
                action=fix,
            )
            if strict:
                raise RnnbenchError(sentence)
            found.skipped.append(sentence)
            continue
        tasks[run["key"]] = _task(run.get("dataset") or json.loads(run["config"])["dataset"])
        found.runs.append(run)
    epochs_path = folder / EPOCHS_FILE
    if os.path.lexists(epochs_path):
        header, rows = _csv_rows(epochs_path)
        missing = [c for c in EPOCH_FIELDS if c not in header]
        if missing:
            raise RnnbenchError(
                f"{epochs_path} has no {', '.join(missing)} column: restore it from git."
            )
        seen: set[tuple[str, int]] = set()
        for line, cells in rows:
            key = cells.get("key") or ""
            try:
                if key not in tasks:
                    raise RowProblem("key", f"{key[:40]!r} names no run of {RUNS_FILE}")
                epoch = check_epoch(cells, tasks[key])
                if (key, epoch["epoch"]) in seen:
                    raise RowProblem("epoch", f"epoch {epoch['epoch']} appears twice")
            except RowProblem as exc:
                sentence = _refuse(epochs_path, line, key, exc, action=fix)
                if strict:
                    raise RnnbenchError(sentence) from None
                found.skipped.append(sentence)
                continue
            seen.add((key, epoch["epoch"]))
            found.epochs.setdefault(key, []).append(epoch)
    meta_path = folder / META_FILE
    if os.path.lexists(meta_path):
        found.meta = _meta(meta_path)
    return found


def _meta(path: Path) -> dict[str, str]:
    try:
        meta = json.loads(read_text(path))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise RnnbenchError(f"{path} is not JSON ({exc}): restore it from git.") from None
    if not isinstance(meta, dict):
        raise RnnbenchError(
            f"{path} holds a JSON {type(meta).__name__}, not an object of names and values: "
            "restore it from git."
        )
    for name, value in meta.items():
        if not isinstance(value, str) or len(value) > MAX_BYTES[META_FILE]:
            raise RnnbenchError(
                f"{path}: the value of {name[:40]!r} is not text: restore the file from git."
            )
    return meta


def warn_skipped(skipped: list[str], *, stream=None) -> None:
    """Name each row left out, one line each, on stderr."""
    stream = sys.stderr if stream is None else stream
    for sentence in skipped:
        print(f"warning: skipped a row: {sentence.rsplit('; ', 1)[0]}.", file=stream)
