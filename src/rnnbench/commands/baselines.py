"""``rnnbench baselines [--sets SET ...] [--json]``: per-note baselines on the music splits.

The per-note marginal and the per-note first-order Markov chain (each note an independent
two-state chain), fitted on each set's training split with add-half smoothing and scored
on train, valid and test as NLL per time step in nats, frame-weighted (Table 2's metric) and
averaged per sequence (``rnnbench.baselines``; numbers in docs/literature.md).
"""

from __future__ import annotations

import argparse
import json

from rnnbench.data.names import DATA_DIR_HELP

MUSIC_SETS = ("jsb", "nottingham", "musedata", "pianomidi")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "baselines",
        help="per-note marginal and Markov-chain baselines on the music splits",
        description=__doc__.split("\n\n", 1)[1].strip(),
    )
    p.add_argument(
        "--sets",
        nargs="+",
        metavar="SET",
        default=list(MUSIC_SETS),
        help=f"music data sets (default: {' '.join(MUSIC_SETS)}; also music:PATH, midi:PATH)",
    )
    p.add_argument(
        "--data-dir",
        metavar="D",
        help=DATA_DIR_HELP,
    )
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per row")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from rnnbench.baselines import music_baselines
    from rnnbench.data.registry import load_dataset

    rows = []
    for name in args.sets:
        rows += [r.as_dict() for r in music_baselines(load_dataset(name, args.data_dir))]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(
        f"{'data set':<12} {'baseline':<9} {'split':<6} {'frame-weighted':>14} "
        f"{'per sequence':>12} {'pieces':>6} {'steps':>7}"
    )
    for r in rows:
        print(
            f"{r['dataset']:<12} {r['baseline']:<9} {r['split']:<6} {r['frame_weighted']:>14.3f} "
            f"{r['per_sequence']:>12.3f} {r['sequences']:>6} {r['steps']:>7}"
        )
    print("NLL per time step in nats; fitted on the training split, add-half smoothing.")
    return 0
