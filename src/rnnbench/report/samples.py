"""The report's "Samples" section: listen to and look at what each cell's chosen run learned.

For each cell with a chosen run (:attr:`rnnbench.report.results.Cell.best_run`: the seed with
the lowest validation NLL at the chosen learning rate), one sample drawn from its ``best.pt``
(:mod:`rnnbench.samples`; seed :data:`SEED`, temperature 1, started from silence, not primed):
:data:`MUSIC_SECONDS` of music or :data:`SPEECH_SECONDS` of speech, beside the real excerpt of
the same length (the start of the data set's first test sequence, running on into the next
ones when it is shorter: the same excerpt for every cell of a data set), played and drawn
under the sample.

Files go to ``REPORT/samples/``: music ``STEM.mid``, ``STEM-real.mid``, ``STEM.ogg`` (the
synthesized audio) and ``STEM.png`` (piano rolls); speech ``STEM.wav``, ``STEM-real.wav``
(16-bit, the data set's sample rate), ``STEM.ogg`` and ``STEM.png`` (waveform and
spectrogram). The HTML embeds the OGG Vorbis audio and the PNG as data URIs (Vorbis, not WAV,
to keep the page small) and links the MIDI and WAV files; ``report.md`` links them all.

A cell whose checkpoint is not on this machine keeps the sample already committed for it: when a
report is rebuilt from a report folder's exports (``--store FOLDER``) or into the folder that
holds it, the cell's files in ``FOLDER/samples/`` (named by its run) are copied and shown again,
marked as kept. Cells with neither are named in one sentence at the end; a cell whose data set
cannot be loaded gets one sentence; the report is still written.

A cell's chosen run can change when a report is rebuilt (a fresh seed finished, a run was
added): the files of runs no cell chooses any more are then removed from ``REPORT/samples/``
(:func:`drop_stale`), so a report folder holds only the samples its report shows. Only names
of the sample files' own pattern (``STEM.ogg`` and so on, the stem ending in a 16-digit run
key) are touched.
"""

from __future__ import annotations

import re
from pathlib import Path

from rnnbench.errors import RnnbenchError
from rnnbench.report import paper
from rnnbench.report.document import Block, Heading, Media, Para
from rnnbench.samples import find_run_dir, load_checkpoint

SEED = 0
MUSIC_SECONDS = 12.0
SPEECH_SECONDS = 2.0
FOLDER = "samples"


def samples_section(
    cells, out: Path, store_paths=(), *, data_dir=None, seed: int = SEED
) -> list[Block]:
    """The Samples section's blocks; writes the sample files under ``out/samples``."""
    blocks: list[Block] = [
        Heading("Samples", 2, "samples"),
        Para(
            f"One sample from each cell's chosen run (the seed with the lowest validation NLL "
            f"at the chosen learning rate), drawn with seed {seed} from silence, not primed: "
            f"{MUSIC_SECONDS:g} s of music, {SPEECH_SECONDS:g} s of speech. Music is rendered "
            "with a simple additive synthesizer (three harmonics per note, no instrument "
            "sound); the MIDI files are linked. Each picture shows the sample above a real "
            "test excerpt of the same length. Recreate or extend them with `rnnbench sample "
            "--store STORE --dataset D --unit U` (docs/samples.md)."
        ),
    ]
    ready = [c for c in cells if c.best_run is not None]
    if not ready:
        blocks.append(Para("No cell has a chosen run yet, so there is nothing to sample."))
        return blocks
    folder = Path(out) / FOLDER
    drop_stale(folder, {stem_of(c, c.best_run["key"]) for c in ready})
    datasets: dict[str, object] = {}
    headed: set[str] = set()
    absent: list[str] = []
    for cell in ready:
        info = paper.dataset_info(cell.dataset)
        title = f"{info.label}, {cell.label}"
        try:
            run_dir = find_run_dir(cell.best_run, store_paths)
        except RnnbenchError:
            kept = _kept(cell, title, Path(out), store_paths)
            if kept is None:
                absent.append(f"{title} (run {cell.best_run['key']})")
                continue
            if cell.dataset not in headed:
                headed.add(cell.dataset)
                blocks.append(Heading(info.label, 3))
            blocks.append(kept)
            continue
        if cell.dataset not in headed:
            headed.add(cell.dataset)
            blocks.append(Heading(info.label, 3))
        try:
            ckpt = load_checkpoint(run_dir, status=cell.best_run["status"])
            dataset = datasets.get(cell.dataset)
            if dataset is None:
                dataset = datasets[cell.dataset] = _load(cell.dataset, data_dir)
            blocks += _cell_media(cell, ckpt, dataset, folder, Path(out), seed, title)
        except RnnbenchError as exc:
            blocks.append(Para(f"{title}: no sample. {exc}"))
    if absent:
        blocks.append(
            Para(
                f"No sample for {len(absent)} of {len(ready)} cells, whose checkpoints are not "
                "on this machine (no best.pt where the store recorded the run, nor in runs/ "
                "beside the store; copy the run folders there to include them): "
                + "; ".join(absent)
                + "."
            )
        )
    return blocks


def stem_of(cell, key: str) -> str:
    """The file name stem of a cell's sample: data set, unit, form and run key."""
    base = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in cell.dataset)
    form = "".join(ch if ch.isalnum() else "-" for ch in cell.form).strip("-")
    return "-".join(x for x in (base[:40], cell.unit, form[:40], key) if x)


# A sample file's name: the stem (ending in the run's 16-digit key), "-real" for the real
# excerpt, and one of the written formats.
_SAMPLE_NAME = re.compile(r"^(?P<stem>.+-[0-9a-f]{16})(?:-real)?\.(?:ogg|png|mid|wav)$")


def drop_stale(folder: Path, stems: set[str]) -> list[str]:
    """Remove from ``folder`` the sample files whose stem is not in ``stems`` (runs that no
    cell chooses any more); returns the removed names. Other files are left alone."""
    removed: list[str] = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.iterdir()):
        m = _SAMPLE_NAME.match(path.name)
        if m is None or m["stem"] in stems or not path.is_file() or path.is_symlink():
            continue
        path.unlink()
        removed.append(path.name)
    return removed


# The files of one sample, by role: (music names, speech names); "-real" is the real excerpt.
_KEPT_FILES = {
    "music": ("{s}.ogg", "{s}-real.ogg", "{s}.png", "{s}.mid", "{s}-real.mid"),
    "speech": ("{s}.ogg", "{s}-real.ogg", "{s}.png", "{s}.wav", "{s}-real.wav"),
}
MAX_KEPT_BYTES = 64 * 2**20  # one committed sample file


def _kept(cell, title: str, out: Path, store_paths) -> Media | None:
    """The committed sample of a cell whose checkpoint is absent, copied into ``out/samples``
    from a report folder given as a store (or already there), or None when there is none."""
    import shutil

    from rnnbench.data.names import task_of

    key = cell.best_run["key"]
    stem = stem_of(cell, key)
    task = task_of(cell.dataset)
    names = [n.format(s=stem) for n in _KEPT_FILES[task]]
    target = out / FOLDER
    folders = [target] + [Path(p) / FOLDER for p in store_paths if Path(p).is_dir()]
    for folder in folders:
        paths = [folder / n for n in names]
        if not all(_plain_file(p) for p in paths):
            continue
        if folder.resolve() != target.resolve():
            target.mkdir(parents=True, exist_ok=True)
            for p in paths:
                shutil.copyfile(p, target / p.name)
        ogg, real_ogg, png, sample, real = (target / n for n in names)
        kind = "MIDI" if task == "music" else "WAV"
        run = cell.best_run
        nll = run.get("test_nll")
        return Media(
            root=out,
            title=title,
            caption=(
                f"run {key} (lr {run['config']['lr']:.3g}, seed {run['config'].get('seed', 0)}"
                + (f", test NLL {nll:.3f}" if nll is not None else "")
                + "). Kept from the committed report: this run's checkpoint is not on this "
                "machine, so the sample was not drawn again."
            ),
            audio=[("sample", ogg), ("real test excerpt", real_ogg)],
            image=png,
            links=[(kind, sample), (f"real {kind}", real)],
        )
    return None


def _plain_file(path: Path) -> bool:
    """A regular file (not a link) of at most :data:`MAX_KEPT_BYTES`."""
    try:
        return path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_KEPT_BYTES
    except OSError:
        return False


def _load(name: str, data_dir):
    from rnnbench.data.registry import load_dataset

    return load_dataset(name, data_dir)


def _cell_media(cell, ckpt, dataset, folder: Path, root: Path, seed, title) -> list[Block]:
    from rnnbench.sample_files import write_sample
    from rnnbench.samples import (
        build_population,
        draw,
        member_seed,
        real_excerpt,
        steps_for_seconds,
    )

    run = cell.best_run
    music = dataset.kind == "music"
    steps = steps_for_seconds(dataset, MUSIC_SECONDS if music else SPEECH_SECONDS)
    model = build_population([ckpt], dataset)
    frames = draw(model, [member_seed(seed, ckpt.key, 0)], steps)[0]
    real = real_excerpt(dataset, 0, steps)
    stem = stem_of(cell, ckpt.key)
    formats = ("midi", "wav", "png") if music else ("wav", "png")
    exts = ("ogg",) if music else ("wav", "ogg")
    w = write_sample(
        folder,
        stem,
        dataset,
        frames,
        title=f"sample: {title} (run {ckpt.key}, lr {run['config']['lr']:.3g}, "
        f"seed {run['config'].get('seed', 0)})",
        real=real,
        formats=formats,
        audio_ext=exts,
    )
    files = w.files
    caption = (
        f"run {ckpt.key} (lr {run['config']['lr']:.3g}, seed {run['config'].get('seed', 0)}, "
        f"test NLL {run['test_nll']:.3f})."
    )
    links = (
        [("MIDI", files["midi"]), ("real MIDI", files["real_midi"])]
        if music
        else [("WAV", files["wav"]), ("real WAV", files["real_wav"])]
    )
    return [
        Media(
            root=root,
            title=title,
            caption=caption,
            audio=[("sample", files["ogg"]), ("real test excerpt", files["real_ogg"])],
            image=files["png"],
            links=links,
        )
    ]
