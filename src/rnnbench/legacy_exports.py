"""Report folders written before reports exported their store, given exports (issue 23).

Before the exports (issue 17 §5) a report folder held ``runs.csv`` (one row per run: ``key``,
``dataset``, ``unit``, ``form``, ``stage``, ``lr``, ``seed``, ``batch_size``, ``hidden``,
``status`` and the final numbers) and, later, ``curves.csv`` (every epoch of the runs at each
cell's chosen rate), but not its store, so ``rnnbench report --store FOLDER`` could not rebuild
it. :func:`convert` writes the three export files (:mod:`rnnbench.report.exports`) from them:

- each run's :class:`~rnnbench.train.config.RunConfig` is rebuilt from its columns (``form``
  gives ``peephole`` and ``reset``) and from the protocol the folder's README states
  (``settings``: the fields no column holds, such as ``max_epochs``; ``hidden=None`` where the
  runs used the paper's size, which the config stores as null); every other field takes
  today's default;
- ``runs.csv`` keeps a learning rate to 10 significant digits, but a run's key hashes the full
  double, so ``lr_draws = (count, low, high, seeding)`` recomputes the protocol's draws
  (:func:`rnnbench.sweeps.grid.lr_candidates`: ln lr ~ U(low, high), seeded per data set and
  unit before issue 17, per data set after) and takes the one draw that the column rounds;
- every rebuilt config must hash to the run's recorded key. One that does not differs from
  what trained the run in some field, so the folder is refused in one sentence naming the run,
  instead of exporting an invented config;
- what no file holds is left empty and named in ``store-meta.json`` (``legacy_conversion``):
  per-epoch seconds (``curves.csv`` has a per-model estimate, not the population's time), the
  epochs of runs without curves, per-sequence NLLs, timestamps, hosts, software versions and
  the training commands.

The result is checked as any export is (:func:`rnnbench.exports_schema.read_exports`, strict)
in a temporary folder before it is moved into place. Nothing is imported or unpickled because a
file names it: CSV in, CSV and JSON out.

Command: ``python scripts/legacy_exports.py FOLDER [--out DIR] [--set FIELD=JSON ...]
[--lr-draws COUNT LOW HIGH unit|dataset] [--sweep NAME]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rnnbench.errors import RnnbenchError

LEGACY_RUNS = "runs.csv"
LEGACY_CURVES = "curves.csv"
REQUIRED_RUN_COLUMNS = (
    "key",
    "dataset",
    "unit",
    "form",
    "stage",
    "lr",
    "seed",
    "batch_size",
    "hidden",
    "status",
)
# Final numbers carried over as they are (when the column is there).
RESULT_COLUMNS = (
    "epochs",
    "best_epoch",
    "train_nll",
    "valid_nll",
    "test_nll",
    "train_nll_seq",
    "valid_nll_seq",
    "test_nll_seq",
    "updates",
    "seconds",
    "params",
    "error",
)
# Columns a report added for readers, not from the store.
READER_COLUMNS = ("protocol", "provenance")
REQUIRED_CURVE_COLUMNS = ("key", "epoch", "train_nll", "valid_nll")
CURVE_READER_COLUMNS = ("dataset", "unit", "form", "lr", "seed", "in_figure", "seconds_per_model")
# form -> (unit, RunConfig fields)
FORMS = {
    "plain": ("tanh", {}),
    "peephole": ("lstm", {"peephole": True}),
    "no-peephole": ("lstm", {"peephole": False}),
    "reset-before": ("gru", {"reset": "before"}),
    "reset-after": ("gru", {"reset": "after"}),
}
# RunConfig fields taken from columns; ``settings`` may not set them.
COLUMN_FIELDS = ("dataset", "unit", "peephole", "reset", "lr", "seed", "batch_size")
SEEDINGS = ("unit", "dataset")
RELATIVE_LR_TOLERANCE = 1e-9  # a 10-significant-digit rate is within 5e-11 of its double


def _fail(path: Path, line: int, column: str, problem: str) -> RnnbenchError:
    return RnnbenchError(
        f"{path} line {line}, column {column}: {problem}; fix or restore the file from git "
        "(nothing was written)."
    )


def _read_csv(path: Path, required: Sequence[str]) -> list[tuple[int, dict]]:
    """(line, row) pairs of a legacy CSV, refused in one sentence when it lacks a column."""
    from rnnbench.exports_schema import read_text

    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        header = list(reader.fieldnames or [])
        missing = [c for c in required if c not in header]
        if missing:
            raise RnnbenchError(
                f"{path} has no {', '.join(missing)} column: it is not a legacy rnnbench "
                f"{path.name}; point the converter at a report folder that `rnnbench report` "
                "wrote before the exports."
            )
        for row in reader:
            if None in row:
                raise _fail(path, reader.line_num, "(all)", "more cells than the header has")
            # a row with fewer cells than the header reads its missing cells as empty
            rows.append((reader.line_num, {k: v or "" for k, v in row.items()}))
    except csv.Error as exc:
        raise _fail(path, reader.line_num, "(all)", f"not valid CSV ({exc})") from None
    return rows


def _typed(path: Path, line: int, name: str, value: str, task: str | None):
    from rnnbench.exports_schema import RowProblem, typed

    try:
        return typed(name, value, task)
    except RowProblem as exc:
        raise _fail(path, line, name, exc.problem) from None


def parse_settings(pairs: Sequence[str]) -> dict:
    """``FIELD=JSON`` pairs (``--set``) as RunConfig fields, one sentence per bad pair."""
    from rnnbench.train.config import RunConfig

    fields = RunConfig.__dataclass_fields__
    settings: dict = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or name not in fields:
            raise RnnbenchError(
                f"--set {pair!r} names no RunConfig field: use FIELD=VALUE with one of "
                f"{', '.join(f for f in fields if f not in COLUMN_FIELDS)}."
            )
        if name in COLUMN_FIELDS:
            raise RnnbenchError(
                f"--set {name} is read from each run's columns of runs.csv: leave it out."
            )
        try:
            settings[name] = json.loads(text)
        except json.JSONDecodeError:
            raise RnnbenchError(
                f"--set {name}={text!r} is not a JSON value: write numbers as 20 or 0.075, "
                'flags as true/false, nothing as null, names in quotes ("paper").'
            ) from None
    return settings


def _draws(lr_draws, dataset: str, unit: str) -> list[float]:
    from rnnbench.sweeps.grid import lr_candidates, stable_seed

    count, low, high, seeding = lr_draws
    seed = stable_seed(dataset, unit) if seeding == "unit" else stable_seed(dataset)
    return lr_candidates(int(count), seed=seed, low=float(low), high=float(high))


def _learning_rate(path, line, text: str, dataset, unit, lr_draws, cache) -> float:
    value = _typed(path, line, "lr", text, None)
    if value is None:
        raise _fail(path, line, "lr", "empty")
    if lr_draws is None:
        return value
    if (dataset, unit) not in cache:
        cache[(dataset, unit)] = _draws(lr_draws, dataset, unit)
    near = [d for d in cache[(dataset, unit)] if abs(d - value) <= RELATIVE_LR_TOLERANCE * value]
    if len(near) != 1:
        count, low, high, seeding = lr_draws
        raise _fail(
            path,
            line,
            "lr",
            f"{text} is {'none' if not near else 'more than one'} of the {count} draws of "
            f"ln lr ~ U({low}, {high}) seeded per {seeding} for {dataset} {unit}: state the "
            "protocol's draws with --lr-draws as the folder's README gives them",
        )
    return near[0]


def _config(path, line, cells, settings, lr_draws, cache) -> dict:
    """The run's config dict (rebuilt, checked against its key), or one sentence."""
    from rnnbench.counting import paper_hidden
    from rnnbench.data.names import task_of
    from rnnbench.train.config import RunConfig

    dataset, unit, form = cells["dataset"], cells["unit"], cells["form"]
    if form not in FORMS or FORMS[form][0] != unit:
        known = ", ".join(f"{f} ({u})" for f, (u, _) in FORMS.items())
        raise _fail(path, line, "form", f"{form!r} is not a form of {unit!r} (known: {known})")
    if not dataset:
        raise _fail(path, line, "dataset", "empty")
    task = task_of(dataset)
    config = dict(settings)
    config.update(dataset=dataset, unit=unit, **FORMS[form][1])
    config["lr"] = _learning_rate(path, line, cells["lr"], dataset, unit, lr_draws, cache)
    for name in ("seed", "batch_size", "hidden"):
        value = _typed(path, line, name, cells[name], task)
        if value is None:
            raise _fail(path, line, name, "empty")
        if name == "hidden" and "hidden" in settings:
            stated = settings["hidden"]
            want = paper_hidden(task, unit) if stated is None else stated
            if value != want:
                raise _fail(
                    path,
                    line,
                    "hidden",
                    f"{value} is not the size --set hidden={json.dumps(stated)} states ({want})",
                )
            continue
        config[name] = value
    try:
        run_config = RunConfig.from_dict(config)
    except RnnbenchError as exc:
        raise RnnbenchError(
            f"{path} line {line}: the config rebuilt from its columns and --set is not valid "
            f"({str(exc).rstrip('.')}); fix the --set values or the file (nothing was written)."
        ) from None
    key = cells["key"]
    if run_config.key() != key:
        raise _fail(
            path,
            line,
            "key",
            f"the config rebuilt from the columns and the stated protocol hashes to "
            f"{run_config.key()}, not {key}, so some field differs from what trained the run; "
            "state the protocol's fields with --set (and its draws with --lr-draws) as the "
            "folder's README gives them",
        )
    return run_config.to_dict()


def _runs(path: Path, settings: dict, lr_draws, sweep) -> tuple[list[dict], list[str]]:
    from rnnbench.data.names import task_of
    from rnnbench.exports_schema import KEY
    from rnnbench.store import STATUSES, form_of
    from rnnbench.train.config import RunConfig

    rows = _read_csv(path, REQUIRED_RUN_COLUMNS)
    header = list(rows[0][1]) if rows else []
    ignored = [
        c
        for c in header
        if c not in REQUIRED_RUN_COLUMNS and c not in RESULT_COLUMNS and c not in READER_COLUMNS
    ]
    runs, seen, cache = [], set(), {}
    for line, cells in rows:
        key = cells["key"]
        if not KEY.match(key or ""):
            raise _fail(path, line, "key", f"{key[:40]!r} is not a run key (16 hex digits)")
        if key in seen:
            raise _fail(path, line, "key", f"run {key} has a second row")
        seen.add(key)
        if cells["status"] not in STATUSES:
            raise _fail(path, line, "status", f"{cells['status'][:40]!r} is not a run status")
        config = _config(path, line, cells, settings, lr_draws, cache)
        task = task_of(config["dataset"])
        run = {
            "key": key,
            "config": config,
            "dataset": config["dataset"],
            "unit": config["unit"],
            "form": form_of(config),
            "stage": cells["stage"] or None,
            "lr": config["lr"],
            "seed": config["seed"],
            "status": cells["status"],
            "batch_size": config["batch_size"],
            "hidden": _typed(path, line, "hidden", cells["hidden"], task),
            "max_epochs": config["max_epochs"],
            "peephole": int(config["peephole"]),
            "reset": config["reset"],
            "group_key": RunConfig.from_dict(config).group_key(),
            "sweep": sweep,
            "quick": 0,  # the legacy reports were of full-protocol or stated shortened studies
        }
        for name in RESULT_COLUMNS:
            if name in cells:
                run[name] = _typed(path, line, name, cells[name], task)
        runs.append(run)
    return runs, ignored


def _epochs(path: Path, runs: list[dict]) -> dict[str, list[dict]]:
    from rnnbench.data.names import task_of

    tasks = {r["key"]: task_of(r["dataset"]) for r in runs}
    epochs: dict[str, list[dict]] = {}
    seen = set()
    for line, cells in _read_csv(path, REQUIRED_CURVE_COLUMNS):
        key = cells["key"]
        if key not in tasks:
            raise _fail(path, line, "key", f"{key[:40]!r} names no run of {LEGACY_RUNS}")
        row = {"key": key, "seconds": None, "updates": None}
        for name in ("epoch", "train_nll", "valid_nll", "updates"):
            if name in cells:
                row[name] = _typed(path, line, name, cells[name], tasks[key])
        if row["epoch"] is None:
            raise _fail(path, line, "epoch", "empty")
        if (key, row["epoch"]) in seen:
            raise _fail(path, line, "epoch", f"epoch {row['epoch']} of run {key} appears twice")
        seen.add((key, row["epoch"]))
        epochs.setdefault(key, []).append(row)
    for rows in epochs.values():
        rows.sort(key=lambda r: r["epoch"])
    return epochs


def _note(folder, runs, epochs, settings, lr_draws, sweep, ignored, curves: bool) -> str:
    from rnnbench.train.config import RunConfig

    stated = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(settings.items())) or "none"
    defaults = sorted(
        set(RunConfig.__dataclass_fields__)
        - set(COLUMN_FIELDS)
        - {"hidden"}
        - set(settings)
        - {"variant", "unit_source"}
    )
    with_curves = len(epochs)
    parts = [
        f"Converted from the legacy {LEGACY_RUNS} ({len(runs)} runs)"
        + (
            f" and {LEGACY_CURVES} ({sum(map(len, epochs.values()))} epochs of {with_curves} runs)"
            if curves
            else f" (no {LEGACY_CURVES}: no run has epochs)"
        )
        + f" of {folder} by scripts/legacy_exports.py (rnnbench.legacy_exports).",
        "Config fields from each run's columns: dataset, unit, form (peephole, reset), lr, "
        "seed, batch_size, hidden.",
        f"From the protocol stated in the folder's README (--set): {stated}.",
        (
            f"Learning rates: the protocol's draws (--lr-draws {' '.join(map(str, lr_draws))}), "
            "matched to runs.csv's 10-digit rates."
            if lr_draws
            else "Learning rates: as runs.csv prints them."
        ),
        f"At the defaults of RunConfig, as in every run's key: {', '.join(defaults)}.",
        "Every rebuilt config hashes to the run's recorded key.",
        f"Sweep label: {sweep}." if sweep else "Sweep label: not recorded in the folder.",
        "Quick label: 0 (runs.csv predates it; the legacy reports name no --quick study).",
        "Not known, left empty: per-epoch seconds (curves.csv holds a per-model estimate), "
        f"the epochs of the {len(runs) - with_curves} runs without curves, per-sequence NLLs, "
        "attempts, timestamps, hosts, software versions, the training commands.",
    ]
    if ignored:
        parts.append(f"Columns not carried over: {', '.join(ignored)}.")
    return " ".join(parts)


def convert(
    folder: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    settings: dict | None = None,
    lr_draws: tuple | None = None,
    sweep: str | None = None,
) -> dict:
    """Write ``store-runs.csv``, ``store-epochs.csv`` and ``store-meta.json`` into ``out``
    (default: ``folder``) from the legacy ``runs.csv`` (and ``curves.csv``) of ``folder``; see
    the module docstring. Returns the counts (``runs``, ``epochs``, ``runs_with_epochs``).
    Refuses in one sentence, writing nothing, when a file, row or rebuilt key is wrong, or when
    ``out`` already holds exports."""
    from rnnbench.exports_schema import read_exports
    from rnnbench.report.exports import EXPORT_FILES, write_exports

    folder = Path(folder)
    out = Path(out) if out is not None else folder
    settings = dict(settings or {})
    if lr_draws is not None:
        count, low, high, seeding = lr_draws
        if seeding not in SEEDINGS or int(count) < 1 or not float(low) < float(high):
            raise RnnbenchError(
                f"--lr-draws {count} {low} {high} {seeding} is not a protocol's draws: use "
                "COUNT LOW HIGH unit|dataset, with COUNT >= 1 and LOW < HIGH (ln lr)."
            )
    if not (folder / LEGACY_RUNS).is_file():
        raise RnnbenchError(
            f"{folder} has no {LEGACY_RUNS}: point the converter at a legacy report folder."
        )
    there = [name for name in EXPORT_FILES if os.path.lexists(out / name)]
    if there:
        raise RnnbenchError(
            f"{out} already holds {', '.join(there)}: it needs no conversion (or delete them "
            "first to convert again)."
        )
    runs, ignored = _runs(folder / LEGACY_RUNS, settings, lr_draws, sweep)
    if not runs:
        raise RnnbenchError(f"{folder / LEGACY_RUNS} holds no runs: there is nothing to convert.")
    curves = (folder / LEGACY_CURVES).is_file()
    epochs = _epochs(folder / LEGACY_CURVES, runs) if curves else {}
    meta = {
        "legacy_conversion": _note(folder, runs, epochs, settings, lr_draws, sweep, ignored, curves)
    }
    collected = {
        "runs": sorted(runs, key=lambda r: r["key"]),
        "epochs": {r["key"]: epochs.get(r["key"], []) for r in runs},
        "meta": meta,
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".legacy-exports-", dir=out))
    try:
        write_exports(collected, tmp)
        read_exports(tmp, strict=True)  # the exports any reader will check, checked now
        for name in EXPORT_FILES:
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "runs": len(runs),
        "epochs": sum(map(len, epochs.values())),
        "runs_with_epochs": len(epochs),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python scripts/legacy_exports.py FOLDER [--out DIR] [--set FIELD=JSON ...]
    [--lr-draws COUNT LOW HIGH unit|dataset] [--sweep NAME]``."""
    p = argparse.ArgumentParser(
        prog="scripts/legacy_exports.py",
        description="Give a report folder written before the exports (runs.csv, curves.csv) "
        "its store exports, so `rnnbench report --store FOLDER` rebuilds it.",
    )
    p.add_argument("folder", help="the legacy report folder (its runs.csv, curves.csv)")
    p.add_argument("--out", help="where to write the exports (default: the folder)")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="a RunConfig field of the protocol the folder's README states (repeat)",
    )
    p.add_argument(
        "--lr-draws",
        nargs=4,
        metavar=("COUNT", "LOW", "HIGH", "SEEDING"),
        help="the protocol's learning-rate draws: COUNT of ln lr ~ U(LOW, HIGH), seeded per "
        "'unit' (before issue 17) or per 'dataset'",
    )
    p.add_argument("--sweep", help="the runs' sweep label (reproduce trained them: reproduce)")
    args = p.parse_args(argv)
    try:
        settings = parse_settings(args.settings)
        lr_draws = None
        if args.lr_draws:
            count, low, high, seeding = args.lr_draws
            try:
                lr_draws = (int(count), float(low), float(high), seeding)
            except ValueError:
                raise RnnbenchError(
                    f"--lr-draws {' '.join(args.lr_draws)}: COUNT must be a whole number and "
                    "LOW, HIGH numbers (ln lr)."
                ) from None
        done = convert(
            args.folder, args.out, settings=settings, lr_draws=lr_draws, sweep=args.sweep
        )
    except RnnbenchError as exc:
        print(f"rnnbench: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"Wrote store-runs.csv ({done['runs']} runs), store-epochs.csv ({done['epochs']} "
        f"epochs of {done['runs_with_epochs']} runs) and store-meta.json to "
        f"{args.out or args.folder}; every rebuilt config hashes to its run's key."
    )
    return 0
