"""Small fixture writers shared by the data tests."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def run_data_command(argv: list[str]) -> int:
    """Parse ``rnnbench data ...`` with only our command registered and run it."""
    from rnnbench.commands import data

    parser = argparse.ArgumentParser(prog="rnnbench")
    sub = parser.add_subparsers(dest="command", required=True)
    data.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def write_wav(path: Path, samples: np.ndarray, rate: int = 8000, subtype: str = "PCM_16") -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, rate, subtype=subtype)
    return path


def tone(n: int, seed: int, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 8000.0
    x = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(n)
    if channels > 1:
        return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)
    return x


def write_midi(
    path: Path, notes: list[tuple[int, float, float]], *, tempo: float = 120.0, drum: bool = False
) -> Path:
    """notes: (pitch, start s, end s)."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    inst = pretty_midi.Instrument(program=0, is_drum=drum)
    for pitch, start, end in notes:
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=start, end=end))
    pm.instruments.append(inst)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))
    return path
