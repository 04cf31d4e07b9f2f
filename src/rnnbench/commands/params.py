"""``rnnbench params``: the paper's Table 1 parameter counts, and hidden sizes for a budget.

Without ``--budget``: for the paper's sizes, the recurrent layer counted in the paper's
convention (one bias vector per gate) and in ours (two, ``bias_ih`` and ``bias_hh``, as
``torch.nn``), the whole model, and Table 1's number beside them. With ``--budget N``: the
hidden size of each unit whose count comes closest to N.
"""

from __future__ import annotations

import argparse
import json

from rnnbench.errors import RnnbenchError

# The task names, spelled out so that building the parser imports no torch (rnnbench.models
# does); tests/cli/test_fast_cli.py checks they equal rnnbench.models.TASKS.
TASK_NAMES = ("music", "speech")

MATCH_KEYS = {
    "paper": "recurrent_params",
    "torch": "recurrent_params_torch",
    "total": "total_params",
}
MATCH_WORDS = {
    "paper": "the recurrent layer, paper convention",
    "torch": "the recurrent layer as our modules hold it",
    "total": "the whole model as our modules hold it",
}
CONVENTIONS = {
    "recurrent_params": "recurrent layer, paper convention: one bias vector per gate",
    "recurrent_params_torch": "recurrent layer as our modules hold it: two bias vectors per "
    "gate (bias_ih_l0, bias_hh_l0), as torch.nn",
    "total_params": "whole model as our modules hold it: recurrent layer + Linear(H, P)",
}


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"the budget must be at least 1, got {value}")
    return value


def register(subparsers) -> None:
    """Add the ``params`` parser to the CLI's subparsers."""
    p = subparsers.add_parser(
        "params",
        help="parameter counts of the paper's models; hidden sizes for a parameter budget",
        description=__doc__.split("\n\n", 1)[1].strip(),
    )
    p.add_argument(
        "--task",
        choices=sorted(TASK_NAMES),
        required=True,
        help="music (88 notes in and out, Bernoulli head) or speech (20 samples in, "
        "10 out, 20-component Gaussian mixture)",
    )
    p.add_argument(
        "--budget",
        type=_positive_int,
        metavar="N",
        help="find the hidden size of each unit closest to N parameters",
    )
    p.add_argument(
        "--match",
        choices=sorted(MATCH_KEYS),
        default="paper",
        help="what --budget counts: paper (recurrent layer, one bias per gate; "
        "default, as the paper), torch (recurrent layer as our modules hold it), "
        "total (whole model)",
    )
    p.add_argument(
        "--no-peephole",
        action="store_true",
        help="LSTM without the 3 peephole vectors (the cuDNN form)",
    )
    p.add_argument(
        "--reset",
        choices=["before", "after"],
        default="before",
        help="GRU reset-gate placement (does not change the count)",
    )
    p.add_argument(
        "--variant",
        metavar="NAME",
        action="append",
        help="count a unit variant too (docs/variants.md), e.g. --variant nig --variant mgu; "
        "'all' for every variant; each is a row after its unit",
    )
    p.add_argument(
        "--unit",
        metavar="UNIT",
        action="append",
        help="count a plug-in unit too (docs/units.md): mingru, minlstm, or "
        "path/to/cell.py:Class; matched to its budget_of unit at the paper's size, or to --budget",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=handler)


def _variant_rows(names: list[str] | None) -> list[tuple[str, str]]:
    """``(unit, variant)`` of every requested variant, in the registry's order."""
    from rnnbench.models import UNITS
    from rnnbench.nn import variants

    if not names:
        return []
    if "all" in names:
        return list(variants.VARIANTS)
    rows = []
    for name in names:
        units = [u for u in UNITS if name in variants.NAMES.get(u, ())]
        if not units:
            every = ", ".join(n for u in UNITS for n in variants.NAMES.get(u, ()))
            raise RnnbenchError(f"unknown variant {name!r}; use one of {every}, or all.")
        rows += [(u, name) for u in units if (u, name) not in rows]
    return [key for key in variants.VARIANTS if key in rows]


def collect(args: argparse.Namespace) -> dict:
    """Everything the command reports, as the ``--json`` object."""
    from rnnbench.models import TASKS, UNITS, count_params, match_hidden, paper_hidden, task_head

    spec = TASKS[args.task]
    peephole = not args.no_peephole
    head = task_head(args.task)
    units = {}
    extra = _variant_rows(getattr(args, "variant", None))
    rows = [(u, "") for u in UNITS]
    for key in extra:  # each variant right after its unit
        rows.insert(max(i for i, r in enumerate(rows) if r[0] == key[0]) + 1, key)
    from rnnbench.units.cli import resolve_unit_arg

    rows += [(resolve_unit_arg(u)[0], "") for u in getattr(args, "unit", None) or ()]
    for unit, variant in rows:
        hidden = None
        if args.budget is not None:
            hidden = match_hidden(
                args.task, unit, args.budget, peephole=peephole, count=args.match, variant=variant
            )
        elif variant:
            hidden = paper_hidden(args.task, unit, variant=variant, peephole=peephole)
        row = count_params(args.task, unit, hidden, peephole=peephole, variant=variant)
        row["form"] = {
            "lstm": "peephole" if peephole else "no peephole",
            "gru": f"reset {args.reset}",
        }.get(unit, "")
        if variant:
            row["form"] = variant
            if unit == "lstm" and not peephole and variant != "np":
                row["form"] += ", no peephole"
            if unit == "gru" and args.reset == "after" and variant not in ("after", "nrg"):
                row["form"] += ", reset after"
            row["variant"] = variant
        if args.budget is not None:
            row["matched_params"] = row[MATCH_KEYS[args.match]]
            row["difference"] = row["matched_params"] - args.budget
        units[f"{unit} {variant}" if variant else unit] = row
    return {
        "task": args.task,
        "in_dim": spec["in_dim"],
        "out_dim": spec["out_dim"],
        "head": spec["head"],
        "head_detail": repr(head),
        "components": getattr(head, "components", None),
        "n_outputs": head.n_outputs,
        "peephole": peephole,
        "reset": args.reset,
        "budget": args.budget,
        "match": args.match if args.budget is not None else None,
        "conventions": CONVENTIONS,
        "units": units,
    }


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = [f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths)]
    return [
        "  ".join(f.format(c) for f, c in zip(fmt, r, strict=True)).rstrip()
        for r in [header, *rows]
    ]


def _paper_cell(row: dict) -> str:
    n = row["paper_params"]
    if n is None:
        return "-"
    return f"{n:,}" if row["paper_exact"] else f"~{n / 1000:.1f}k"


def render(report: dict) -> str:
    """The human-readable table."""
    lines = []
    head = (
        f"a mixture of {report['components']} diagonal Gaussians"
        if report["head"] == "gmm"
        else "one Bernoulli per note"
    )
    what = f"{report['task']}: {report['in_dim']} inputs, {report['out_dim']} outputs, {head}"
    if report["budget"] is None:
        lines.append(f"Parameters of the paper's models (Table 1), {what}")
    else:
        lines.append(
            f"Hidden sizes closest to {report['budget']:,} parameters, counting "
            f"{MATCH_WORDS[report['match']]}; {what}"
        )
    lines.append("")
    header = ["unit", "hidden", "recurrent (paper)", "recurrent (ours)", "whole model (ours)"]
    header += ["paper Table 1"] if report["budget"] is None else ["matched - budget"]
    rows = []
    for unit, row in report["units"].items():
        base = unit.split()[0]
        name = f"{base} ({row['form']})" if row["form"] else unit
        cells = [
            name,
            str(row["hidden"]),
            f"{row['recurrent_params']:,}",
            f"{row['recurrent_params_torch']:,}",
            f"{row['total_params']:,}",
        ]
        cells += [_paper_cell(row)] if report["budget"] is None else [f"{row['difference']:+,}"]
        rows.append(cells)
    lines += _table(header, rows)
    lines += [
        "",
        "recurrent (paper): the recurrent layer with one bias vector per gate (the paper's "
        "convention).",
        "recurrent (ours):  the recurrent layer as our modules hold it, two bias vectors per "
        "gate (bias_ih_l0, bias_hh_l0).",
        f"whole model (ours): recurrent layer + output layer Linear(H, {report['n_outputs']}).",
    ]
    if report["budget"] is None and report["task"] == "music":
        lines.append(
            "Table 1's music counts are rounded and fit no convention with 88 inputs; the paper "
            "convention with a ~100-dim input (its 93-108-note rolls) gives 19,836 / 20,286 / "
            "20,100."
        )
    return "\n".join(lines)


def handler(args: argparse.Namespace) -> int:
    report = collect(args)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0
