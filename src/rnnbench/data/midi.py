"""MIDI files <-> 88-key piano rolls.

Reading (``midi:PATH``): every ``*.mid``/``*.midi`` file under PATH (sub-folders included)
becomes one roll. Resolution, chosen in the data set name:

- ``midi:PATH?fpb=N`` — N frames per beat, following the file's tempo map (default ``fpb=4``,
  sixteenth notes);
- ``midi:PATH?fps=N`` — N frames per second of real time.

A note sounds from frame ``round(start)`` to ``round(end)`` (exclusive) in frame units, and
at least one frame. Drum tracks and notes outside MIDI 21..108 are dropped. Files are split
into train/valid/test by :func:`rnnbench.data.names.hash_split` (10% test, 10% valid).

Bound: a file may give at most ``max_frames`` frames (default :data:`MAX_FRAMES`, 100,000: 23
times the longest piece of the four benchmarks, 4,273 frames; 8.8 MB of roll). A longer
file (a stray note millions of beats long would otherwise ask for gigabytes) is refused with
its name, its length and the limit; ``midi:PATH?maxframes=N`` raises the limit.

Writing: :func:`roll_to_midi` turns a (T, 88) roll back into a piano MIDI file at ``fps``
frames per second, so model samples can be listened to.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from rnnbench.data.pickle_format import HIGH, KEYS, LOW
from rnnbench.errors import RnnbenchError

DEFAULT_FPB = 4
MAX_FRAMES = 100_000


def midi_to_roll(
    path: str | Path,
    *,
    fps: float | None = None,
    fpb: float | None = None,
    max_frames: int = MAX_FRAMES,
) -> np.ndarray:
    """A (T, 88) uint8 roll of the MIDI file at ``path`` (``fps`` or ``fpb``, default fpb=4);
    T is at most ``max_frames``."""
    import pretty_midi

    path = Path(path)
    if fps is not None and fpb is not None:
        raise RnnbenchError(
            "Give either fps (frames per second) or fpb (frames per beat), not both."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pm = pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # mido/pretty_midi raise many types on bad bytes
        raise RnnbenchError(
            f"{path} is truncated or not a valid MIDI file ({type(exc).__name__}); replace or "
            f"remove it."
        ) from None
    notes = [
        n
        for inst in pm.instruments
        if not inst.is_drum
        for n in inst.notes
        if LOW <= n.pitch <= HIGH and n.end > n.start
    ]
    if not notes:
        raise RnnbenchError(
            f"{path} has no piano-range notes (MIDI {LOW}..{HIGH}, drums excluded); remove it "
            f"from the folder."
        )
    starts = np.array([n.start for n in notes])
    ends = np.array([n.end for n in notes])
    if fps is not None:
        a, b = starts * fps, ends * fps
    else:
        a = _beat_position(pm, starts, fpb or DEFAULT_FPB)
        b = _beat_position(pm, ends, fpb or DEFAULT_FPB)
    first = np.rint(a).astype(np.int64)
    last = np.maximum(np.rint(b).astype(np.int64), first + 1)
    frames = int(last.max())
    if frames > max_frames:
        raise RnnbenchError(
            f"{path} would give a piano roll of {frames:,} frames, more than the limit of "
            f"{max_frames:,} (a note or tempo far out of range?); fix or remove the file, or "
            f"raise the limit with ?maxframes=N in the data set name."
        )
    roll = np.zeros((frames, KEYS), dtype=np.uint8)
    for n, i, j in zip(notes, first, last, strict=True):
        roll[i:j, n.pitch - LOW] = 1
    return roll


def _beat_position(pm, times: np.ndarray, fpb: float) -> np.ndarray:
    """Times in seconds -> positions in frames, ``fpb`` frames per beat (quarter note) of the
    file's tempo map (120 bpm when the file sets none)."""
    changes, tempi = pm.get_tempo_changes()
    if len(changes) == 0:
        changes, tempi = np.array([0.0]), np.array([120.0])
    changes = np.asarray(changes, dtype=float)
    rate = np.asarray(tempi, dtype=float) / 60.0  # beats per second in each tempo segment
    cum = np.concatenate([[0.0], np.cumsum(np.diff(changes) * rate[:-1])])
    i = np.clip(np.searchsorted(changes, times, side="right") - 1, 0, None)
    return (cum[i] + (times - changes[i]) * rate[i]) * fpb


def load_midi_folder(
    folder: str | Path, *, fps=None, fpb=None, maxframes: int = MAX_FRAMES
) -> dict[str, list[np.ndarray]]:
    """Rolls per split for every MIDI file under ``folder`` (deterministic hash split)."""
    from rnnbench.data.names import hash_split

    folder = Path(folder).expanduser()
    if folder.is_file():
        raise RnnbenchError(
            f"{folder} is a file, but midi:PATH takes a folder of MIDI files; give its folder, "
            f"or put the file in a folder of its own."
        )
    if not folder.is_dir():
        raise RnnbenchError(f"MIDI folder {folder} does not exist; give midi:PATH of a folder.")
    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi") and p.is_file()
    )
    if not files:
        raise RnnbenchError(
            f"No .mid or .midi files found under {folder}; put MIDI files there or fix the path."
        )
    names = {p.relative_to(folder).as_posix(): p for p in files}
    split = hash_split(list(names))
    return {
        s: [midi_to_roll(names[n], fps=fps, fpb=fpb, max_frames=maxframes) for n in split[s]]
        for s in split
    }


def roll_to_midi(
    roll: np.ndarray, path: str | Path, fps: float = 8.0, *, velocity: int = 80, program: int = 0
) -> Path:
    """Write a (T, 88) roll (values > 0.5 sound) as a one-track piano MIDI file.

    Frame t lasts from t/fps to (t+1)/fps seconds; consecutive sounding frames of one key
    form one note. The file is written atomically. Returns the path.
    """
    import pretty_midi

    roll = np.asarray(roll)
    if roll.ndim != 2 or roll.shape[1] != KEYS:
        raise RnnbenchError(f"A piano roll must have shape (T, {KEYS}), not {roll.shape}.")
    if fps <= 0:
        raise RnnbenchError(f"fps must be positive, not {fps}.")
    on = np.asarray(roll > 0.5, dtype=np.int8)
    padded = np.zeros((on.shape[0] + 2, KEYS), dtype=np.int8)
    padded[1:-1] = on
    change = np.diff(padded, axis=0)
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    for key in range(KEYS):
        begins = np.flatnonzero(change[:, key] == 1)
        stops = np.flatnonzero(change[:, key] == -1)
        for b, e in zip(begins, stops, strict=True):
            inst.notes.append(
                pretty_midi.Note(velocity=velocity, pitch=key + LOW, start=b / fps, end=e / fps)
            )
    pm.instruments.append(inst)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        pm.write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
