"""A report folder's exports rebuild the report (issue 17 §5): `rnnbench report --store FOLDER`
reads store-runs.csv, store-epochs.csv and store-meta.json into a temporary store."""

from __future__ import annotations

import csv
import shutil

import pytest

from rnnbench.cli import main
from rnnbench.report import build_report
from rnnbench.store import Store

from .conftest import fill_store


def _table(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: v for k, v in row.items() if k != "provenance"} for row in csv.DictReader(f)]


def test_the_report_rebuilds_from_its_exports_alone(tmp_path):
    store = tmp_path / "study" / "results.db"
    store.parent.mkdir()
    fill_store(store)
    with Store(store) as s:
        s.add_command("rnnbench reproduce --sets jsb --out study")
    first = build_report(store, tmp_path / "first", samples=False)
    # Only the committed folder travels: the store and its run folders are gone.
    shutil.rmtree(store.parent)
    assert (
        main(["report", "--store", str(first), "--out", str(tmp_path / "again"), "--no-samples"])
        == 0
    )
    again = tmp_path / "again"
    assert _table(again / "table2.csv") == _table(first / "table2.csv")
    assert _table(again / "runs.csv") == _table(first / "runs.csv")
    md = (again / "report.md").read_text("utf-8")
    assert "rnnbench reproduce --sets jsb --out study" in md  # provenance survives the rebuild
    assert (again / "store-epochs.csv").read_text("utf-8") == (
        first / "store-epochs.csv"
    ).read_text("utf-8")


def test_rebuilding_a_committed_report_keeps_its_samples(tmp_path):
    """The committed grid has samples/ but no checkpoints: the rebuild shows them again."""
    from pathlib import Path

    committed = Path(__file__).resolve().parents[2] / "docs" / "results" / "grid"
    kept = sorted(p.name for p in (committed / "samples").iterdir())
    assert kept
    out = tmp_path / "again"
    assert main(["report", "--store", str(committed), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "samples").iterdir()) == kept
    md = (out / "report.md").read_text("utf-8")
    assert "No sample for" not in md
    assert md.count("Kept from the committed report") == len(
        [k for k in kept if k.endswith(".png")]
    )


@pytest.mark.parametrize("name", ["fsdd-a-short", "fsdd-b-short"])
def test_a_committed_short_speech_study_rebuilds_from_its_exports(tmp_path, name):
    """Issue 23: the short speech studies, written before the exports, now carry them
    (docs/results/<name>/README.md says how they were made); the one standard command
    rebuilds the committed Table 2, every number of it."""
    from pathlib import Path

    committed = Path(__file__).resolve().parents[2] / "docs" / "results" / name
    out = tmp_path / "again"
    assert main(["report", "--store", str(committed), "--out", str(out), "--no-samples"]) == 0
    assert _table(out / "table2.csv") == _table(committed / "table2.csv")
    assert _table(out / "runs.csv") == _table(committed / "runs.csv")
    assert (out / "store-epochs.csv").read_text("utf-8") == (
        committed / "store-epochs.csv"
    ).read_text("utf-8")


def test_every_committed_report_outside_the_archive_carries_its_exports():
    """Issue 23: every committed report rebuilds from its exports; the folders that cannot
    (no store, no per-run rows) live in docs/results/archive/ with a README saying why."""
    from pathlib import Path

    results = Path(__file__).resolve().parents[2] / "docs" / "results"
    reports = {p.parent for name in ("report.md", "ablations.md") for p in results.rglob(name)}
    assert len(reports) >= 9
    for folder in reports:
        if "archive" in folder.relative_to(results).parts:
            continue
        assert (folder / "store-runs.csv").is_file(), f"{folder} has no exports"
        assert (folder / "store-epochs.csv").is_file(), f"{folder} has no epochs export"
    assert (results / "archive" / "README.md").is_file()
