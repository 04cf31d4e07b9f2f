"""The report built from a synthetic store (tests/report/conftest.py): files, numbers, choices."""

from __future__ import annotations

import argparse
import csv
import math
import re
import statistics

import pytest
from PIL import Image as PILImage

from rnnbench.commands import report as report_command
from rnnbench.errors import RnnbenchError
from rnnbench.report import build_report
from rnnbench.report.build import QUICK_BANNER, REPORT_FILES, departures, reduced_banner
from rnnbench.report.results import GATED_AGAINST_TANH, build_cells, paired_tests
from rnnbench.store import Store
from rnnbench.sweeps.grid import lr_candidates, stable_seed

from .conftest import EPOCHS, SEEDS, add_protocol_cell, add_run, md_table, nll

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def row(rows, dataset, unit, split):
    [r] = [r for r in rows if (r["dataset"], r["unit"], r["split"]) == (dataset, unit, split)]
    return r


def test_every_file_exists(report_dir):
    for name in REPORT_FILES:
        assert (report_dir / name).stat().st_size > 0, name


def test_runs_csv_holds_every_run_of_the_store(report_dir, store_path):
    with open(report_dir / "runs.csv", newline="", encoding="utf-8") as f:
        rows = {row["key"]: row for row in csv.DictReader(f)}
    stored = Store(store_path).runs()
    assert set(rows) == {r["key"] for r in stored}
    for r in stored:
        row = rows[r["key"]]
        assert row["status"] == r["status"] and row["dataset"] == r["config"]["dataset"]
        assert float(row["lr"]) == pytest.approx(r["config"]["lr"], rel=1e-9)
        if r["test_nll"] is None:
            assert row["test_nll"] == ""
        else:
            assert float(row["test_nll"]) == pytest.approx(r["test_nll"], rel=1e-9)


def test_diverged_and_failed_runs_are_listed_with_their_reasons(report_dir, store_path):
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    section = md.split("## Runs that diverged or failed", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| JSB")]
    assert rows == [
        "| JSB Chorales | GRU (reset before) | 0.01 | 0 | diverged | 3 | "
        "its training loss was not finite at epoch 3, batch 2 |",
        "| JSB Chorales | LSTM (peephole) | 0.01 | 1 | failed | — | out of memory |",
    ]
    with open(report_dir / "runs.csv", newline="", encoding="utf-8") as f:
        errors = {row["status"]: row["error"] for row in csv.DictReader(f)}
    assert errors["failed"] == "out of memory" and errors["done"] == ""
    assert errors["diverged"].startswith("its training loss was not finite")


def test_curves_csv_holds_every_chosen_seed_epoch_by_epoch(report_dir):
    rows = read_csv(report_dir / "curves.csv")
    # every fresh seed at the chosen rate 3e-3, 6 epochs each: jsb 3 units x 3, fsdd-a 2 x 2;
    # the search run (seed 0) chose the rate and is not among them
    assert len(rows) == (3 * 3 + 2 * 2) * EPOCHS
    assert {float(r["lr"]) for r in rows} == {3e-3}
    seeds = {(r["dataset"], r["unit"]): set() for r in rows}
    drawn = {(r["dataset"], r["unit"]): set() for r in rows}
    for r in rows:
        seeds[(r["dataset"], r["unit"])].add(int(r["seed"]))
        if r["in_figure"] == "1":
            drawn[(r["dataset"], r["unit"])].add(r["key"])
        _, valid, _ = nll(r["dataset"], r["unit"], 3e-3, int(r["seed"]))
        e = int(r["epoch"])
        assert float(r["valid_nll"]) == pytest.approx(valid * (1 + 0.4 / e), rel=1e-9)
    assert seeds == {k: set(SEEDS[k[0]]) - {0} for k in seeds}
    assert all(len(keys) == 1 for keys in drawn.values())
    # the figures' clock: jsb tanh's population had 9 members (3 rates x 3 seeds) each epoch
    last = [r for r in rows if (r["dataset"], r["unit"], r["epoch"]) == ("jsb", "tanh", "6")]
    assert [float(r["seconds_per_model"]) for r in last] == pytest.approx([1.5 * EPOCHS / 9] * 3)


def test_table2_csv_columns(report_dir):
    with open(report_dir / "table2.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header[:7] == ["dataset", "unit", "split", "nll_mean", "nll_std", "seeds", "paper_nll"]


def test_table2_csv_mean_and_std_by_hand(report_dir):
    rows = read_csv(report_dir / "table2.csv")
    # GRU on jsb at lr 3e-3, fresh seeds 1-3: test NLLs 8.2, 8.1, 8.0 -> mean 8.1, std 0.1
    gru = row(rows, "jsb", "gru", "test")
    assert float(gru["nll_mean"]) == pytest.approx(8.1)
    assert float(gru["nll_std"]) == pytest.approx(0.1)
    assert gru["seeds"] == "3"
    assert float(gru["paper_nll"]) == 8.54
    assert float(gru["lr"]) == pytest.approx(3e-3)
    # the same from the generator of the synthetic store, every split and unit
    for unit in ("tanh", "gru", "lstm"):
        for i, split in enumerate(("train", "valid", "test")):
            values = [nll("jsb", unit, 3e-3, s)[i] for s in SEEDS["jsb"][1:]]
            r = row(rows, "jsb", unit, split)
            assert float(r["nll_mean"]) == pytest.approx(statistics.mean(values))
            assert float(r["nll_std"]) == pytest.approx(statistics.stdev(values))
    # 95% CI with t(0.975, 2) = 4.302652729911275
    assert float(gru["ci95_low"]) == pytest.approx(8.1 - 4.302652729911275 * 0.1 / math.sqrt(3))


def test_table2_csv_paper_values_and_missing_cells(report_dir):
    rows = read_csv(report_dir / "table2.csv")
    # FSDD has no paper value; FSDD GRU was never run and is absent
    assert row(rows, "fsdd-a", "lstm", "test")["paper_nll"] == ""
    assert not [r for r in rows if r["dataset"] == "fsdd-a" and r["unit"] == "gru"]
    # valid has no paper value; the paper-only Ubisoft rows carry the paper's numbers
    assert row(rows, "jsb", "tanh", "valid")["paper_nll"] == ""
    ubi = row(rows, "ubisoft-b", "gru", "test")
    assert (ubi["nll_mean"], ubi["seeds"], float(ubi["paper_nll"])) == ("", "0", 0.88)
    assert row(rows, "nottingham", "lstm", "train")["note"] == "not run"
    ran = [r for r in rows if r["note"] not in ("not run", "paper only")]
    for r in ran:  # the stored constants, never a bare "paper"
        assert r["protocol"].startswith("not the paper's protocol: as stored: max_epochs ")
        assert "batch_size" in r["protocol"] and "(departures: " in r["protocol"]
    others = {r["protocol"] for r in rows if r not in ran}
    assert others == {"the paper's published number (not run here)"}
    # diverged and failed runs are counted
    assert row(rows, "jsb", "gru", "test")["diverged"] == "1"
    assert row(rows, "jsb", "lstm", "test")["failed"] == "1"


def test_lr_choice_skips_diverged_runs(store_path):
    with Store(store_path) as store:
        cells = {(c.dataset, c.unit): c for c in build_cells(store.runs())}
    gru = cells[("jsb", "gru")]
    # the diverged run at 1e-2 has valid NLL 0.5, better than anything: it must not win
    assert gru.chosen_lr == pytest.approx(3e-3)
    # only the search runs (seed 0) choose: the fresh seeds at 1e-2 finished, but score nothing
    assert gru.compared_seeds == [(0, 0)]
    assert set(gru.lr_scores) == {1e-3, 3e-3}
    assert gru.lr_scores[1e-3] == pytest.approx((8.0 + 0.3, 1))
    assert gru.seeds == [1, 2, 3]
    assert all(r["status"] == "done" and r["stage"] == "seeds" for r in gru.chosen)


def _run(key, lr, seed, valid, status="done", unit="gru", stage=None):
    config = {"dataset": "jsb", "unit": unit, "lr": lr, "seed": seed, "reset": "before"}
    return {
        "key": key,
        "config": config,
        "status": status,
        "stage": stage,
        "train_nll": valid,
        "valid_nll": valid,
        "test_nll": valid,
    }


def _replicate(key, lr, seed, data_seed, valid, unit="gru", stage=None):
    run = _run(key, lr, seed, valid, unit=unit, stage=stage)
    run["config"]["data_seed"] = data_seed
    return run


def test_the_test_split_never_gates_the_rate_choice():
    # Before the fix, completed() wanted a finite test NLL: the best search run, whose test
    # scoring failed, was dropped and 2e-3 chosen.
    runs = [_run("a0", 1e-3, 0, 1.0), _run("b0", 2e-3, 0, 2.0)]
    for missing in (None, math.nan):
        runs[0]["test_nll"] = missing
        [cell] = build_cells(runs)
        assert cell.chosen_lr == pytest.approx(1e-3)
        assert set(cell.lr_scores) == {1e-3, 2e-3}


def test_a_reported_run_without_a_test_nll_is_left_out_not_a_crash():
    # Before the fix, chosen filtered on status only and summary() failed on float(None).
    runs = [
        _run("a0", 1e-3, 0, 1.0, stage="lr"),
        _run("a1", 1e-3, 1, 1.1, stage="seeds"),
        _run("a2", 1e-3, 2, 1.2, stage="seeds"),
    ]
    runs[2]["test_nll"] = None
    [cell] = build_cells(runs)
    assert cell.seeds == [1]
    assert cell.summary("test").mean == pytest.approx(1.1)


def test_runs_that_differ_only_in_batch_order_are_separate_replicates():
    # Before the fix, data_seed was not part of a run's replicate, so the second batch order
    # overwrote the first in the choice (2.0 against 1.7: 2e-3) and in the pairing.
    runs = [
        _replicate("a0", 1e-3, 0, 0, 1.0),
        _replicate("b0", 2e-3, 0, 0, 1.4),
        _replicate("a1", 1e-3, 0, 1, 2.0),
        _replicate("b1", 2e-3, 0, 1, 1.7),
    ]
    [cell] = build_cells(runs)
    assert cell.compared_seeds == [(0, 0), (0, 1)]
    assert cell.lr_scores[1e-3] == (pytest.approx(1.5), 2)
    assert cell.chosen_lr == pytest.approx(1e-3)
    # pairing: three batch orders of one seed are three pairs, not one
    fresh = []
    for unit, lr in (("gru", 1e-3), ("lstm", 1e-3)):
        fresh += [_replicate(f"{unit}s", lr, 0, 0, 1.0, unit=unit, stage="lr")]
        fresh += [
            _replicate(
                f"{unit}{d}",
                lr,
                1,
                d,
                1.0 + d / 10 + (unit == "lstm") / 100,
                unit=unit,
                stage="seeds",
            )
            for d in (1, 2, 3)
        ]
    [t] = paired_tests(build_cells(fresh))
    assert t.seeds == [(1, 1), (1, 2), (1, 3)]
    assert t.diffs == pytest.approx([-0.01, -0.01, -0.01])


def test_lr_choice_is_best_mean_not_best_single_run():
    runs = [
        _run("a0", 1e-3, 0, 1.0),
        _run("a1", 1e-3, 1, 3.2),
        _run("b0", 2e-3, 0, 2.0),
        _run("b1", 2e-3, 1, 2.0),
        _run("c0", 4e-3, 0, 0.1, "diverged"),
        _run("c1", 4e-3, 1, 0.1, "diverged"),
    ]
    [cell] = build_cells(runs)
    assert cell.chosen_lr == pytest.approx(2e-3)
    assert set(cell.lr_scores) == {1e-3, 2e-3}
    assert cell.count("diverged") == 2
    assert not cell.fresh  # a user's sweep: no stage labels, so its runs are reported as is
    assert [r["key"] for r in cell.chosen] == ["b0", "b1"]


def test_no_rate_is_chosen_while_a_search_run_failed_or_is_unfinished():
    # a failed search run is retried by a rerun and might win: no rate yet
    for status in ("failed", "queued", "running"):
        runs = [_run("a0", 1e-3, 0, 1.0), _run("b0", 2e-3, 0, 2.0), _run("c0", 4e-3, 0, 9, status)]
        [cell] = build_cells(runs)
        assert cell.chosen_lr is None and cell.chosen == [], status
        assert set(cell.lr_scores) == {1e-3, 2e-3}  # scores so far are shown
    # a failed fresh seed does not hold the choice back
    runs = [
        _run("a0", 1e-3, 0, 1.0, stage="lr"),
        _run("b0", 2e-3, 0, 2.0, stage="lr"),
        _run("a1", 1e-3, 1, 1.1, stage="seeds"),
        _run("a2", 1e-3, 2, 9.0, "failed", stage="seeds"),
    ]
    [cell] = build_cells(runs)
    assert cell.chosen_lr == pytest.approx(1e-3) and cell.seeds == [1]


def test_lr_choice_compares_rates_on_shared_seeds():
    # a sweep of its own (no stages): one seed at every rate, then extra seeds at one rate
    # only; the extra (worse) seeds must not move the choice to a rate that ran one seed
    runs = [
        _run("a0", 1e-3, 0, 1.0),
        _run("a1", 1e-3, 1, 1.6),
        _run("a2", 1e-3, 2, 1.7),
        _run("b0", 2e-3, 0, 1.2),
    ]
    [cell] = build_cells(runs)
    assert cell.compared_seeds == [(0, 0)]
    assert cell.chosen_lr == pytest.approx(1e-3)
    assert cell.seeds == [0, 1, 2]  # not fresh: the runs at the rate, seed 0 included
    # reproduce's stages: the same runs, the extra seeds fresh: they never choose, and seed 0
    # (which chose) is not reported
    for r in runs:
        r["stage"] = "seeds" if r["key"] in ("a1", "a2") else "lr"
    [cell] = build_cells(runs)
    assert cell.compared_seeds == [(0, 0)] and cell.chosen_lr == pytest.approx(1e-3)
    assert cell.fresh and cell.seeds == [1, 2]
    # were the fresh seeds allowed to score, 2e-3 would win (1.2 against 1.43)
    runs.append(_run("b1", 2e-3, 1, 5.0, stage="seeds"))
    [cell] = build_cells(runs)
    assert cell.chosen_lr == pytest.approx(1e-3) and cell.seeds == [1, 2]


def test_cells_split_by_other_settings():
    runs = [_run("a", 1e-3, 0, 1.0), _run("b", 1e-3, 0, 2.0)]
    runs[1]["config"]["hidden"] = 64
    labels = sorted(c.form for c in build_cells(runs))
    assert labels == ["reset before, hidden=64", "reset before, hidden=paper size"]


def test_paired_test_uses_matching_seeds(store_path):
    with Store(store_path) as store:
        tests = paired_tests(build_cells(store.runs()))
    [t] = tests
    assert t.dataset == "jsb" and t.seeds == [(1, 0), (2, 0), (3, 0)]  # the fresh seeds
    gru = [nll("jsb", "gru", 3e-3, s)[2] for s, _ in t.seeds]
    lstm = [nll("jsb", "lstm", 3e-3, s)[2] for s, _ in t.seeds]
    diffs = [g - ll for g, ll in zip(gru, lstm, strict=True)]
    t_hand = statistics.mean(diffs) / (statistics.stdev(diffs) / math.sqrt(3))
    assert t.t == pytest.approx(t_hand)
    # Student's t with 2 degrees of freedom has the closed-form CDF 1/2 + t / (2 sqrt(2 + t^2)),
    # so the two-sided p-value of 3 paired seeds is 1 - |t| / sqrt(2 + t^2).
    assert t.p == pytest.approx(1 - abs(t_hand) / math.sqrt(2 + t_hand**2), rel=1e-9)


def test_gated_units_are_tested_against_tanh_with_holm_over_the_table(store_path):
    with Store(store_path) as store:
        tests = paired_tests(build_cells(store.runs()), GATED_AGAINST_TANH)
    pairs = sorted((t.dataset, t.a.unit, t.b.unit) for t in tests)
    assert pairs == [("fsdd-a", "lstm", "tanh"), ("jsb", "gru", "tanh"), ("jsb", "lstm", "tanh")]
    for t in tests:
        assert t.seeds == [(s, 0) for s in SEEDS[t.dataset][1:]]  # fresh seeds only
        hand = [
            nll(t.dataset, t.a.unit, t.a.chosen_lr, s)[2]
            - nll(t.dataset, "tanh", t.b.chosen_lr, s)[2]
            for s, _ in t.seeds
        ]
        assert t.diffs == pytest.approx(hand)
    # fsdd-a has 2 paired seeds: too few to test, and not counted in Holm's correction.
    (few,) = [t for t in tests if t.dataset == "fsdd-a"]
    assert math.isnan(few.p) and few.verdict.startswith("too few seeds to test (2 paired")
    ranked = sorted((t for t in tests if t is not few), key=lambda t: t.p)
    assert ranked[0].p_holm == pytest.approx(min(1.0, 2 * ranked[0].p))
    assert all(t.p_holm >= t.p for t in ranked)
    better = [t for t in tests if t.verdict.endswith("lower (Holm p < 0.05)")]
    for t in better:
        assert t.verdict.startswith("tanh" if t.mean_diff > 0 else t.a.unit.upper())


def test_html_is_self_contained(report_dir):
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == 2
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "url(" not in html


def test_markdown_and_html_show_the_tables(report_dir):
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    for text in (
        "Table 1",
        "Table 2",
        "GRU against LSTM",
        "Gated units against tanh",
        "mean test NLL diff (gated unit − tanh)",
        "How our setup differs",
        "Provenance",
        "Ubisoft A (speech)",
        "paper only",
        "not run",
        "8.100 ± 0.100",
        "1 diverged",
        "1 failed",
        "Batch size: 16",
        "Weight noise on the output layer: no (FSDD-A (speech)), yes (JSB Chorales) (paper: not",
        "torch",
    ):
        assert text in md, text
        assert text in html, text
    assert "![Figure 2" in md and "(figure2.png)" in md
    assert QUICK_BANNER not in md


def test_figures_are_valid_pngs(report_dir):
    for name in ("figure2.png", "figure3.png"):
        path = report_dir / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        with PILImage.open(path) as img:
            img.verify()
        with PILImage.open(path) as img:
            assert img.size[0] > 300 and img.size[1] > 300
            assert "Figure" in img.info["Title"]


def test_quick_banner_on_every_output(quick_report_dir):
    for name in ("report.md", "report.html"):
        text = (quick_report_dir / name).read_text(encoding="utf-8")
        assert (
            text.count(
                QUICK_BANNER.replace("'", "&#x27;") if name.endswith("html") else QUICK_BANNER
            )
            >= 2
        ), name
    rows = read_csv(quick_report_dir / "table2.csv")
    assert {r["protocol"] for r in rows} == {"quick: not the paper's protocol"}
    for name in ("figure2.png", "figure3.png"):
        with PILImage.open(quick_report_dir / name) as img:
            assert QUICK_BANNER in img.info["Title"]
            assert img.info["Warning"] == QUICK_BANNER


def test_a_shortened_study_says_so_on_every_output(report_dir):
    # the fixture's runs stop at 6 epochs with 2-3 learning rates per cell, patience 3
    banner = reduced_banner(["at most 6 epochs per run (protocol: 500)"])
    assert banner.startswith("NOT THE PAPER'S PROTOCOL: at most 6 epochs per run")
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    expected = (
        "NOT THE PAPER'S PROTOCOL: at most 6 epochs per run (protocol: 500); "
        "2/3 learning-rate candidates per cell (protocol: 10); "
        "learning rates other than the protocol's draw in 5 of 5 cells (protocol: 10 per cell, "
        "ln lr ~ U(-12, -6) from a generator seeded per data set); "
        "early-stopping patience 3 epochs (rnnbench's protocol: 20; the paper's is not "
        "published)."
    )
    assert md.count(expected) == 2
    assert html.count(expected.replace("'", "&#x27;")) == 2
    assert "<title>Not the paper&#x27;s protocol:" in html
    rows = [r for r in read_csv(report_dir / "table2.csv") if r["seeds"] != "0"]
    assert rows
    assert all(r["protocol"].startswith("not the paper's protocol: as stored:") for r in rows)
    for name in ("figure2.png", "figure3.png"):
        with PILImage.open(report_dir / name) as img:
            assert img.info["Warning"].startswith(expected)


def test_departures_name_each_change_and_nothing_at_the_protocol(tmp_path):
    # the rates reproduce draws for a data set, then fresh seeds at the chosen (here: the
    # lowest, all tie) rate: its runs are at the protocol
    path = tmp_path / "results.db"
    with Store(path) as store:
        add_protocol_cell(store, "jsb", "tanh")
    runs = Store(path, readonly=True).runs()
    assert departures(runs, build_cells(runs)) == []
    out = build_report(path, tmp_path / "out")
    assert "PROTOCOL:" not in (out / "report.md").read_text(encoding="utf-8")
    assert "Runs that diverged or failed" not in (out / "report.md").read_text(encoding="utf-8")
    assert read_csv(out / "table2.csv")[0]["protocol"].startswith("as stored:")

    other = tmp_path / "other.db"
    with Store(other) as store:
        for lr in lr_candidates(4, seed=stable_seed("jsb")):  # reproduce --candidates 4
            add_run(
                store,
                "jsb",
                "gru",
                lr,
                status="done",
                valid=[9.0],
                max_epochs=20,
                weight_noise=0.0,
                clip=5.0,
                hidden=8,
                bptt=100,
                patience=50,
            )
    runs = Store(other, readonly=True).runs()
    assert departures(runs, build_cells(runs)) == [
        "at most 20 epochs per run (protocol: 500)",
        "4 learning-rate candidates per cell (protocol: 10)",
        "weight noise σ 0.0 (protocol: 0.075)",
        "gradient-norm clip 5.0 (protocol: 1.0)",
        "hidden sizes other than the paper's (Table 1)",
        "in 1 cell the reported seeds include the runs that chose the learning rate (no fresh "
        "seeds; their means are biased low and they are not tested)",
        "early-stopping patience 50 epochs (rnnbench's protocol: 20; the paper's is not published)",
        "backpropagation truncated to 100 steps (protocol: whole sequences)",
    ]
    one = build_cells(runs[:1])  # one run at one of the protocol's rates
    assert departures(runs[:1], one)[1] == "1 learning-rate candidate per cell (protocol: 10)"

    # rates from another range (reproduce --log-lr) or by hand (rnnbench train --lr 1e-3)
    third = tmp_path / "third.db"
    with Store(third) as store:
        for lr in lr_candidates(10, seed=stable_seed("jsb"), low=-8, high=-6):
            add_run(store, "jsb", "lstm", lr, status="done", valid=[9.0], max_epochs=500)
        for lr in lr_candidates(10, seed=stable_seed("jsb")):
            add_run(store, "jsb", "tanh", lr, status="done", valid=[9.0], max_epochs=500)
    runs = Store(third, readonly=True).runs()
    item, _ = departures(runs, build_cells(runs))  # and: no fresh seeds in 2 cells
    assert item.startswith("learning rates other than the protocol's draw in 1 of 2 cells")


def test_quick_runs_in_the_store_set_the_banner(tmp_path):
    store_path = tmp_path / "results.db"
    with Store(store_path) as store:
        for seed in (0, 1):
            store.start_run(
                f"k{seed}",
                {"dataset": "jsb", "unit": "tanh", "lr": 1e-3, "seed": seed},
                "run",
                labels={"quick": True},
            )
            store.finish_run(
                f"k{seed}", "done", {"train_nll": 9.0 + seed, "valid_nll": 9.1, "test_nll": 9.2}
            )
    out = build_report(store_path, tmp_path / "out")
    assert QUICK_BANNER in (out / "report.md").read_text(encoding="utf-8")
    # no per-epoch metrics and no speech runs: figures say so instead of crashing
    assert not (out / "figure2.png").exists()
    assert "not run" in (out / "report.md").read_text(encoding="utf-8")


def test_missing_store_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope" / "results.db"
    with pytest.raises(RnnbenchError, match="No results store"):
        build_report(missing, tmp_path / "out")
    assert not missing.exists()  # the report does not create a store


def test_empty_store_is_a_clear_error(tmp_path):
    Store(tmp_path / "results.db").close()
    with pytest.raises(RnnbenchError, match="holds no runs"):
        build_report(tmp_path / "results.db", tmp_path / "out")


def test_only_failed_runs_do_not_crash(tmp_path):
    store_path = tmp_path / "results.db"
    with Store(store_path) as store:
        store.start_run("k", {"dataset": "fsdd-b", "unit": "lstm", "lr": 1e-3, "seed": 0}, "r")
        store.finish_run("k", "diverged", {"train_nll": None, "valid_nll": None})
    out = build_report(store_path, tmp_path / "out")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "every run diverged (see Runs that diverged or failed)" in md and "1 diverged" in md


def test_command(store_path, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    report_command.register(parser.add_subparsers())
    args = parser.parse_args(
        ["report", "--store", str(store_path), "--out", str(tmp_path / "r"), "--quick"]
    )
    assert args.func(args) == 0
    assert "report.html" in capsys.readouterr().out
    md = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert f"Report command: `rnnbench report --store {store_path}" in md and "--quick" in md
    assert "Trained by: not recorded" in md  # this store was filled without a command


def test_holm_correction():
    from rnnbench.report.results import PairedTest, holm

    tests = [PairedTest("jsb", None, None, [0, 1], [], 0.0, p) for p in (0.01, 0.04, 0.03)]
    holm(tests)
    assert [t.p_holm for t in tests] == pytest.approx([0.03, 0.06, 0.06])


@pytest.mark.parametrize(("low", "high", "least"), [(10.5, 31.0, 4), (0.5, 400.0, 2)])
def test_log_nll_axis_labels_enough_values_to_read_the_curves(low, high, least):
    # JSB curves (10.5 to 31 nats) used to get only "20" and "30" on their log axis.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from rnnbench.report.figures import log_nll_axis

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([1, 2, 3], [high, (low + high) / 2, low])
    log_nll_axis(ax, [low, high])
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    labels = [
        t.get_text()
        for t in ax.yaxis.get_ticklabels(which="both")
        if t.get_text() and lo <= t.get_position()[1] <= hi
    ]
    assert ax.get_yscale() == "log" and len(labels) >= least, labels


def test_holm_families_are_each_data_sets_three_unit_contrasts(store_path):
    # Issue 23: Holm's correction runs over each data set's unit contrasts (GRU − LSTM,
    # GRU − tanh, LSTM − tanh), not over every test of one section's table.
    from rnnbench.report.results import UNIT_CONTRASTS

    with Store(store_path) as store:
        tests = paired_tests(build_cells(store.runs()), UNIT_CONTRASTS, per_dataset=True)
    jsb = [t for t in tests if t.dataset == "jsb"]
    assert sorted((t.a.unit, t.b.unit) for t in jsb) == [
        ("gru", "lstm"),
        ("gru", "tanh"),
        ("lstm", "tanh"),
    ]
    assert all(t.family == 3 for t in jsb)
    p = sorted(t.p for t in jsb)
    expected = []
    for i, pi in enumerate(p):
        expected.append(max(expected[-1] if expected else 0.0, min(1.0, (3 - i) * pi)))
    assert sorted(t.p_holm for t in jsb) == pytest.approx(expected)
    # fsdd-a's one contrast has 2 paired seeds: not tested, in no family
    (few,) = [t for t in tests if t.dataset == "fsdd-a"]
    assert few.family == 0 and math.isnan(few.p_holm)


def test_the_report_states_the_holm_family_per_data_set(report_dir):
    md = (report_dir / "report.md").read_text()
    gated = md_table(md, "Gated units against tanh")
    assert {r[7].split(" ", 1)[1] for r in gated if r[0] == "JSB Chorales"} == {"(of 3)"}
    assert "one family per data set" in md


def test_a_cell_that_did_not_train_has_no_mean_in_table_2_and_no_paired_test(tmp_path):
    # Issue 23: a cell whose every run diverged before learning is "did not train", never an
    # effect size: its near-initial best states give no mean, no CI and no paired test.
    from rnnbench.train.population import diverged_after_best

    path = tmp_path / "results.db"
    late = diverged_after_best(2, 1, "its gradient overflowed")
    with Store(path) as store:
        for unit, valid, error in (("gru", [9.0, 8.5], None), ("lstm", [60.0, 95.0], late)):
            for seed in (0, 1, 2, 3):
                key = add_run(
                    store,
                    "jsb",
                    unit,
                    1e-3,
                    seed,
                    status="done",
                    valid=valid,
                    stage="lr" if seed == 0 else "seeds",
                    data_seed=seed,
                    final=min(valid) + 0.01 * seed,
                )
                if error:
                    store.finish_run(
                        key, "done", {"valid_nll": 60.0, "test_nll": 61.0}, error=error
                    )
    out = build_report(path, tmp_path / "report", samples=False)
    md = (out / "report.md").read_text()
    (lstm,) = [
        r
        for r in md_table(md, "Table 2: NLL per time step")
        if r[0] == "JSB Chorales" and r[1].startswith("LSTM")
    ]
    assert lstm[3].startswith("did not train: all 4 runs diverged before learning")
    assert lstm[7] == "—"  # no test NLL
    with open(out / "table2.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["unit"] == "lstm" and r["dataset"] == "jsb"]
    assert rows and all(r["nll_mean"] == "" and r["note"].startswith("did not train") for r in rows)
    (gru_lstm,) = md_table(md, "GRU against LSTM")
    assert gru_lstm[6] == "—" and gru_lstm[8].startswith("too few seeds to test (0 paired")


def test_authors_protocol_cells_are_named_and_kept_out_of_the_unit_contrasts():
    # the authors'-recipe pilots merged into the grid's report: a GRU cell of its own, labelled
    # by its preset (not by batch_size=1, rms_eps=0.01, ...), and the data set's unit contrasts
    # stay the paper-protocol cells' (one family of 1 here, not 2)
    import dataclasses

    from rnnbench.train.config import RunConfig
    from rnnbench.train.presets import AUTHORS

    paper = {f.name: f.default for f in dataclasses.fields(RunConfig) if f.name in AUTHORS}
    runs = []
    for unit in ("gru", "lstm"):
        for s in (0, 1, 2, 3):
            stage = "lr" if s == 0 else "seeds"
            valid = 1.0 + (0.01 * s if unit == "gru" else 0.003 * s * s)
            runs.append(_run(f"{unit}{s}", 1e-3, s, valid, unit=unit, stage=stage))
            runs[-1]["config"].update({"protocol": "paper", "peephole": True, **paper})
    for s in (0, 1, 2, 3):
        r = _run(f"a{s}", 1e-3, s, 0.5 + 0.02 * s, stage="lr" if s == 0 else "seeds")
        r["config"].update({"protocol": "authors", **AUTHORS})
        runs.append(r)
    cells = build_cells(runs)
    gru = sorted(c.form for c in cells if c.unit == "gru")
    assert gru == ["reset before", "reset before, authors' protocol"]
    paper_gru = next(c for c in cells if c.form == "reset before")
    assert paper_gru.is_paper_form and paper_gru.setting == ""
    assert [c.seeds for c in cells] == [[1, 2, 3]] * 3
    tests = paired_tests(cells, per_dataset=True)
    assert [(t.a.form, t.b.form) for t in tests] == [("reset before", "peephole")]
    assert tests[0].family == 1
    # another setting than the protocol still names itself, with its value
    runs[-1]["config"]["hidden"] = 64
    assert "reset before, authors' protocol, hidden=64" in {c.form for c in build_cells(runs)}
    del runs[-1]["config"]["hidden"]
    # stored configs as the trainer writes them: the paper's cells with the task's resolved
    # batch size and output noise, the authors' with patience at the epoch cap (no early
    # stopping); neither is named in the label
    for r in runs:
        cfg = r["config"]
        cfg["dataset"] = "jsb"
        if cfg["protocol"] == "paper":
            cfg.update(batch_size=4, noise_output=True, patience=20)
        else:
            cfg["patience"] = cfg["max_epochs"]
    gru = sorted(c.form for c in build_cells(runs) if c.unit == "gru")
    assert gru == ["reset before", "reset before, authors' protocol"]
    # a value the protocol does not imply still names itself
    runs[0]["config"]["batch_size"] = 8
    assert any("batch_size=8" in c.form for c in build_cells(runs))
