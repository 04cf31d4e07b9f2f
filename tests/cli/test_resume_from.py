"""``--resume-from``: a study goes on from a committed report folder's exports on a machine
that has none of its run folders (machines here are replaced between sessions)."""

import csv
import shutil

import pytest

from rnnbench.cli import main
from rnnbench.report.exports import import_finished
from rnnbench.store import Store
from tests.cli.tiny_study import reproduce_argv
from tests.sweeps.test_kill import write_tiny_music


def _table2(folder):
    with open(folder / "table2.csv", newline="", encoding="utf-8") as f:
        keep = ("dataset", "unit", "split", "nll_mean", "nll_std", "seeds", "lr")
        return [{k: r[k] for k in keep} for r in csv.DictReader(f)]


@pytest.mark.slow
def test_a_study_resumes_from_committed_exports_training_only_what_is_missing(tmp_path, capsys):
    music = tmp_path / "tiny.pickle"
    write_tiny_music(music)

    def argv(out, *extra):
        flags = ["--units", "gru", "tanh", "--threads", "1", "--no-samples", *extra]
        return reproduce_argv([f"music:{music}"], out, *flags)

    first = tmp_path / "machine-a"
    assert main(argv(first)) == 0
    # What git keeps: the report folder with its exports; the machine and its store are gone.
    committed = tmp_path / "committed"
    shutil.copytree(first / "report", committed)
    shutil.rmtree(first)
    # ... and one fresh seed had not finished when the exports were committed.
    runs_csv = committed / "store-runs.csv"
    with open(runs_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    [unfinished] = [r for r in rows if r["unit"] == "gru" and r["stage"] == "seeds"][-1:]
    unfinished["status"] = "running"
    with open(runs_csv, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    second = tmp_path / "machine-b"
    capsys.readouterr()
    assert main(argv(second, "--resume-from", str(committed))) == 0
    captured = capsys.readouterr()
    assert f"resume: 9 finished runs copied from {committed} (of its 10 runs" in captured.err
    assert "10 runs: 10 done, 0 diverged, 0 failed (9 were already finished)" in captured.out
    # only the unfinished run trained here
    assert [p.name for p in (second / "runs").iterdir()] == [unfinished["key"]]
    store = Store(second / "results.db", readonly=True)
    imported = [r for r in store.runs() if r["imported"]]
    assert len(imported) == 9 and all(r["imported"] == str(committed.resolve()) for r in imported)
    assert all(store.epochs(r["key"]) for r in imported)  # every epoch came along
    # tanh's numbers are the committed ones; GRU's second seed is this machine's
    tanh = [r for r in _table2(second / "report") if r["unit"] == "tanh"]
    assert tanh == [r for r in _table2(committed) if r["unit"] == "tanh"]
    gru = [r for r in _table2(second / "report") if r["unit"] == "gru"]
    assert {r["seeds"] for r in gru if r["dataset"].startswith("music:")} == {"3"}

    # Again: everything is finished here now; nothing is copied or trained.
    assert main(argv(second, "--resume-from", str(committed))) == 0
    captured = capsys.readouterr()
    assert "resume: 0 finished runs copied" in captured.err
    assert "(10 were already finished)" in captured.out


def test_resume_from_a_folder_without_exports_is_one_sentence(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["reproduce", "--sets", "jsb", "--out", str(tmp_path / "o"), "--resume-from", str(empty)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds no rnnbench exports (store-runs.csv)" in err
    assert not (tmp_path / "o").exists()  # refused before anything was written
    with Store(tmp_path / "s.db") as store, pytest.raises(Exception, match="no rnnbench exports"):
        import_finished(empty, store)
