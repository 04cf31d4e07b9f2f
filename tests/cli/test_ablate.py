"""``rnnbench ablate``: its plan (shared candidates, matching, fresh seeds) and one tiny run end to
end that writes every report file, rebuilds from its exports and stays out of `rnnbench report`."""

import argparse
import csv
import shutil

import pytest

from rnnbench.analysis import units
from rnnbench.cli import main
from rnnbench.commands.ablate import QUICK, plan
from rnnbench.errors import RnnbenchError
from rnnbench.report.ablations import ABLATION_FILES, reproduce_runs
from tests.sweeps.test_kill import write_tiny_music


def args(**kw):
    base = {
        "quick": False,
        "sets": None,
        "variants": None,
        "budget": None,
        "seeds": None,
        "candidates": None,
        "log_lr": None,
        "max_epochs": None,
        "lr_decay": None,
        "weight_noise": None,
        "noise_output": None,
        "bptt": None,
    }
    return argparse.Namespace(**{**base, **kw})


def test_every_variant_of_a_data_set_searches_the_same_candidates_at_a_matched_size():
    stage1, then = plan(args(sets=["jsb", "fsdd-a"], variants=["lstm:np", "gru:after"]))
    # the full units are added before their variants
    assert [p.name for p in stage1[:4]] == [
        "jsb/lstm lr",
        "jsb/lstm:np lr",
        "jsb/gru lr",
        "jsb/gru:after lr",
    ]
    for dataset in ("jsb", "fsdd-a"):
        mine = [p for p in stage1 if p.configs[0].dataset == dataset]
        assert len({tuple(c.lr for c in p.configs) for p in mine}) == 1
        assert all(len(p.configs) == 10 and p.labels["sweep"] == "ablate" for p in mine)
    sizes = {
        (p.configs[0].dataset, p.name.split()[0].split("/")[1]): p.configs[0].hidden for p in stage1
    }
    assert sizes[("jsb", "lstm")] == 36 and sizes[("jsb", "gru")] == 46  # Table 1
    assert sizes[("fsdd-a", "lstm")] == 195 and sizes[("fsdd-a", "gru")] == 227
    assert not stage1[1].configs[0].peephole and stage1[3].configs[0].reset == "after"
    runs = [
        {"status": "done", "valid_nll": 5.0 - i, "config": c.to_dict()}
        for i, c in enumerate(stage1[1].configs)
    ]
    seeds = then(stage1[1], runs)
    assert [(c.seed, c.data_seed) for p in seeds for c in p.configs] == [(1, 1), (2, 2), (3, 3)]
    assert {p.labels["stage"] for p in seeds} == {"seeds"} and seeds[
        0
    ].name == "jsb/lstm:np seeds 1-3"
    # a budget matches every variant to one count
    small, _ = plan(args(sets=["jsb"], variants=["lstm"], budget=5000))
    assert small[0].configs[0].hidden == units.hidden_size("music", "lstm", "", 5000) < 36


def test_the_quick_plan_and_bad_input_are_one_sentence():
    stage1, then = plan(args(quick=True))
    assert {p.configs[0].dataset for p in stage1} == {"jsb"} and len(stage1) == 4
    assert all(len(p.configs) == QUICK["candidates"] and p.labels["quick"] for p in stage1)
    assert {c.max_epochs for p in stage1 for c in p.configs} == {QUICK["max_epochs"]["music"]}
    with pytest.raises(RnnbenchError, match="^--variants tanh: the ablations cover lstm and gru"):
        plan(args(variants=["tanh"]))
    with pytest.raises(RnnbenchError, match="^--budget 0"):
        plan(args(budget=0))
    with pytest.raises(RnnbenchError, match="at least 3"):
        plan(args(seeds=2))


def test_the_paper_report_leaves_ablation_runs_out():
    runs = [{"key": "a", "sweep": "reproduce"}, {"key": "b", "sweep": "ablate"}, {"key": "c"}]
    assert [r["key"] for r in reproduce_runs(runs)] == ["a", "c"]
    with pytest.raises(RnnbenchError, match="only ablation runs"):
        reproduce_runs(runs[1:2])


@pytest.mark.slow
def test_ablate_end_to_end_writes_every_report_file_and_rebuilds_from_its_exports(tmp_path, capsys):
    music = tmp_path / "tiny.pickle"
    write_tiny_music(music)
    out = tmp_path / "out"
    argv = [
        "ablate",
        "--quick",
        "--sets",
        f"music:{music}",
        "--variants",
        "lstm",
        "gru:after",
        "--candidates",
        "2",
        "--max-epochs",
        "2",
        "--seeds",
        "3",  # 3 fresh seeds: enough for the paired test (2 are too few to test)
        "--workers",
        "2",
        "--threads",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert f"ablation report: {out / 'report'}" in capsys.readouterr().out
    for name in ABLATION_FILES:
        assert (out / "report" / name).stat().st_size > 0, name
    md = (out / "report" / "ablations.md").read_text(encoding="utf-8")
    assert "QUICK RUN" in md and "GRU after" in md and "| LSTM | i |" in md
    page = (out / "report" / "ablations.html").read_text(encoding="utf-8")
    # self-contained: 2 figures, then the Samples section's picture and audio of each variant
    assert page.count("data:image/png;base64,") == 2 + 3 and "QUICK RUN" in page
    assert page.count("data:audio/ogg;base64,") == 3 * 2  # sample and real excerpt
    samples = md.split("## Samples\n", 1)[1].split("\n## ", 1)[0]
    for unit in ("LSTM (peephole)", "GRU (reset before)", "GRU (reset after)"):
        assert unit in samples, unit
    drawn = sorted(p.suffix for p in (out / "report" / "samples").iterdir())
    assert drawn == [".mid"] * 6 + [".ogg"] * 6 + [".png"] * 3  # sample and real, 1 picture
    with open(out / "report" / "ablations.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["unit"], r["variant"]) for r in rows] == [
        ("lstm", "full"),
        ("gru", "full"),
        ("gru", "after"),
    ]
    assert rows[2]["paired_seeds"] == "1 2 3" and rows[2]["p_holm"] != ""
    assert all("QUICK RUN" in r["protocol"] for r in rows)
    flow = (out / "report" / "gradflow.csv").read_text(encoding="utf-8")
    assert main(argv) == 0  # again: every run found finished, nothing trained
    assert "(15 were already finished)" in capsys.readouterr().out  # 3 x (2 rates + 3 seeds)

    # The checkpoints gone, the report rebuilds from its own folder: the same analyses.
    shutil.rmtree(out / "runs")
    rebuilt = tmp_path / "rebuilt"
    assert (
        main(["ablate", "--report-only", "--store", str(out / "report"), "--report", str(rebuilt)])
        == 0
    )
    assert (rebuilt / "gradflow.csv").read_text(encoding="utf-8") == flow
    # ... and keeps the samples committed beside the exports (issue 25 §3)
    rebuilt_md = (rebuilt / "ablations.md").read_text(encoding="utf-8")
    assert rebuilt_md.count("Kept from the committed report") == 3
    assert "No sample for" not in rebuilt_md
    assert sorted(p.name for p in (rebuilt / "samples").iterdir()) == sorted(
        p.name for p in (out / "report" / "samples").iterdir()
    )
    bare = tmp_path / "bare"
    assert (
        main(
            [
                "ablate",
                "--report-only",
                "--no-samples",
                "--store",
                str(out / "report"),
                "--report",
                str(bare),
            ]
        )
        == 0
    )
    assert "## Samples" not in (bare / "ablations.md").read_text(encoding="utf-8")
    with open(rebuilt / "ablations.csv", encoding="utf-8") as f:
        assert [r["test_nll_mean"] for r in csv.DictReader(f)] == [r["test_nll_mean"] for r in rows]
    # `rnnbench report` is the paper's report: it has nothing to say about these runs.
    assert main(["report", "--store", str(out / "results.db"), "--out", str(tmp_path / "r")]) == 2
    assert "only ablation runs" in capsys.readouterr().err
