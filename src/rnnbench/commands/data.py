"""``rnnbench data list | info NAME [--json] | fetch NAME|all``."""

from __future__ import annotations

import argparse
import json

from rnnbench.data.names import DATA_DIR_HELP


def register(subparsers) -> None:
    """Add the ``data`` command and its sub-commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help=DATA_DIR_HELP,
    )
    parser = subparsers.add_parser(
        "data",
        help="list, describe and download data sets",
        description="List, describe and download data sets.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", parents=[common], help="the data set names and whether present")
    p.set_defaults(func=_list)

    p = sub.add_parser("info", parents=[common], help="sequences, steps and padding per split")
    p.add_argument(
        "name", help="a data set name, e.g. jsb, fsdd-a, midi:PATH, wav:PATH, music:FILE"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="batch size for the padding fraction (default: training's, 4 music, 16 speech)",
    )
    p.set_defaults(func=_info)

    p = sub.add_parser("fetch", parents=[common], help="download and verify a data set")
    p.add_argument("name", help="jsb, nottingham, musedata, pianomidi, fsdd, music or all")
    p.add_argument("--force", action="store_true", help="download again even if verified")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_fetch)


def _state(root, name: str) -> str:
    """The checksum state of a built-in music set's file under ``root`` ('' for speech)."""
    from rnnbench.data.music import MUSIC_SETS, find_music_file
    from rnnbench.data.provenance import checksum_state

    if name not in MUSIC_SETS:
        return ""
    return checksum_state(find_music_file(root, name))


def _list(args) -> int:
    from rnnbench.data.locate import candidates
    from rnnbench.data.provenance import CHANGED
    from rnnbench.data.registry import DESCRIPTIONS, PATTERNS, holds, list_datasets

    looked = candidates(args.data_dir)
    print("data folders, in order: " + "; ".join(f"{r} ({o})" for r, o in looked))
    missing = False
    for name in list_datasets():
        found = next(((r, o) for r, o in looked if holds(r, name)), None)
        missing = missing or found is None
        mark = "present" if found else "missing"
        state = _state(found[0], name) if found else ""
        if state == CHANGED:
            mark = "changed"
        print(f"  {name:<12} {mark:<8} {DESCRIPTIONS[name]}")
        if found:
            print(f"  {'':<12} {'':<8} found in {found[0]} ({found[1]}){state and ', '}{state}")
        if state == CHANGED:
            print(
                f"  {'':<12} {'':<8} (truncated, or not the published file: `rnnbench data "
                f"fetch {name} --force` replaces it)"
            )
    if missing:
        print("  fetch a missing set with `rnnbench data fetch NAME` (SHA-256 checked).")
    for pattern in PATTERNS:
        print(f"  {pattern:<12} {'':<8} {DESCRIPTIONS[pattern]}")
    return 0


def _info(args) -> int:
    from rnnbench.data.registry import load_dataset

    info = load_dataset(args.name, args.data_dir).info(batch_size=args.batch_size)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(
        f"{info['name']}: {info['kind']}, input {info['in_dim']}, output {info['out_dim']}, "
        f"head {info['head']}; padding at batch {info['batch_size']}"
    )
    unit = "frames" if info["kind"] == "music" else "steps"
    for split, s in info["splits"].items():
        print(
            f"  {split:<6} {s['sequences']:>7,} sequences {s['steps']:>10,} {unit}  "
            f"padding {s['padding']:.1%}"
        )
    for key in ("longest", "keys_per_step", "sample_rate", "segment_samples"):
        if key in info:
            print(f"  {key}: {info[key]}")
    if "paper" in info:
        total = sum(s["sequences"] for s in info["splits"].values())
        paper = info["paper"]
        print(
            f"  paper: {paper['sequences']:,} x {paper['segment_samples']:,} samples "
            f"({paper['note']}); here {total:,} x {info['segment_samples']:,}"
        )
    return 0


def _fetch(args) -> int:
    from rnnbench.data.fetch import fetch

    for path, status in fetch(
        args.name, args.data_dir, force=args.force, progress=not args.no_progress
    ):
        print(f"{path}: {status}")
    return 0
