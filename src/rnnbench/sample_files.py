r"""Writing samples: MIDI, audio (OGG/WAV/FLAC) and pictures of what :mod:`rnnbench.samples`
drew, each file written atomically (a temporary file, then ``os.replace``).

Music. A ``(T, 88)`` roll (values > 0.5 sound; key 0 is MIDI 21) becomes one piano track at the
framing's tempo (:func:`roll_to_pretty_midi`); consecutive sounding frames of a key are one note.
Its audio is ``pretty_midi``'s additive synthesis (:func:`synthesize`: a tone with two harmonics
per note, an exponential decay, no soundfont).

Speech. A sample's frames (10 standardised samples each) are concatenated and mapped back to
the recordings' scale, :math:`x = y \sigma + \mu` (:func:`speech_wave`), and written as 16-bit
PCM at the data set's ``sample_rate``.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnbench.errors import RnnbenchError
from rnnbench.samples import (
    LOW_KEY,
    MUSIC_AUDIO_RATE,
    PCM16,
    Framing,
    music_framing,
    prime_roll_or_wave,
)


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise RnnbenchError(
            f"Cannot write to {path.parent} ({exc.strerror}); choose a writable folder with --out."
        ) from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def roll_to_pretty_midi(roll: np.ndarray, framing: Framing, *, velocity: int = 80):
    """A ``pretty_midi.PrettyMIDI`` of a ``(T, 88)`` roll (values > 0.5 sound): one piano track,
    tempo ``framing.bpm``; frame t lasts ``[t, t+1) * framing.seconds``."""
    import pretty_midi

    roll = np.asarray(roll)
    if roll.ndim != 2 or roll.shape[1] != 88:
        raise RnnbenchError(f"A piano roll must have shape (T, 88), not {roll.shape}.")
    on = (roll > 0.5).astype(np.int8)
    padded = np.zeros((on.shape[0] + 2, 88), dtype=np.int8)
    padded[1:-1] = on
    change = np.diff(padded, axis=0)
    dt = framing.seconds
    pm = pretty_midi.PrettyMIDI(initial_tempo=framing.bpm)
    inst = pretty_midi.Instrument(program=0, name="rnnbench sample")
    for key in range(88):
        begins = np.flatnonzero(change[:, key] == 1)
        ends = np.flatnonzero(change[:, key] == -1)
        for b, e in zip(begins, ends, strict=True):
            inst.notes.append(
                pretty_midi.Note(velocity=velocity, pitch=key + LOW_KEY, start=b * dt, end=e * dt)
            )
    pm.instruments.append(inst)
    return pm


def write_midi(roll: np.ndarray, path: str | os.PathLike, framing: Framing) -> Path:
    """Write a roll as a standard MIDI file (atomically); returns the path."""
    pm = roll_to_pretty_midi(roll, framing)
    return _atomic(Path(path), lambda tmp: pm.write(tmp))


def read_midi_roll(path: str | os.PathLike, framing: Framing, frames: int) -> np.ndarray:
    """The ``(frames, 88)`` uint8 roll of a MIDI file written by :func:`write_midi` (read
    back with ``pretty_midi``; notes snapped to the nearest frame)."""
    import pretty_midi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = pretty_midi.PrettyMIDI(str(path))
    roll = np.zeros((frames, 88), dtype=np.uint8)
    dt = framing.seconds
    for inst in pm.instruments:
        for n in inst.notes:
            a, b = int(round(n.start / dt)), int(round(n.end / dt))
            roll[a:b, n.pitch - LOW_KEY] = 1
    return roll


def _harmonics(phase: np.ndarray) -> np.ndarray:
    """A tone with its first two overtones: ``(sin φ + 0.4 sin 2φ + 0.2 sin 3φ) / 1.6``."""
    return (np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase)) / 1.6


def synthesize(roll: np.ndarray, framing: Framing, sample_rate: int = MUSIC_AUDIO_RATE):
    """Audio of a roll, ``(T * framing.seconds * sample_rate,)`` float32 in [-1, 1]:
    ``pretty_midi``'s additive synthesis (each note :func:`_harmonics` under an exponential
    decay, e^{-t/1 s}, with a 0.1 s fade-out), peak-normalised to 0.8 (silence stays 0)."""
    pm = roll_to_pretty_midi(roll, framing)
    length = int(round(np.asarray(roll).shape[0] * framing.seconds * sample_rate))
    audio = np.zeros(length, dtype=np.float64)
    if pm.instruments[0].notes:
        wave = pm.synthesize(fs=sample_rate, wave=_harmonics)[:length]
        audio[: wave.shape[0]] = wave
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0:
        audio *= 0.8 / peak
    return audio.astype(np.float32)


def speech_wave(frames: np.ndarray, meta: dict) -> np.ndarray:
    """Frames ``(T, 10)`` of standardised samples -> audio ``(10 T,)``: ``y * std + mean``."""
    return (np.asarray(frames, dtype=np.float64).reshape(-1) * meta["std"] + meta["mean"]).astype(
        np.float32
    )


def write_audio(
    audio: np.ndarray, path: str | os.PathLike, sample_rate: int, *, fmt: str | None = None
) -> Path:
    """Write mono audio with ``soundfile``: ``.wav`` as 16-bit PCM (samples clipped to
    [-1, 1)), ``.ogg`` as Vorbis, ``.flac`` as 16-bit FLAC; atomically."""
    import soundfile as sf

    path = Path(path)
    suffix = (fmt or path.suffix.lstrip(".")).lower()
    formats = {"wav": ("WAV", "PCM_16"), "ogg": ("OGG", "VORBIS"), "flac": ("FLAC", "PCM_16")}
    if suffix not in formats:
        raise RnnbenchError(f"Cannot write audio as {suffix!r}; use .wav, .ogg or .flac.")
    audio = np.clip(np.asarray(audio, dtype=np.float64), -1.0, 1.0 - 1.0 / PCM16)
    fmt_name, subtype = formats[suffix]

    def write(tmp: str) -> None:
        sf.write(tmp, audio, int(sample_rate), format=fmt_name, subtype=subtype)

    return _atomic(path, write)


# --------------------------------------------------------------------------- pictures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roll_png(
    path: str | os.PathLike,
    panels: Sequence[tuple[str, np.ndarray]],
    framing: Framing,
    *,
    prime: int = 0,
) -> Path:
    """Piano rolls, one panel per ``(title, roll)``, time in seconds, MIDI note numbers up;
    a dashed line where the prime ends."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)), squeeze=False)
    for ax, (title, roll) in zip(axes[:, 0], panels, strict=True):
        roll = np.asarray(roll) > 0.5
        rows = np.flatnonzero(roll.any(axis=0))
        lo = (rows.min() if rows.size else 40) + LOW_KEY - 3
        hi = (rows.max() if rows.size else 60) + LOW_KEY + 3
        ax.imshow(
            roll.T,
            origin="lower",
            aspect="auto",
            cmap="Greys",
            interpolation="nearest",
            extent=(0, roll.shape[0] * framing.seconds, LOW_KEY - 0.5, LOW_KEY + 87.5),
        )
        ax.set_ylim(lo, hi)
        if prime:
            ax.axvline(prime * framing.seconds, color="tab:red", ls="--", lw=1)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("MIDI note")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    return _save(fig, plt, path)


def speech_png(
    path: str | os.PathLike,
    panels: Sequence[tuple[str, np.ndarray]],
    sample_rate: int,
    *,
    prime_samples: int = 0,
) -> Path:
    """Waveform and spectrogram (256-sample windows) of each ``(title, audio)``."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        2 * len(panels), 1, figsize=(8, 2.6 * len(panels)), squeeze=False, sharex=True
    )
    for i, (title, audio) in enumerate(panels):
        audio = np.asarray(audio, dtype=np.float64)
        t = np.arange(audio.size) / sample_rate
        wave_ax, spec_ax = axes[2 * i, 0], axes[2 * i + 1, 0]
        wave_ax.plot(t, audio, lw=0.5, color="tab:blue")
        wave_ax.set_title(title, fontsize=9)
        wave_ax.set_ylabel("amplitude")
        nfft = min(256, max(16, audio.size // 4))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec_ax.specgram(audio + 1e-9, NFFT=nfft, Fs=sample_rate, noverlap=nfft // 2)
        spec_ax.set_ylabel("Hz")
        if prime_samples:
            for ax in (wave_ax, spec_ax):
                ax.axvline(prime_samples / sample_rate, color="tab:red", ls="--", lw=1)
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    return _save(fig, plt, path)


def _save(fig, plt, path) -> Path:
    """Save at 80 dpi as a 64-colour palette PNG (a quarter of the RGBA file's size: the
    report embeds these)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=80, format="png")
    finally:
        plt.close(fig)
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(colors=64)
    return _atomic(Path(path), lambda tmp: image.save(tmp, format="PNG", optimize=True))


# --------------------------------------------------------------------------- one call


@dataclass
class Written:
    """What :func:`write_sample` wrote for one sample: ``files`` by kind (``midi``, ``wav``,
    ``png``, ``real_midi``, ``real_wav``) and the ``frames`` drawn."""

    stem: str
    files: dict[str, Path]
    frames: np.ndarray


def write_sample(
    out: Path,
    stem: str,
    dataset,
    frames: np.ndarray,
    *,
    title: str,
    prime: np.ndarray | None = None,
    real: np.ndarray | None = None,
    formats: Sequence[str] = ("midi", "png"),
    framing: Framing | None = None,
    audio_ext: str | Sequence[str] = "wav",
) -> Written:
    """Write one sample (``frames (steps, D)``, after the primed frames ``prime``) and, when
    given, the real excerpt ``real`` (the same steps of test data) into ``out``.

    ``formats``: ``midi`` (music only), ``wav`` (audio: speech the waveform, music its
    synthesis, in each format of ``audio_ext``: ``wav``, ``ogg``, ``flac``), ``png``. Files:
    ``STEM.mid``, ``STEM.wav`` (``.ogg``, ...), ``STEM.png`` and ``STEM-real.*``; ``files``
    keys: ``midi``, ``png``, the audio extensions, and ``real_`` + those.
    """
    out = Path(out)
    exts = [audio_ext] if isinstance(audio_ext, str) else list(audio_ext)
    head = prime_roll_or_wave(dataset, prime)
    full = np.concatenate([head, frames]) if head.size else frames
    files: dict[str, Path] = {}
    if dataset.kind == "music":
        framing = framing or music_framing(dataset)
        real_full = None if real is None else np.concatenate([head, real]) if head.size else real
        if "midi" in formats:
            files["midi"] = write_midi(full, out / f"{stem}.mid", framing)
            if real_full is not None:
                files["real_midi"] = write_midi(real_full, out / f"{stem}-real.mid", framing)
        if "wav" in formats:
            rate = MUSIC_AUDIO_RATE
            audio = synthesize(full, framing, rate)
            real_audio = None if real_full is None else synthesize(real_full, framing, rate)
            for ext in exts:
                files[ext] = write_audio(audio, out / f"{stem}.{ext}", rate)
                if real_audio is not None:
                    files[f"real_{ext}"] = write_audio(real_audio, out / f"{stem}-real.{ext}", rate)
        if "png" in formats:
            panels = [(title, full)]
            if real_full is not None:
                panels.append(("real test excerpt, same length", real_full))
            files["png"] = roll_png(out / f"{stem}.png", panels, framing, prime=head.shape[0])
    else:
        if "midi" in formats:
            raise RnnbenchError(
                f"{dataset.name} is a speech data set: its samples are audio, not notes; ask "
                "for --format wav."
            )
        meta, rate = dataset.meta, int(dataset.meta["sample_rate"])
        wave = speech_wave(full, meta)
        real_wave = None
        if real is not None:
            real_wave = speech_wave(np.concatenate([head, real]) if head.size else real, meta)
        if "wav" in formats:
            for ext in exts:
                files[ext] = write_audio(wave, out / f"{stem}.{ext}", rate)
                if real_wave is not None:
                    files[f"real_{ext}"] = write_audio(real_wave, out / f"{stem}-real.{ext}", rate)
        if "png" in formats:
            panels = [(title, wave)]
            if real_wave is not None:
                panels.append(("real test excerpt, same length", real_wave))
            files["png"] = speech_png(out / f"{stem}.png", panels, rate, prime_samples=head.size)
    return Written(stem, files, full)


def write_manifest(path: Path, entries: list[dict]) -> Path:
    """``samples.json``: one entry per sample (run, seed, steps, files, ...)."""
    text = json.dumps(entries, indent=1, default=str) + "\n"
    return _atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
