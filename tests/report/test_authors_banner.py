"""A report built from runs of ``--protocol authors`` names the preset in its banner and CSV."""

from __future__ import annotations

import csv

from rnnbench.report import build_report
from rnnbench.store import Store
from rnnbench.sweeps.grid import lr_candidates, stable_seed
from rnnbench.train.presets import AUTHORS, AUTHORS_TEXT

from .conftest import add_run


def test_authors_preset_named_in_banner_and_table2_csv(tmp_path):
    path = tmp_path / "results.db"
    # add_run sets batch_size and max_epochs itself
    settings = {k: v for k, v in AUTHORS.items() if k not in ("batch_size", "max_epochs")}
    with Store(path) as store:
        for lr in lr_candidates(10, seed=stable_seed("jsb", "gru")):
            add_run(
                store,
                "jsb",
                "gru",
                lr,
                status="done",
                valid=[9.0],
                max_epochs=500,
                protocol="authors",
                **settings,
            )
    out = build_report(path, tmp_path / "out")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.count(AUTHORS_TEXT) == 2  # the banner at the top and the bottom
    # 500 epochs and 10 rates at batch 1 is a changed protocol, not a shortened one
    assert "shortened or changed as listed" in md and "from a shortened study" not in md
    with open(out / "table2.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["seeds"] != "0"]  # not the paper-only rows
    assert rows and all("protocol authors" in r["protocol"] for r in rows)
    assert all(r["protocol"].startswith("not the paper's protocol") for r in rows)
