"""``rnnbench sweep CONFIG.toml``: train a user-defined grid, crash-safely, locally or on Ray.

The grid file lists data sets, units, forms, parameter budgets, learning rates and seeds
(format: :mod:`rnnbench.sweeps.grid`, example: ``examples/sweep.toml``). Every (data set,
unit, form, size) is trained as one population. Running the same command again skips finished
runs and continues interrupted ones from their last epoch.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rnnbench.data.names import DATA_DIR_HELP
from rnnbench.sweeps import ENGINES


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``sweep`` and ``reproduce`` share."""
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local worker processes (default) or a Ray cluster",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster to join: auto or ray://HOST:PORT (default: a local Ray)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="populations trained at once (default: one per CPU core; with --device cuda, "
        "one per GPU)",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads per worker (default: CPU cores // workers); give 1 when other "
        "jobs share the cores: torch threads that compete for a busy core run many times slower",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="times a failing population is tried again before its runs are marked "
        "failed (default 2)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument(
        "--data-dir",
        metavar="D",
        help=DATA_DIR_HELP,
    )
    p.add_argument("--store", metavar="PATH", help="results store (default OUT/results.db)")
    p.add_argument(
        "--resume-from",
        action="append",
        metavar="FOLDER",
        help="first copy the finished runs of a committed report folder's exports "
        "(store-runs.csv, store-epochs.csv) into the store: they count as finished without "
        "their run folders, so a study goes on from git on a new machine (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no live display on stderr")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="with --engine ray: also show Ray's and Tune's own output (quiet by default)",
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="train a user-defined grid from a TOML file",
        description=__doc__.split("\n\n", 1)[1].strip(),
    )
    p.add_argument("config", metavar="CONFIG.toml", help="the grid (see examples/sweep.toml)")
    p.add_argument(
        "--unit",
        action="append",
        metavar="SPEC",
        help="load a user unit the grid's units may name (path/to/cell.py:Class, "
        "package.module:Class or an rnnbench.units entry point; docs/units.md); repeatable",
    )
    p.add_argument(
        "--out",
        default="rnnbench-results",
        metavar="DIR",
        help="results folder: DIR/runs/<key>/ and DIR/results.db (default ./rnnbench-results)",
    )
    add_engine_arguments(p)
    p.set_defaults(func=handler)


def check_engine_arguments(args: argparse.Namespace) -> None:
    from rnnbench.errors import RnnbenchError

    if args.workers is not None and args.workers < 1:
        raise RnnbenchError(f"--workers {args.workers} is not a worker count; use 1 or more.")
    if args.threads is not None and args.threads < 1:
        raise RnnbenchError(f"--threads {args.threads} is not a thread count; use 1 or more.")
    if args.retries < 0:
        raise RnnbenchError(f"--retries {args.retries} is negative; use 0 or more.")
    if args.address and args.engine != "ray":
        raise RnnbenchError("--address only applies to --engine ray; add it or drop --address.")
    from rnnbench.exports_schema import read_exports
    from rnnbench.report.exports import RUNS_FILE, is_export

    for folder in getattr(args, "resume_from", None) or []:
        if not is_export(folder):
            raise RnnbenchError(
                f"--resume-from {folder} holds no rnnbench exports ({RUNS_FILE}): give a report "
                "folder that `rnnbench report` or `rnnbench ablate` wrote, such as "
                "docs/results/grid."
            )
        read_exports(folder, strict=True)  # refused here, before any store is opened


def preflight(args: argparse.Namespace, populations) -> None:
    """Refuse, in one sentence, what would fail every run: a data set that is unknown, missing
    or corrupt, or a device this machine lacks. (Before, each run failed on it in turn, the
    store filled with failed rows and a report of nothing was written.) Skipped for a Ray
    cluster given by --address: its workers hold their own data and devices."""
    if args.engine == "ray" and args.address:
        return
    from rnnbench.data import registry
    from rnnbench.train.population import resolve_device

    resolve_device(args.device)
    names = list(dict.fromkeys(c.dataset for p in populations for c in p.configs))
    _refuse_missing(names, args.data_dir)
    for name in names:
        registry.load_dataset(name, args.data_dir)
    registry._cache.clear()  # the workers load their own; the driver needn't hold ~300 MB


def _refuse_missing(names: list[str], data_dir) -> None:
    """Every built-in data set that no data folder holds, named in one sentence."""
    from rnnbench.data.locate import ENV_VAR, candidates
    from rnnbench.data.registry import SPEECH_SETS, holds, list_datasets
    from rnnbench.errors import RnnbenchError

    looked = candidates(data_dir)
    bases = [n.partition("?")[0] for n in names]
    lost = [b for b in dict.fromkeys(bases) if b in list_datasets()]
    lost = [b for b in lost if not any(holds(root, b) for root, _ in looked)]
    if not lost:
        return
    fetch = list(dict.fromkeys("fsdd" if b in SPEECH_SETS else b for b in lost))
    where = ", ".join(f"{root} ({origin})" for root, origin in looked)
    raise RnnbenchError(
        f"{len(lost)} data set{'s' if len(lost) > 1 else ''} not found: {', '.join(lost)} "
        f"(looked in {where}); download {'them' if len(lost) > 1 else 'it'} with "
        + " and ".join(f"`rnnbench data fetch {f}`" for f in fetch)
        + f", or point --data-dir / {ENV_VAR} at a folder that holds "
        + ("them." if len(lost) > 1 else "it.")
    )


def resume_from(args: argparse.Namespace, store) -> None:
    """Copy the finished runs of each ``--resume-from`` folder's exports into ``store``."""
    from rnnbench.report.exports import import_finished

    for folder in getattr(args, "resume_from", None) or []:
        copied, total = import_finished(folder, store)
        print(
            f"resume: {copied} finished runs copied from {folder} (of its {total} runs; the "
            "others were unfinished there or are finished here already)",
            file=sys.stderr,
        )


def engine_kwargs(args: argparse.Namespace) -> dict:
    threads = {}
    if args.threads is not None:  # Ray sizes each trial's CPUs, and the trial uses them all
        threads = {"threads" if args.engine == "local" else "cpus_per_trial": args.threads}
    return {
        **threads,
        "engine": args.engine,
        "address": args.address,
        "workers": args.workers,
        "retries": args.retries,
        "device": args.device,
        "data_dir": args.data_dir,
        "progress": not args.no_progress,
        **({"verbose": True} if args.engine == "ray" and getattr(args, "verbose", False) else {}),
    }


def command_line(args: argparse.Namespace) -> str:
    """The command line that gave ``args``, as a user would retype it: ``rnnbench <arguments>``."""
    return shlex.join(["rnnbench", *getattr(args, "argv", sys.argv[1:])])


def summary_line(counts: dict[str, int], store_path: Path) -> str:
    return (
        f"{counts['total']} runs: {counts['done']} done, {counts['diverged']} diverged, "
        f"{counts['failed']} failed ({counts['skipped']} were already finished); "
        f"results in {store_path} (see `rnnbench runs --store {store_path}`)"
    )


def handler(args: argparse.Namespace) -> int:
    from rnnbench.store import Store
    from rnnbench.sweeps import run_sweep
    from rnnbench.sweeps.grid import load_sweep

    check_engine_arguments(args)
    from rnnbench.units.registry import load

    for spec in args.unit or ():  # the only way a grid's user unit is imported
        load(spec)
    name, populations = load_sweep(args.config)
    preflight(args, populations)
    out = Path(args.out)
    store_path = Path(args.store) if args.store else out / "results.db"
    with Store(store_path) as store:
        store.add_command(command_line(args))
        resume_from(args, store)
        n = sum(len(p.configs) for p in populations)
        print(f"sweep {name}: {n} runs in {len(populations)} populations", file=sys.stderr)
        counts = run_sweep(populations, store=store, out=out, **engine_kwargs(args))
    print(summary_line(counts, store_path))
    return 1 if counts["failed"] else 0
