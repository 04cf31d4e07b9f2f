"""``rnnbench runs`` and ``rnnbench sweep`` argument handling (no training)."""

import argparse
import json

import pytest

from rnnbench.cli import main
from rnnbench.store import Store


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "results.db"
    store = Store(path)
    rows = [
        ("a", "jsb", "gru", "done"),
        ("b", "jsb", "lstm", "failed"),
        ("c", "fsdd-a", "gru", "diverged"),
    ]
    for key, dataset, unit, status in rows:
        config = {"dataset": dataset, "unit": unit, "lr": 1e-3, "seed": 0}
        store.start_run(key, config, f"runs/{key}")
        store.finish_run(
            key,
            status,
            {"valid_nll": 8.5, "test_nll": 8.6, "epochs": 3},
            error="ValueError: boom\ntraceback" if status == "failed" else None,
        )
    store.close()
    return path


def test_unfinished_runs_show_how_far_they_got(store_path, capsys):
    with Store(store_path) as store:
        store.start_run("d", {"dataset": "jsb", "unit": "tanh", "lr": 1e-4, "seed": 0}, "runs/d")
        store.log_epochs(
            "d",
            [
                {"epoch": e, "train_nll": 9.0, "valid_nll": v, "updates": e, "seconds": float(e)}
                for e, v in ((1, 9.5), (2, 8.75), (3, 8.9))
            ],
        )
        store.start_run("e", {"dataset": "jsb", "unit": "tanh", "lr": 1e-5, "seed": 0}, "runs/e")
    assert main(["runs", "--store", str(store_path), "--unit", "tanh"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    rows = {
        r["key"]: r for r in (dict(zip(header, line.split(), strict=False)) for line in lines[1:3])
    }
    assert rows["d"]["status"] == "running"
    assert rows["d"]["epochs"] == "3*" and rows["d"]["valid"] == "8.750*"
    assert rows["e"]["epochs"] == "-" and rows["e"]["valid"] == "-"
    assert lines[-1].startswith("* unfinished or failed: the furthest epoch")
    assert main(["runs", "--store", str(store_path), "--status", "done"]) == 0
    assert "* unfinished" not in capsys.readouterr().out


def test_runs_table_and_filters(store_path, capsys):
    assert main(["runs", "--store", str(store_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["key", "dataset", "unit", "form"]
    assert "ValueError: boom" in out and "traceback" not in out
    assert "3 runs: 1 done, 1 failed, 1 diverged" in out

    assert main(["runs", "--store", str(store_path), "--dataset", "jsb", "--unit", "gru"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1].startswith("a ")

    assert main(["runs", "--store", str(store_path), "--status", "diverged", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["key"] for r in runs] == ["c"] and runs[0]["config"]["unit"] == "gru"

    assert main(["runs", "--store", str(store_path), "--dataset", "nottingham"]) == 0
    assert "no runs match" in capsys.readouterr().out


def test_runs_without_a_store_is_one_clear_error(tmp_path, capsys):
    assert main(["runs", "--store", str(tmp_path / "none.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnbench: error: No results store") and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "0"], "--workers"),
        (["--retries", "-1"], "--retries"),
        (["--threads", "0"], "--threads 0 is not a thread count"),
        (["--address", "auto"], "--address only applies"),
    ],
)
def test_sweep_argument_errors(tmp_path, capsys, extra, message):
    grid = tmp_path / "g.toml"
    grid.write_text('datasets = ["jsb"]\nunits = ["gru"]\n')
    assert main(["sweep", str(grid), "--out", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


def test_sweep_file_errors_are_one_sentence(tmp_path, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text('datasets = ["jsb"]\nunits = ["gru"]\nlearning_rate = 3\n')
    assert main(["sweep", str(grid), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) learning_rate" in err and len(err.splitlines()) == 1


def test_sweep_with_an_unwritable_out_folder(tmp_path, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text('datasets = ["jsb"]\nunits = ["gru"]\nhidden = [4]\n[lr]\nvalues = [1e-3]\n')
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["sweep", str(grid), "--out", str(blocker / "out"), "--store", str(tmp_path / "r.db")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Cannot write to" in err and "--out" in err


def test_sweep_with_missing_data_stops_before_any_run(tmp_path, capsys):
    # Every run of the grid used to be tried and marked failed on a missing data folder.
    grid = tmp_path / "g.toml"
    grid.write_text('datasets = ["jsb"]\nunits = ["gru"]\n')
    out = tmp_path / "out"
    argv = ["sweep", str(grid), "--out", str(out), "--data-dir", str(tmp_path / "none")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "not found" in err and len(err.splitlines()) == 1
    assert not (out / "results.db").exists()


@pytest.mark.parametrize(("engine", "name"), [("local", "threads"), ("ray", "cpus_per_trial")])
def test_threads_reach_the_engine(engine, name):
    from rnnbench.commands.sweep import engine_kwargs

    args = argparse.Namespace(
        engine=engine,
        address=None,
        workers=2,
        retries=2,
        device="cpu",
        data_dir=None,
        no_progress=True,
        threads=1,
    )
    assert engine_kwargs(args)[name] == 1
    args.threads = None
    assert "threads" not in engine_kwargs(args) and "cpus_per_trial" not in engine_kwargs(args)


def test_a_failed_run_shows_the_epochs_it_trained(tmp_path, capsys):
    path = tmp_path / "r.db"
    with Store(path) as store:
        store.start_run("f", {"dataset": "jsb", "unit": "gru", "lr": 1e-3, "seed": 0}, "runs/f")
        store.log_epochs(
            "f", [{"epoch": e, "train_nll": 9.0, "valid_nll": 9.0 - e / 10} for e in range(1, 73)]
        )
        store.finish_run("f", "failed", error="RuntimeError: boom")
    assert main(["runs", "--store", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = dict(zip(lines[0].split(), lines[1].split(), strict=False))
    assert row["status"] == "failed" and row["epochs"] == "72*" and row["valid"] == "1.800*"
