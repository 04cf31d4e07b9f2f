"""A synthetic results store, filled through the Store API, and the reports built from it.

Layout of the fake study (NLLs are made up, chosen so the expected answers are easy to check):

- jsb: tanh, GRU (reset before), LSTM (peephole); learning rates 1e-3, 3e-3, 1e-2; seeds 0-3.
  valid = base + LR_PENALTY[lr] + SEED_EFFECT[unit][seed], so 3e-3 is every unit's best rate.
  GRU at 1e-2, seed 0 is *diverged* with a tempting valid NLL of 0.5 that must be ignored.
  LSTM at 1e-2, seed 1 *failed*.
- fsdd-a: tanh and LSTM only (no GRU); learning rates 1e-3, 3e-3; seeds 0, 1, 2.

As ``reproduce`` does, seed 0 is the learning-rate search (stage ``lr``) and the other seeds are
fresh (stage ``seeds``; here at every rate, so a test can show that they never choose it): 3 on
jsb (enough for a paired test), 2 on fsdd-a (too few to test).

``add_run`` and ``set_updated`` write single runs (any status, stage and epochs) for the tests of
several stores and of unfinished cells.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import pytest

from rnnbench.report import build_report
from rnnbench.store import Store
from rnnbench.train.config import RunConfig

LRS = {"jsb": (1e-3, 3e-3, 1e-2), "fsdd-a": (1e-3, 3e-3)}
SEEDS = {"jsb": (0, 1, 2, 3), "fsdd-a": (0, 1, 2)}
UNITS = {"jsb": ("tanh", "gru", "lstm"), "fsdd-a": ("tanh", "lstm")}
BASE = {  # (train, valid, test) at the best rate, seed effect 0
    ("jsb", "tanh"): (8.5, 8.9, 9.0),
    ("jsb", "gru"): (7.9, 8.0, 8.0),
    ("jsb", "lstm"): (8.0, 8.1, 8.2),
    ("fsdd-a", "tanh"): (3.0, 3.2, 3.3),
    ("fsdd-a", "lstm"): (1.5, 1.7, 1.8),
}
LR_PENALTY = {1e-3: 0.3, 3e-3: 0.0, 1e-2: 0.2}
SEED_EFFECT = {
    "tanh": (0.0, 0.1, 0.05, 0.12),
    "gru": (0.0, 0.2, 0.1, 0.0),
    "lstm": (0.05, 0.0, 0.3, 0.15),
}
EPOCHS = 6


def nll(dataset: str, unit: str, lr: float, seed: int) -> tuple[float, float, float]:
    shift = LR_PENALTY[lr] + SEED_EFFECT[unit][seed]
    return tuple(round(v + shift, 10) for v in BASE[(dataset, unit)])


def fill_store(path, datasets=tuple(LRS)) -> None:
    """The fake study above, for the data sets in ``datasets`` only."""
    with Store(path) as store:
        for dataset, lrs in LRS.items():
            if dataset not in datasets:
                continue
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
                            labels={"sweep": "test", "stage": "lr" if seed == 0 else "seeds"},
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
                                    "error": "its training loss was not finite at epoch 3, batch 2",
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


def add_run(
    store: Store,
    dataset: str,
    unit: str,
    lr: float,
    seed: int = 0,
    *,
    status: str = "running",
    valid: Sequence[float] = (),
    stage: str = "lr",
    max_epochs: int = 50,
    final: float | None = None,
    seconds_per_epoch: float = 1.0,
    **settings,
) -> str:
    """One run with per-epoch validation NLLs ``valid`` (epochs 1, 2, ...) and ``status``;
    a done or diverged run's final NLLs are ``final`` (default: the lowest of ``valid``);
    each epoch took ``seconds_per_epoch``. ``settings`` are more RunConfig fields. Returns its
    key."""
    cfg = RunConfig(
        dataset=dataset,
        unit=unit,
        lr=lr,
        seed=seed,
        batch_size=16,
        max_epochs=max_epochs,
        **settings,
    )
    key = cfg.key()
    store.start_run(key, cfg.to_dict(), f"runs/{key}", labels={"sweep": "t", "stage": stage})
    records = [
        {"epoch": e, "train_nll": v, "valid_nll": v, "updates": e, "seconds": seconds_per_epoch * e}
        for e, v in enumerate(valid, start=1)
    ]
    store.log_epochs(key, records)
    if status == "queued":
        store.set_status([key], "queued")
    elif status != "running":
        nll = final if final is not None else min(valid, default=1.0)
        result = {"train_nll": nll, "valid_nll": nll, "test_nll": nll, "epochs": len(valid)}
        result["seconds"] = seconds_per_epoch * len(valid)
        store.finish_run(key, status, result if status != "failed" else None)
    return key


def set_updated(path, key: str, stamp: str) -> None:
    """Set a run's ``updated`` timestamp (the store sets it to the second, from the clock)."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE runs SET updated = ? WHERE key = ?", (stamp, key))
    conn.close()


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


def md_table(md: str, heading: str) -> list[list[str]]:
    """The body rows (as lists of cells) of the first Markdown table after ``## heading``."""
    section = md.split(f"## {heading}\n", 1)[1]
    lines = [line for line in section.split("\n## ", 1)[0].splitlines() if line.startswith("|")]
    return [line.strip("| ").split(" | ") for line in lines[2:]]


def add_protocol_cell(store: Store, dataset: str, unit: str) -> None:
    """A cell at the paper's protocol: the data set's 10 drawn candidates (seed 0, 500 epochs,
    all tied at 9.0) and 3 fresh seeds at the chosen (the lowest) rate."""
    from rnnbench.sweeps.grid import lr_candidates, stable_seed

    rates = lr_candidates(10, seed=stable_seed(dataset))
    for lr in rates:
        add_run(store, dataset, unit, lr, status="done", valid=[9.0], max_epochs=500)
    for seed in (1, 2, 3):
        kw = {"status": "done", "valid": [9.1], "stage": "seeds", "max_epochs": 500}
        add_run(store, dataset, unit, min(rates), seed, **kw)


def add_authors_search(store: Store, dataset: str, unit: str) -> None:
    """A search at the authors' preset: 10 candidates, every run 500 epochs."""
    from rnnbench.sweeps.grid import lr_candidates, stable_seed
    from rnnbench.train.presets import AUTHORS

    # add_run sets batch_size and max_epochs itself
    settings = {k: v for k, v in AUTHORS.items() if k not in ("batch_size", "max_epochs")}
    for lr in lr_candidates(10, seed=stable_seed(dataset, unit)):
        kw = {"status": "done", "valid": [9.0], "max_epochs": 500, "protocol": "authors"}
        add_run(store, dataset, unit, lr, **kw, **settings)
