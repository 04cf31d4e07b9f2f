"""midi:PATH folders -> piano rolls, and rolls -> MIDI files."""

from __future__ import annotations

import numpy as np
import pytest

from rnnbench.data import load_dataset
from rnnbench.data.midi import load_midi_folder, midi_to_roll, roll_to_midi
from rnnbench.data.names import hash_split
from rnnbench.errors import RnnbenchError
from tests.data.helpers import write_midi


def _folder(tmp_path, n=6):
    folder = tmp_path / "songs"
    for i in range(n):
        # at 120 bpm a beat is 0.5 s
        write_midi(
            folder / f"song{i}.mid",
            [(60 + i, 0.0, 1.0), (64, 0.5, 1.5), (108, 1.0, 2.0), (20, 0.0, 1.0)],
        )
    return folder


def test_roll_at_frames_per_second_and_beat(tmp_path):
    path = write_midi(tmp_path / "a.mid", [(60, 0.0, 1.0), (64, 0.5, 1.5), (21, 1.5, 1.6)])
    roll = midi_to_roll(path, fps=4)
    assert roll.shape == (7, 88) and roll.dtype == np.uint8
    assert roll[:, 60 - 21].tolist() == [1, 1, 1, 1, 0, 0, 0]
    assert roll[:, 64 - 21].tolist() == [0, 0, 1, 1, 1, 1, 0]
    assert roll[:, 0].tolist() == [0, 0, 0, 0, 0, 0, 1]  # short note keeps one frame
    by_beat = midi_to_roll(path, fpb=2)  # 120 bpm: 2 frames per beat = 4 per second
    np.testing.assert_array_equal(by_beat, roll)
    slow = write_midi(tmp_path / "slow.mid", [(60, 0.0, 1.0)], tempo=60)
    assert midi_to_roll(slow, fpb=4).shape[0] == 4  # one beat at 60 bpm


def test_midi_folder_dataset_is_deterministic(tmp_path):
    folder = _folder(tmp_path)
    ds = load_dataset(f"midi:{folder}?fps=4")
    assert (ds.kind, ds.in_dim, ds.head) == ("music", 88, "bernoulli")
    sizes = {s: len(ds.split(s)) for s in ("train", "valid", "test")}
    assert sizes == {"train": 4, "valid": 1, "test": 1}
    again = load_midi_folder(folder, fps=4)
    for split in ("train", "valid", "test"):
        for seq, roll in zip(ds.split(split), again[split], strict=True):
            np.testing.assert_array_equal(seq.targets, roll[1:])
    roll = again["train"][0]
    assert roll[:, 108 - 21].any() and roll.shape == (8, 88)  # note 20 is dropped
    default = load_dataset(f"midi:{folder}")
    assert default.meta["fpb"] == 4 and len(default.split("train")[0]) == 15


def test_hash_split_stable_and_order_free():
    names = [f"f{i}.wav" for i in range(40)]
    a = hash_split(names)
    b = hash_split(list(reversed(names)))
    assert a == b
    assert [len(a[s]) for s in ("train", "valid", "test")] == [32, 4, 4]
    with pytest.raises(RnnbenchError, match="at least 3"):
        hash_split(["x", "y"])


def test_roll_to_midi_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    roll = (rng.random((40, 88)) < 0.1).astype(np.float32)
    path = roll_to_midi(roll, tmp_path / "out" / "sample.mid", fps=8)
    assert path.is_file() and not list(path.parent.glob("*.part"))
    back = midi_to_roll(path, fps=8)
    last = np.flatnonzero(roll.any(axis=1)).max() + 1
    np.testing.assert_array_equal(back, roll[:last].astype(np.uint8))
    with pytest.raises(RnnbenchError, match="shape"):
        roll_to_midi(np.zeros((4, 12)), tmp_path / "x.mid")


def test_bad_midi_inputs(tmp_path):
    folder = _folder(tmp_path, n=3)
    (folder / "broken.mid").write_bytes((folder / "song0.mid").read_bytes()[:30])
    with pytest.raises(RnnbenchError, match="broken.mid is truncated or not a valid MIDI"):
        load_midi_folder(folder)
    (folder / "broken.mid").write_bytes(b"MThd garbage")
    with pytest.raises(RnnbenchError, match="broken.mid"):
        load_midi_folder(folder)
    drums = write_midi(tmp_path / "drums.mid", [(40, 0, 1)], drum=True)
    with pytest.raises(RnnbenchError, match="no piano-range notes"):
        midi_to_roll(drums)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RnnbenchError, match="No .mid or .midi files"):
        load_dataset(f"midi:{tmp_path / 'empty'}")
    with pytest.raises(RnnbenchError, match="does not exist"):
        load_dataset(f"midi:{tmp_path / 'nowhere'}")
    with pytest.raises(RnnbenchError, match="both fps and fpb"):
        load_dataset(f"midi:{folder}?fps=4&fpb=2")
    with pytest.raises(RnnbenchError, match="positive"):
        load_dataset(f"midi:{folder}?fps=-1")
    for bad in ("nan", "inf", "-inf"):
        with pytest.raises(RnnbenchError, match="must be a positive, finite number"):
            load_dataset(f"midi:{folder}?fps={bad}")
