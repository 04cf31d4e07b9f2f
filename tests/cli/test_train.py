"""`rnnbench train` end to end on a few short JSB sequences."""

from __future__ import annotations

import argparse
import json
import pickle
import shlex

import numpy as np
import pytest
import torch

from rnnbench.errors import RnnbenchError
from rnnbench.store import Store
from rnnbench.train.config import RunConfig


def run_train(argv: list[str]) -> int:
    """Parse ``rnnbench train ...`` with only our command registered and run it."""
    from rnnbench.commands import train

    parser = argparse.ArgumentParser(prog="rnnbench")
    sub = parser.add_subparsers(dest="command", required=True)
    train.register(sub)
    args = parser.parse_args(["train", *argv])
    args.argv = ["train", *argv]  # as rnnbench.cli.main sets it
    return int(args.func(args) or 0)


@pytest.fixture(scope="module")
def jsb_file(data_root, tmp_path_factory):
    """A Boulanger-Lewandowski pickle of the first JSB sequences, cut to 20 frames."""
    from rnnbench.data.registry import load_dataset

    jsb = load_dataset("jsb", data_root)
    data = {}
    for split, n in (("train", 4), ("valid", 2), ("test", 2)):
        data[split] = []
        for s in jsb.split(split)[:n]:
            roll = np.concatenate([s.inputs[:1], s.targets])[:20]
            data[split].append([[21 + int(j) for j in np.flatnonzero(f)] for f in roll])
    path = tmp_path_factory.mktemp("music") / "jsb-tiny.pickle"
    path.write_bytes(pickle.dumps(data))
    return path


def test_train_end_to_end(jsb_file, tmp_path, capsys):
    dataset = f"music:{jsb_file}"
    out = tmp_path / "results"
    argv = [
        "--dataset",
        dataset,
        "--unit",
        "gru",
        "--hidden",
        "6",
        "--max-epochs",
        "2",
        "--batch-size",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    torch.set_num_threads(2)
    assert run_train(argv) == 0
    assert torch.get_num_threads() == 1  # the default --threads
    line, where = capsys.readouterr().out.strip().splitlines()[-2:]
    assert line.startswith("train ") and line.endswith("(nats per step)")
    assert " valid " in line and " test " in line

    cfg = RunConfig(dataset=dataset, unit="gru", hidden=6, max_epochs=2, batch_size=2)
    run_dir = out / "runs" / cfg.key()
    assert {"config.json", "metrics.jsonl", "best.pt", "last.pt"} <= {
        p.name for p in run_dir.iterdir()
    }
    assert RunConfig.from_dict(json.loads((run_dir / "config.json").read_text())) == cfg
    # The last line names the run folder and the best epoch.
    assert where.startswith("best epoch ") and f" of 2; run folder {run_dir} " in where
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert best["config"] == cfg.to_dict() and "weight_hh_l0" in best["member_state"]

    with Store(out / "results.db") as store:
        row = store.get_run(cfg.key())
        assert row["status"] == "done" and row["dataset"] == dataset and row["unit"] == "gru"
        assert where.startswith(f"best epoch {row['best_epoch']} of 2")
        assert row["test_nll"] == pytest.approx(float(line.split()[5]), abs=1e-4)
        assert [e["epoch"] for e in store.epochs(cfg.key())] == [1, 2]
        command = shlex.join(["rnnbench", "train", *argv])
        assert [c["command"] for c in store.commands()] == [command]

    # Again with --json: the finished run is returned from its folder, as one JSON object.
    assert run_train([*argv, "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["key"] == cfg.key() and obj["status"] == "done" and obj["epochs"] == 2
    assert obj["test_nll"] == pytest.approx(float(line.split()[5]), abs=1e-4)
    assert obj["config"] == cfg.to_dict()


def test_train_population_from_lists(jsb_file, tmp_path, capsys):
    argv = [
        "--dataset",
        f"music:{jsb_file}",
        "--unit",
        "lstm",
        "--no-peephole",
        "--hidden",
        "4",
        "--max-epochs",
        "1",
        "--lr",
        "1e-3,1e-2",
        "--seed",
        "0,1",
        "--out",
        str(tmp_path),
        "--store",
        str(tmp_path / "s.db"),
        "--json",
        "--no-progress",
        "--lr-decay",
        "0.01",
        "--no-noise-output",
    ]
    assert run_train(argv) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert all(r["config"]["lr_decay"] == 0.01 for r in runs)
    assert all(r["config"]["noise_output"] is False for r in runs)
    assert [(r["config"]["lr"], r["config"]["seed"]) for r in runs] == [
        (1e-3, 0),
        (1e-3, 1),
        (1e-2, 0),
        (1e-2, 1),
    ]
    assert all(r["config"]["peephole"] is False for r in runs)
    with Store(tmp_path / "s.db") as store:
        assert len(store.runs(status="done")) == 4


def test_train_clear_errors(jsb_file, tmp_path):
    base = ["--dataset", f"music:{jsb_file}", "--unit", "tanh", "--out", str(tmp_path)]
    with pytest.raises(RnnbenchError, match="repeats a value"):
        run_train([*base, "--seed", "1,1"])
    with pytest.raises(RnnbenchError, match="RunConfig lr_decay="):
        run_train([*base, "--lr-decay", "2"])
    with pytest.raises(RnnbenchError, match="--threads must be at least 1"):
        run_train([*base, "--threads", "0"])
    if not torch.cuda.is_available():
        with pytest.raises(RnnbenchError, match="no CUDA GPU"):
            run_train([*base, "--device", "cuda"])


def test_ctrl_c_puts_the_run_back_to_queued_and_the_same_command_resumes(
    jsb_file, tmp_path, monkeypatch
):
    # Ctrl-C used to leave the store saying "running" for a run nobody was training.
    from rnnbench.train import population

    real = population.train_population

    def interrupted_after_epoch_1(configs, **kwargs):
        on_epoch = kwargs["on_epoch"]

        def stop(k, record):
            on_epoch(k, record)
            raise KeyboardInterrupt

        return real(configs, **{**kwargs, "on_epoch": stop})

    argv = [
        "--dataset",
        f"music:{jsb_file}",
        "--unit",
        "gru",
        "--hidden",
        "4",
        "--max-epochs",
        "2",
        "--batch-size",
        "2",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    key = RunConfig(
        dataset=f"music:{jsb_file}", unit="gru", hidden=4, max_epochs=2, batch_size=2
    ).key()
    monkeypatch.setattr(population, "train_population", interrupted_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        run_train(argv)
    with Store(tmp_path / "results.db") as store:
        assert store.get_run(key)["status"] == "queued"
        assert [e["epoch"] for e in store.epochs(key)] == [1]
    monkeypatch.setattr(population, "train_population", real)
    assert run_train(argv) == 0
    with Store(tmp_path / "results.db") as store:
        assert store.get_run(key)["status"] == "done" and store.get_run(key)["epochs"] == 2


class StoppedInsideAKernel(SystemError):
    """What native code raises when the KeyboardInterrupt of the CLI's SIGTERM handler fires
    inside it: a SystemError whose cause is the pending KeyboardInterrupt."""

    def __init__(self, message):
        super().__init__(f"<kernel> returned a result with an exception set ({message})")
        self.__cause__ = KeyboardInterrupt()


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError, StoppedInsideAKernel])
def test_a_member_that_finished_early_stays_done_when_the_rest_is_stopped(
    stop, jsb_file, tmp_path, monkeypatch
):
    # Session 4: a population stopped by kill -TERM put its finished member back to queued.
    from rnnbench.train import population

    def first_finishes_then_stop(configs, **kwargs):
        kwargs["on_locked"]()  # the runs are marked started once their folders are locked
        kwargs["on_result"](
            0,
            {
                "status": "done",
                "train_nll": 1.0,
                "valid_nll": 2.0,
                "test_nll": 3.0,
                "best_epoch": 1,
                "epochs": 2,
            },
        )
        raise stop("the rest is stopped")

    monkeypatch.setattr(population, "train_population", first_finishes_then_stop)
    argv = [
        "--dataset",
        f"music:{jsb_file}",
        "--unit",
        "tanh",
        "--hidden",
        "4",
        "--lr",
        "1e-3,2e-3",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    stopped = stop is not RuntimeError  # Ctrl-C or SIGTERM, wherever it landed
    with pytest.raises(KeyboardInterrupt if stopped else RuntimeError):
        run_train(argv)
    keys = [
        RunConfig(dataset=f"music:{jsb_file}", unit="tanh", hidden=4, lr=lr).key()
        for lr in (1e-3, 2e-3)
    ]
    with Store(tmp_path / "results.db") as store:
        first, second = (store.get_run(k) for k in keys)
    assert first["status"] == "done" and first["test_nll"] == 3.0
    # Before the fix, a stop inside a kernel marked the interrupted run failed.
    assert second["status"] == ("queued" if stopped else "failed")


def test_a_diverged_run_says_why_on_its_last_line_and_in_the_store(jsb_file, tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["--dataset", f"music:{jsb_file}", "--unit", "tanh", "--hidden", "6"]
    argv += ["--max-epochs", "2", "--batch-size", "2", "--lr", "1e38", "--out", str(out)]
    assert run_train([*argv, "--no-progress"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-2]
    assert line.startswith("diverged after 1 epoch: its training loss was not finite at epoch 1")
    assert line.endswith("; try a smaller --lr")
    with Store(out / "results.db") as store:
        (row,) = store.runs()
        assert row["status"] == "diverged" and row["error"] in line


def test_train_a_variant(jsb_file, tmp_path, capsys):
    """--variant: a gate removed, the size matched to the paper's LSTM, the form in the store."""
    dataset = f"music:{jsb_file}"
    argv = ["--dataset", dataset, "--unit", "lstm", "--variant", "cifg", "--max-epochs", "1"]
    argv += ["--out", str(tmp_path), "--json", "--no-progress"]
    assert run_train(argv) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["hidden"] == 45 and obj["config"]["variant"] == "cifg"  # 18,180 vs 18,108
    assert obj["params"] == 3 * 45 * (88 + 45) + 2 * 3 * 45 + 2 * 45 + 45 * 88 + 88
    with Store(tmp_path / "results.db") as store:
        assert store.get_run(obj["key"])["form"] == "cifg"
    with pytest.raises(RnnbenchError, match="variant='mgu'"):
        run_train([*argv[:4], "--variant", "mgu", "--out", str(tmp_path)])
