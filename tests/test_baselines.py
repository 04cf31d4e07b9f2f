"""The per-note baselines (rnnbench.baselines), the command and their rows in Table 2."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

from rnnbench.baselines import fit_marginal, fit_markov, music_baselines, score
from rnnbench.data.dataset import Dataset, Sequence
from rnnbench.errors import RnnbenchError
from rnnbench.report.baselines import LABELS, with_baselines
from rnnbench.report.document import Table


def seq(frames) -> Sequence:
    """A piece from its frames (rows of 0/1): inputs frames 1..T-1, targets 2..T."""
    a = np.asarray(frames, dtype=np.float32)
    return Sequence(a[:-1], a[1:])


# two notes; note 0 alternates on/off, note 1 never sounds
TRAIN = [seq([[1, 0], [0, 0], [1, 0], [0, 0], [1, 0]])]  # 4 steps: note 0 on in 2 targets


def test_marginal_is_the_smoothed_training_frequency():
    p = fit_marginal(TRAIN)
    assert p.tolist() == pytest.approx([(2 + 0.5) / (4 + 1), 0.5 / 5])
    frame, per_seq, steps = score("marginal", p, TRAIN)
    # every step: note 1 off costs -ln(1 - 0.1); note 0 costs -ln 0.5 whether on or off
    assert steps == 4
    assert frame == pytest.approx(-math.log(0.5) - math.log(0.9))
    assert per_seq == pytest.approx(frame)


def test_markov_chain_uses_each_notes_previous_state():
    q = fit_markov(TRAIN)
    # note 0: from on (2 times) always to off; from off (2 times) always to on
    assert q[1, 0] == pytest.approx(0.5 / 3) and q[0, 0] == pytest.approx(2.5 / 3)
    # note 1: never on: 4 transitions from off, none to on; none from on
    assert q[0, 1] == pytest.approx(0.5 / 5) and q[1, 1] == pytest.approx(0.5)
    frame, _, _ = score("markov", q, TRAIN)
    assert frame == pytest.approx(-math.log(2.5 / 3) - math.log(0.9))


def test_frame_weighted_and_per_sequence_differ_by_weighting():
    p = np.array([0.5, 0.1])
    long, short = seq([[0, 0]] * 5), seq([[0, 1], [0, 1]])  # 4 cheap steps, 1 dear step
    cheap, dear = -math.log(0.5) - math.log(0.9), -math.log(0.5) - math.log(0.1)
    frame, per_seq, steps = score("marginal", p, [long, short])
    assert steps == 5
    assert frame == pytest.approx((4 * cheap + dear) / 5)
    assert per_seq == pytest.approx((cheap + dear) / 2)
    with pytest.raises(RnnbenchError, match="Unknown baseline 'x'"):
        score("x", p, [long])


def test_on_jsb_markov_beats_marginal_and_both_are_finite(data_root):
    from rnnbench.data.registry import load_dataset

    rows = {(r.baseline, r.split): r for r in music_baselines(load_dataset("jsb", data_root))}
    assert len(rows) == 6
    for split in ("train", "valid", "test"):
        assert math.isfinite(rows[("marginal", split)].frame_weighted)
        assert rows[("markov", split)].frame_weighted < rows[("marginal", split)].frame_weighted
    assert rows[("markov", "test")].frame_weighted == pytest.approx(10.491, abs=1e-3)
    assert rows[("marginal", "test")].steps == 4648


def test_speech_sets_are_refused_in_one_sentence():
    d = Dataset("s", "speech", 20, 10, "gmm", "speech", {"train": [], "valid": [], "test": []})
    with pytest.raises(RnnbenchError, match="not a music data set"):
        music_baselines(d)


def test_command_prints_json(data_root, capsys):
    from rnnbench.commands import baselines

    parser = argparse.ArgumentParser()
    baselines.register(parser.add_subparsers())
    args = parser.parse_args(["baselines", "--sets", "jsb", "--data-dir", str(data_root), "--json"])
    assert args.func(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["baseline"], r["split"]) for r in rows} == {
        (b, s) for b in ("marginal", "markov") for s in ("train", "valid", "test")
    }


def test_table2_gets_the_rows_after_its_data_set(data_root, monkeypatch):
    monkeypatch.setenv("RNNBENCH_DATA", str(data_root))
    header = ["data set", "unit", "train NLL (ours)", "test NLL (ours)", "test per sequence"]
    table = Table(
        header, [["JSB Chorales", "GRU", "8.1", "8.6", "8.5"], ["MuseData", "x", "", "", ""]]
    )
    out = with_baselines(table, ["jsb", "fsdd-a"])
    assert [r[1] for r in out.rows] == ["GRU", LABELS["marginal"], LABELS["markov"], "x"]
    markov = out.rows[2]
    assert markov[0] == "JSB Chorales" and markov[3] == "10.491" and markov[4] == "10.489"
    assert "add-half smoothing" in out.caption


def test_table2_without_the_data_says_so(monkeypatch):
    from rnnbench.report import baselines as report_baselines

    def missing(name):
        raise RnnbenchError(f"{name} not found")

    monkeypatch.setattr(report_baselines, "_scores", missing)
    table = Table(["data set", "unit", "test NLL (ours)"], [["JSB Chorales", "GRU", "8.6"]])
    out = with_baselines(table, ["jsb"])
    assert out.rows == table.rows
    assert "Baselines not computed (data not found): JSB Chorales." in out.caption
