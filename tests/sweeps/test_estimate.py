"""The sweep's time-left estimate and display (issue 25 §3): measured per-epoch costs per data
set and unit, epoch caps shown, an estimate for a chained (reproduce) sweep, and after a stop
the command that continues it."""

from __future__ import annotations

import os
import signal

from rnnbench import cli
from rnnbench.sweeps import common
from rnnbench.sweeps.estimate import Estimate, words
from rnnbench.sweeps.grid import Population
from rnnbench.train.config import RunConfig


def _pop(dataset, unit, n=3, max_epochs=50):
    return Population(
        [
            RunConfig(dataset=dataset, unit=unit, lr=10.0**-i, max_epochs=max_epochs)
            for i in range(n)
        ]
    )


def test_each_cell_is_estimated_at_its_own_measured_cost():
    est = Estimate(workers=1)
    est.queue("music", _pop("jsb", "gru").configs)
    est.queue("speech", _pop("fsdd-a", "gru", max_epochs=2).configs)
    assert est.left() is None  # nothing measured yet: no guess
    for epoch, seconds in ((1, 10.0), (2, 20.0), (3, 30.0)):  # 10 s per music epoch
        est.epoch("music", 0, {"epoch": epoch, "seconds": seconds})
        est.epoch("music", 1, {"epoch": epoch, "seconds": seconds * 5})  # only member 0 counts
    # 47 music epochs left at 10 s; the speech cell has no cost yet: the mean (10 s), 2 epochs
    assert est.left() == 47 * 10 + 2 * 10
    for epoch, seconds in ((1, 100.0), (2, 400.0)):  # speech epochs cost 300 s
        est.epoch("speech", 0, {"epoch": epoch, "seconds": seconds})
    assert est.left() == 47 * 10  # speech is at its cap now
    est.drop("music")
    assert est.left() == 0
    assert words(47 * 10) == "at most 8m left" and words(3 * 3600 + 60) == "at most 3h01m left"
    assert words(None) == "" and words(0) == ""


def test_chained_runs_and_workers_count():
    est = Estimate(workers=2)
    est.queue("a", _pop("jsb", "gru", n=3, max_epochs=10).configs)
    est.queue("b", _pop("jsb", "lstm", n=3, max_epochs=10).configs)
    est.epoch("a", 0, {"epoch": 1, "seconds": 5.0})
    est.epoch("a", 0, {"epoch": 2, "seconds": 10.0})  # 5 s per epoch
    only_queued = est.left()
    assert only_queued == (8 * 5 + 10 * 5) / 2
    # 6 runs chained later (seeds): populations like these, 10 epochs of 3 members at 5 s
    assert est.left(unplanned_runs=6) == only_queued + 6 * (10 * 5 / 3) / 2


def test_the_display_shows_epoch_caps_and_the_estimate(capsys):
    tally = common.Tally(planned=6)
    display = common.Display(True, tally)
    try:
        pop = _pop("jsb", "tanh", max_epochs=500)
        tally.total += 3
        tally.queued(7, pop)
        tally.epoch(7, 0, {"epoch": 5, "seconds": 50.0})
        tally.epoch(7, 0, {"epoch": 6, "seconds": 60.0})
        display.update(1)
        postfix = display.bar.postfix
        assert "(epoch 6/500)" in postfix
        assert "at most" in postfix and "left" in postfix
    finally:
        display.close()


def test_after_a_stop_the_same_command_is_given_to_continue(monkeypatch, capsys):
    from rnnbench.commands import sweep

    def handler(args):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("not reached")

    monkeypatch.setattr(sweep, "handler", handler)
    assert cli.main(["sweep", "my grid.toml", "--out", "o"]) == 130
    err = capsys.readouterr().err
    assert "To continue, run the same command again: rnnbench sweep 'my grid.toml' --out o" in err
