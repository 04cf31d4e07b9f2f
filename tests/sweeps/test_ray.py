"""The Ray engine on a local 2-CPU Ray that the test starts and stops."""

import math
import os
from pathlib import Path

import pytest

from rnnbench.store import Store
from rnnbench.sweeps import common
from rnnbench.sweeps.grid import Population
from rnnbench.train.config import RunConfig
from tests.sweeps.fakes import fake_train, valid_nll

ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]
LRS = [math.exp(-9), math.exp(-8), math.exp(-6.2)]  # the last one diverges


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        # this checkout's code (src/) and its tests package, whatever is installed
        runtime_env={"env_vars": {"PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}},
    )
    yield
    ray.shutdown()


def test_ray_engine_trains_records_skips_and_chains(local_ray, tmp_path):
    from rnnbench.sweeps.ray_engine import run_ray

    pops = [
        Population([RunConfig(dataset=d, unit="gru", lr=lr) for lr in LRS], {"stage": "lr"})
        for d in ("jsb", "boom")
    ]
    chained = []

    def then(pop, runs):
        lr = common.best_lr(runs)
        if lr is None or pop.labels["stage"] != "lr":
            return []
        chained.append(lr)
        return [
            Population(
                [RunConfig(dataset=pop.configs[0].dataset, unit="gru", lr=lr, seed=1)],
                {"stage": "seeds"},
            )
        ]

    store = Store(tmp_path / "results.db")
    summary = run_ray(
        pops,
        store=store,
        out=tmp_path,
        workers=2,
        retries=1,
        then=then,
        progress=False,
        train_fn=fake_train,
    )
    jsb = store.runs(dataset="jsb", stage="lr")
    assert [r["status"] for r in jsb] == ["done", "done", "diverged"]
    assert [r["valid_nll"] for r in jsb[:2]] == [valid_nll(lr) for lr in LRS[:2]]
    for r in jsb[:2]:  # the run folders travelled back from the workers' checkpoints
        assert (tmp_path / "runs" / r["key"] / "best.pt").exists()
        assert [e["epoch"] for e in store.epochs(r["key"])] == [1, 2]
    assert chained == [LRS[1]]
    assert [r["status"] for r in store.runs(stage="seeds")] == ["done"]
    boom = store.runs(dataset="boom")
    assert {r["status"] for r in boom} == {"failed"} and "boom" in boom[0]["error"]
    assert summary["failed"] == 3

    # Again: the finished runs are skipped, nothing new is trained.
    summary = run_ray(
        pops[:1], store=store, out=tmp_path, then=then, progress=False, train_fn=fake_train
    )
    assert summary["skipped"] == 4
    assert store.integrity_check() == "ok"


class _Planted:
    """Unpickling this creates ``path``: the code a crafted tuner.pkl would run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_ray_engine_never_unpickles_the_results_folder_and_resumes(local_ray, tmp_path):
    """A crafted ``tuner.pkl`` under the experiment's deterministic name runs no code; the
    sweep resumes from the run folder (``last.pt``) and the store, not from Ray's state."""
    import pickle

    from rnnbench.sweeps import ray_engine

    store = Store(tmp_path / "results.db")
    pops = [Population([RunConfig(dataset="resume", unit="lstm", lr=LRS[0])], {})]
    run = dict(store=store, out=tmp_path, retries=0, progress=False, train_fn=fake_train)
    summary = ray_engine.run_ray(pops, **run)
    key = pops[0].configs[0].key()
    assert summary["failed"] == 1 and store.runs()[0]["status"] == "failed"
    assert (tmp_path / "runs" / key / "last.pt").read_text() == "1"  # mirrored checkpoint
    assert [e["epoch"] for e in store.epochs(key)] == [1]

    marker = tmp_path / "pwned"
    name = ray_engine._experiment_name(pops)
    for folder in (tmp_path / "ray" / name, *(tmp_path / "ray").glob(name + "-*")):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tuner.pkl").write_bytes(pickle.dumps(_Planted(marker)))
        (folder / "experiment_state-x.json").write_text("{not json")
    assert pickle.loads(pickle.dumps(_Planted(marker))) is None or marker.exists()
    marker.unlink()  # the planted pickle does run code when unpickled; now resume

    summary = ray_engine.run_ray(pops, **run)
    assert not marker.exists()
    row = store.runs()[0]
    assert summary["done"] == 1 and row["status"] == "done" and row["error"] is None
    assert [e["epoch"] for e in store.epochs(key)] == [1, 2, 3]  # resumed after epoch 1
    assert not (tmp_path / "ray" / name / "tuner.pkl").exists()  # deleted unread


def test_ray_and_local_engines_give_the_same_numbers(local_ray, tmp_path):
    """The real trainer on a tiny data set: both engines, bitwise equal NLLs (CPU)."""
    from rnnbench.sweeps.local import run_local
    from rnnbench.sweeps.ray_engine import run_ray
    from tests.sweeps.test_kill import write_tiny_music

    data = tmp_path / "tiny.pickle"
    write_tiny_music(data)
    configs = [
        RunConfig(
            dataset=f"music:{data}",
            unit="lstm",
            hidden=5,
            lr=lr,
            seed=s,
            max_epochs=3,
            batch_size=4,
        )
        for lr in (1e-3, 3e-3)
        for s in (0, 1)
    ]
    numbers = []
    for engine, out in ((run_ray, tmp_path / "ray"), (run_local, tmp_path / "local")):
        store = Store(out / "results.db")
        threads = {"threads": 1} if engine is run_local else {}  # Ray: 1 thread per trial
        engine([Population(configs)], store=store, out=out, workers=1, progress=False, **threads)
        numbers.append(
            {
                r["key"]: (
                    r["status"],
                    r["train_nll"],
                    r["valid_nll"],
                    r["test_nll"],
                    [e["valid_nll"] for e in store.epochs(r["key"])],
                )
                for r in store.runs()
            }
        )
        assert all((out / "runs" / c.key() / "best.pt").exists() for c in configs)
    assert numbers[0] == numbers[1] and len(numbers[0]) == 4
