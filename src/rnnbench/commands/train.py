"""``rnnbench train``: train one model (or one population) with the paper's protocol.

``--protocol authors`` trains with the authors' code's recipe instead (docs/training.md).

RMSProp, weight noise 0.075, gradient norm clipped to 1, early stopping on validation NLL
(docs/training.md). Several comma-separated ``--lr`` and ``--seed`` values train every
combination together as one population (stacked weights, one batched model); each member is
still its own run with its own folder, store row and result. Run folders:
``OUT/runs/<key>/`` (config.json, metrics.jsonl, best.pt, last.pt). Running the same command
again continues an interrupted run from its last epoch and returns a finished run at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from rnnbench.data.names import DATA_DIR_HELP
from rnnbench.errors import RnnbenchError
from rnnbench.train.config import PROTOCOLS, RunConfig
from rnnbench.train.presets import AUTHORS, with_preset

DEFAULTS = RunConfig(dataset="jsb", unit="lstm")


def _number_list(kind):
    def parse(text: str) -> list:
        try:
            values = [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a comma-separated list of {kind.__name__} values"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        return values

    return parse


def _with_default(p, flag: str, kind: type, metavar: str, text: str, spec: str = "") -> None:
    """An option whose default is the RunConfig field of the same name, shown in its help (left
    None when not given, so that ``--protocol authors`` can fill it from its preset)."""
    name = flag.removeprefix("--").replace("-", "_")
    default = getattr(DEFAULTS, name)
    authors = AUTHORS.get(name)
    also = f"; --protocol authors: {authors:{spec}}" if authors not in (None, default) else ""
    p.add_argument(
        flag,
        type=kind,
        default=None,
        metavar=metavar,
        help=f"{text} (default {default:{spec}}{also})",
    )


def register(subparsers) -> None:
    """Add the ``train`` parser to the CLI's subparsers."""
    p = subparsers.add_parser(
        "train",
        help="train a unit on a data set with the paper's protocol",
        description=__doc__.split("\n\n", 1)[1].strip(),
    )
    p.add_argument(
        "--dataset",
        required=True,
        metavar="NAME",
        help="jsb, nottingham, musedata, pianomidi, fsdd-a, fsdd-b, midi:PATH, wav:PATH, "
        "music:FILE",
    )
    from rnnbench.units.cli import UNIT_HELP

    p.add_argument("--unit", required=True, metavar="UNIT", help=UNIT_HELP)
    p.add_argument(
        "--peephole",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="LSTM with diagonal peepholes, the paper's form (default: on)",
    )
    p.add_argument(
        "--reset",
        choices=["before", "after"],
        default="before",
        help="GRU reset gate before (the paper) or after (cuDNN) the recurrent product",
    )
    p.add_argument(
        "--variant",
        default="",
        metavar="NAME",
        help="a variant of the unit (docs/variants.md): LSTM np, nig, nfg, nog, niaf, noaf, "
        "cifg, fb1; GRU after, nrg, nug, mgu (default: the full unit)",
    )
    p.add_argument(
        "--hidden",
        type=int,
        metavar="N",
        help="hidden units (default: the paper's size for the task and unit; a variant that "
        "removes gates: the size that matches the paper's parameter count)",
    )
    p.add_argument(
        "--lr",
        type=_number_list(float),
        default=[DEFAULTS.lr],
        metavar="X[,X...]",
        help=f"RMSProp learning rate(s) (default {DEFAULTS.lr:g})",
    )
    p.add_argument(
        "--seed",
        type=_number_list(int),
        default=[DEFAULTS.seed],
        metavar="N[,N...]",
        help="seed(s) of the initial weights and the weight noise (default 0)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="N",
        help="sequences per minibatch (default: 4 for music, 16 for speech; the authors used 1)",
    )
    _with_default(p, "--max-epochs", int, "N", "at most this many epochs")
    _with_default(p, "--patience", int, "N", "early-stopping patience in epochs")
    _with_default(p, "--weight-noise", float, "S", "weight-noise standard deviation")
    _with_default(p, "--clip", float, "X", "gradient-norm clipping threshold, 0 for none")
    p.add_argument(
        "--bptt",
        type=int,
        metavar="N",
        help="truncated-BPTT window in steps (default: whole sequences)",
    )
    p.add_argument(
        "--init",
        choices=["paper", "torch"],
        default=None,
        help="initialisation: paper (uniform ±0.1, orthogonal recurrent; the default) or torch",
    )
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="paper",
        help="paper (default: the paper's wording, docs/training.md) or authors (the authors' "
        "code, jych/librnn: batch 1, summed cost, RMSProp eps 0.01 as a floor, the update "
        "clipped to norm 1 instead of the gradient, lr decayed linearly to 1%% over the "
        "epochs, no early stopping, weight noise on the recurrent layer only); flags given "
        "beside it override its values",
    )
    _with_default(p, "--data-seed", int, "N", "seed of the minibatch order")
    _with_default(p, "--rms-decay", float, "X", "RMSProp decay")
    _with_default(p, "--rms-momentum", float, "X", "RMSProp momentum")
    _with_default(p, "--rms-eps", float, "X", "RMSProp epsilon", spec="g")
    p.add_argument(
        "--lr-decay",
        type=float,
        default=None,
        metavar="F",
        help="decay the learning rate linearly to F times itself at --max-epochs "
        "(default: constant; the authors' code used 0.01)",
    )
    p.add_argument(
        "--noise-output",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="weight noise also on the output layer (default: on for music, off for speech, "
        "where it cripples the mixture head; --no-noise-output: the recurrent layer only, "
        "as the authors' code)",
    )
    # issue 14: successive halving among the population's rates (rnnbench.train.halving)
    p.add_argument(
        "--search",
        choices=("full", "halving"),
        default="full",
        help="full (default): every member runs to its own stopping rule; halving: at epochs "
        "R, ηR, η²R, ... keep the best ceil(n/η) rates still training, stop the others",
    )
    p.add_argument("--search-eta", type=int, default=3, metavar="η", help="η (default 3)")
    p.add_argument(
        "--search-min-epochs", type=int, default=27, metavar="R", help="first rung (default 27)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="CPU threads for PyTorch and the kernels (default 1: at these model "
        "sizes one thread is fastest; more help large models and big batches)",
    )
    p.add_argument(
        "--data-dir",
        metavar="D",
        help=DATA_DIR_HELP,
    )
    p.add_argument(
        "--out",
        default="rnnbench-results",
        metavar="DIR",
        help="results folder; run folders go to DIR/runs/<key>/ (default ./rnnbench-results)",
    )
    p.add_argument(
        "--store", metavar="PATH", help="results store (default DIR/results.db of --out)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--json", action="store_true", help='print one JSON object (a population: {"runs": [...]})'
    )
    p.set_defaults(func=handler)


# Every RunConfig field but lr and seed (lists on the command line) comes from its own flag.
_FLAG_FIELDS = [f.name for f in dataclasses.fields(RunConfig) if f.name not in ("lr", "seed")]


def build_configs(args: argparse.Namespace) -> list[RunConfig]:
    """One RunConfig per (lr, seed) combination of the command line."""
    if args.protocol == "authors" and args.patience is not None:
        raise RnnbenchError(
            "--patience has no effect under --protocol authors (no early stopping: every run "
            "trains --max-epochs epochs and keeps its best validation state); drop it."
        )
    from rnnbench.units.cli import resolve_unit_arg

    args.unit, args.unit_source = resolve_unit_arg(args.unit)  # a user unit: loaded here
    given = {name: getattr(args, name) for name in _FLAG_FIELDS}
    fields = with_preset({name: v for name, v in given.items() if v is not None})
    configs = []
    for lr in args.lr:
        for seed in args.seed:
            configs.append(RunConfig(**fields, lr=lr, seed=seed))
    if len({c.key() for c in configs}) != len(configs):
        raise RnnbenchError("--lr or --seed repeats a value; give each value once.")
    return configs


def _line(result: dict) -> str:
    if result["status"] != "done":
        why = result.get("error") or "its loss stopped being finite"
        hint = "; try a smaller --lr" if "loss was not finite" in why else ""
        n = result["epochs"]
        return f"{result['status']} after {n} epoch{'' if n == 1 else 's'}: {why}{hint}"
    return (
        f"train {result['train_nll']:.4f}  valid {result['valid_nll']:.4f}  "
        f"test {result['test_nll']:.4f} (nats per step)"
    )


def handler(args: argparse.Namespace) -> int:
    import torch

    from rnnbench.commands.sweep import command_line
    from rnnbench.data.registry import load_dataset
    from rnnbench.store import Store
    from rnnbench.sweeps.common import read_metrics
    from rnnbench.train.population import resolve_device, train_population

    configs = build_configs(args)
    resolve_device(args.device)
    if args.threads < 1:
        raise RnnbenchError(f"--threads must be at least 1, not {args.threads}.")
    torch.set_num_threads(args.threads)
    load_dataset(args.dataset, args.data_dir)  # a missing data set fails before the store
    out = Path(args.out)
    run_dirs = [out / "runs" / c.key() for c in configs]
    store = Store(args.store or out / "results.db")
    store.add_command(command_line(args))
    keys = [c.key() for c in configs]
    finished: set[str] = set()
    started: list[bool] = []

    def record(k: int, result: dict) -> None:
        # A member that stops early is recorded at once: a later failure or Ctrl-C of the
        # members still training must not lose it. Every epoch of its metrics.jsonl goes in
        # too, as a sweep does: a live store write that failed is not lost.
        store.log_epochs(keys[k], read_metrics(run_dirs[k]))
        store.finish_run(keys[k], result["status"], result)
        finished.add(keys[k])

    def begin() -> None:
        # Only once this process holds every run folder's lock: a refused process must not
        # touch the rows of runs another process is training.
        for cfg, key, run_dir in zip(configs, keys, run_dirs, strict=True):
            store.start_run(key, cfg.to_dict(), str(run_dir))
            # Backfill epochs a failed store write (or a crash between the checkpoint and the
            # store) left out: metrics.jsonl is written with the checkpoint.
            store.log_epochs(key, read_metrics(run_dir))
        started.append(True)

    try:
        try:
            results = train_population(
                configs,
                out_dirs=run_dirs,
                data_dir=args.data_dir,
                device=args.device,
                on_epoch=lambda k, rec: store.log_epoch(keys[k], rec),
                on_result=record,
                progress=not args.no_progress,
                on_locked=begin,
            )
        except (Exception, KeyboardInterrupt) as exc:
            if not started:
                raise  # refused (a lock, a bad folder) before any run was marked started
            unfinished = [key for key in keys if key not in finished]
            if interrupted(exc):
                # Back to queued, as a sweep does: last.pt stays, the same command resumes.
                store.set_status(unfinished, "queued", only=["running"])
                if not isinstance(exc, KeyboardInterrupt):
                    raise KeyboardInterrupt from exc
            else:
                for key in unfinished:
                    store.finish_run(key, "failed", error=str(exc))
            raise
        for k, result in enumerate(results):
            if keys[k] not in finished:
                record(k, result)
    finally:
        store.close()

    rows = [
        {"key": key, "run_dir": str(run_dir), **result, "config": cfg.to_dict()}
        for cfg, key, run_dir, result in zip(configs, keys, run_dirs, results, strict=True)
    ]
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else {"runs": rows}))
    elif len(rows) == 1:
        print(_line(rows[0]))
        print(_where(rows[0]))
    else:
        for row in rows:
            cfg = row["config"]
            print(f"lr {cfg['lr']:g} seed {cfg['seed']}: {_line(row)}")
            print(f"  {_where(row)}")
    return 0


def _where(row: dict) -> str:
    """The last words of ``train``: the run folder and which epoch's weights are kept."""
    best = row.get("best_epoch")
    kept = f"best epoch {best} of {row['epochs']}" if best else "no best epoch"
    return f"{kept}; run folder {row['run_dir']} (best.pt, last.pt, metrics.jsonl)"


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is a stop (Ctrl-C, or SIGTERM, which the CLI turns into
    KeyboardInterrupt) rather than a failure: a KeyboardInterrupt, or an error raised while one
    was pending, such as the SystemError ("returned a result with an exception set") that
    native code gives when the signal handler's KeyboardInterrupt fires inside it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
