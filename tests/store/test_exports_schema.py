"""Committed exports are untrusted input (issue 25 §1): every file and row is checked before
anything is imported, the import is all or nothing, and a store that already holds a bad row
is still readable (the row is named and skipped)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from rnnbench.cli import main
from rnnbench.errors import RnnbenchError
from rnnbench.exports_schema import MAX_BYTES, read_exports
from rnnbench.report.exports import collect, import_finished, materialize, write_exports
from rnnbench.report.stores import open_stores
from rnnbench.store import Store
from tests.report.conftest import add_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def exports(tmp_path) -> Path:
    """An export folder of three finished JSB runs (2 epochs each) and one queued run."""
    path = tmp_path / "study" / "results.db"
    path.parent.mkdir()
    with Store(path) as store:
        add_run(store, "jsb", "tanh", 1e-3, 0, status="done", valid=(9.0, 8.5))
        add_run(store, "jsb", "tanh", 3e-3, 0, status="done", valid=(8.9, 8.4))
        add_run(store, "jsb", "gru", 1e-3, 0, status="diverged", valid=(9.1, 8.7), final=8.7)
        add_run(store, "jsb", "lstm", 1e-3, 0, status="queued", valid=())
        store.add_command("rnnbench sweep tiny.toml --out study")
    folder = tmp_path / "rep0"
    folder.mkdir()
    with open_stores(path) as sources:
        write_exports(collect(sources), folder)
    return folder


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write(path: Path, rows: list[dict], fields=None) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _edit(folder: Path, index: int, **cells) -> str:
    """Set ``cells`` in row ``index`` of store-runs.csv; return that row's key."""
    rows = _rows(folder / "store-runs.csv")
    rows[index].update(cells)
    _write(folder / "store-runs.csv", rows)
    return rows[index]["key"]


def _refused(folder: Path, tmp_path: Path) -> str:
    """Import ``folder`` into a fresh store: it must be refused, leaving the store empty."""
    store_path = tmp_path / "target" / "results.db"
    with Store(store_path) as store:
        with pytest.raises(RnnbenchError) as info:
            import_finished(folder, store)
        assert store.runs() == []  # all or nothing
        with sqlite3.connect(store_path) as conn:
            assert conn.execute("SELECT count(*) FROM epochs").fetchone()[0] == 0
    message = str(info.value)
    assert "\n" not in message
    return message


def test_clean_exports_import_every_finished_run(exports, tmp_path):
    with Store(tmp_path / "t.db") as store:
        assert import_finished(exports, store) == (3, 4)
        assert {r["status"] for r in store.runs()} == {"done", "diverged"}
        assert all(len(store.epochs(r["key"])) == 2 for r in store.runs())


@pytest.mark.parametrize(
    "cells, field",
    [
        ({"test_nll": "-1000", "valid_nll": "-1000"}, "test_nll"),
        ({"hidden": "-3"}, "hidden"),
        ({"epochs": "-5"}, "epochs"),
        ({"test_nll": "inf"}, "test_nll"),
        ({"valid_nll": "-inf"}, "valid_nll"),
        ({"train_nll": "nan"}, "train_nll"),
        ({"seed": "1e30"}, "seed"),
        ({"config": "not json"}, "config"),
        ({"config": "[1,2,3]"}, "config"),
        ({"config": "null"}, "config"),
        ({"config": '{"lr": "x"}'}, "config"),
        ({"status": "finished"}, "status"),
        ({"dataset": "nottingham"}, "dataset"),
        ({"best_epoch": "7"}, "best_epoch"),
        ({"seconds": "-1"}, "seconds"),
    ],
)
def test_a_bad_cell_refuses_the_whole_folder_naming_file_row_and_field(
    exports, tmp_path, cells, field
):
    # The last finished row is the bad one: the rows before it must not be imported either.
    rows = _rows(exports / "store-runs.csv")
    index = max(i for i, r in enumerate(rows) if r["status"] in ("done", "diverged"))
    assert index > 0
    _edit(exports, index, **cells)
    message = _refused(exports, tmp_path)
    assert f"store-runs.csv line {index + 2} " in message and f"field {field}:" in message, message
    assert "nothing was imported" in message


def test_a_key_that_is_not_its_configs_key_is_refused(exports, tmp_path):
    rows = _rows(exports / "store-runs.csv")
    config = json.loads(rows[0]["config"])
    config["lr"] = 0.5  # a different experiment under the old key
    _edit(exports, 0, config=json.dumps(config), lr="0.5")
    message = _refused(exports, tmp_path)
    assert "field key:" in message and "not the key of its config" in message


def test_unknown_config_fields_are_refused(exports, tmp_path):
    config = json.loads(_rows(exports / "store-runs.csv")[1]["config"])
    _edit(exports, 1, config=json.dumps({**config, "evil": 1}))
    assert "unknown field(s) evil" in _refused(exports, tmp_path)


def test_an_epoch_number_of_1e30_is_refused(exports, tmp_path):
    rows = _rows(exports / "store-epochs.csv")
    rows[-1]["epoch"] = "1e30"
    _write(exports / "store-epochs.csv", rows)
    message = _refused(exports, tmp_path)
    assert "store-epochs.csv line" in message and "field epoch:" in message


def test_epochs_of_a_run_not_in_the_runs_file_are_refused(exports, tmp_path):
    rows = _rows(exports / "store-epochs.csv")
    rows[0]["key"] = "0123456789abcdef"
    _write(exports / "store-epochs.csv", rows)
    assert "names no run of store-runs.csv" in _refused(exports, tmp_path)


def test_a_runs_file_without_a_key_column_is_one_sentence(exports, tmp_path):
    rows = _rows(exports / "store-runs.csv")
    fields = [f for f in rows[0] if f != "key"]
    _write(exports / "store-runs.csv", [{f: r[f] for f in fields} for r in rows], fields)
    assert "has no key column" in _refused(exports, tmp_path)
    with pytest.raises(RnnbenchError, match="has no key column"):
        materialize(exports)  # and `report --store FOLDER` says the same


def test_meta_holding_a_list_is_one_sentence(exports, tmp_path):
    (exports / "store-meta.json").write_text("[1, 2]", "utf-8")
    assert "holds a JSON list" in _refused(exports, tmp_path)


def test_a_symlinked_export_is_refused(exports, tmp_path):
    real = tmp_path / "elsewhere.csv"
    shutil.move(exports / "store-runs.csv", real)
    os.symlink(real, exports / "store-runs.csv")
    assert "is a symbolic link" in _refused(exports, tmp_path)


def test_git_conflict_markers_are_refused(exports, tmp_path):
    path = exports / "store-epochs.csv"
    lines = path.read_text("utf-8").splitlines(keepends=True)
    text = "".join(
        [*lines[:2], "<<<<<<< HEAD\n", *lines[2:4], "=======\n", lines[4], ">>>>>>> b\n"]
    )
    path.write_text(text + "".join(lines[5:]), "utf-8")
    message = _refused(exports, tmp_path)
    assert "line 3 is a git conflict marker" in message


def test_an_oversized_export_is_refused_before_it_is_read(exports, tmp_path):
    path = exports / "store-epochs.csv"
    with open(path, "r+b") as f:  # sparse: costs no disk, and must cost no memory
        f.truncate(MAX_BYTES["store-epochs.csv"] + 1)
    message = _refused(exports, tmp_path)
    assert "more than the" in message and "an export may hold" in message


def test_the_cli_refuses_a_bad_export_with_exit_2_and_trains_nothing(exports, tmp_path, capsys):
    _edit(exports, 1, test_nll="-1000")
    from tests.sweeps.test_kill import write_grid

    toml = write_grid(tmp_path)
    out = tmp_path / "o"
    argv = ["sweep", str(toml), "--resume-from", str(exports), "--out", str(out)]
    assert main([*argv, "--threads", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "field test_nll" in err, err
    assert not out.exists()  # refused before the store was opened


def test_a_report_from_exports_names_and_skips_a_bad_row(exports, capsys):
    key = _edit(exports, 0, test_nll="-1000")
    path = materialize(exports)
    try:
        with Store(path, readonly=True) as store:
            assert key not in {r["key"] for r in store.runs()}
            assert len(store.runs()) == 3
    finally:
        shutil.rmtree(path.parent)
    assert f"(run {key}), field test_nll" in capsys.readouterr().err


def test_the_committed_exports_pass_the_check():
    folders = sorted(p.parent for p in (ROOT / "docs" / "results").rglob("store-runs.csv"))
    assert folders
    for folder in folders:
        found = read_exports(folder, strict=True)
        assert found.runs and not found.skipped


@pytest.mark.parametrize(
    "config", ["not json", "[1,2,3]", "null", '{"lr": "x"}', '{"dataset": 5, "unit": "gru"}']
)
def test_a_store_holding_a_bad_row_stays_readable(exports, tmp_path, capsys, config):
    """A bad row imported before the checks existed: runs, report and a rerun go on."""
    path = tmp_path / "old" / "results.db"
    path.parent.mkdir()
    with Store(path) as store:
        import_finished(exports, store)
        bad = store.runs()[0]["key"]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE runs SET config = ? WHERE key = ?", (config, bad))
    conn.close()
    capsys.readouterr()
    assert main(["runs", "--store", str(path)]) == 0
    captured = capsys.readouterr()
    assert bad not in captured.out and f"skipped run '{bad}'" in captured.err
    with Store(path) as store:
        assert store.get_run(bad) is None  # a rerun trains it again
        assert len(store.runs()) == 2
    out = tmp_path / "rep"
    assert main(["report", "--store", str(path), "--out", str(out), "--no-samples"]) == 0
    assert (out / "report.md").is_file()
