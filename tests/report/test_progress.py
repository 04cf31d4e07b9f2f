"""The progress of unfinished cells: a report built while a grid is still training."""

from __future__ import annotations

import csv
import math
import re
import sqlite3

import pytest

from rnnbench.report import build_report
from rnnbench.report.progress import cell_progress
from rnnbench.report.results import build_cells
from rnnbench.report.tables import table2
from rnnbench.store import Store

from .conftest import EPOCHS, add_run, md_table

PROGRESS = "Progress of unfinished cells"
TABLE2 = "Table 2: NLL per time step"


def fill_half_done(path) -> None:
    """A grid half-way (max_epochs 50 everywhere):

    - JSB GRU, learning-rate search: 1e-3 done after 5 epochs (best 7.5), 3e-3 running at
      epoch 4 (best 7.0 at epoch 3), 1e-2 queued, 2e-2 diverged after a tempting 1.0, 5e-3
      failed after 0.5;
    - JSB LSTM, learning-rate search: both rates running, none finished;
    - JSB tanh: both rates queued, nothing trained;
    - FSDD-A LSTM: search done (best 2.0 at 1e-3, epoch 2), seeds 1 running, 2 queued;
    - FSDD-A tanh: its only run diverged (finished, but no result).
    """
    with Store(path) as s:
        add_run(s, "jsb", "gru", 1e-3, status="done", valid=[9.0, 8.0, 7.5, 7.6, 7.7], final=7.5)
        add_run(s, "jsb", "gru", 3e-3, valid=[8.5, 7.2, 7.0, 7.1])
        add_run(s, "jsb", "gru", 1e-2, status="queued")
        add_run(s, "jsb", "gru", 2e-2, status="diverged", valid=[6.0, 1.0], final=math.nan)
        add_run(s, "jsb", "gru", 5e-3, status="failed", valid=[0.5])
        add_run(s, "jsb", "lstm", 1e-3, valid=[9.5, 9.0])
        add_run(s, "jsb", "lstm", 3e-3, valid=[9.4, 8.8, 8.6])
        add_run(s, "jsb", "tanh", 1e-3, status="queued")
        add_run(s, "jsb", "tanh", 3e-3, status="queued")
        add_run(s, "fsdd-a", "lstm", 1e-3, status="done", valid=[2.2, 2.0])
        add_run(s, "fsdd-a", "lstm", 3e-3, status="done", valid=[2.4, 2.3])
        add_run(s, "fsdd-a", "lstm", 1e-3, 1, valid=[3.0, 2.5], stage="seeds")
        add_run(s, "fsdd-a", "lstm", 1e-3, 2, status="queued", stage="seeds")
        add_run(s, "fsdd-a", "tanh", 1e-3, status="diverged", valid=[5.0, 4.0], final=math.nan)


@pytest.fixture(scope="module")
def half_done(tmp_path_factory):
    folder = tmp_path_factory.mktemp("half")
    fill_half_done(folder / "results.db")
    out = build_report(folder / "results.db", folder / "report")
    return (out / "report.md").read_text(encoding="utf-8"), (out / "report.html").read_text(
        encoding="utf-8"
    )


def test_progress_rows(half_done):
    md, _ = half_done
    assert md_table(md, PROGRESS) == [
        ["JSB Chorales", "tanh", "learning-rate search", "0 / 2", "0 / 50", "—", "—"],
        [
            "JSB Chorales",
            "GRU (reset before)",
            "learning-rate search",
            "2 / 5 (1 failed)",  # done and diverged are finished; failed is retried
            "4 / 50",
            "7.000",  # not the diverged run's 1.0 nor the failed run's 0.5
            "lr 0.003, epoch 3",
        ],
        [
            "JSB Chorales",
            "LSTM (peephole)",
            "learning-rate search",
            "0 / 2",
            "3 / 50",
            "8.600",
            "lr 0.003, epoch 3",
        ],
        # the seeds stage: the finished search does not count, its runs' NLLs still do
        [
            "FSDD-A (speech)",
            "LSTM (peephole)",
            "seeds",
            "0 / 2",
            "2 / 50",
            "2.000",
            "lr 0.001, epoch 2",
        ],
    ]
    assert "4 of 5 cells still have runs queued or running" in md


def test_provenance_says_training_goes_on(half_done, report_dir):
    md, _ = half_done
    assert re.search(r"Runs: 14 \(.*\), training since \S+, last update \S+\n", md)
    finished = (report_dir / "report.md").read_text(encoding="utf-8")
    assert re.search(r"Runs: 48 \(.*\), trained \S+ to \S+\n", finished)


def test_table2_says_in_progress_only_for_unfinished_cells_with_epochs(half_done):
    md, _ = half_done
    seeds = {(r[0], r[1]): r[3] for r in md_table(md, TABLE2)}
    assert seeds[("JSB Chorales", "LSTM (peephole)")] == "in progress (see Progress)"
    assert seeds[("JSB Chorales", "tanh")] == "not run to completion"  # nothing trained yet
    assert seeds[("FSDD-A (speech)", "tanh")] == (
        "every run diverged (see Runs that diverged or failed)"
    )
    # The GRU search has a finished rate, but rates still training might beat it: no result.
    assert seeds[("JSB Chorales", "GRU (reset before)")] == "in progress (see Progress)"
    # search done, fresh seeds training: the search run is never reported in their place
    assert seeds[("FSDD-A (speech)", "LSTM (peephole)")] == "fresh seeds in progress (see Progress)"


def test_progress_is_in_the_html_and_labelled_provisional(half_done):
    md, html = half_done
    assert '<h2 id="progress">Progress of unfinished cells</h2>' in html
    assert "best valid NLL so far (provisional)" in html and "PROVISIONAL" in html
    assert "not an early-stopped result" in md and "<td class=num>4 / 50</td>" in html


def test_a_finished_store_has_no_progress_section(report_dir):
    for name in ("report.md", "report.html"):
        text = (report_dir / name).read_text(encoding="utf-8")
        assert PROGRESS not in text and "in progress" not in text and "provisional" not in text


def test_an_unfinished_cell_leaves_the_finished_cells_as_they_were(
    store_path, report_dir, tmp_path
):
    copy = tmp_path / "results.db"
    with sqlite3.connect(store_path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    with Store(copy) as s:
        add_run(s, "nottingham", "gru", 1e-3, valid=[4.0, 3.5], max_epochs=EPOCHS, patience=3)
    out = build_report(copy, tmp_path / "out")
    md = (out / "report.md").read_text(encoding="utf-8")
    before = (report_dir / "report.md").read_text(encoding="utf-8")
    for heading in (TABLE2, "Learning-rate choice", "GRU against LSTM"):
        finished = [
            r for r in md_table(before, heading) if r[0] in ("JSB Chorales", "FSDD-A (speech)")
        ]
        assert finished and all(r in md_table(md, heading) for r in finished), heading
    [row] = md_table(md, PROGRESS)
    assert row[:2] == ["Nottingham", "GRU (reset before)"]

    def csv_rows(folder):
        with open(folder / "table2.csv", newline="", encoding="utf-8") as f:
            rows = csv.DictReader(f)
            return [
                {k: v for k, v in r.items() if k != "provenance"}
                for r in rows
                if r["dataset"] in ("jsb", "fsdd-a")
            ]

    assert csv_rows(out) == csv_rows(report_dir)


def _run(key, status, stage, lr=1e-3, epochs=50, seed=0):
    config = {"dataset": "jsb", "unit": "gru", "lr": lr, "seed": seed, "max_epochs": epochs}
    return {"key": key, "config": config, "status": status, "stage": stage, "valid_nll": None}


def test_cell_progress_takes_the_earliest_unfinished_stage():
    runs = [
        _run("a", "queued", "seeds", seed=1),
        _run("b", "running", "lr"),
        _run("c", "done", "lr", lr=2e-3),
    ]
    [cell] = build_cells(runs)
    p = cell_progress(cell, {"a": [{"epoch": 9, "valid_nll": 5.0}]})
    assert (p.stage, p.finished, p.total, p.epoch, p.caps) == ("lr", 1, 2, 0, [50])
    # the epochs of a run of another stage are not this stage's progress, but its NLL counts
    assert (p.best.valid_nll, p.best.epoch) == (5.0, 9)


def test_cell_progress_skips_missing_and_non_finite_nlls_and_counts_interrupted_runs():
    # a sweep stopped with Ctrl-C puts its running runs back to queued: their epochs count
    [cell] = build_cells([_run("a", "queued", "lr"), _run("b", "done", "lr", lr=2e-3)])
    curves = {
        "a": [
            {"epoch": 1, "valid_nll": None},
            {"epoch": 2, "valid_nll": math.nan},
            {"epoch": 3, "valid_nll": 4.0},
        ],
        "b": [{"epoch": 1, "valid_nll": math.inf}],
    }
    p = cell_progress(cell, curves)
    assert (p.epoch, p.best.valid_nll, p.best.lr, p.best.epoch) == (3, 4.0, 1e-3, 3)
    assert cell_progress(build_cells([_run("b", "done", "lr")])[0], curves) is None


def test_table2_in_progress_needs_an_unfinished_run_not_just_epochs():
    runs = [_run("a", "diverged", "lr"), _run("b", "failed", "lr", lr=2e-3)]
    [row] = [
        r for r in table2(build_cells(runs), started={"a", "b"}).rows if r[0] == "JSB Chorales"
    ]
    assert row[3] == "every run diverged or failed (see Runs that diverged or failed)"
    runs.append(_run("c", "queued", "lr", lr=3e-3))
    [row] = [r for r in table2(build_cells(runs), started={"a"}).rows if r[0] == "JSB Chorales"]
    assert row[3] == "in progress (see Progress)"


def test_the_headline_says_which_cells_are_not_finished(half_done):
    md, _ = half_done
    glance = md.split("## Results at a glance\n", 1)[1].split("\n## ", 1)[0]
    jsb = next(line for line in glance.splitlines() if line.startswith("- JSB"))
    assert jsb.startswith("- JSB Chorales: no unit has a result yet. Not finished yet: ")
    # FSDD-A LSTM chose its rate, but no fresh seed has finished: no result to rank yet
    fsdd = next(line for line in glance.splitlines() if line.startswith("- FSDD-A"))
    assert fsdd == (
        "- FSDD-A (speech): no unit has a result yet. Not finished yet: LSTM (peephole). "
        "No result (every run diverged or failed): tanh."
    )
    assert "lowest mean test NLL first" not in glance


def test_the_headline_ranks_a_cell_once_a_fresh_seed_finished(tmp_path):
    from rnnbench.report.build import _headline

    path = tmp_path / "results.db"
    with Store(path) as s:
        add_run(s, "jsb", "gru", 1e-3, status="done", valid=[8.0])
        add_run(s, "jsb", "gru", 1e-3, 1, status="done", valid=[8.4], stage="seeds")
        add_run(s, "jsb", "gru", 1e-3, 2, valid=[9.0], stage="seeds")
        add_run(s, "jsb", "lstm", 1e-3, status="done", valid=[7.0])
        add_run(s, "jsb", "lstm", 1e-3, 1, status="done", valid=[8.2], stage="seeds")
        add_run(s, "jsb", "lstm", 1e-3, 2, status="done", valid=[8.3], stage="seeds")
    (line,) = _headline(build_cells(Store(path, readonly=True).runs()))
    assert line == (
        "JSB Chorales: lowest mean test NLL first: LSTM (peephole) 8.250, "
        "GRU (reset before) 8.400 (1 seed so far). Some cells are still training; "
        "the order may change."
    )
