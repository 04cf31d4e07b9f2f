"""The ``rnnbench data`` command: list, info --json, fetch, and its one-line errors."""

from __future__ import annotations

import json

import pytest

from rnnbench.errors import RnnbenchError
from tests.data.helpers import run_data_command


def test_list(capsys):
    assert run_data_command(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("jsb", "nottingham", "musedata", "pianomidi", "fsdd-a", "fsdd-b", "midi:PATH"):
        assert name in out
    assert "present" in out


def test_info_json_music(capsys):
    assert run_data_command(["data", "info", "jsb", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "jsb" and info["kind"] == "music" and info["dim"] == 88
    assert info["splits"]["train"] == {**info["splits"]["train"], "sequences": 229, "steps": 13807}
    assert 0 < info["padding"] < 0.1
    assert info["batch_size"] == 4  # the music training default


def test_info_padding_follows_the_batch_size(capsys):
    assert run_data_command(["data", "info", "jsb", "--json", "--batch-size", "16"]) == 0
    at_16 = json.loads(capsys.readouterr().out)
    assert run_data_command(["data", "info", "jsb", "--json"]) == 0
    at_4 = json.loads(capsys.readouterr().out)
    assert at_16["batch_size"] == 16 and at_16["padding"] > at_4["padding"]


def test_info_text_speech(capsys):
    assert run_data_command(["data", "info", "fsdd-b"]) == 0
    out = capsys.readouterr().out
    assert "1,048 sequences" in out and "paper: 800 x 8,000" in out
    assert "padding at batch 16" in out  # the speech training default


def test_errors_are_rnnbench_errors(tmp_path):
    with pytest.raises(RnnbenchError, match="Unknown data set"):
        run_data_command(["data", "info", "bogus"])
    with pytest.raises(RnnbenchError, match="rnnbench data fetch jsb"):
        run_data_command(["data", "info", "jsb", "--data-dir", str(tmp_path)])
    with pytest.raises(RnnbenchError, match="Cannot fetch"):
        run_data_command(["data", "fetch", "bogus", "--data-dir", str(tmp_path)])


def test_cli_main_exit_status(tmp_path, capsys):
    cli = pytest.importorskip("rnnbench.cli")
    try:
        status = cli.main(["data", "info", "jsb", "--data-dir", str(tmp_path)])
    except ImportError:
        pytest.skip("another command module of the CLI is not written yet")
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnbench: error: ") and "Traceback" not in err
