"""``rnnbench runs``: list the runs of a results store, filtered by data set, unit and status.

A run still queued or running (or one that failed) that has trained some epochs shows how far it
got: its furthest epoch and its best validation NLL so far, marked ``*`` (provisional: not an
early-stopped result)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rnnbench.errors import RnnbenchError
from rnnbench.store import DEFAULT_PATH, STATUSES
from rnnbench.train.config import UNITS

COLUMNS = [  # (header, column, format)
    ("key", "key", "{}"),
    ("dataset", "dataset", "{}"),
    ("unit", "unit", "{}"),
    ("form", "form", "{}"),
    ("hidden", "hidden", "{}"),
    ("lr", "lr", "{:.3g}"),
    ("seed", "seed", "{}"),
    ("status", "status", "{}"),
    ("epochs", "epochs", "{}"),
    ("train", "train_nll", "{:.3f}"),
    ("valid", "valid_nll", "{:.3f}"),
    ("test", "test_nll", "{:.3f}"),
    ("seconds", "seconds", "{:.0f}"),
    ("error", "error", "{}"),
]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "runs",
        help="list the runs of a results store",
        description="List the runs of a results store (one line each), optionally filtered.",
    )
    p.add_argument(
        "--store",
        default=str(DEFAULT_PATH),
        metavar="PATH",
        help=f"results store (default ./{DEFAULT_PATH})",
    )
    p.add_argument("--dataset", metavar="D", help="only this data set")
    p.add_argument("--unit", metavar="U", choices=UNITS, help="only this unit (tanh, lstm, gru)")
    p.add_argument("--status", choices=STATUSES, help="only runs with this status")
    p.add_argument("--json", action="store_true", help="print a JSON list of full run records")
    p.set_defaults(func=handler)


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return value.splitlines()[0][:60] if value else "-"
    return fmt.format(value)


def with_progress(store, runs: list[dict]) -> tuple[list[dict], bool]:
    """Unfinished runs with epoch rows get ``epochs`` = their furthest epoch and ``valid_nll``
    = their best so far, as text marked ``*``; also whether any run was marked."""
    out, marked = [], False
    for run in runs:
        if run["status"] in ("queued", "running") or (
            run["status"] == "failed" and run.get("epochs") is None
        ):
            rows = store.epochs(run["key"])
            valid = [
                e["valid_nll"]
                for e in rows
                if e.get("valid_nll") is not None and math.isfinite(e["valid_nll"])
            ]
            if rows:
                run = {**run, "epochs": f"{max(int(e['epoch']) for e in rows)}*"}
                if valid:
                    run["valid_nll"] = f"{min(valid):.3f}*"
                marked = True
        out.append(run)
    return out, marked


def table(runs: list[dict]) -> str:
    """The runs as an aligned text table."""
    rows = [[h for h, _, _ in COLUMNS]]
    rows += [[_cell(r.get(col), fmt) for _, col, fmt in COLUMNS] for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _finite(value):
    """Standard JSON: infinite or NaN numbers become null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def handler(args: argparse.Namespace) -> int:
    from rnnbench.store import Store

    path = Path(args.store)
    if not path.is_file():
        raise RnnbenchError(
            f"No results store at {path}: run a sweep, `rnnbench reproduce` or `rnnbench train` "
            "first, or point --store at an existing results.db."
        )
    with Store(path, readonly=True) as store:
        runs = store.runs(dataset=args.dataset, unit=args.unit, status=args.status)
        if args.json:
            print(json.dumps(_finite(runs), indent=2, default=str, allow_nan=False))
            return 0
        shown, marked = with_progress(store, runs)
    if not runs:
        print("no runs match")
        return 0
    print(table(shown))
    counts = {s: sum(1 for r in runs if r["status"] == s) for s in STATUSES}
    print(f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    if marked:
        print(
            "* unfinished or failed: the furthest epoch and the best validation NLL so far "
            "(provisional)"
        )
    return 0
