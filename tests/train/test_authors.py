"""The authors' protocol preset (``protocol="authors"``): each element against a hand example."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from rnnbench.errors import RnnbenchError
from rnnbench.train import authors
from rnnbench.train.config import RunConfig, with_defaults
from rnnbench.train.presets import AUTHORS, preset_departures, with_preset
from rnnbench.train.protocol import PopulationRMSProp


def authors_config(**fields) -> RunConfig:
    return RunConfig(
        **with_preset({"dataset": "jsb", "unit": "gru", "protocol": "authors", **fields})
    )


def step(opt, param, grad, active=(True,)):
    param.grad = grad.clone()
    out = opt.step(torch.tensor(list(active)))
    param.grad = None
    return out


def test_optimizer_floor_momentum_and_no_clip_below_the_cap():
    # Two weights: the first's RMS gradient (2.2e-4) is under the floor 0.01, the second's not.
    p = torch.zeros(1, 2, dtype=torch.float64)
    opt = authors.AuthorsRMSProp([p], [0.1], decay=0.95, momentum=0.9, eps=0.01, clip=1.0)
    g = torch.tensor([[0.001, 2.0]], dtype=torch.float64)
    step(opt, p, g)
    # v = 0.05 g^2 = [5e-8, 0.2]; rms = max(sqrt v, 0.01) = [0.01, 0.4472136]
    # u = -0.1 g / rms = [-0.01, -0.4472136]; |u| = 0.447 < 1: theta += u
    assert p[0].tolist() == pytest.approx([-0.01, -0.4472135955], rel=1e-9)
    step(opt, p, g)
    # v = 0.95 v + 0.05 g^2 = [9.75e-8, 0.39]; rms = [0.01, 0.6244998]
    # u = 0.9 u - 0.1 g / rms = [-0.019, -0.4024922 - 0.3202563]
    u2 = [-0.019, -0.9 * 0.4472135955 - 0.1 * 2.0 / math.sqrt(0.39)]
    assert p[0].tolist() == pytest.approx([-0.01 + u2[0], -0.4472135955 + u2[1]], rel=1e-9)
    assert opt.momentum_buffer[0][0].tolist() == pytest.approx(u2, rel=1e-9)
    # torch's RMSprop (the paper protocol's form) adds eps instead and keeps the rate out of
    # the buffer: a different first step
    q = torch.zeros(1, 2, dtype=torch.float64)
    paper = PopulationRMSProp([q], [0.1], decay=0.95, momentum=0.9, eps=0.01)
    step(paper, q, g)
    assert q[0, 0].item() != pytest.approx(-0.01, rel=1e-3)


def test_optimizer_rescales_the_update_not_the_stored_velocity():
    p = torch.zeros(1, 2, dtype=torch.float64)
    opt = authors.AuthorsRMSProp([p], [1.0], decay=0.95, momentum=0.9, eps=0.01, clip=1.0)
    g = torch.tensor([[0.001, 2.0]], dtype=torch.float64)
    norms = step(opt, p, g)
    u1 = [-0.1, -2.0 / math.sqrt(0.2)]  # |u1| = 4.4733
    n1 = math.hypot(*u1)
    assert norms.tolist() == pytest.approx([n1])
    assert p[0].tolist() == pytest.approx([u1[0] / n1, u1[1] / n1], rel=1e-9)
    assert math.hypot(*p[0].tolist()) == pytest.approx(1.0)
    assert opt.momentum_buffer[0][0].tolist() == pytest.approx(u1, rel=1e-9)  # unscaled
    step(opt, p, g)
    u2 = [0.9 * u1[0] - 0.1, 0.9 * u1[1] - 2.0 / math.sqrt(0.39)]
    n2 = math.hypot(*u2)
    expected = [u1[0] / n1 + u2[0] / n2, u1[1] / n1 + u2[1] / n2]
    assert p[0].tolist() == pytest.approx(expected, rel=1e-9)


def test_optimizer_norm_spans_all_parameters_per_member_and_skips_frozen_members():
    a = torch.zeros(2, 1, dtype=torch.float64)
    b = torch.zeros(2, 1, dtype=torch.float64)
    opt = authors.AuthorsRMSProp([a, b], [1.0, 1.0], decay=0.0, momentum=0.0, eps=0.01, clip=1.0)
    a.grad = torch.tensor([[3.0], [3.0]], dtype=torch.float64)
    b.grad = torch.tensor([[4.0], [4.0]], dtype=torch.float64)
    # decay 0: rms = |g|, so u = -sign(g) per weight: [-1, -1], norm sqrt(2) over both tensors
    norms = opt.step(torch.tensor([True, False]))
    assert norms.tolist() == pytest.approx([math.sqrt(2)] * 2)
    assert a[0].item() == pytest.approx(-1 / math.sqrt(2)) and b[0].item() == pytest.approx(
        -1 / math.sqrt(2)
    )
    assert a[1].item() == 0.0 and b[1].item() == 0.0
    assert opt.square_avg[0][1].item() == 0.0 and opt.momentum_buffer[1][1].item() == 0.0


def test_lr_schedule_is_pylearn2s_linear_decay_over_epoch():
    f = authors.lr_factor
    assert f(1, 500, 0.01) == pytest.approx(1 - 0.99 / 500)  # monitored once before epoch 1
    assert f(250, 500, 0.01) == pytest.approx(0.505)
    assert f(500, 500, 0.01) == pytest.approx(0.01)
    assert f(700, 500, 0.01) == pytest.approx(0.01)
    assert f(3, 500, None) == 1.0
    cfg = authors_config(max_epochs=200)
    assert authors.schedule(cfg, 100) == pytest.approx(1 - 0.99 * 100 / 200)
    paper = RunConfig(dataset="jsb", unit="gru", lr_decay=0.01, max_epochs=200)
    assert authors.schedule(paper, 1) == 1.0  # the paper protocol's form starts at 1


def test_cost_is_summed_and_the_gradient_is_not_clipped():
    cfg, paper = authors_config(), RunConfig(dataset="jsb", unit="gru")
    nll_sum = torch.tensor([120.0, 60.0])
    assert authors.training_loss(cfg, nll_sum, 40).tolist() == [120.0, 60.0]
    assert authors.training_loss(paper, nll_sum, 40).tolist() == [3.0, 1.5]
    assert authors.gradient_clip(cfg) == 0.0 and authors.gradient_clip(paper) == 1.0
    assert isinstance(
        authors.make_optimizer(cfg, [torch.zeros(1, 2)], [1e-3]), authors.AuthorsRMSProp
    )
    assert type(authors.make_optimizer(paper, [torch.zeros(1, 2)], [1e-3])) is PopulationRMSProp


def test_config_preset_round_trip_and_old_keys():
    # a run key stored before the protocol field existed (the grids' runs) stays the same
    assert RunConfig(dataset="jsb", unit="gru").key() == "bc1c7e59ee679fe8"
    assert with_defaults({})["protocol"] == "paper"  # stored configs that predate it
    cfg = authors_config(max_epochs=200, patience=3)
    assert cfg.batch_size == 1 and cfg.rms_eps == 0.01 and cfg.lr_decay == 0.01
    assert cfg.noise_output is False and cfg.patience == 200  # no early stopping
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    same_numbers = RunConfig(**{**cfg.to_dict(), "protocol": "paper", "patience": 200})
    assert same_numbers.key() != cfg.key()
    with pytest.raises(RnnbenchError, match="protocol='author'.*use one of paper, authors"):
        RunConfig(dataset="jsb", unit="gru", protocol="author")
    assert with_preset({"protocol": "authors", "batch_size": 4})["batch_size"] == 4
    assert with_preset({"max_epochs": 9}) == {"max_epochs": 9}


def test_training_keeps_every_epoch_noises_only_the_recurrent_layer(tiny, tmp_path, monkeypatch):
    from rnnbench.train import population

    noised: set[int] = set()
    applied = population.WeightNoise.applied

    def spy(self, weights):
        noised.update(id(w) for w in weights)
        return applied(self, weights)

    monkeypatch.setattr(population.WeightNoise, "applied", spy)
    seen = {}
    real = population._Population.__init__

    def keep(self, *a, **k):
        real(self, *a, **k)
        seen["model"] = self.model

    monkeypatch.setattr(population._Population, "__init__", keep)
    cfg = authors_config(hidden=4, max_epochs=5, lr=0.02)
    (result,) = population.train_population([cfg], out_dirs=[tmp_path / "a"], dataset=tiny)
    assert result["status"] == "done" and result["epochs"] == 5  # patience never ends it
    lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    valid = [r["valid_nll"] for r in lines]
    assert result["best_epoch"] == 1 + valid.index(min(valid))
    assert result["updates"] == 5 * len(tiny.split("train"))  # batch 1
    names = {id(p): n for n, p in seen["model"].named_parameters()}
    assert {names[i] for i in noised} == {"weight_ih_l0", "weight_hh_l0"}


def test_departure_item_names_the_preset():
    runs = [{"config": authors_config().to_dict()}, {"config": {"protocol": "paper"}}]
    (item,) = preset_departures(runs)
    assert item.startswith("the authors' protocol (--protocol authors") and "1 of 2 runs" in item
    assert preset_departures(runs[1:]) == []
    assert AUTHORS["batch_size"] == 1


def _train_args(argv):
    from rnnbench.commands import train

    parser = argparse.ArgumentParser(prog="rnnbench")
    train.register(parser.add_subparsers(dest="command", required=True))
    return train, parser.parse_args(["train", *argv])


def test_cli_protocol_flag_fills_the_preset_under_the_given_flags():
    train, args = _train_args(
        ["--dataset", "jsb", "--unit", "gru", "--protocol", "authors", "--max-epochs", "50"]
    )
    (cfg,) = train.build_configs(args)
    assert cfg == authors_config(max_epochs=50)
    train, args = _train_args(["--dataset", "jsb", "--unit", "gru"])
    assert train.build_configs(args) == [RunConfig(dataset="jsb", unit="gru")]
    train, args = _train_args(
        ["--dataset", "jsb", "--unit", "gru", "--protocol", "authors", "--patience", "5"]
    )
    with pytest.raises(RnnbenchError, match="--patience has no effect under --protocol authors"):
        train.build_configs(args)


def test_reproduce_and_sweep_files_take_the_protocol():
    from rnnbench.commands import reproduce
    from rnnbench.sweeps.grid import parse_sweep

    parser = argparse.ArgumentParser(prog="rnnbench")
    reproduce.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "reproduce",
            "--sets",
            "jsb",
            "--units",
            "gru",
            "--protocol",
            "authors",
            "--candidates",
            "2",
        ]
    )
    stage1, _ = reproduce.plan(args)
    cfg = stage1[0].configs[0]
    assert cfg.protocol == "authors" and cfg.batch_size == 1 and cfg.patience == 500
    spec = {
        "datasets": ["jsb"],
        "units": ["gru"],
        "lr": {"values": [1e-3]},
        "train": {"protocol": "authors", "max_epochs": 20},
    }
    _, pops = parse_sweep(spec)
    assert pops[0].configs[0] == authors_config(max_epochs=20)


class _Stop(Exception):
    pass


def test_resume_and_population_give_the_same_result_as_one_straight_run(tiny, tmp_path):
    # the velocity holds the (decaying) rate: a resumed run must continue it exactly
    from rnnbench.train.population import train_population

    configs = [
        authors_config(hidden=4, max_epochs=3, lr=lr, seed=s) for lr, s in ((0.01, 0), (0.003, 1))
    ]

    def run(folder, on_epoch=None, members=configs):
        dirs = [tmp_path / folder / c.key() for c in members]
        return train_population(members, out_dirs=dirs, dataset=tiny, on_epoch=on_epoch)

    straight = run("straight")

    def stop(k, record):
        if record["epoch"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        run("resumed", stop)
    resumed = run("resumed")
    for a, b in zip(straight, resumed, strict=True):
        assert a["test_nll"] == b["test_nll"] and a["best_epoch"] == b["best_epoch"]
    (alone,) = run("alone", members=configs[1:])
    assert alone["test_nll"] == pytest.approx(straight[1]["test_nll"], rel=1e-6)
