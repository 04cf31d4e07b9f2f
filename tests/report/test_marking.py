"""runs.csv and curves.csv carry table2.csv's protocol marking (issue 12 §4)."""

from __future__ import annotations

import csv

from rnnbench.report.figures import CURVES_COLUMNS
from rnnbench.report.tables import RUNS_COLUMNS


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


def test_a_full_report_marks_its_csvs_as_table2_does(report_dir):
    (protocol,) = {r["protocol"] for r in _rows(report_dir / "table2.csv")}
    for name in ("runs.csv", "curves.csv"):
        assert {r["protocol"] for r in _rows(report_dir / name)} == {protocol}
