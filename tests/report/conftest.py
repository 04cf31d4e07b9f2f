"""A synthetic results store, filled through the Store API, and the reports built from it.

Layout of the fake study (NLLs are made up, chosen so the expected answers are easy to check):

- jsb: tanh, GRU (reset before), LSTM (peephole); learning rates 1e-3, 3e-3, 1e-2; seeds 0, 1, 2.
  valid = base + LR_PENALTY[lr] + SEED_EFFECT[unit][seed], so 3e-3 is every unit's best rate.
  GRU at 1e-2, seed 0 is *diverged* with a tempting valid NLL of 0.5 that must be ignored.
  LSTM at 1e-2, seed 1 *failed*.
- fsdd-a: tanh and LSTM only (no GRU); learning rates 1e-3, 3e-3; seeds 0, 1.
"""

from __future__ import annotations

import pytest

from rnnbench.report import build_report
from rnnbench.store import Store
from rnnbench.train.config import RunConfig

LRS = {"jsb": (1e-3, 3e-3, 1e-2), "fsdd-a": (1e-3, 3e-3)}
SEEDS = {"jsb": (0, 1, 2), "fsdd-a": (0, 1)}
UNITS = {"jsb": ("tanh", "gru", "lstm"), "fsdd-a": ("tanh", "lstm")}
BASE = {  # (train, valid, test) at the best rate, seed effect 0
    ("jsb", "tanh"): (8.5, 8.9, 9.0),
    ("jsb", "gru"): (7.9, 8.0, 8.0),
    ("jsb", "lstm"): (8.0, 8.1, 8.2),
    ("fsdd-a", "tanh"): (3.0, 3.2, 3.3),
    ("fsdd-a", "lstm"): (1.5, 1.7, 1.8),
}
LR_PENALTY = {1e-3: 0.3, 3e-3: 0.0, 1e-2: 0.2}
SEED_EFFECT = {"tanh": (0.0, 0.1, 0.05), "gru": (0.0, 0.2, 0.1), "lstm": (0.05, 0.0, 0.3)}
EPOCHS = 6


def nll(dataset: str, unit: str, lr: float, seed: int) -> tuple[float, float, float]:
    shift = LR_PENALTY[lr] + SEED_EFFECT[unit][seed]
    return tuple(round(v + shift, 10) for v in BASE[(dataset, unit)])


def fill_store(path) -> None:
    with Store(path) as store:
        for dataset, lrs in LRS.items():
            for unit in UNITS[dataset]:
                for lr in lrs:
                    for seed in SEEDS[dataset]:
                        cfg = RunConfig(
                            dataset=dataset,
                            unit=unit,
                            lr=lr,
                            seed=seed,
                            batch_size=16,
                            max_epochs=EPOCHS,
                            patience=3,
                        )
                        key = cfg.key()
                        store.start_run(
                            key,
                            cfg.to_dict(),
                            f"runs/{key}",
                            labels={"sweep": "test", "stage": "lr"},
                        )
                        train, valid, test = nll(dataset, unit, lr, seed)
                        records = [
                            {
                                "epoch": e,
                                "train_nll": train * (1 + 0.5 / e),
                                "valid_nll": valid * (1 + 0.4 / e),
                                "updates": 10 * e,
                                "seconds": 1.5 * e,
                            }
                            for e in range(1, EPOCHS + 1)
                        ]
                        store.log_epochs(key, records)
                        if dataset == "jsb" and unit == "gru" and lr == 1e-2 and seed == 0:
                            store.finish_run(
                                key,
                                "diverged",
                                {
                                    "train_nll": 0.4,
                                    "valid_nll": 0.5,
                                    "test_nll": 0.6,
                                    "epochs": 3,
                                    "best_epoch": 2,
                                    "seconds": 4.5,
                                },
                            )
                            continue
                        if dataset == "jsb" and unit == "lstm" and lr == 1e-2 and seed == 1:
                            store.finish_run(key, "failed", None, error="out of memory")
                            continue
                        store.finish_run(
                            key,
                            "done",
                            {
                                "train_nll": train,
                                "valid_nll": valid,
                                "test_nll": test,
                                "best_epoch": EPOCHS,
                                "epochs": EPOCHS,
                                "updates": 10 * EPOCHS,
                                "seconds": 1.5 * EPOCHS,
                                "params": 1000,
                            },
                        )


@pytest.fixture(scope="session")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "results.db"
    fill_store(path)
    return path


@pytest.fixture(scope="session")
def report_dir(store_path, tmp_path_factory):
    return build_report(store_path, tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="session")
def quick_report_dir(store_path, tmp_path_factory):
    return build_report(store_path, tmp_path_factory.mktemp("quick"), quick=True)
