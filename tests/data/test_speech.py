"""Raw speech: framing, FSDD counts and splits, standardisation, user WAV folders, bad audio."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rnnbench.data import load_dataset
from rnnbench.data.speech import frame, load_wav_folder, steps_for
from rnnbench.errors import RnnbenchError
from tests.data.helpers import tone, write_wav

# measured on data/fsdd (see docs/data.md); paper: A 7,230 x 500, B 800 x 8,000
FSDD_A = {"train": 15606, "valid": 1967, "test": 1912}
FSDD_B = {"train": 1048, "valid": 129, "test": 128}


def test_framing_is_exact():
    seg = np.arange(75, dtype=np.float32)
    seq = frame(seg)
    assert steps_for(75) == 5 == len(seq) and steps_for(500) == 48 and steps_for(8000) == 798
    assert steps_for(29) == 0 and steps_for(30) == 1
    for t in range(5):
        np.testing.assert_array_equal(seq.inputs[t], seg[10 * t : 10 * t + 20])
        np.testing.assert_array_equal(seq.targets[t], seg[10 * t + 20 : 10 * t + 30])
    assert seq.inputs.dtype == np.float32 and seq.targets.shape == (5, 10)


@pytest.mark.parametrize(
    ("name", "counts", "length"), [("fsdd-a", FSDD_A, 500), ("fsdd-b", FSDD_B, 8000)]
)
def test_fsdd_counts_and_shapes(name, counts, length):
    ds = load_dataset(name)
    assert (ds.kind, ds.task, ds.head, ds.in_dim, ds.out_dim) == ("speech", "speech", "gmm", 20, 10)
    info = ds.info()
    for split, n in counts.items():
        assert info["splits"][split]["sequences"] == n
        assert info["splits"][split]["steps"] == n * steps_for(length)
    assert info["padding"] == 0.0 and info["sample_rate"] == 8000
    assert info["paper"]["segment_samples"] == length
    assert ds.meta["sample_rate"] == 8000 and ds.meta["std"] > 0


def test_fsdd_split_by_take():
    ds = load_dataset("fsdd-a")
    ranges = {"test": range(0, 5), "valid": range(5, 10), "train": range(10, 50)}
    for split, takes in ranges.items():
        seen = {int(re.match(r"\d_[a-z]+_(\d+):", s.source).group(1)) for s in ds.split(split)}
        assert seen <= set(takes) and len(seen) == len(takes)
    speakers_b = [s.source.split(":")[0] for s in load_dataset("fsdd-b").split("valid")]
    assert speakers_b == sorted(speakers_b)  # fixed order (speaker, digit, take)


def test_fsdd_standardisation_round_trip(data_root):
    import soundfile as sf

    ds = load_dataset("fsdd-a")
    first = next(s for s in ds.split("train") if s.source.startswith("0_george_10:0"))
    audio, _ = sf.read(str(data_root / "fsdd" / "recordings" / "0_george_10.wav"), dtype="float32")
    restored = first.targets.ravel() * ds.meta["std"] + ds.meta["mean"]
    np.testing.assert_allclose(restored, audio[20:500], atol=1e-6)


def _wav_folder(tmp_path, n=6, length=1300):
    folder = tmp_path / "wavs"
    for i in range(n):
        write_wav(folder / f"rec{i}.wav", tone(length, i))
    return folder


def test_wav_folder_split_segments_and_stats(tmp_path):
    import soundfile as sf

    folder = _wav_folder(tmp_path)
    ds = load_dataset(f"wav:{folder}")
    assert ds.info()["files"] == {"train": 4, "valid": 1, "test": 1}
    assert len(ds.split("train")) == 8  # 1300 samples -> two 500-sample segments per file
    train_files = sorted({s.source.split(":")[0] for s in ds.split("train")})
    audio = np.concatenate([sf.read(str(folder / f), dtype="float32")[0] for f in train_files])
    assert ds.meta["mean"] == pytest.approx(float(audio.mean()), abs=1e-6)
    assert ds.meta["std"] == pytest.approx(float(audio.std()), rel=1e-5)
    longer = load_dataset(f"wav:{folder}?seg=1000")
    assert len(longer.split("train")) == 4 and len(longer.split("train")[0]) == 98
    assert load_wav_folder("again", folder).info()["files"] == ds.info()["files"]


def test_multichannel_is_averaged(tmp_path):
    import soundfile as sf

    folder = _wav_folder(tmp_path)
    stereo = tone(1300, 9, channels=2)
    write_wav(folder / "rec0.wav", stereo, subtype="FLOAT")
    ds = load_dataset(f"wav:{folder}?seg=1300")
    seq = next(
        s
        for split in ("train", "valid", "test")
        for s in ds.split(split)
        if s.source.startswith("rec0.wav")
    )
    mono = sf.read(str(folder / "rec0.wav"), dtype="float32")[0].mean(axis=1)
    np.testing.assert_allclose(
        seq.targets.ravel() * ds.meta["std"] + ds.meta["mean"], mono[20:1300], atol=1e-5
    )


def test_mixed_sample_rates(tmp_path):
    folder = _wav_folder(tmp_path)
    write_wav(folder / "odd.wav", tone(2600, 7), rate=16000)
    with pytest.raises(RnnbenchError, match=r"odd\.wav \(16000 Hz\).*\?sr=8000"):
        load_dataset(f"wav:{folder}")
    ds = load_dataset(f"wav:{folder}?sr=8000")
    assert ds.meta["sample_rate"] == 8000
    up = load_dataset(f"wav:{folder}?sr=16000")
    assert up.meta["sample_rate"] == 16000
    assert sum(len(up.split(s)) for s in ("train", "valid", "test")) > sum(
        len(ds.split(s)) for s in ("train", "valid", "test")
    )


@pytest.mark.parametrize("problem", ["nan", "silent", "truncated", "garbage"])
def test_bad_audio(tmp_path, problem):
    folder = _wav_folder(tmp_path)
    bad = folder / "bad.wav"
    if problem == "nan":
        x = tone(1000, 3)
        x[10] = np.nan
        write_wav(bad, x, subtype="FLOAT")
        match = "NaN"
    elif problem == "silent":
        write_wav(bad, np.zeros(1000))
        match = "silent"
    elif problem == "truncated":
        bad.write_bytes((folder / "rec1.wav").read_bytes()[:30])
        match = "truncated"
    else:
        bad.write_bytes(b"RIFF....WAVEjunk" * 10)
        match = "truncated or not a readable WAV"
    with pytest.raises(RnnbenchError, match=match) as err:
        load_dataset(f"wav:{folder}")
    assert "bad.wav" in str(err.value)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RnnbenchError, match="No .wav files"):
        load_dataset(f"wav:{tmp_path / 'empty'}")
    with pytest.raises(RnnbenchError, match="does not exist"):
        load_dataset(f"wav:{tmp_path / 'nowhere'}")
    with pytest.raises(RnnbenchError, match="rnnbench data fetch fsdd"):
        load_dataset("fsdd-b", data_dir=tmp_path)
    short = tmp_path / "short"
    for i in range(3):
        write_wav(short / f"s{i}.wav", tone(100, i))
    with pytest.raises(RnnbenchError, match="no training segment"):
        load_dataset(f"wav:{short}")


def test_fsdd_folder_with_foreign_file(tmp_path, data_root):
    import shutil

    rec = tmp_path / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for name in ("0_jackson_0.wav", "0_jackson_7.wav", "0_jackson_20.wav"):
        shutil.copy(data_root / "fsdd" / "recordings" / name, rec / name)
    ds = load_dataset("fsdd-a", data_dir=tmp_path)
    assert [len(ds.split(s)) > 0 for s in ("train", "valid", "test")] == [True] * 3
    write_wav(rec / "hello.wav", tone(1000, 1))
    with pytest.raises(RnnbenchError, match="hello.wav is not named"):
        load_dataset("fsdd-b", data_dir=tmp_path)
