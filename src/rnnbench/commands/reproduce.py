"""``rnnbench reproduce``: the paper's experiment (Chung et al. 2014) from one command.

For each data set × unit (the paper's forms: peephole LSTM, reset-before GRU; the paper's
sizes, Table 1):

1. learning-rate search: 10 candidates with log lr ~ U(-12, -6) (natural log), drawn once per
   data set (a generator seeded by a fixed number plus a stable hash of the data set), so every
   unit sees the same candidates; trained as one population with seed 0 (batch order 0);
2. fresh seeds: seeds 1..N (default N = 3) at the rate with the best validation NLL (a run
   that diverged counts from its best state), seed s with batch order s in every unit. Table 2,
   its intervals and the paired tests use these fresh seeds only: the search's run took part
   in choosing the rate, so it is left out of them.

Then it writes the report (Table 1, Table 2 with mean ± std over seeds, Figures 2-3, Markdown
and HTML) to OUT/report. Running the command again skips the runs already done and continues
interrupted ones. ``--quick`` is a smoke test that finishes in minutes on 2 CPU cores: JSB and
fsdd-a only, 3 candidates from the top of the range (log lr ~ U(-7.5, -6)), 2 seeds, at most 50
epochs (music) and 2 epochs (speech, with models of 20k parameters instead of the paper's 169k);
its numbers do not follow the paper's protocol, and every output says so. A study shortened by
hand (``--candidates``, ``--max-epochs``, ``--log-lr``, ``--weight-noise``) gets a banner on
every output naming each departure from the protocol. ``--search halving`` replaces the full
learning-rate search by successive halving (:mod:`rnnbench.train.halving`): at epochs r, ηr,
η²r, ... each search keeps its best ceil(n/η) rates still training and stops the others; the
report names it in its banner and shows the worker time it saved.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

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
from rnnbench.train.config import PROTOCOLS, UNITS
from rnnbench.train.presets import with_preset

PAPER_SETS = ("jsb", "nottingham", "musedata", "pianomidi", "fsdd-a", "fsdd-b")
QUICK_SETS = ("jsb", "fsdd-a")
# --quick: the top of the paper's range (few epochs favour large rates), and the caps below.
QUICK_LOG_LR = (-7.5, -6.0)
# Measured on a 2-core machine shared with other jobs: a JSB population of 3 takes 0.2-0.5 s
# per epoch; one fsdd-a epoch of a population of 3 takes ~4 min at the paper's speech sizes
# (169k parameters) but ~30 s at 20k. With 30 / 1 epochs the whole --quick took 2 min 13 s
# (2 workers); 50 / 2 keeps it well under 10 minutes.
QUICK = {
    "candidates": 3,
    "seeds": 2,
    "max_epochs": {"music": 50, "speech": 2},
    "patience": 5,
    "speech_budget": 20000,
}


def add_search_arguments(p) -> None:
    """``--search``, ``--search-eta``, ``--search-min-epochs`` (issue 14; reproduce, ablate)."""
    p.add_argument(
        "--search",
        choices=("full", "halving"),
        default="full",
        help="how the learning-rate search stops candidates: full (default, the paper's: each "
        "runs to its own stopping rule) or halving (successive halving: at epochs r, ηr, η²r, "
        "... each search keeps the best 1/η of its rates still training; docs/training.md)",
    )
    p.add_argument(
        "--search-eta",
        type=int,
        metavar="η",
        help="with --search halving: keep ceil(n/η) rates at each rung (default 3)",
    )
    p.add_argument(
        "--search-min-epochs",
        type=int,
        metavar="R",
        help="with --search halving: the first rung's epoch (default 27)",
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="run the paper's experiment and write the report",
        description=__doc__.split("\n\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a few-minute smoke test (jsb and fsdd-a, 3 rates, 2 seeds, capped "
        "epochs); does NOT follow the paper's protocol",
    )
    p.add_argument(
        "--sets", nargs="+", metavar="SET", help=f"data sets (default: {' '.join(PAPER_SETS)})"
    )
    p.add_argument(
        "--units",
        nargs="+",
        metavar="UNIT",
        choices=[*UNITS, "mingru", "minlstm", "mingru2", "minlstm2"],
        help="units (default: tanh lstm gru; also mingru minlstm mingru2 minlstm2)",
    )
    p.add_argument(
        "--unit",
        action="append",
        metavar="SPEC",
        help="add a user unit (path/to/cell.py:Class, package.module:Class or an rnnbench.units "
        "entry point; docs/units.md), at its matched size; repeatable",
    )
    p.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="fresh seeds per data set and unit at the chosen rate (default 3, and at least 3; "
        "--quick: default 2, at least 1); the search's own run is not among them",
    )
    p.add_argument(
        "--candidates",
        type=int,
        metavar="N",
        help="learning-rate candidates (default 10; --quick 3)",
    )
    p.add_argument(
        "--log-lr",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="draw the learning-rate candidates from ln lr ~ U(LOW, HIGH) (default -12 -6, the "
        "paper's; --quick -7.5 -6): with few epochs, the top of the range",
    )
    p.add_argument(
        "--max-epochs",
        type=int,
        metavar="N",
        help="at most this many epochs per run (default 500; --quick 50 music, 2 speech)",
    )
    p.add_argument(
        "--lr-decay",
        type=float,
        metavar="F",
        help="decay each run's learning rate linearly to F times itself at the epoch cap "
        "(default: constant; the authors' code used 0.01)",
    )
    p.add_argument(
        "--weight-noise",
        type=float,
        metavar="S",
        help="weight-noise standard deviation of every run (default 0.075, the paper's; 0 "
        "turns it off)",
    )
    p.add_argument(
        "--noise-output",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="weight noise also on the output layer (default: on for music, off for speech; "
        "--no-noise-output: the recurrent layer only everywhere, as the authors' code)",
    )
    p.add_argument(
        "--bptt",
        type=int,
        metavar="N",
        help="truncate backpropagation to windows of N steps (default: whole sequences, the "
        "paper's; FSDD-B's tanh RNN needs it: its gradient overflows through 798 steps)",
    )
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="paper",
        help="paper (default) or authors: the authors' code's recipe for every run (batch 1, "
        "summed cost, RMSProp eps 0.01 as a floor, the update clipped instead of the gradient, "
        "lr decayed to 1%%, no early stopping, noise on the recurrent layer only; "
        "docs/training.md); the options above override its values",
    )
    add_search_arguments(p)
    p.add_argument(
        "--out",
        metavar="DIR",
        help="results folder: DIR/runs, DIR/results.db, DIR/report "
        "(default ./rnnbench-results, --quick ./rnnbench-quick)",
    )
    p.add_argument(
        "--no-samples",
        action="store_true",
        help="leave the Samples section (audio and pictures of each cell's samples) out of "
        "the report",
    )
    add_engine_arguments(p)
    p.set_defaults(func=handler)


def plan(args: argparse.Namespace):
    """The stage-1 populations and the function that chains stage 2 after each of them."""
    from rnnbench.sweeps.grid import Population, task_of
    from rnnbench.train.config import RunConfig

    proto = search_protocol(args)
    sets = args.sets or list(QUICK_SETS if proto.quick else PAPER_SETS)
    from rnnbench.units import registry

    mine = [registry.load(spec).name for spec in getattr(args, "unit", None) or ()]
    units = list(dict.fromkeys([*(args.units or UNITS), *mine]))
    labels = {"sweep": "reproduce", "quick": proto.quick}

    def hidden(dataset: str, unit: str) -> int | None:
        if not proto.quick or task_of(dataset) != "speech":
            return None  # the paper's size (Table 1)
        from rnnbench.models import match_hidden

        return match_hidden("speech", unit, QUICK["speech_budget"])

    stage1 = []
    for dataset in sets:
        lrs = proto.candidates(dataset)  # every unit of a data set sees the same rates
        for unit in units:
            configs = [
                RunConfig(
                    dataset=dataset,
                    unit=unit,
                    unit_source=registry.source_of(unit),
                    lr=lr,
                    seed=0,
                    hidden=hidden(dataset, unit),
                    **proto.settings(dataset),
                )
                for lr in lrs
            ]
            stage1.append(Population(configs, {**labels, "stage": "lr"}, f"{dataset}/{unit} lr"))
    return stage1, chain_fresh_seeds(labels, proto.seeds)


@dataclass(frozen=True)
class SearchProtocol:
    """What ``reproduce`` and ``ablate`` share: the checked options of the paper's
    learning-rate search and fresh seeds (:func:`search_protocol`)."""

    quick: bool
    seeds: int  # fresh seeds per cell at the chosen rate
    count: int  # learning-rate candidates per data set
    low: float  # ln lr range of the candidates
    high: float
    overrides: dict  # RunConfig fields every run gets (epochs, noise, bptt, ...)
    quick_epochs: dict  # --quick: max_epochs per task when --max-epochs is not given
    protocol: str = "paper"  # the training preset (--protocol), under the overrides

    def candidates(self, dataset: str) -> list[float]:
        """The data set's candidate rates: one draw per data set (and range), so every unit,
        form and variant of it sees the same ones."""
        from rnnbench.sweeps.grid import lr_candidates, stable_seed

        return lr_candidates(self.count, seed=stable_seed(dataset), low=self.low, high=self.high)

    def settings(self, dataset: str) -> dict:
        """The RunConfig fields of every run on ``dataset`` (besides unit, lr, seed, size)."""
        from rnnbench.sweeps.grid import task_of

        out = dict(self.overrides)
        if self.quick and "max_epochs" not in out:
            out["max_epochs"] = self.quick_epochs[task_of(dataset)]
        return with_preset({"protocol": self.protocol, **out})


def search_protocol(args: argparse.Namespace, quick_defaults: dict = QUICK) -> SearchProtocol:
    """Check the options of the learning-rate search and the fresh seeds (``--seeds``,
    ``--candidates``, ``--log-lr``, ``--max-epochs``, ``--lr-decay``, ``--weight-noise``,
    ``--noise-output``, ``--bptt``, ``--quick``, ``--protocol``) and return them; one sentence
    per bad value. ``quick_defaults`` holds ``candidates``, ``seeds``, ``max_epochs`` (per
    task), ``patience`` and, optionally, ``log_lr`` for ``--quick``."""
    from rnnbench.sweeps.grid import LOG_LR_HIGH, LOG_LR_LOW

    quick = bool(args.quick)
    seeds = args.seeds if args.seeds is not None else (quick_defaults["seeds"] if quick else 3)
    count = (
        args.candidates
        if args.candidates is not None
        else (quick_defaults["candidates"] if quick else 10)
    )
    if seeds < (1 if quick else 3):
        raise RnnbenchError(
            f"--seeds {seeds} is too few: the report's error bars need at least 3 (use --quick "
            "for a smoke test)."
            if not quick
            else f"--seeds {seeds}: use 1 or more."
        )
    if count < 1:
        raise RnnbenchError(f"--candidates {count}: use 1 or more.")
    if args.max_epochs is not None and args.max_epochs < 1:
        raise RnnbenchError(f"--max-epochs {args.max_epochs}: use 1 or more.")
    bptt = getattr(args, "bptt", None)
    if bptt is not None and bptt < 1:
        raise RnnbenchError(
            f"--bptt {bptt}: use a window of 1 or more steps, or leave it out for whole sequences."
        )
    noise = getattr(args, "weight_noise", None)
    if noise is not None and not (math.isfinite(noise) and noise >= 0):
        raise RnnbenchError(f"--weight-noise {noise}: use a number >= 0 (0 turns the noise off).")
    low, high = getattr(args, "log_lr", None) or (
        quick_defaults.get("log_lr", QUICK_LOG_LR) if quick else (LOG_LR_LOW, LOG_LR_HIGH)
    )
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise RnnbenchError(
            f"--log-lr {low:g} {high:g} is not a range: give LOW < HIGH, natural logs of learning "
            f"rates (the paper's: {LOG_LR_LOW:g} {LOG_LR_HIGH:g})."
        )
    overrides: dict = {}
    if args.max_epochs is not None:
        overrides["max_epochs"] = args.max_epochs
    if quick:
        overrides["patience"] = quick_defaults["patience"]
    if getattr(args, "lr_decay", None) is not None:
        overrides["lr_decay"] = args.lr_decay
    if bptt is not None:
        overrides["bptt"] = bptt
    if noise is not None:
        overrides["weight_noise"] = noise
    if getattr(args, "noise_output", None) is not None:
        overrides["noise_output"] = args.noise_output
    overrides.update(search_fields(args))  # --search halving (issue 14)
    return SearchProtocol(
        quick,
        seeds,
        count,
        low,
        high,
        overrides,
        dict(quick_defaults["max_epochs"]),
        getattr(args, "protocol", "paper"),
    )


def chain_fresh_seeds(labels: dict, seeds: int, name=None):
    """The ``then`` of a search: after a population of stage ``lr`` finishes, the fresh seeds
    (:func:`fresh_seeds`) at its best rate (``common.best_lr``), one population with
    ``labels`` and stage ``seeds`` (each seed reads its own batch order, issue 22).
    ``name(config)`` names a cell in messages (default ``dataset/unit``)."""
    from rnnbench.sweeps import common
    from rnnbench.sweeps.grid import Population

    name = name or (lambda c: f"{c.dataset}/{c.unit}")

    def then(pop: Population, runs: list[dict]) -> list[Population]:
        if pop.labels.get("stage") != "lr" or seeds < 1:
            return []
        lr = common.best_lr(runs)
        c = pop.configs[0]
        if lr is None:
            print(
                f"rnnbench: {name(c)}: every learning rate diverged or failed; no seeds to run",
                file=sys.stderr,
            )
            return []
        members = fresh_seeds(c, lr, seeds)
        label = f"seed {members[0][0]}" if len(members) == 1 else f"seeds 1-{len(members)}"
        configs = [config for _, config in members]
        return [Population(configs, {**labels, "stage": "seeds"}, f"{name(c)} {label}")]

    # How many runs ``then`` chains after a population: the progress bar's total from the start.
    then.runs_after = lambda pop: seeds if pop.labels.get("stage") == "lr" else 0
    return then


def search_fields(args: argparse.Namespace) -> dict:
    """The ``RunConfig`` search fields of ``--search``, ``--search-eta``,
    ``--search-min-epochs`` (none for the paper's full search)."""
    strategy = getattr(args, "search", None) or "full"
    eta, first = getattr(args, "search_eta", None), getattr(args, "search_min_epochs", None)
    if strategy == "full":
        if eta is not None or first is not None:
            raise RnnbenchError(
                "--search-eta and --search-min-epochs set successive halving; add "
                "--search halving, or leave them out for the paper's full search."
            )
        return {}
    if eta is not None and eta < 2:
        raise RnnbenchError(f"--search-eta {eta}: use 2 or more (3 keeps a third at each rung).")
    if first is not None and first < 1:
        raise RnnbenchError(f"--search-min-epochs {first}: use an epoch of 1 or more.")
    cap = getattr(args, "max_epochs", None)
    if first is not None and cap is not None and first >= cap:
        raise RnnbenchError(
            f"--search-min-epochs {first} is not below --max-epochs {cap}, so no rung would "
            "ever stop a candidate; lower --search-min-epochs or raise --max-epochs."
        )
    out = {"search": "halving"}
    if eta is not None:
        out["search_eta"] = eta
    if first is not None:
        out["search_min_epochs"] = first
    return out


def fresh_seeds(search, lr: float, count: int) -> list:
    """``(s, config)`` for seeds 1..count at ``lr``: seed s sets the initial weights, the
    weight noise and the batch order (``data_seed = s``), the same in every unit, so that
    pairing by seed pairs runs that saw the same batches. They train as one population, each
    member reading its own batch order (:mod:`rnnbench.train.minibatches`). They keep the
    search's ``search`` fields, so a study's runs stay one experiment, but a population of one
    rate is never cut by halving."""
    from rnnbench.train.config import RunConfig

    base = search.to_dict()
    return [
        (s, RunConfig.from_dict({**base, "lr": lr, "seed": s, "data_seed": s}))
        for s in range(1, count + 1)
    ]


def quick_banner(stage1, args: argparse.Namespace) -> str:
    """The --quick warning, with the counts of this run (its --sets, --seeds, ...)."""
    sets = len(dict.fromkeys(p.configs[0].dataset for p in stage1))
    rates = len(stage1[0].configs) if stage1 else 0
    seeds = args.seeds if args.seeds is not None else QUICK["seeds"]

    def n(count: int, what: str) -> str:
        return f"{count} {what}{'' if count == 1 else 's'}"

    return (
        "rnnbench: --quick is a smoke test: its numbers do NOT follow the paper's protocol "
        f"({n(sets, 'data set')}, {n(rates, 'learning rate')}, {n(seeds, 'seed')}, capped "
        "epochs, small speech models)."
    )


def handler(args: argparse.Namespace) -> int:
    from rnnbench.store import Store
    from rnnbench.sweeps import run_sweep

    check_engine_arguments(args)
    quick = args.quick
    out = Path(args.out or ("rnnbench-quick" if quick else "rnnbench-results"))
    store_path = Path(args.store) if args.store else out / "results.db"
    stage1, then = plan(args)
    preflight(args, stage1)
    if quick:
        print(quick_banner(stage1, args), file=sys.stderr)
    with Store(store_path) as store:
        store.add_command(command_line(args))
        resume_from(args, store)
        if quick:
            store.set_meta("quick", 1)
        counts = run_sweep(stage1, store=store, out=out, then=then, **engine_kwargs(args))
    print(summary_line(counts, store_path))
    from rnnbench.report import build_report

    report = build_report(
        store_path,
        out / "report",
        quick=quick,
        command=command_line(args),
        samples=not args.no_samples,
        data_dir=args.data_dir,
    )
    print(f"report: {report}" + ("  (quick: NOT the paper's protocol)" if quick else ""))
    return 1 if counts["failed"] else 0
