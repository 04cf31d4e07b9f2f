"""``rnnbench params``: Table 1 counts, budgets, JSON, and bad flags."""

import json

import pytest

from rnnbench import cli


@pytest.fixture
def run(capsys):
    """Run ``rnnbench <argv>`` through the real dispatcher; return (status, stdout, stderr)."""

    def go(*argv):
        try:
            status = cli.main(["params", *argv])
        except SystemExit as exc:  # argparse rejects bad flags this way
            status = exc.code
        out, err = capsys.readouterr()
        return status, out, err

    return go


def test_speech_table_shows_both_conventions_and_the_paper(run):
    status, out, err = run("--task", "speech")
    assert status == 0 and err == ""
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:6]}
    # hidden, recurrent (paper), recurrent (ours), whole model, paper Table 1
    assert rows["lstm"][2:] == ["195", "169,065", "169,845", "252,165", "169,065"]
    assert rows["gru"][3:] == ["227", "168,888", "169,569", "265,329", "168,888"]
    assert rows["tanh"][1:] == ["400", "168,400", "168,800", "337,220", "168,400"]
    assert "one bias vector per gate" in out and "bias_ih_l0, bias_hh_l0" in out


def test_music_table(run):
    status, out, _ = run("--task", "music")
    assert status == 0
    assert "~19.8k" in out and "~20.2k" in out and "~20.1k" in out
    assert "18,108" in out and "21,508" in out


@pytest.mark.parametrize(
    ("task", "hidden", "recurrent"),
    [
        ("speech", {"lstm": 195, "gru": 227, "tanh": 400}, [169_065, 168_888, 168_400]),
        ("music", {"lstm": 36, "gru": 46, "tanh": 100}, [18_108, 18_630, 18_900]),
    ],
)
def test_json_paper_sizes(run, task, hidden, recurrent):
    status, out, _ = run("--task", task, "--json")
    assert status == 0
    report = json.loads(out)
    assert report["task"] == task and report["budget"] is None
    assert list(report["units"]) == ["lstm", "gru", "tanh"]
    for (unit, row), n in zip(report["units"].items(), recurrent, strict=True):
        assert row["hidden"] == hidden[unit]
        assert row["recurrent_params"] == n
        assert {"total_params", "recurrent_params_torch"} <= set(row)
        assert row["total_params"] > row["recurrent_params_torch"] > row["recurrent_params"]


def test_json_budget_gives_back_the_paper_speech_sizes(run):
    status, out, _ = run("--task", "speech", "--budget", "168,888", "--json")
    assert status == 0
    units = json.loads(out)["units"]
    assert units["gru"]["hidden"] == 227 and units["gru"]["difference"] == 0
    assert units["lstm"]["hidden"] == 195  # 169,065: the closest LSTM
    assert units["tanh"]["hidden"] == 401  # 169,222 (+334) beats 400's 168,400 (-488)


def test_budget_table_and_options(run):
    status, out, _ = run(
        "--task",
        "music",
        "--budget",
        "20000",
        "--match",
        "total",
        "--no-peephole",
        "--reset",
        "after",
    )
    assert status == 0
    assert "closest to 20,000" in out and "lstm (no peephole)" in out and "reset after" in out
    status, out, _ = run("--task", "music", "--budget", "20000", "--json", "--no-peephole")
    report = json.loads(out)
    assert report["peephole"] is False and report["match"] == "paper"
    assert all(abs(u["difference"]) < 400 for u in report["units"].values())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "video"], "invalid choice"),
        ([], "required"),
        (["--task", "music", "--budget", "0"], "at least 1"),
        (["--task", "music", "--budget", "lots"], "not a whole number"),
        (["--task", "music", "--match", "some"], "invalid choice"),
    ],
)
def test_bad_flags_exit_2_with_one_sentence(run, argv, message):
    status, out, err = run(*argv)
    assert status == 2 and out == ""
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0]
