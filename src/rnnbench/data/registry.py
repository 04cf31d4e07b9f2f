"""Data sets by name: ``list_datasets()`` and ``load_dataset(name, data_dir=None)``.

Names: ``jsb``, ``nottingham``, ``musedata``, ``pianomidi`` (music); ``fsdd-a``, ``fsdd-b``
(speech); user data ``midi:PATH`` (options ``fpb=N`` or ``fps=N``), ``wav:PATH`` (options
``sr=N``, ``seg=N``), and ``music:FILE`` for a ``.mat`` or Boulanger-Lewandowski ``.pickle``
file. Speech names also take ``?sr=N`` to resample. Loaded data sets are cached per process.
"""

from __future__ import annotations

from pathlib import Path

from rnnbench.data.dataset import Dataset
from rnnbench.data.locate import data_root, locate, missing
from rnnbench.data.music import MUSIC_SETS
from rnnbench.data.names import split_options
from rnnbench.errors import RnnbenchError

SPEECH_SETS = ("fsdd-a", "fsdd-b")
PATTERNS = ("midi:PATH", "wav:PATH", "music:FILE")
DESCRIPTIONS = {
    "jsb": "JSB Chorales, 88-key piano rolls (Boulanger-Lewandowski 2012)",
    "nottingham": "Nottingham folk tunes, 88-key piano rolls",
    "musedata": "MuseData classical pieces, 88-key piano rolls",
    "pianomidi": "Piano-midi.de classical piano, 88-key piano rolls",
    "fsdd-a": "Free Spoken Digit Dataset, 500-sample segments (like Ubisoft A)",
    "fsdd-b": "Free Spoken Digit Dataset, 8,000-sample segments per speaker (like Ubisoft B)",
    "midi:PATH": "your folder of MIDI files (?fpb=N frames per beat, default 4, or ?fps=N; "
    "?maxframes=N, default 100000)",
    "wav:PATH": "your folder of WAV files (?sr=N to resample, ?seg=N samples, default 500)",
    "music:FILE": "a .mat or Boulanger-Lewandowski .pickle piano-roll file",
}

_cache: dict[tuple[str, str], Dataset] = {}


def list_datasets() -> list[str]:
    """The built-in data set names (user data uses the ``midi:``/``wav:``/``music:`` forms)."""
    return [*MUSIC_SETS, *SPEECH_SETS]


def load_dataset(name: str, data_dir=None) -> Dataset:
    """Load a data set by name (see the module docstring).

    Built-in data sets are cached per process (keyed on the data folder and the files'
    modification times); user folders are re-read on each call, their decoded WAV files
    cached per file.
    """
    base = name.partition("?")[0]
    if base not in MUSIC_SETS and base not in SPEECH_SETS:
        return _load(name, data_root(data_dir), data_dir)
    root, origin = find_set(base, data_dir)
    key = (name, str(root.resolve()), _fingerprint(root, base))
    if key not in _cache:
        _cache[key] = _load(name, root, data_dir)
        if base in MUSIC_SETS:
            from rnnbench.data.provenance import note_if_changed

            note_if_changed(base, Path(_cache[key].meta["file"]), origin)
    return _cache[key]


def holds(root: Path, base: str) -> bool:
    """Whether ``root`` holds the built-in data set ``base`` (a music file, FSDD recordings)."""
    from rnnbench.data.music import find_music_file

    if base in MUSIC_SETS:
        return find_music_file(root, base) is not None
    folder = root / "fsdd" / "recordings"
    return folder.is_dir() and any(folder.glob("*.wav"))


def find_set(base: str, data_dir=None) -> tuple[Path, str]:
    """(folder, origin) of the first data folder that holds ``base`` (see
    :mod:`rnnbench.data.locate`); when none does, the folder a download would go to."""
    found = locate(lambda root: holds(root, base), data_dir)
    if found is not None:
        return found
    from rnnbench.data.locate import root_origin

    return data_root(data_dir), root_origin(data_dir)


def _fingerprint(root: Path, base: str) -> tuple:
    from rnnbench.data.music import find_music_file

    path = find_music_file(root, base) if base in MUSIC_SETS else root / "fsdd" / "recordings"
    try:
        st = path.stat() if path is not None else None
    except OSError:
        st = None
    return (str(path), st.st_mtime_ns, st.st_size) if st else (str(path),)


def _load(name: str, root: Path, data_dir) -> Dataset:
    from rnnbench.data import midi, music, speech

    base = name.partition("?")[0]
    if base in MUSIC_SETS:
        split_options(name, {})
        path = music.find_music_file(root, base)
        if path is None:
            stem = MUSIC_SETS[base][0]
            raise missing(
                f"Music data set {base!r}", root / "music" / f"{stem}.mat", base, data_dir
            )
        return music.music_dataset(
            base, music.load_music_file(path), source=str(path), meta={"file": str(path)}
        )
    if base in SPEECH_SETS:
        _, opts = split_options(name, {"sr": int})
        folder = root / "fsdd" / "recordings"
        if not folder.is_dir() or not any(folder.glob("*.wav")):
            raise missing("FSDD recordings", folder, "fsdd", data_dir)
        ds = speech.load_fsdd(base, folder, sample_rate=opts.get("sr"))
        ds.name = name
        return ds
    if base.startswith("midi:"):
        _, opts = split_options(name, {"fps": float, "fpb": float, "maxframes": int})
        if "fps" in opts and "fpb" in opts:
            raise RnnbenchError(f"{name!r} gives both fps and fpb; choose one resolution.")
        path = _user_path(base, "midi:")
        rolls = midi.load_midi_folder(path, **opts)  # maxframes: the bound on one file
        opts.pop("maxframes", None)
        meta = {
            "fps": opts.get("fps"),
            "fpb": opts.get("fpb", None if "fps" in opts else midi.DEFAULT_FPB),
        }
        return music.music_dataset(name, rolls, meta=meta, source=str(path))
    if base.startswith("wav:"):
        _, opts = split_options(name, {"sr": int, "seg": int})
        path = _user_path(base, "wav:")
        return speech.load_wav_folder(
            name, path, sample_rate=opts.get("sr"), segment=opts.get("seg", speech.SEGMENT_A)
        )
    if base.startswith("music:"):
        split_options(name, {})
        path = _user_path(base, "music:")
        if not path.is_file():
            raise RnnbenchError(
                f"Music file {path} does not exist; give music:FILE of a .mat or .pickle file."
            )
        return music.music_dataset(
            name, music.load_music_file(path), source=str(path), meta={"file": str(path)}
        )
    known = ", ".join([*list_datasets(), *PATTERNS])
    raise RnnbenchError(f"Unknown data set {name!r}; known data sets: {known}.")


def _user_path(base: str, prefix: str) -> Path:
    text = base[len(prefix) :]
    if not text:
        raise RnnbenchError(f"{base!r} names no path; write {prefix}PATH.")
    return Path(text).expanduser()
