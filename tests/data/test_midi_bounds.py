"""A MIDI file cannot make a piano roll of unbounded length (issue 12 §3)."""

from __future__ import annotations

import pretty_midi
import pytest

from rnnbench.data.registry import load_dataset
from rnnbench.errors import RnnbenchError


def _one_note(path, seconds: float) -> None:
    # one tick per beat; 120 bpm: 2 beats, 8 frames (fpb=4) per second
    pm = pretty_midi.PrettyMIDI(resolution=1)
    inst = pretty_midi.Instrument(program=0)
    inst.notes.append(pretty_midi.Note(velocity=80, pitch=60, start=0.0, end=seconds))
    pm.instruments.append(inst)
    pm.write(str(path))


def test_a_note_millions_of_beats_long_is_refused_naming_file_length_and_limit(tmp_path):
    for i in range(3):
        _one_note(tmp_path / f"ok{i}.mid", 2.0)
    _one_note(tmp_path / "huge.mid", 4.5e6)  # 9 million beats: 36 million frames, ~3 GiB
    assert (tmp_path / "huge.mid").stat().st_size < 100
    with pytest.raises(RnnbenchError) as err:
        load_dataset(f"midi:{tmp_path}")
    message = str(err.value)
    assert "huge.mid" in message and "36,000,000 frames" in message
    assert "100,000" in message and "?maxframes=N" in message


def test_maxframes_sets_the_limit(tmp_path):
    for i in range(3):
        _one_note(tmp_path / f"ok{i}.mid", 2.0)
    _one_note(tmp_path / "long.mid", 150.0)  # 300 beats: 1,200 frames
    with pytest.raises(RnnbenchError, match="1,200 frames, more than the limit of 1,000"):
        load_dataset(f"midi:{tmp_path}?maxframes=1000")
    ds = load_dataset(f"midi:{tmp_path}?maxframes=2000")
    assert max(len(s) for split in ("train", "valid", "test") for s in ds.split(split)) == 1199
