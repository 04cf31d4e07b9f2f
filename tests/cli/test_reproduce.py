"""``rnnbench reproduce`` end to end on a few sequences, and its plan (rates, seeds, quick)."""

import argparse
import math
import random
import shlex
import shutil

import pytest

from rnnbench.cli import main
from rnnbench.commands.reproduce import PAPER_SETS, QUICK, QUICK_LOG_LR, plan
from rnnbench.errors import RnnbenchError
from rnnbench.report.build import REPORT_FILES
from rnnbench.store import Store
from tests.cli.tiny_study import reproduce_argv
from tests.sweeps.test_kill import write_tiny_music


def args(**kw):
    base = {
        "quick": False,
        "sets": None,
        "units": None,
        "seeds": None,
        "candidates": None,
        "max_epochs": None,
        "lr_decay": None,
        "weight_noise": None,
        "noise_output": None,
        "bptt": None,
        "search": "full",
        "search_eta": None,
        "search_min_epochs": None,
    }
    return argparse.Namespace(**{**base, **kw})


def test_the_paper_plan():
    stage1, then = plan(args())
    assert len(stage1) == len(PAPER_SETS) * 3
    for pop in stage1:
        lrs = [c.lr for c in pop.configs]
        assert len(lrs) == 10 and all(math.exp(-12) <= lr <= math.exp(-6) for lr in lrs)
        assert {c.seed for c in pop.configs} == {0} and pop.labels["stage"] == "lr"
        c = pop.configs[0]
        assert c.hidden is None and c.max_epochs == 500  # paper sizes, RunConfig's epochs
        assert c.peephole == (c.unit == "lstm") and c.reset == "before"
    again, _ = plan(args())  # the same rates every time
    assert [[c.lr for c in p.configs] for p in again] == [[c.lr for c in p.configs] for p in stage1]
    runs = [
        {"status": "done", "valid_nll": 10 - i, "config": c.to_dict()}
        for i, c in enumerate(stage1[0].configs)
    ]
    runs[-1]["status"] = "diverged"
    fresh = then(stage1[0], runs)
    # Three fresh seeds (none is the search's seed 0), each with its own batch order.
    assert [(c.seed, c.data_seed) for p in fresh for c in p.configs] == [(1, 1), (2, 2), (3, 3)]
    assert {c.lr for p in fresh for c in p.configs} == {stage1[0].configs[-2].lr}
    assert {p.labels["stage"] for p in fresh} == {"seeds"}
    assert then(fresh[0], []) == []
    # One candidate set per data set: every unit of a data set sees the same rates.
    by_set = {}
    for pop in stage1:
        by_set.setdefault(pop.configs[0].dataset, set()).add(tuple(c.lr for c in pop.configs))
    assert all(len(rates) == 1 for rates in by_set.values())
    assert len({rates.pop() for rates in by_set.values()}) == len(PAPER_SETS)
    with pytest.raises(RnnbenchError, match="at least 3"):
        plan(args(seeds=2))


def test_the_authors_schedule_and_noise_placement_reach_every_run():
    stage1, then = plan(args(lr_decay=0.01, noise_output=False, sets=["jsb"]))
    configs = [c for p in stage1 for c in p.configs]
    assert {(c.lr_decay, c.noise_output) for c in configs} == {(0.01, False)}
    runs = [{"status": "done", "valid_nll": 1.0, "config": stage1[0].configs[0].to_dict()}]
    seeds = [c for p in then(stage1[0], runs) for c in p.configs]
    assert {(c.lr_decay, c.noise_output) for c in seeds} == {(0.01, False)}
    default, _ = plan(args(sets=["jsb"]))  # the defaults keep the grid's keys
    assert default[0].configs[0].key() != stage1[0].configs[0].key()


def test_weight_noise_and_its_placement_reach_every_run_and_a_bad_value_is_one_sentence():
    stage1, then = plan(args(weight_noise=0.02, sets=["fsdd-a"]))
    assert {c.weight_noise for p in stage1 for c in p.configs} == {0.02}
    runs = [{"status": "done", "valid_nll": 1.0, "config": stage1[0].configs[0].to_dict()}]
    seeds = [c for p in then(stage1[0], runs) for c in p.configs]
    assert {c.weight_noise for c in seeds} == {0.02}
    assert {c.weight_noise for p in plan(args(sets=["fsdd-a"]))[0] for c in p.configs} == {0.075}
    speech, _ = plan(args(sets=["fsdd-a", "jsb"]))
    assert {(p.configs[0].dataset, c.noise_output) for p in speech for c in p.configs} == {
        ("fsdd-a", False),
        ("jsb", True),
    }
    forced, _ = plan(args(sets=["fsdd-a"], noise_output=True))
    assert {c.noise_output for p in forced for c in p.configs} == {True}
    for bad in (-0.1, math.nan):
        with pytest.raises(RnnbenchError, match="--weight-noise"):
            plan(args(weight_noise=bad, sets=["jsb"]))


def test_log_lr_sets_the_range_of_the_candidates_and_a_bad_range_is_one_sentence():
    stage1, _ = plan(args(log_lr=[-8.0, -6.5], candidates=4, sets=["fsdd-a"]))
    lrs = [c.lr for p in stage1 for c in p.configs]
    assert len(lrs) == 12 and all(math.exp(-8) <= lr <= math.exp(-6.5) for lr in lrs)
    quick, _ = plan(args(quick=True, log_lr=[-9.0, -8.0]))  # the flag wins over --quick's range
    assert all(math.exp(-9) <= c.lr <= math.exp(-8) for p in quick for c in p.configs)
    for bad in ([-6.0, -8.0], [-7.0, -7.0], [math.nan, -6.0]):
        with pytest.raises(RnnbenchError, match=r"^--log-lr .* is not a range: give LOW < HIGH"):
            plan(args(log_lr=bad))


def test_bptt_reaches_every_run_and_a_bad_window_is_one_sentence():
    stage1, then = plan(args(bptt=200, sets=["fsdd-b"], candidates=2))
    assert {c.bptt for p in stage1 for c in p.configs} == {200}
    assert {c.bptt for p in plan(args(sets=["fsdd-b"]))[0] for c in p.configs} == {None}
    with pytest.raises(RnnbenchError, match=r"^--bptt 0: use a window of 1 or more steps"):
        plan(args(bptt=0))


def test_the_quick_plan():
    stage1, then = plan(args(quick=True))
    assert {p.configs[0].dataset for p in stage1} == {"jsb", "fsdd-a"}
    for pop in stage1:
        assert len(pop.configs) == QUICK["candidates"] and pop.labels["quick"] is True
        low, high = QUICK_LOG_LR
        assert all(math.exp(low) <= c.lr <= math.exp(high) for c in pop.configs)
    runs = [{"status": "done", "valid_nll": 1.0, "config": c.to_dict()} for c in stage1[0].configs]
    (seeds,) = then(stage1[0], runs)  # the fresh seeds: one population (issue 22)
    assert [(c.seed, c.data_seed) for c in seeds.configs] == [(1, 1), (2, 2)]  # 2 seeds in all


@pytest.fixture
def tiny_sets(tmp_path, data_root):
    music = tmp_path / "tiny.pickle"
    write_tiny_music(music)
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    recordings = sorted((data_root / "fsdd" / "recordings").glob("*.wav"))
    for path in random.Random(0).sample(recordings, 6):
        shutil.copy(path, wavs / path.name)
    return [f"music:{music}", f"wav:{wavs}"]


@pytest.mark.slow
def test_reproduce_end_to_end_writes_every_report_file_and_resumes(tmp_path, tiny_sets, capsys):
    out = tmp_path / "out"
    argv = reproduce_argv(tiny_sets, out, workers=2)
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report'}" in printed
    for name in REPORT_FILES:
        assert (out / "report" / name).stat().st_size > 0, name
    store = Store(out / "results.db")
    runs = store.runs()
    # 2 sets x 3 units x (2 candidates + 3 fresh seeds)
    assert len(runs) == 2 * 3 * 5
    assert {r["stage"] for r in runs} == {"lr", "seeds"}
    for r in store.runs(stage="seeds"):
        lr_runs = store.runs(stage="lr", dataset=r["dataset"], unit=r["unit"])
        done = [x for x in lr_runs if x["status"] == "done"]
        assert r["lr"] == min(done, key=lambda x: x["valid_nll"])["lr"]
    assert not any(r["quick"] for r in runs)

    assert main(argv) == 0  # again: nothing trained, the report rebuilt
    assert "(30 were already finished)" in capsys.readouterr().out
    # The store names the command that trained it, so a report rebuilt later still does.
    command = shlex.join(["rnnbench", *argv])
    assert [c["command"] for c in store.commands()] == [command, command]
    rebuilt = main(["report", "--store", str(out / "results.db"), "--out", str(tmp_path / "r")])
    assert rebuilt == 0
    md = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert f"Trained by: `{command}` (2 calls, first " in md


@pytest.mark.slow
def test_reproduce_quick_says_it_is_not_the_paper(tmp_path, tiny_sets, capsys):
    out = tmp_path / "quick"
    argv = [
        "reproduce",
        "--quick",
        "--sets",
        tiny_sets[0],
        "--units",
        "gru",
        "--max-epochs",
        "1",
        "--workers",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "NOT" in captured.out and "paper's protocol" in captured.err
    store = Store(out / "results.db")
    assert store.meta()["quick"] == "1"
    assert all(r["quick"] for r in store.runs())
    assert len(store.runs()) == QUICK["candidates"] + QUICK["seeds"]
    assert "not the paper" in (out / "report" / "report.md").read_text().lower()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sets", "jsbx"], "Unknown data set 'jsbx'"),
        (["--sets", "jsb", "--data-dir", "{tmp}/none"], "not found"),
        (["--sets", "jsb", "--device", "cuda"], "no CUDA GPU"),
    ],
)
def test_reproduce_refuses_up_front_what_would_fail_every_run(tmp_path, capsys, extra, message):
    # These used to mark every run of the grid failed, one by one, then write an empty report.
    import torch

    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    argv = [
        "reproduce",
        *[a.format(tmp=tmp_path) for a in extra],
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1
    assert not (out / "results.db").exists() and not (out / "report").exists()


def test_search_flags_reach_the_search_and_its_seeds_and_bad_ones_are_one_sentence():
    stage1, then = plan(args(sets=["jsb"], search="halving", search_eta=4, search_min_epochs=5))
    configs = [c for p in stage1 for c in p.configs]
    assert {(c.search, c.search_eta, c.search_min_epochs) for c in configs} == {("halving", 4, 5)}
    runs = [{"status": "done", "valid_nll": 1.0, "config": stage1[0].configs[0].to_dict()}]
    seeds = [c for p in then(stage1[0], runs) for c in p.configs]
    # the seeds carry the strategy (one experiment) but train alone: one rate is never cut
    assert {c.search for c in seeds} == {"halving"}
    default, _ = plan(args(sets=["jsb"]))
    assert {c.search for p in default for c in p.configs} == {"full"}
    for bad, message in (
        (dict(search_eta=3), "add --search halving"),
        (dict(search="halving", search_eta=1), "--search-eta 1"),
        (dict(search="halving", search_min_epochs=0), "--search-min-epochs 0"),
        (
            dict(search="halving", search_min_epochs=30, max_epochs=20),
            "--search-min-epochs 30 is not below --max-epochs 20",
        ),
    ):
        with pytest.raises(RnnbenchError, match=message):
            plan(args(sets=["jsb"], **bad))


@pytest.mark.slow
def test_reproduce_quick_with_halving_names_it_and_shows_the_time_saved(tmp_path, tiny_sets):
    import csv

    from rnnbench.train.halving import HALTED

    out = tmp_path / "halving"
    argv = [
        "reproduce",
        "--quick",
        "--search",
        "halving",
        "--search-eta",
        "2",
        "--search-min-epochs",
        "1",
        "--sets",
        tiny_sets[0],
        "--units",
        "gru",
        "--max-epochs",
        "3",
        "--workers",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    runs = Store(out / "results.db").runs()
    search = [r for r in runs if r["stage"] == "lr"]
    # rungs at epochs 1 and 2 (η 2, cap 3): 3 rates -> 2 -> 1
    assert sorted(r["epochs"] for r in search) == [1, 2, 3]
    halted = [r for r in search if (r["error"] or "").startswith(HALTED)]
    assert len(halted) == 2 and {r["status"] for r in halted} == {"done"}
    report = out / "report"
    for name in REPORT_FILES:
        if name != "figure3.png":  # no speech set here
            assert (report / name).stat().st_size > 0, name
    banner = "successive halving (η = 2, rungs at epochs 1, 2)"
    for name in ("report.md", "report.html"):
        assert banner in (report / name).read_text(encoding="utf-8")
    rows = list(csv.DictReader((report / "table2.csv").read_text(encoding="utf-8").splitlines()))
    assert all(banner in row["protocol"] for row in rows if row["seeds"] != "0")
    md = (report / "report.md").read_text(encoding="utf-8")
    assert "without successive halving (estimate)" in md and "saved" in md
    assert "stopped by successive halving" not in md.split("Runs that diverged or failed")[-1]
