"""The Boulanger-Lewandowski (2012) pickle format, read without running code.

Format: a dict with keys ``'train'``, ``'valid'``, ``'test'``; each a list of sequences; each
sequence a list of time steps; each time step a list (or tuple) of the MIDI note numbers
sounding. :class:`RestrictedUnpickler` admits only dict, list, tuple, int, float and str (the
types pickle builds with its own opcodes); any reference to a class or function — the way a
malicious pickle runs code — is refused before anything is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from rnnbench.errors import RnnbenchError

LOW, HIGH = 21, 108  # the 88 piano keys, MIDI note numbers
KEYS = HIGH - LOW + 1


class RefusedPickle(pickle.UnpicklingError):
    """The pickle asked for a class or function, which could run code."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global (class or function) lookup."""

    def find_class(self, module, name):
        raise RefusedPickle(f"it refers to {module}.{name}")

    def persistent_load(self, pid):
        raise RefusedPickle("it uses a persistent id")


def safe_loads(data: bytes):
    """Unpickle ``data`` admitting only dict, list, tuple, int, float, str (and bytes/None)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def load_pickle_rolls(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Read a Boulanger-Lewandowski pickle into 88-key uint8 rolls per split."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RnnbenchError(f"Cannot read {path} ({exc.strerror}); check the path.") from None
    try:
        obj = safe_loads(data)
    except RefusedPickle as exc:
        raise RnnbenchError(
            f"{path} is not a plain piano-roll pickle ({exc}); only dicts, lists, numbers and "
            f"strings are accepted, so use the original data set file."
        ) from None
    except Exception as exc:  # truncated or garbage bytes raise many types
        raise RnnbenchError(
            f"{path} is truncated or corrupt ({type(exc).__name__}); download it again."
        ) from None
    if not isinstance(obj, dict) or not all(k in obj for k in ("train", "valid", "test")):
        raise RnnbenchError(
            f"{path} does not hold a dict with keys 'train', 'valid', 'test'; use a file in the "
            f"Boulanger-Lewandowski pickle format."
        )
    return {
        split: [_to_roll(seq, path, split, i) for i, seq in enumerate(obj[split])]
        for split in ("train", "valid", "test")
    }


def _to_roll(seq, path: Path, split: str, index: int) -> np.ndarray:
    where = f"{path} ({split} sequence {index})"
    if not isinstance(seq, list | tuple):
        raise RnnbenchError(f"{where} is not a list of time steps; the file is malformed.")
    roll = np.zeros((len(seq), KEYS), dtype=np.uint8)
    for t, step in enumerate(seq):
        if not isinstance(step, list | tuple):
            raise RnnbenchError(f"{where} step {t} is not a list of notes; the file is malformed.")
        for note in step:
            if isinstance(note, float) and note.is_integer():
                note = int(note)
            if not isinstance(note, int) or isinstance(note, bool) or not LOW <= note <= HIGH:
                raise RnnbenchError(
                    f"{where} step {t} holds note {note!r}, outside the piano's MIDI notes "
                    f"{LOW}..{HIGH}; fix or drop that note."
                )
            roll[t, note - LOW] = 1
    return roll
