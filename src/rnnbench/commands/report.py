"""``rnnbench report``: rebuild the report folder from one results store or several."""

from __future__ import annotations

import argparse
import shlex
import sys

from rnnbench.data.names import DATA_DIR_HELP
from rnnbench.errors import RnnbenchError
from rnnbench.store import DEFAULT_PATH


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="build Tables 1-2, Figures 2-3, report.md and report.html from a results store",
        description=(
            "Read a results store and write a report folder: report.md, one self-contained "
            "report.html, table2.csv, runs.csv (every run), curves.csv (the learning curves of "
            "every seed at each chosen rate), figure2.png (music) and figure3.png (speech). "
            "Give --store "
            "several times to report on a grid trained across machines or sessions: runs are "
            "merged by key, a finished row (done or diverged) wins over an unfinished one, else "
            "the row updated last."
        ),
    )
    p.add_argument(
        "--store",
        action="append",
        metavar="PATH",
        help=f"a results store to read; repeat to merge several (default: {DEFAULT_PATH})",
    )
    p.add_argument(
        "--out",
        default="rnnbench-report",
        metavar="DIR",
        help="the report folder to write (default ./rnnbench-report)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="mark every output as a quick run that does not follow the paper's "
        "protocol (set automatically for runs stored by reproduce --quick)",
    )
    p.add_argument(
        "--no-samples",
        action="store_true",
        help="leave out the Samples section (a sample of each cell's chosen run, as audio and "
        "a picture; needs the runs' folders and the data)",
    )
    p.add_argument("--data-dir", metavar="D", help=DATA_DIR_HELP + "; for the samples")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from rnnbench.report import build_report

    stores = args.store or [str(DEFAULT_PATH)]
    command = shlex.join(
        ["rnnbench", "report", *(arg for s in stores for arg in ("--store", s))]
        + ["--out", args.out]
        + (["--quick"] if args.quick else [])
        + (["--no-samples"] if args.no_samples else [])
    )
    try:
        out = build_report(
            stores,
            args.out,
            quick=args.quick,
            command=command,
            samples=not args.no_samples,
            data_dir=args.data_dir,
        )
    except OSError as exc:  # a full disk, a read-only folder (matplotlib, PIL, csv, open)
        raise RnnbenchError(
            f"Cannot write the report to {args.out} ({exc.strerror or exc}); free some space or "
            "choose another folder with --out (the results store is untouched)."
        ) from None
    print(
        f"report written to {out}/report.html (also report.md, table2.csv, figures)",
        file=sys.stdout,
    )
    return 0
