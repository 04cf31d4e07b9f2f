"""Every CSV row carries the protocol of its own runs (issue 12 §4; issue 23: a report that
joins the paper's protocol with the authors' preset must not mark every row with both)."""

from __future__ import annotations

import csv

from rnnbench.report import build_report
from rnnbench.report.figures import CURVES_COLUMNS
from rnnbench.report.marking import PAPER_ONLY
from rnnbench.report.tables import RUNS_COLUMNS
from rnnbench.store import Store

from .conftest import add_authors_search, add_protocol_cell


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_every_csv_says_quick(quick_report_dir):
    table2 = _rows(quick_report_dir / "table2.csv")
    for name, columns in (("runs.csv", RUNS_COLUMNS), ("curves.csv", CURVES_COLUMNS)):
        rows = _rows(quick_report_dir / name)
        assert rows and list(rows[0]) == [*columns, "protocol", "provenance"]
        assert {r["protocol"] for r in rows} == {"quick: not the paper's protocol"}
        assert {r["provenance"] for r in rows} == {table2[0]["provenance"]}


def test_a_runs_rows_carry_its_cells_table2_label(report_dir):
    cells = {
        (r["dataset"], r["unit"]): r["protocol"]
        for r in _rows(report_dir / "table2.csv")
        if r["seeds"] != "0"
    }
    assert len(set(cells.values())) > 1  # the fixture's cells differ (2 or 3 rates)
    for name in ("runs.csv", "curves.csv"):
        rows = _rows(report_dir / name)
        assert rows
        for r in rows:
            if (r["dataset"], r["unit"]) in cells:
                assert r["protocol"] == cells[(r["dataset"], r["unit"])], (name, r["key"])


def test_paper_and_authors_cells_are_marked_apart(tmp_path):
    path = tmp_path / "results.db"
    with Store(path) as store:
        add_protocol_cell(store, "jsb", "tanh")
        add_authors_search(store, "jsb", "gru")
    out = build_report(path, tmp_path / "out")
    table2 = _rows(out / "table2.csv")
    tanh = {r["protocol"] for r in table2 if r["dataset"] == "jsb" and r["unit"] == "tanh"}
    gru = {r["protocol"] for r in table2 if r["dataset"] == "jsb" and r["unit"] == "gru"}
    (tanh,), (gru,) = tanh, gru
    # the paper-protocol cell: its own settings only, no departure, nothing of the preset's
    assert tanh.startswith("as stored: max_epochs 500;") and "authors" not in tanh
    assert "/" not in tanh.split("as stored:")[1]  # one value per setting, none joined
    # the authors' cell: named as a departure, with its own settings
    assert gru.startswith("not the paper's protocol: as stored:") and "protocol authors" in gru
    assert "(departures: " in gru
    others = {r["protocol"] for r in table2 if r["dataset"] != "jsb"}
    assert others == {PAPER_ONLY}
    for name in ("runs.csv", "curves.csv"):
        rows = _rows(out / name)
        assert {r["protocol"] for r in rows if r["unit"] == "tanh"} == {tanh}, name
        assert {r["protocol"] for r in rows if r["unit"] == "gru"} == {gru}, name
