"""Raw speech as sequences of 20-sample inputs and 10-sample targets.

Decoding. WAV files are read with soundfile as float32 in [-1, 1) (16-bit PCM divided by
32768). A multi-channel file is averaged to mono. All files of a data set must share one
sample rate; otherwise loading stops with an error naming the odd files, unless a rate is
requested with ``?sr=N`` in the name (``fsdd-a?sr=16000``, ``wav:PATH?sr=8000``), in which
case every file not at N Hz is resampled with ``scipy.signal.resample_poly``. Files holding
NaN/inf or only zeros (silent) are refused.

Standardisation. Every sample is mapped to ``(x - mean) / std`` where ``mean`` and ``std``
are taken over all samples of the training split's recordings. They are kept in
``Dataset.meta`` (``mean``, ``std``, ``sample_rate``): a model's output ``y`` is audio
``y * std + mean``.

Framing (the paper: each step reads 20 consecutive samples and predicts the next 10). A
segment ``s`` of ``L`` samples gives ``T = (L - 30) // 10 + 1`` steps; step ``t`` (from 0) has

    input  = s[10t      : 10t + 20]     (20 samples; consecutive inputs overlap by 10)
    target = s[10t + 20 : 10t + 30]     (the 10 samples after the input)

so the targets tile ``s[20 : 20 + 10T]`` without overlap: every sample but the first 20 is
predicted once. Samples after the last full target (fewer than 10) are dropped. A 500-sample
segment gives 48 steps; an 8,000-sample segment 798.

Segments.
- ``fsdd-a``: every non-overlapping 500-sample segment of each recording (the incomplete tail
  of a recording is dropped), recordings in the order (speaker, digit, take).
- ``fsdd-b``: within each split, each speaker's recordings are concatenated in the order
  (digit, take) and cut into non-overlapping 8,000-sample segments (incomplete tail dropped).
- ``wav:PATH``: every ``*.wav`` under PATH, split by :func:`rnnbench.data.names.hash_split`
  on the relative file name; segments as ``fsdd-a`` (``?seg=N`` changes the 500; ``N >= 30``).

FSDD splits by take: takes 0-4 test, 5-9 valid, 10-49 train.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

from rnnbench.data.dataset import SPLITS, Dataset, Sequence
from rnnbench.errors import RnnbenchError

IN_SAMPLES = 20
OUT_SAMPLES = 10
HOP = 10
SEGMENT_A = 500
SEGMENT_B = 8000
PAPER_COUNTS = {"fsdd-a": (7230, 500), "fsdd-b": (800, 8000)}
FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")

_decoded: dict[tuple, tuple[np.ndarray, int]] = {}


def steps_for(length: int) -> int:
    """Model steps of a segment of ``length`` samples."""
    if length < IN_SAMPLES + OUT_SAMPLES:
        return 0
    return (length - IN_SAMPLES - OUT_SAMPLES) // HOP + 1


def frame(segment: np.ndarray, source: str = "") -> Sequence:
    """Cut a standardised 1-D float32 segment into (T, 20) inputs and (T, 10) targets (views)."""
    seg = np.ascontiguousarray(segment, dtype=np.float32)
    seg.setflags(write=False)
    steps = steps_for(seg.shape[0])
    windows = np.lib.stride_tricks.sliding_window_view(seg, IN_SAMPLES)
    inputs = windows[: HOP * steps : HOP]
    targets = seg[IN_SAMPLES : IN_SAMPLES + OUT_SAMPLES * steps].reshape(steps, OUT_SAMPLES)
    return Sequence(inputs=inputs, targets=targets, source=source)


def missing_bytes(path: Path, size: int) -> int:
    """How many bytes of its ``data`` chunk a RIFF/WAVE file lacks (0 if whole, or not RIFF).

    libsndfile reads a file cut mid-data silently, at the shorter length, so the declared
    chunk size is checked against the file size (a streaming size of 0 or 0xFFFFFFFF is not).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return 0
            offset = 12
            while offset + 8 <= size:
                f.seek(offset)
                chunk = f.read(8)
                name, length = chunk[:4], int.from_bytes(chunk[4:8], "little")
                if name == b"data":
                    if length in (0, 0xFFFFFFFF):
                        return 0
                    return max(0, length - (size - offset - 8))
                offset += 8 + length + (length & 1)
    except OSError:
        return 0
    return 0


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate of one WAV file (cached per process)."""
    import soundfile as sf

    try:
        st = path.stat()
    except OSError:
        raise RnnbenchError(f"Cannot read {path}; check that it exists.") from None
    key = (str(path), st.st_mtime_ns, st.st_size)
    hit = _decoded.get(key)
    if hit is not None:
        return hit
    short = missing_bytes(path, st.st_size)
    if short:
        raise RnnbenchError(
            f"{path} is truncated: its header announces {short:,} more bytes of samples than "
            f"the file holds; replace or remove it."
        )
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError on bad bytes
        raise RnnbenchError(
            f"{path} is truncated or not a readable WAV file ({type(exc).__name__}); replace or "
            f"remove it."
        ) from None
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    mono = np.ascontiguousarray(mono)
    if mono.size == 0:
        raise RnnbenchError(f"{path} holds no samples; remove it from the folder.")
    if not np.isfinite(mono).all():
        raise RnnbenchError(f"{path} holds NaN or infinite samples; remove or re-export it.")
    if not mono.any():
        raise RnnbenchError(f"{path} is silent (every sample is 0); remove it from the folder.")
    mono.setflags(write=False)
    _decoded[key] = (mono, int(rate))
    return mono, int(rate)


def decode_all(
    paths: list[Path], names: list[str], sample_rate: int | None
) -> tuple[list[np.ndarray], int]:
    """Decode files to one sample rate: ``sample_rate`` (resampling), else their common one."""
    decoded = [read_wav(p) for p in paths]
    rates = Counter(r for _, r in decoded)
    if sample_rate is None:
        if len(rates) > 1:
            common = rates.most_common(1)[0][0]
            odd = [f"{n} ({r} Hz)" for n, (_, r) in zip(names, decoded, strict=True) if r != common]
            shown = ", ".join(odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
            raise RnnbenchError(
                f"The WAV files do not share one sample rate (most are {common} Hz; odd: "
                f"{shown}); convert them, or add ?sr={common} to the data set name to resample."
            )
        return [x for x, _ in decoded], next(iter(rates))
    from scipy.signal import resample_poly  # imported only when needed: it is slow to import

    out = []
    for x, r in decoded:
        if r != sample_rate:
            g = math.gcd(int(sample_rate), r)
            x = resample_poly(x, int(sample_rate) // g, r // g).astype(np.float32)
        out.append(x)
    return out, int(sample_rate)


def standardiser(train_audio: list[np.ndarray]) -> tuple[float, float]:
    """Mean and standard deviation over all training samples (float64 accumulation)."""
    total = sum(int(x.size) for x in train_audio)
    if total == 0:
        raise RnnbenchError("The training split holds no audio; add recordings to it.")
    mean = sum(float(x.sum(dtype=np.float64)) for x in train_audio) / total
    var = sum(float(np.square(x - mean, dtype=np.float64).sum()) for x in train_audio) / total
    std = math.sqrt(var)
    if not std > 0:
        raise RnnbenchError(
            "The training audio is constant (standard deviation 0); use real recordings."
        )
    return mean, std


def cut(x: np.ndarray, length: int) -> list[np.ndarray]:
    """Non-overlapping segments of ``length`` samples; the incomplete tail is dropped."""
    n = x.shape[0] // length
    return [x[i * length : (i + 1) * length] for i in range(n)]


def speech_dataset(
    name: str,
    segments: dict[str, list[tuple[str, np.ndarray]]],
    *,
    mean: float,
    std: float,
    sample_rate: int,
    segment: int,
    extra: dict | None = None,
) -> Dataset:
    """Standardise and frame raw segments (per split: (source, samples)) into a Dataset."""
    splits = {}
    for split in SPLITS:
        splits[split] = [frame((seg - mean) / std, src) for src, seg in segments[split]]
    if not splits["train"]:
        raise RnnbenchError(
            f"{name} has no training segment of {segment} samples; use longer recordings or a "
            f"shorter ?seg=N."
        )
    meta = {
        "mean": mean,
        "std": std,
        "sample_rate": sample_rate,
        "segment": segment,
        "in_samples": IN_SAMPLES,
        "out_samples": OUT_SAMPLES,
        "hop": HOP,
    }
    info = {
        "segment_samples": segment,
        "sample_rate": sample_rate,
        "segments": {s: len(splits[s]) for s in SPLITS},
    }
    info.update(extra or {})
    return Dataset(
        name=name,
        kind="speech",
        in_dim=IN_SAMPLES,
        out_dim=OUT_SAMPLES,
        head="gmm",
        task="speech",
        splits=splits,
        meta=meta,
        extra_info=info,
    )


# --- FSDD ------------------------------------------------------------------------------


def fsdd_split(take: int) -> str:
    """Takes 0-4 test, 5-9 valid, 10-49 (and beyond) train."""
    return "test" if take < 5 else "valid" if take < 10 else "train"


def fsdd_files(folder: Path) -> list[tuple[str, int, int, Path]]:
    """(speaker, digit, take, path) of every recording, sorted by (speaker, digit, take)."""
    out = []
    for p in folder.iterdir():
        if p.suffix.lower() != ".wav":
            continue
        m = FSDD_NAME.match(p.name)
        if not m:
            raise RnnbenchError(
                f"{p} is not named {{digit}}_{{speaker}}_{{take}}.wav like FSDD recordings; "
                f"move it out, or load the folder as wav:{folder}."
            )
        out.append((m.group(2), int(m.group(1)), int(m.group(3)), p))
    out.sort()
    return out


def load_fsdd(name: str, folder: Path, *, sample_rate: int | None = None) -> Dataset:
    """``fsdd-a`` or ``fsdd-b`` from the recordings folder."""
    files = fsdd_files(folder)
    if not files:
        raise RnnbenchError(f"No .wav files in {folder}; run `rnnbench data fetch fsdd`.")
    audio, rate = decode_all([f[3] for f in files], [f[3].name for f in files], sample_rate)
    by_split: dict[str, list] = {s: [] for s in SPLITS}
    for (speaker, digit, take, _), x in zip(files, audio, strict=True):
        by_split[fsdd_split(take)].append((speaker, digit, take, x))
    mean, std = standardiser([rec[3] for rec in by_split["train"]])
    segments: dict[str, list] = {s: [] for s in SPLITS}
    if name == "fsdd-a":
        length = SEGMENT_A
        for split in SPLITS:
            for speaker, digit, take, x in by_split[split]:
                segments[split] += [
                    (f"{digit}_{speaker}_{take}:{i}", s) for i, s in enumerate(cut(x, length))
                ]
    else:
        length = SEGMENT_B
        for split in SPLITS:
            speakers = sorted({rec[0] for rec in by_split[split]})
            for speaker in speakers:
                joined = np.concatenate([rec[3] for rec in by_split[split] if rec[0] == speaker])
                segments[split] += [
                    (f"{speaker}:{split}:{i}", s) for i, s in enumerate(cut(joined, length))
                ]
    n_paper, l_paper = PAPER_COUNTS[name]
    extra = {
        "paper": {
            "sequences": n_paper,
            "segment_samples": l_paper,
            "note": "Ubisoft " + name[-1].upper() + " (private); FSDD cut the same way",
        }
    }
    return speech_dataset(
        name, segments, mean=mean, std=std, sample_rate=rate, segment=length, extra=extra
    )


def load_wav_folder(
    name: str, folder: Path, *, sample_rate: int | None = None, segment: int = SEGMENT_A
) -> Dataset:
    """``wav:PATH``: any folder of WAV files, hash-split by relative name, cut like fsdd-a."""
    from rnnbench.data.names import hash_split

    folder = folder.expanduser()
    if folder.is_file():
        raise RnnbenchError(
            f"{folder} is a file, but wav:PATH takes a folder of WAV files; give its folder, "
            f"or put the file in a folder of its own."
        )
    if not folder.is_dir():
        raise RnnbenchError(f"WAV folder {folder} does not exist; give wav:PATH of a folder.")
    if segment < IN_SAMPLES + OUT_SAMPLES:
        raise RnnbenchError(f"seg={segment} is shorter than one step (30 samples); use seg>=30.")
    paths = {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.suffix.lower() == ".wav" and p.is_file()
    }
    if not paths:
        raise RnnbenchError(
            f"No .wav files found under {folder}; put WAV files there or fix the path."
        )
    split = hash_split(list(paths))
    names = [n for s in SPLITS for n in split[s]]
    audio, rate = decode_all([paths[n] for n in names], names, sample_rate)
    decoded = dict(zip(names, audio, strict=True))
    mean, std = standardiser([decoded[n] for n in split["train"]])
    segments = {
        s: [(f"{n}:{i}", seg) for n in split[s] for i, seg in enumerate(cut(decoded[n], segment))]
        for s in SPLITS
    }
    return speech_dataset(
        name,
        segments,
        mean=mean,
        std=std,
        sample_rate=rate,
        segment=segment,
        extra={"files": {s: len(split[s]) for s in SPLITS}},
    )
