"""WAV files cut mid-data, and wav:FILE instead of a folder (issue 12 §3)."""

from __future__ import annotations

import shutil

import pytest

from rnnbench.data.registry import load_dataset
from rnnbench.data.speech import missing_bytes, read_wav
from rnnbench.errors import RnnbenchError
from tests.data.helpers import run_data_command


def _recording(data_root, name="0_george_10.wav"):
    return data_root / "fsdd" / "recordings" / name


def test_a_wav_cut_mid_data_is_refused_naming_the_file(data_root, tmp_path):
    whole = _recording(data_root)
    assert missing_bytes(whole, whole.stat().st_size) == 0
    cut = tmp_path / "cut.wav"
    data = whole.read_bytes()
    cut.write_bytes(data[: 44 + (len(data) - 44) // 2])
    with pytest.raises(RnnbenchError, match=r"cut\.wav is truncated: its header announces"):
        read_wav(cut)


def test_every_shipped_recording_is_whole(data_root):
    folder = data_root / "fsdd" / "recordings"
    assert not [p.name for p in folder.glob("*.wav") if missing_bytes(p, p.stat().st_size)]


def test_data_info_of_a_wav_file_says_a_folder_is_expected(data_root, tmp_path):
    file = tmp_path / "one.wav"
    shutil.copy(_recording(data_root), file)
    with pytest.raises(RnnbenchError, match="is a file, but wav:PATH takes a folder"):
        run_data_command(["data", "info", f"wav:{file}"])
    with pytest.raises(RnnbenchError, match="is a file, but midi:PATH takes a folder"):
        load_dataset(f"midi:{file}")
