"""One report from several results stores: merging by key, curves from the winning store."""

from __future__ import annotations

import argparse
import csv
import re

import pytest

from rnnbench.commands import report as report_command
from rnnbench.errors import RnnbenchError
from rnnbench.report import build_report
from rnnbench.report.stores import open_stores
from rnnbench.store import Store

from .conftest import add_run, fill_store, md_table, set_updated

OLD, NEW = "2030-01-01T00:00:00+00:00", "2030-01-02T00:00:00+00:00"


def _csv_rows(path):
    """table2.csv without its provenance column (which names the command and the stores)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: v for k, v in r.items() if k != "provenance"} for r in csv.DictReader(f)]


def _results(md):
    """report.md from Table 1 up to the setup differences: everything the stores decide."""
    return md.split("## Table 1", 1)[1].split("## How our setup differs", 1)[0]


@pytest.fixture(scope="module")
def split_stores(tmp_path_factory):
    """The conftest study split in two: JSB in one store, FSDD-A in another."""
    folder = tmp_path_factory.mktemp("split")
    jsb, fsdd = folder / "jsb.db", folder / "fsdd.db"
    fill_store(jsb, ["jsb"])
    fill_store(fsdd, ["fsdd-a"])
    return jsb, fsdd


def test_two_stores_give_the_report_of_one_store_holding_both(split_stores, report_dir, tmp_path):
    # if curves were read from the wrong store, a figure would be missing ("not run")
    out = build_report(split_stores, tmp_path / "merged")
    assert _csv_rows(out / "table2.csv") == _csv_rows(report_dir / "table2.csv")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert _results(md) == _results((report_dir / "report.md").read_text(encoding="utf-8"))
    assert (out / "figure2.png").is_file() and (out / "figure3.png").is_file()


def test_provenance_lists_every_store_and_its_runs(split_stores, tmp_path):
    jsb, fsdd = split_stores
    out = build_report([jsb, fsdd], tmp_path / "merged")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"Results stores (runs taken from each): `{jsb.resolve()}` (36 runs), " in md
    assert f"`{fsdd.resolve()}` (12 runs)" in md and "found in more than one store" not in md
    assert f"rnnbench report --store {jsb} --store {fsdd} --out" in md
    assert "Runs: 48 (" in md and "from the runs of 2 results stores" in md
    with open(out / "table2.csv", newline="", encoding="utf-8") as f:
        (provenance,) = {r["provenance"] for r in csv.DictReader(f)}
    assert f"stores {jsb.resolve()}, {fsdd.resolve()} | 48 runs" in provenance


@pytest.mark.parametrize("done_first", [True, False])
def test_a_finished_row_wins_over_a_newer_unfinished_one(tmp_path, done_first):
    done, running = tmp_path / "done.db", tmp_path / "running.db"
    with Store(done) as store:
        key = add_run(store, "jsb", "gru", 1e-3, status="done", valid=[7.0, 6.0, 5.0])
    with Store(running) as store:
        assert add_run(store, "jsb", "gru", 1e-3, status="running", valid=[9.0, 0.5]) == key
    set_updated(done, key, OLD)
    set_updated(running, key, NEW)  # newer, but unfinished: it must still lose
    paths = [done, running] if done_first else [running, done]
    with open_stores(paths) as sources:
        [run] = sources.runs
        assert run["status"] == "done"
        assert [e["valid_nll"] for e in sources.epochs(key)] == [7.0, 6.0, 5.0]
        assert sources.counts() == ([1, 0] if done_first else [0, 1])
        assert sources.shared == {key}
    md = (build_report(paths, tmp_path / "out") / "report.md").read_text(encoding="utf-8")
    assert "Progress of unfinished cells" not in md
    assert "1 run found in more than one store" in md and f"`{running.resolve()}` (0 runs)" in md


@pytest.mark.parametrize("status", ["running", "done"])
@pytest.mark.parametrize("newer_first", [True, False])
def test_between_equals_the_later_update_wins_and_its_curve_is_used(tmp_path, status, newer_first):
    newer, older = tmp_path / "newer.db", tmp_path / "older.db"
    with Store(newer) as store:
        key = add_run(store, "jsb", "lstm", 1e-3, status=status, valid=[4.0, 3.0])
    with Store(older) as store:
        add_run(store, "jsb", "lstm", 1e-3, status=status, valid=[2.0, 1.0, 0.9])
    set_updated(newer, key, NEW)
    set_updated(older, key, OLD)
    paths = [newer, older] if newer_first else [older, newer]
    md = (build_report(paths, tmp_path / "out") / "report.md").read_text(encoding="utf-8")
    if status == "running":  # the progress section reads the newer store's epochs
        [row] = md_table(md, "Progress of unfinished cells")
        assert row[4:] == ["2 / 50", "3.000", "lr 0.001, epoch 2"]
    else:  # Table 2 reports the newer row's final NLLs
        table = md_table(md, "Table 2: NLL per time step")
        [row] = [r for r in table if r[0] == "JSB Chorales" and "baseline" not in r[1]]
        assert row[4].startswith("3.000 ± ")


def test_a_tie_keeps_the_row_of_the_store_given_first(tmp_path):
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    with Store(first) as store:
        key = add_run(store, "jsb", "tanh", 1e-3, status="done", valid=[4.0])
    with Store(second) as store:
        add_run(store, "jsb", "tanh", 1e-3, status="done", valid=[2.0])
    set_updated(first, key, OLD)
    set_updated(second, key, OLD)
    with open_stores([second, first]) as sources:
        assert sources.runs[0]["valid_nll"] == 2.0 and sources.origin[key] == 0


def test_missing_or_empty_store_among_several_is_named(store_path, tmp_path):
    missing = tmp_path / "nope" / "results.db"
    with pytest.raises(RnnbenchError, match=f"No results store at {re.escape(str(missing))}:"):
        build_report([store_path, missing], tmp_path / "out")
    assert not missing.exists()
    empty = tmp_path / "empty.db"
    Store(empty).close()
    with pytest.raises(RnnbenchError, match=f"The results store {re.escape(str(empty))} holds no"):
        build_report([empty, store_path], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_one_path_as_text_and_a_store_given_twice(store_path, tmp_path):
    again = store_path.parent / ".." / store_path.parent.name / store_path.name
    for paths in (str(store_path), [store_path, str(again)]):
        out = build_report(paths, tmp_path / "out")
        md = (out / "report.md").read_text(encoding="utf-8")
        assert f"Results store: `{store_path.resolve()}`" in md and "Runs: 48 (" in md
        assert "from the runs of one results store" in md


def _parse(argv):
    parser = argparse.ArgumentParser()
    report_command.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_command_takes_several_stores(split_stores, tmp_path, capsys):
    jsb, fsdd = split_stores
    out = tmp_path / "r"
    args = _parse(["report", "--store", str(jsb), "--store", str(fsdd), "--out", str(out)])
    assert args.func(args) == 0
    assert "report.html" in capsys.readouterr().out
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"Report command: `rnnbench report --store {jsb} --store {fsdd} --out {out}`" in md
    assert "(36 runs)" in md and "(12 runs)" in md


def test_command_without_store_reads_the_default_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _parse(["report", "--out", "r"])
    assert args.store is None
    with pytest.raises(RnnbenchError, match=re.escape("rnnbench-results/results.db")):
        args.func(args)


def test_runs_stored_before_a_config_field_existed_share_a_cell_with_new_ones(tmp_path):
    from rnnbench.report.results import build_cells
    from rnnbench.train.config import RunConfig

    path = tmp_path / "r.db"
    with Store(path) as store:
        add_run(store, "jsb", "gru", 1e-3, seed=0, status="done", valid=[2.0])
        add_run(store, "jsb", "gru", 2e-3, seed=0, status="done", valid=[3.0], lr_decay=0.01)
        old = RunConfig(dataset="jsb", unit="gru", lr=1e-3, seed=1, batch_size=16, max_epochs=50)
        legacy = {k: v for k, v in old.to_dict().items() if k not in ("lr_decay", "noise_output")}
        store.start_run(old.key(), legacy, "runs/old", labels={"sweep": "t", "stage": "lr"})
        store.finish_run(old.key(), "done", {"train_nll": 2.1, "valid_nll": 2.1, "test_nll": 2.2})
    with open_stores(path) as sources:
        cells = build_cells(sources.runs)
    by_decay = {c.runs[0]["config"]["lr_decay"]: len(c.runs) for c in cells}
    assert by_decay == {None: 2, 0.01: 1}  # the legacy run joined the new default run's cell
    report = build_report(path, tmp_path / "rep")
    assert "lr_decay 0.01/None" in (report / "report.md").read_text()


def test_trained_by_names_each_stores_commands_and_a_cell_where_every_run_diverged(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with Store(a) as store:  # filled before rnnbench recorded commands
        add_run(store, "fsdd-b", "lstm", 1e-3, status="done", valid=[2.0, 1.0])
        for lr in (1e-5, 1e-4):
            add_run(store, "fsdd-b", "tanh", lr, status="diverged", valid=[9.0])
    with Store(b) as store:
        store.add_command("rnnbench reproduce --sets fsdd-b --units tanh")
        add_run(store, "fsdd-b", "tanh", 1e-3, status="diverged", valid=[9.0])
    md = (build_report([a, b], tmp_path / "out") / "report.md").read_text(encoding="utf-8")
    line = next(x for x in md.splitlines() if x.startswith("- Trained by: "))
    assert line.startswith("- Trained by: `rnnbench reproduce --sets fsdd-b --units tanh` (")
    assert line.endswith(f"; not recorded for `{a.resolve()}`")
    tanh = next(
        row
        for row in md_table(md, "Table 2: NLL per time step")
        if row[1] == "tanh" and "FSDD-B" in row[0]
    )
    assert tanh[3] == "every run diverged (see Runs that diverged or failed)"
    assert tanh[-1] == "3 diverged"
