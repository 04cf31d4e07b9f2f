"""A report built from runs of ``--protocol authors`` names the preset in its banner and CSV."""

from __future__ import annotations

import csv

from rnnbench.report import build_report
from rnnbench.store import Store
from rnnbench.train.presets import AUTHORS_TEXT

from .conftest import add_authors_search


def test_authors_preset_named_in_banner_and_table2_csv(tmp_path):
    path = tmp_path / "results.db"
    with Store(path) as store:
        add_authors_search(store, "jsb", "gru")
    out = build_report(path, tmp_path / "out")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.count(AUTHORS_TEXT) == 2  # the banner at the top and the bottom
    # 500 epochs and 10 rates at batch 1 is a changed protocol, not a shortened one
    assert "shortened or changed as listed" in md and "from a shortened study" not in md
    with open(out / "table2.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["seeds"] != "0"]  # not the paper-only rows
    assert rows and all("protocol authors" in r["protocol"] for r in rows)
    assert all(r["protocol"].startswith("not the paper's protocol") for r in rows)
