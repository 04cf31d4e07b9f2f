"""The four polyphonic music benchmarks as 88-key binary piano rolls.

Files (see ``data/music/SOURCE.md``): MATLAB v5 ``.mat`` files with cells
``traindata``, ``validdata``, ``testdata`` of (T x 88) arrays, or the original
Boulanger-Lewandowski pickles (read by :mod:`rnnbench.data.pickle_format`).

A roll of T frames becomes one :class:`Sequence` with ``inputs`` = frames 1..T-1 and
``targets`` = frames 2..T (float32, read-only views of one array).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from rnnbench.data.dataset import SPLITS, Dataset, Sequence
from rnnbench.data.pickle_format import KEYS
from rnnbench.errors import RnnbenchError

# name -> (file stem used in music/, original pickle file name)
MUSIC_SETS = {
    "jsb": ("JSB_Chorales", "JSB Chorales.pickle"),
    "nottingham": ("Nottingham", "Nottingham.pickle"),
    "musedata": ("MuseData", "MuseData.pickle"),
    "pianomidi": ("Piano_midi", "Piano-midi.de.pickle"),
}


def load_mat_rolls(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Read a ``.mat`` file into uint8 rolls per split, checking shape and binary values."""
    import scipy.io
    from scipy.io.matlab import MatReadError

    path = Path(path)
    try:
        mat = scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise RnnbenchError(f"{path} does not exist; check the path.") from None
    except (
        MatReadError,  # e.g. an empty or header-only file ("appears to be truncated")
        ValueError,
        TypeError,
        OSError,
        EOFError,
        IndexError,
        zlib.error,
        NotImplementedError,
        MemoryError,
        KeyError,
    ) as exc:
        raise RnnbenchError(
            f"{path} is truncated or not a MATLAB v5 file ({type(exc).__name__}: {exc}); "
            f"download it again with `rnnbench data fetch`."
        ) from None
    out = {}
    for split in SPLITS:
        key = f"{split}data"
        if key not in mat:
            raise RnnbenchError(
                f"{path} has no variable {key!r}; a music .mat file needs traindata, validdata "
                f"and testdata."
            )
        cells = np.asarray(mat[key]).ravel()
        rolls = []
        for i, cell in enumerate(cells):
            rolls.append(check_roll(np.asarray(cell), f"{path} ({split} sequence {i})"))
        out[split] = rolls
    return out


def check_roll(roll: np.ndarray, where: str) -> np.ndarray:
    """Return ``roll`` as uint8 after checking it is (T, 88) and holds only 0 and 1."""
    if roll.ndim != 2 or roll.shape[1] != KEYS:
        raise RnnbenchError(
            f"{where} has shape {roll.shape}, not (T, {KEYS}); store 88-key piano rolls "
            f"(MIDI notes 21..108)."
        )
    if roll.dtype.kind not in "biuf":
        raise RnnbenchError(f"{where} holds {roll.dtype} values; store numbers 0 and 1.")
    bad = (roll != 0) & (roll != 1)
    if bad.any():
        value = roll[bad].flat[0]
        raise RnnbenchError(
            f"{where} is not a binary piano roll (found value {value!r}); threshold it to 0/1 "
            f"(e.g. roll > 0) before use."
        )
    return roll.astype(np.uint8, copy=False)


def roll_sequence(roll: np.ndarray, source: str = "") -> Sequence:
    """Frames 1..T-1 as inputs, frames 2..T as targets (float32, shared read-only buffer)."""
    full = np.ascontiguousarray(roll, dtype=np.float32)
    full.setflags(write=False)
    return Sequence(inputs=full[:-1], targets=full[1:], source=source)


def music_dataset(
    name: str, rolls: dict[str, list[np.ndarray]], *, meta=None, source: str = ""
) -> Dataset:
    """A music :class:`Dataset` from uint8 rolls per split (sequences need >= 2 frames)."""
    splits = {}
    for split in SPLITS:
        seqs = []
        for i, roll in enumerate(rolls[split]):
            if roll.shape[0] < 2:
                raise RnnbenchError(
                    f"{source or name} {split} sequence {i} has {roll.shape[0]} frame(s); a "
                    f"sequence needs at least 2 frames, so drop it."
                )
            seqs.append(roll_sequence(roll, f"{name}:{split}:{i}"))
        splits[split] = seqs
    if not splits["train"]:
        raise RnnbenchError(f"{source or name} has no training sequences; add some.")
    return Dataset(
        name=name,
        kind="music",
        in_dim=KEYS,
        out_dim=KEYS,
        head="bernoulli",
        task="music",
        splits=splits,
        meta=dict(meta or {}),
        extra_info=music_stats(rolls),
    )


def music_stats(rolls: dict[str, list[np.ndarray]]) -> dict:
    """Statistics as in SOURCE.md: ``longest`` over all splits; ``keys_per_step``: the mean
    over training sequences of each sequence's mean number of keys down per frame."""
    all_rolls = [r for split in SPLITS for r in rolls[split]]
    train = rolls["train"]
    per_seq = [float(r.sum(axis=1).mean()) for r in train if r.shape[0]]
    return {
        "longest": int(max((r.shape[0] for r in all_rolls), default=0)),
        "keys_per_step": round(float(np.mean(per_seq)), 2) if per_seq else 0.0,
    }


def find_music_file(root: Path, name: str) -> Path | None:
    """The ``.mat`` (preferred) or original ``.pickle`` for a benchmark under ``root/music``."""
    stem, pickle_name = MUSIC_SETS[name]
    for candidate in (
        root / "music" / f"{stem}.mat",
        root / "music" / pickle_name,
        root / "music" / f"{stem}.pickle",
    ):
        if candidate.is_file():
            return candidate
    return None


def load_music_file(path: Path) -> dict[str, list[np.ndarray]]:
    """Rolls from a ``.mat`` or ``.pickle``/``.pkl`` file, chosen by extension."""
    from rnnbench.data.pickle_format import load_pickle_rolls

    if path.suffix.lower() in (".pickle", ".pkl"):
        return load_pickle_rolls(path)
    if path.suffix.lower() == ".mat":
        return load_mat_rolls(path)
    raise RnnbenchError(
        f"{path} is neither a .mat nor a .pickle file; give a music file with one of those endings."
    )
