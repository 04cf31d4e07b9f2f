"""The dispatcher: every bad flag is one line on stderr and exit status 2."""

import subprocess
import sys

import pytest

from rnnbench import cli


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--dataset", "jsb", "--unit", "gru", "--lr", "abc"], "--lr"),
        (["train"], "required: --dataset, --unit"),
        (["data", "info"], "required: name"),
        (["runs", "--unit", "lstmx"], "invalid choice: 'lstmx'"),
    ],
)
def test_bad_flags_give_one_line_without_the_usage_block(argv, message, capsys):
    # argparse used to print its multi-line usage block before the error.
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err and "usage:" not in err
    assert err.startswith(f"rnnbench {argv[0]}") and "--help" in err


def test_sigterm_stops_like_ctrl_c_and_the_handler_is_restored(monkeypatch, capsys):
    # `timeout`/`kill` used to kill a sweep mid-write: runs stayed "running", semaphores leaked.
    import os
    import signal
    import time

    from rnnbench.commands import params

    def handler(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted long before this ends
        return 0

    monkeypatch.setattr(params, "handler", handler)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["params", "--task", "music"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before


def test_version_answers_without_building_the_command_parsers(capsys, monkeypatch):
    from rnnbench import __version__, cli

    def no_parsers():
        raise AssertionError("--version must not import every command")

    monkeypatch.setattr(cli, "build_parser", no_parsers)
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"rnnbench {__version__}"


def test_python_dash_m_runs_the_command():
    from rnnbench import __version__

    done = subprocess.run(
        [sys.executable, "-m", "rnnbench", "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == f"rnnbench {__version__}"
    bad = subprocess.run(
        [sys.executable, "-m", "rnnbench", "train", "--dataset", "jsb", "--unit", "bogus"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "bogus" in bad.stderr


def test_a_closed_pipe_ends_quietly(tmp_path):
    from rnnbench.store import Store

    with Store(tmp_path / "results.db") as store:
        for i in range(3000):
            store.queue_run(
                f"k{i}", {"dataset": "jsb", "unit": "gru", "lr": 1e-3, "seed": i}, f"runs/k{i}"
            )
    reader = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    done = subprocess.run(
        [sys.executable, "-m", "rnnbench", "runs", "--store", str(tmp_path / "results.db")],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    reader.stdin.close()
    assert reader.stdout.read().split()[:2] == [b"key", b"dataset"]
    reader.wait(timeout=30)
    assert done.returncode == 1 and "Traceback" not in done.stderr and done.stderr == ""
