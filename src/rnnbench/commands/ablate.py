"""``rnnbench ablate``: what each gate contributes (issue 13), from one resumable command.

A grid of unit variants × data sets. Each variant (``lstm``, ``lstm:nig``, ``gru:mgu``, ...;
default: both full units and every variant) is parameter-matched to its full unit at the
paper's size (Table 1) or to ``--budget`` parameters, and goes through the paper's protocol as
``reproduce`` runs it: the learning-rate search on the data set's candidates (the same ones for
every variant of a data set), then N fresh seeds at the chosen rate (seed s with batch order
s, so pairing by seed pairs runs that saw the same batches). Then it writes the ablation report
to OUT/report: final test NLL of the fresh seeds with 95% CIs, each variant against its full
unit (paired by seed, Holm's correction over the study), speed of learning, gradient flow and
gate use (from the best checkpoints), as ablations.md, ablations.html, CSV and PNG.

Running it again skips finished runs and continues interrupted ones (kill -9 loses at most the
epoch in flight). ``--report-only`` rebuilds the report from the store or from a report
folder's exports (``--store FOLDER``), reusing that folder's gradflow.csv and gates.csv where
the checkpoints are gone. ``--quick`` is a smoke test of a few minutes on 2 CPU cores (JSB, four
variants, 2 candidates, 2 seeds, at most 20 epochs); its numbers do NOT follow the paper's
protocol, and every output says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnbench.commands.reproduce import add_search_arguments, chain_fresh_seeds, search_protocol
from rnnbench.commands.sweep import (
    add_engine_arguments,
    check_engine_arguments,
    command_line,
    engine_kwargs,
    preflight,
    resume_from,
    summary_line,
)
from rnnbench.errors import RnnbenchError
from rnnbench.train.config import PROTOCOLS

SWEEP = "ablate"  # the store's sweep label of every ablation run
STUDY_SETS = ("jsb", "pianomidi", "fsdd-a")
QUICK = {
    "sets": ("jsb",),
    "candidates": 2,
    "seeds": 2,
    "max_epochs": {"music": 20, "speech": 2},
    "patience": 5,
    "log_lr": (-7.5, -6.0),
    "speech_budget": 20000,  # as reproduce --quick: 169k-parameter speech models take minutes
}


def quick_variants() -> list[str]:
    """--quick's four: both full units and one variant of each (nfg and mgu, or the older forms
    np and after where this build has no variants)."""
    from rnnbench.analysis import units

    if units.has_variants():
        return ["lstm", "lstm:nfg", "gru", "gru:mgu"]
    return ["lstm", "lstm:np", "gru", "gru:after"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ablate",
        help="train unit variants × data sets and write the ablation report",
        description=__doc__.split("\n\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        conflict_handler="resolve",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a few-minute smoke test (jsb, 4 variants, 2 rates, 2 seeds, at most 20 epochs); "
        "does NOT follow the paper's protocol",
    )
    p.add_argument(
        "--sets", nargs="+", metavar="SET", help=f"data sets (default: {' '.join(STUDY_SETS)})"
    )
    p.add_argument(
        "--variants",
        nargs="+",
        metavar="SPEC",
        help="UNIT or UNIT:VARIANT, e.g. lstm lstm:nig gru gru:mgu mingru minlstm (default: "
        "both full units and every variant); a variant's full unit is always added, both full "
        "units for a plug-in unit",
    )
    p.add_argument(
        "--unit",
        action="append",
        metavar="SPEC",
        help="add your own unit (docs/units.md): path/to/cell.py:Class, package.module:Class "
        "or an installed rnnbench.units entry point; repeat for several",
    )
    p.add_argument(
        "--budget",
        type=int,
        metavar="N",
        help="match every variant's recurrent parameters (the paper's convention) to N "
        "(default: to its full unit's at the paper's size, Table 1: 18,108 LSTM / 18,630 GRU "
        "on music, 169,065 / 168,888 on speech)",
    )
    p.add_argument("--seeds", type=int, metavar="N", help="fresh seeds (default 3; --quick 2)")
    p.add_argument(
        "--candidates", type=int, metavar="N", help="learning-rate candidates (default 10)"
    )
    p.add_argument(
        "--log-lr",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="ln lr ~ U(LOW, HIGH) for the candidates (default -12 -6; --quick -7.5 -6)",
    )
    p.add_argument("--max-epochs", type=int, metavar="N", help="epoch cap (default 500)")
    p.add_argument("--lr-decay", type=float, metavar="F", help="as in reproduce")
    p.add_argument("--weight-noise", type=float, metavar="S", help="as in reproduce")
    p.add_argument(
        "--noise-output",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="as in reproduce",
    )
    p.add_argument("--bptt", type=int, metavar="N", help="as in reproduce")
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="paper",
        help="paper (default) or authors, the training preset, as in reproduce",
    )
    add_search_arguments(p)  # --search halving (issue 14)
    p.add_argument(
        "--out",
        metavar="DIR",
        help="DIR/runs, DIR/results.db, DIR/report (default ./rnnbench-ablations, "
        "--quick ./rnnbench-ablations-quick)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: rebuild DIR/report (or --report) from the store(s) given with "
        "--store (a results.db or a report folder with its exports; repeat to merge)",
    )
    p.add_argument("--report", metavar="DIR", help="the report folder (default OUT/report)")
    p.add_argument(
        "--no-analyses",
        action="store_true",
        help="skip gradient flow and gate use (they load every cell's best checkpoint)",
    )
    p.add_argument(
        "--no-samples",
        action="store_true",
        help="leave out the report's Samples section (a sample of each variant's best fresh "
        "seed, as audio and a picture; needs the runs' folders and the data)",
    )
    add_engine_arguments(p)
    p.add_argument(  # replaces the engine's single --store (conflict_handler="resolve")
        "--store",
        action="append",
        metavar="PATH",
        help="results store (default OUT/results.db); with --report-only, a results.db or a "
        "report folder with its exports, repeated to merge several",
    )
    p.set_defaults(func=handler)


def variant_specs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The requested ``(unit, variant)`` pairs, each full unit added before its variants."""
    from rnnbench.analysis import units
    from rnnbench.units import registry

    mine_units = [registry.load(spec).name for spec in getattr(args, "unit", None) or ()]
    specs = args.variants or (quick_variants() if args.quick else units.all_specs())
    if args.variants is None and mine_units:  # --unit alone: the user's units and the full units
        specs = list(units.UNITS)
    pairs = [units.parse(s) for s in [*specs, *mine_units]]
    plugins = list(dict.fromkeys(p for p in pairs if units.is_plugin(p[0])))
    out: list[tuple[str, str]] = []
    for unit in units.UNITS:
        mine = [p for p in pairs if p[0] == unit]
        if mine or plugins:  # a plug-in unit is compared with both full units
            out += [(unit, "")] + [p for p in dict.fromkeys(mine) if p[1]]
    return out + plugins


def plan(args: argparse.Namespace):
    """The search populations (one per data set × variant) and the ``then`` that chains the
    fresh seeds after each."""
    from rnnbench.analysis import units
    from rnnbench.sweeps.grid import Population, task_of
    from rnnbench.train.config import RunConfig

    proto = search_protocol(args, QUICK)
    sets = args.sets or list(QUICK["sets"] if proto.quick else STUDY_SETS)
    if args.budget is not None and args.budget < 1:
        raise RnnbenchError(f"--budget {args.budget}: give a positive parameter count.")
    pairs = variant_specs(args)
    labels = {"sweep": SWEEP, "quick": proto.quick}
    stage1 = []
    for dataset in sets:
        lrs = proto.candidates(dataset)  # the same candidates for every variant
        task = task_of(dataset)
        for unit, variant in pairs:
            budget = args.budget
            if budget is None and proto.quick and task == "speech":
                budget = QUICK["speech_budget"]
            hidden = units.hidden_size(task, unit, variant, budget)
            configs = [
                RunConfig(
                    dataset=dataset,
                    unit=unit,
                    lr=lr,
                    seed=0,
                    hidden=hidden,
                    **units.config_fields(unit, variant),
                    **proto.settings(dataset),
                )
                for lr in lrs
            ]
            name = f"{dataset}/{units.spec_of(unit, variant)}"
            stage1.append(Population(configs, {**labels, "stage": "lr"}, f"{name} lr"))

    def name(c) -> str:
        return f"{c.dataset}/{units.spec_of(c.unit, units.variant_of(c.to_dict()))}"

    return stage1, chain_fresh_seeds(labels, proto.seeds, name)


def handler(args: argparse.Namespace) -> int:
    from rnnbench.report.ablations import build_ablation_report

    check_engine_arguments(args)
    quick = args.quick
    out = Path(args.out or ("rnnbench-ablations-quick" if quick else "rnnbench-ablations"))
    report_dir = Path(args.report) if args.report else out / "report"
    stores = [Path(s) for s in (args.store or [])] or [out / "results.db"]
    command = command_line(args)
    if args.report_only:
        path = build_ablation_report(
            stores,
            report_dir,
            quick=quick,
            command=command,
            analyses=not args.no_analyses,
            samples=not args.no_samples,
            data_dir=args.data_dir,
        )
        print(f"ablation report: {path}")
        return 0
    if len(stores) > 1:
        raise RnnbenchError(
            "--store names one store when training; give several only with --report-only."
        )
    from rnnbench.store import Store
    from rnnbench.sweeps import run_sweep

    stage1, then = plan(args)
    preflight(args, stage1)
    if quick:
        print(
            "rnnbench: ablate --quick is a smoke test: its numbers do NOT follow the paper's "
            "protocol (JSB only, 4 variants, 2 learning rates, 2 seeds, at most 20 epochs).",
            file=sys.stderr,
        )
    with Store(stores[0]) as store:
        store.add_command(command)
        resume_from(args, store)
        if quick:
            store.set_meta("quick", 1)
        counts = run_sweep(stage1, store=store, out=out, then=then, **engine_kwargs(args))
    print(summary_line(counts, stores[0]))
    path = build_ablation_report(
        stores,
        report_dir,
        quick=quick,
        command=command,
        analyses=not args.no_analyses,
        samples=not args.no_samples,
        data_dir=args.data_dir,
    )
    print(f"ablation report: {path}" + ("  (quick: NOT the paper's protocol)" if quick else ""))
    return 1 if counts["failed"] else 0
