"""``rnnbench sample``: draw samples from trained runs as MIDI, WAV and PNG files.

From run folders (``rnnbench sample OUT/runs/KEY ...``), or from a results store's cell
(``--store PATH --dataset D --unit U [--form F]``: the cell's chosen run, the seed with the
lowest validation NLL at the chosen learning rate, as the report picks it; ``--all-seeds``:
every seed at that rate). Drawing and writing: :mod:`rnnbench.samples`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rnnbench.data.names import DATA_DIR_HELP
from rnnbench.errors import RnnbenchError

FORMATS = ("auto", "midi", "wav", "both")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sample",
        help="draw samples from trained runs as MIDI / WAV files with piano-roll or "
        "spectrogram pictures",
        description=(
            "Draw samples from the best weights of trained runs. Music: a standard MIDI file "
            "at the data set's framing and a piano-roll PNG (--format wav or both: also an "
            "audio rendering); speech: a WAV at the data set's sample rate, un-standardised, "
            "and a waveform-and-spectrogram PNG. With --prime N the sample continues the first "
            "N steps of a test sequence, and the real continuation is written beside it "
            "(STEM-real.*). The same --seed gives the same samples."
        ),
    )
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run folders (OUT/runs/KEY)")
    p.add_argument("--store", action="append", metavar="PATH", help="results store(s) of a cell")
    p.add_argument("--dataset", metavar="D", help="the cell's data set (with --store)")
    p.add_argument(
        "--unit",
        metavar="UNIT",
        help="the cell's unit (with --store); a user unit's path/to/cell.py:Class loads it "
        "(needed to sample its runs, also from run folders)",
    )
    p.add_argument(
        "--form",
        metavar="F",
        help="the cell's form as the report labels it, e.g. 'peephole', 'reset after' "
        "(default: the paper's form, or the only one)",
    )
    p.add_argument(
        "--all-seeds",
        action="store_true",
        help="with --store: every seed at the chosen rate, not only the best",
    )
    p.add_argument(
        "--out",
        default="rnnbench-samples",
        metavar="DIR",
        help="folder to write into (default ./rnnbench-samples)",
    )
    p.add_argument("--count", type=int, default=1, metavar="N", help="samples per run (1)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, metavar="N", help="steps per sample")
    length.add_argument(
        "--seconds",
        type=float,
        metavar="S",
        help="length in seconds (default: 16 s of music, 1 s of speech)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the draws (0)")
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        metavar="T",
        help="below 1 sharpens, above 1 flattens the model's distribution (1: as trained)",
    )
    p.add_argument("--prime", type=int, default=0, metavar="N", help="prime on N test steps")
    p.add_argument(
        "--prime-from", type=int, default=0, metavar="I", help="the test sequence to prime on (0)"
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="auto: MIDI for music, WAV for speech; wav: music rendered to audio too; both",
    )
    p.add_argument(
        "--audio-format",
        choices=("wav", "ogg", "flac"),
        default="wav",
        help="audio files: wav (16-bit PCM, the default), ogg (Vorbis, small) or flac",
    )
    p.add_argument("--fpb", type=float, help="music: frames per quarter note (default: the set's)")
    p.add_argument("--bpm", type=float, help="music: quarter notes per minute (default 120)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--data-dir", metavar="D", help=DATA_DIR_HELP)
    p.set_defaults(func=handler)


def _checkpoints(args) -> list:
    from rnnbench.samples import find_run_dir, load_checkpoint
    from rnnbench.units.names import BUILTIN

    if args.unit and args.unit not in BUILTIN:  # a user unit: only a command line loads it
        from rnnbench.units.registry import load

        name = load(args.unit).name
        args.unit = None if args.run_dirs else name
    if args.run_dirs and args.store:
        raise RnnbenchError("Give run folders or --store with a cell, not both.")
    if args.run_dirs:
        if args.dataset or args.unit or args.form or args.all_seeds:
            raise RnnbenchError(
                "--dataset, --unit, --form and --all-seeds choose a cell of --store; with run "
                "folders, leave them out."
            )
        return [load_checkpoint(d) for d in args.run_dirs]
    if not args.store:
        raise RnnbenchError(
            "Nothing to sample: give a run folder (OUT/runs/KEY) or --store PATH --dataset D "
            "--unit U."
        )
    if not args.dataset or not args.unit:
        raise RnnbenchError("With --store, name the cell with --dataset and --unit.")
    runs = cell_runs(args.store, args.dataset, args.unit, args.form, all_seeds=args.all_seeds)
    return [load_checkpoint(find_run_dir(r, args.store), status=r["status"]) for r in runs]


def cell_runs(stores, dataset: str, unit: str, form: str | None, *, all_seeds: bool) -> list:
    """The store rows of a cell's chosen run (or every seed at its chosen rate), as the report
    chooses them (:func:`rnnbench.report.results.build_cells`)."""
    from rnnbench.report.results import build_cells
    from rnnbench.report.stores import open_stores

    with open_stores(stores) as sources:
        cells = [c for c in build_cells(sources.runs) if c.dataset == dataset and c.unit == unit]
    if not cells:
        raise RnnbenchError(
            f"The store has no {dataset}/{unit} runs; check --dataset and --unit with "
            "`rnnbench runs`."
        )
    if form is not None:
        picked = [c for c in cells if c.form == form]
        if not picked:
            forms = ", ".join(repr(c.form) for c in cells)
            raise RnnbenchError(f"No {dataset}/{unit} cell has form {form!r}; forms: {forms}.")
    else:
        picked = [c for c in cells if c.is_paper_form] if len(cells) > 1 else cells
        if len(picked) != 1:
            forms = ", ".join(repr(c.form) for c in cells)
            raise RnnbenchError(
                f"{dataset}/{unit} has several cells ({forms}); choose one with --form."
            )
    cell = picked[0]
    if cell.best_run is None:
        raise RnnbenchError(
            f"The {dataset}/{cell.label} cell has no chosen run (its search is unfinished, or "
            "every run diverged or failed); finish training it or choose another cell."
        )
    return cell.chosen if all_seeds else [cell.best_run]


def handler(args: argparse.Namespace) -> int:
    from rnnbench.data.registry import load_dataset
    from rnnbench.sample_files import write_manifest, write_sample
    from rnnbench.samples import (
        build_population,
        draw,
        member_seed,
        music_framing,
        prime_frames,
        real_excerpt,
        steps_for_seconds,
    )

    if args.count < 1:
        raise RnnbenchError(f"--count must be at least 1, not {args.count}.")
    if args.prime < 0:
        raise RnnbenchError(f"--prime must be 0 or more steps, not {args.prime}.")
    checkpoints = _checkpoints(args)
    dataset = load_dataset(checkpoints[0].config["dataset"], args.data_dir)
    fmt = args.format
    if dataset.kind == "speech" and fmt in ("midi", "both"):
        raise RnnbenchError(
            f"{dataset.name} is a speech data set: its samples are audio, not notes; use "
            "--format wav (or auto)."
        )
    if dataset.kind == "speech" and (args.fpb or args.bpm):
        raise RnnbenchError("--fpb and --bpm set the tempo of music; leave them out for speech.")
    formats = {
        "auto": ("midi", "png") if dataset.kind == "music" else ("wav", "png"),
        "midi": ("midi", "png"),
        "wav": ("wav", "png"),
        "both": ("midi", "wav", "png"),
    }[fmt]
    framing = (
        music_framing(dataset, fpb=args.fpb, bpm=args.bpm) if dataset.kind == "music" else None
    )
    if args.steps is not None:
        steps = args.steps
    else:
        seconds = args.seconds or (16.0 if dataset.kind == "music" else 1.0)
        steps = steps_for_seconds(dataset, seconds, framing)
    if steps < 1:
        raise RnnbenchError(f"--steps must be at least 1, not {steps}.")
    prime = prime_frames(dataset, args.prime_from, args.prime)
    real = real_excerpt(dataset, args.prime_from, steps, args.prime) if args.prime else None
    model = build_population(checkpoints, dataset, copies=args.count, device=args.device)
    seeds = [member_seed(args.seed, c.key, j) for c in checkpoints for j in range(args.count)]
    frames = draw(model, seeds, steps, temperature=args.temperature, prime=prime)
    out = Path(args.out)
    entries = []
    for i, c in enumerate(checkpoints):
        for j in range(args.count):
            stem = f"{dataset.name.partition('?')[0].replace(':', '_').replace('/', '_')}"
            stem = f"{stem[:40]}-{c.config['unit']}-{c.key}-seed{args.seed}-{j}"
            title = (
                f"{c.config['unit']} run {c.key} (lr {c.config['lr']:.3g}, seed "
                f"{c.config['seed']}), sample {j}, seed {args.seed}"
            )
            written = write_sample(
                out,
                stem,
                dataset,
                frames[i * args.count + j],
                title=title,
                prime=prime,
                real=real if j == 0 else None,
                formats=formats,
                framing=framing,
                audio_ext=args.audio_format,
            )
            entries.append(
                {
                    "run": c.key,
                    "run_dir": str(c.run_dir),
                    "dataset": dataset.name,
                    "unit": c.config["unit"],
                    "lr": c.config["lr"],
                    "run_seed": c.config["seed"],
                    "best_epoch": c.epoch,
                    "valid_nll": c.valid_nll,
                    "sample": j,
                    "seed": args.seed,
                    "generator_seed": seeds[i * args.count + j],
                    "temperature": args.temperature,
                    "steps": steps,
                    "prime_steps": args.prime,
                    "prime_from": args.prime_from if args.prime else None,
                    "framing": framing.describe() if framing else None,
                    "sample_rate": dataset.meta.get("sample_rate"),
                    "files": {k: p.name for k, p in written.files.items()},
                    "device": args.device,
                    "command": shlex.join(["rnnbench", *getattr(args, "argv", [])]),
                }
            )
            for path in written.files.values():
                print(path)
    write_manifest(out / "samples.json", entries)
    print(f"{len(entries)} sample(s) written to {out} (samples.json lists them)", file=sys.stderr)
    return 0
