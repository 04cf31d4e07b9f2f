"""`reproduce` at its edges (issue 12 §3-§4): --seeds, the --quick banner, every missing data
set at once, a progress bar whose total is fixed from the start."""

from __future__ import annotations

import pytest

from rnnbench.cli import build_parser, main
from rnnbench.commands.reproduce import plan, quick_banner
from rnnbench.errors import RnnbenchError
from rnnbench.sweeps import common
from tests.cli.test_reproduce import args


def test_seeds_below_three_are_refused_but_quick_takes_one():
    with pytest.raises(RnnbenchError, match="--seeds 1 is too few.*at least 3"):
        plan(args(seeds=1))
    with pytest.raises(RnnbenchError, match="--seeds 2 is too few"):
        plan(args(seeds=2))
    plan(args(quick=True, seeds=1, sets=["jsb"]))
    sub = build_parser()._subparsers._group_actions[0].choices["reproduce"]
    (seeds,) = [a for a in sub._actions if a.dest == "seeds"]
    assert "default 3, and at least 3" in seeds.help and "--quick: default 2, at least 1" in (
        seeds.help
    )


def test_the_quick_banner_counts_what_runs():
    chosen = args(quick=True, sets=["jsb"], seeds=None, units=["gru"])
    stage1, _ = plan(chosen)
    banner = quick_banner(stage1, chosen)
    assert "(1 data set, 3 learning rates, 2 seeds," in banner
    default = args(quick=True)
    assert "(2 data sets, 3 learning rates, 2 seeds," in quick_banner(plan(default)[0], default)


def test_every_missing_data_set_is_named_at_once(tmp_path, capsys):
    status = main(
        ["reproduce", "--sets", "jsb", "nottingham", "fsdd-a", "fsdd-b", "--data-dir",
         str(tmp_path / "empty"), "--out", str(tmp_path / "out"), "--no-progress"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "4 data sets not found: jsb, nottingham, fsdd-a, fsdd-b" in err
    for fetch in ("jsb", "nottingham", "fsdd"):
        assert f"`rnnbench data fetch {fetch}`" in err
    assert not (tmp_path / "out" / "results.db").exists()  # refused before the store


def test_the_progress_bar_total_is_fixed_from_the_start():
    stage1, then = plan(args(quick=True, sets=["jsb", "fsdd-a"], units=["gru", "tanh"]))
    planned = common.planned_runs(stage1, then)
    assert planned == 4 * 3 + 4 * 2  # 4 cells: 3 rates, then 2 fresh seeds each
    tally = common.Tally(planned=planned)
    display = common.Display(True, tally)
    try:
        assert display.bar.total == planned
        tally.total += 3  # the first population admitted
        display.update(1)
        assert display.bar.total == planned
    finally:
        display.close()
