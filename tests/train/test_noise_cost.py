"""scripts/noise_cost.py: what weight noise costs a trained run, per layer."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from rnnbench.train.config import RunConfig
from rnnbench.train.metrics import split_nll
from rnnbench.train.population import train_population

from ..conftest import REPO

spec = importlib.util.spec_from_file_location("noise_cost", REPO / "scripts" / "noise_cost.py")
noise_cost = importlib.util.module_from_spec(spec)
spec.loader.exec_module(noise_cost)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_root):
    from .conftest import tiny_dataset

    cfg = RunConfig(
        dataset="jsb", unit="lstm", hidden=8, batch_size=2, max_epochs=2, weight_noise=0.3
    )
    folder = tmp_path_factory.mktemp("noise") / cfg.key()
    train_population([cfg], out_dirs=[folder], dataset=tiny_dataset(data_root))
    return folder


def test_places_split_every_noised_matrix_into_recurrent_and_output(run_dir, tiny):
    _, model, _ = noise_cost.load_best(run_dir, tiny)
    p = noise_cost.places(model)
    assert [w is model.weight_out for w in p["output"]] == [True]
    assert {id(w) for w in p["recurrent"]} | {id(w) for w in p["output"]} == {
        id(w) for w in p["all"]
    }
    assert len(p["recurrent"]) == 3  # input, recurrent and peephole weights


def test_scores_are_clean_without_noise_and_weights_come_back_exactly(run_dir, tiny):
    cfg, model, epoch = noise_cost.load_best(run_dir, tiny)
    assert cfg.weight_noise == 0.3 and 1 <= epoch <= 2
    seqs = tiny.split("train")
    before = {n: t.clone() for n, t in model.named_parameters()}
    quiet = noise_cost.noise_cost(model, seqs, sigma=0.0, draws=2)
    clean = float(split_nll(model, seqs))
    assert quiet == {"clean": clean, "all": clean, "recurrent": clean, "output": clean}
    loud = noise_cost.noise_cost(model, seqs, sigma=cfg.weight_noise, draws=2)
    assert loud["clean"] == clean
    assert all(loud[p] != clean for p in noise_cost.PLACES)
    for n, t in model.named_parameters():
        assert torch.equal(t, before[n])


def test_main_prints_one_json_object_per_run_and_refuses_a_folder_without_best(
    run_dir, tmp_path, capsys
):
    assert noise_cost.main([str(run_dir), "--sequences", "2", "--draws", "1", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    assert row["config"]["weight_noise"] == 0.3 and set(noise_cost.PLACES) < set(row)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"dataset": "jsb"}))
    with pytest.raises(noise_cost.RnnbenchError, match="no best.pt"):
        noise_cost.main([str(empty)])
