"""Members with their own batch orders (issue 22): a population of fresh seeds equals each
seed trained alone, for every kind of unit, both backends, truncated BPTT and batch 1; its
resume after a crash equals the uninterrupted run; the keys of committed runs stay."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnbench.data.dataset import Dataset, Sequence
from rnnbench.train.config import RunConfig
from rnnbench.train.minibatches import carry_state, population_batches
from rnnbench.train.population import train_population

from .test_population import Interrupt, metric_lines, stop_at

ROOT = Path(__file__).resolve().parents[2]
LNTANH = ROOT / "examples" / "units" / "lntanh.py"
# (lr, seed, data_seed): different rates, weights, noise streams and batch orders
MEMBERS = [(1e-3, 1, 1), (3e-3, 2, 2), (2e-3, 3, 0)]


def cfg(**kw) -> RunConfig:
    base = dict(dataset="jsb", unit="lstm", hidden=6, batch_size=4, max_epochs=2, patience=5)
    base.update(kw)
    return RunConfig(**base)


def members(**kw) -> list[RunConfig]:
    return [cfg(lr=lr, seed=s, data_seed=d, **kw) for lr, s, d in MEMBERS]


def run(configs, root, data, **kw):
    dirs = [root / c.key() for c in configs]
    return train_population(configs, out_dirs=dirs, dataset=data, **kw), dirs


def assert_each_member_is_its_run_alone(configs, data, tmp_path, **kw):
    together, pop_dirs = run(configs, tmp_path / "pop", data, **kw)
    for k, c in enumerate(configs):
        (alone,), (alone_dir,) = run([c], tmp_path / f"alone{k}", data, **kw)
        for name in ("train_nll", "valid_nll", "test_nll"):
            assert together[k][name] == pytest.approx(alone[name], abs=2e-6, rel=2e-6), name
        for name in ("status", "best_epoch", "epochs", "updates", "params"):
            assert together[k][name] == alone[name], name
        for key in ("train_nll", "valid_nll", "updates"):
            np.testing.assert_allclose(
                [r[key] for r in metric_lines(pop_dirs[k])],
                [r[key] for r in metric_lines(alone_dir)],
                rtol=2e-6,
                atol=2e-6,
            )
    return together


def many_short(data_root, n: int = 80) -> Dataset:
    """``n`` JSB sequences of 3 to 13 frames: more than one chunk of batches
    (:data:`rnnbench.data.batching.CHUNK_BATCHES`) at batch 2, so that two batch orders cut
    different numbers of truncated-BPTT windows per epoch and a member falls idle."""
    from rnnbench.data.registry import load_dataset

    jsb = load_dataset("jsb", data_root)
    src = jsb.split("train")

    def cut(seqs, count, offset):
        return [
            Sequence(s.inputs[: 3 + (i * 7 + offset) % 11], s.targets[: 3 + (i * 7 + offset) % 11])
            for i, s in enumerate(seqs[:count])
        ]

    return Dataset(
        name="jsb-many",
        kind="music",
        in_dim=jsb.in_dim,
        out_dim=jsb.out_dim,
        head=jsb.head,
        task="music",
        splits={
            "train": cut(src, n, 0),
            "valid": cut(jsb.split("valid"), 3, 1),
            "test": cut(jsb.split("test"), 3, 2),
        },
    )


@pytest.fixture(scope="module")
def many(data_root) -> Dataset:
    return many_short(data_root)


@pytest.mark.parametrize(
    ("unit", "variant", "backend", "bptt"),
    [
        ("tanh", "", "auto", None),
        ("lstm", "", "auto", 5),
        ("gru", "", "auto", None),
        ("lstm", "cifg", "auto", None),
        ("gru", "mgu", "auto", 5),
        ("lstm", "", "torch", 5),
        ("gru", "", "torch", None),
        ("lstm", "nfg", "torch", None),
        ("mingru", "", "auto", 5),
    ],
)
def test_fresh_seeds_in_one_population_equal_each_seed_alone(
    unit, variant, backend, bptt, tiny, tmp_path
):
    configs = members(unit=unit, variant=variant, bptt=bptt)
    assert len({c.group_key() for c in configs}) == 1  # they are one population now
    assert_each_member_is_its_run_alone(configs, tiny, tmp_path, backend=backend)


def test_a_plug_in_unit_file_with_fresh_seeds_equals_each_seed_alone(tiny, tmp_path):
    from rnnbench.units import registry

    loaded = registry.load(f"{LNTANH}:LayerNormTanh")
    configs = members(unit="lntanh", unit_source=loaded.source, bptt=5)
    assert_each_member_is_its_run_alone(configs, tiny, tmp_path)


@pytest.mark.parametrize("unit", ["gru", "minlstm"])
def test_the_authors_batch_1_with_fresh_seeds_equals_each_seed_alone(unit, tiny, tmp_path):
    from rnnbench.train.presets import with_preset

    fields = dict(dataset="jsb", unit=unit, hidden=6, max_epochs=1, protocol="authors")
    configs = [
        RunConfig(**with_preset({**fields, "lr": lr, "seed": s, "data_seed": d}))
        for lr, s, d in MEMBERS
    ]
    assert configs[0].protocol == "authors" and configs[0].batch_size == 1
    assert_each_member_is_its_run_alone(configs, tiny, tmp_path)


def test_members_fall_idle_with_bptt_and_still_equal_their_runs_alone(many, tmp_path):
    # two epochs: a noise draw or a step taken while idle in epoch 1 would show in epoch 2
    configs = members(unit="gru", batch_size=2, bptt=4, max_epochs=2)
    counts = {
        c.data_seed: sum(1 for _ in population_batches(many.split("train"), [c], 1))
        for c in configs
    }
    assert len(set(counts.values())) > 1  # different numbers of windows: someone idles
    batches = list(population_batches(many.split("train"), configs, 1))
    assert len(batches) == max(counts.values())
    assert any(not b.live.all() for b in batches)
    assert any(b.carry.any() and not b.carry.all() for b in batches)  # own carries
    together = assert_each_member_is_its_run_alone(configs, many, tmp_path)
    per_run = [  # both epochs' windows
        sum(1 for e in (1, 2) for _ in population_batches(many.split("train"), [c], e))
        for c in configs
    ]
    assert [r["updates"] for r in together] == per_run


def test_a_speech_population_of_fresh_seeds_equals_each_seed_alone(tmp_path):
    gen = np.random.default_rng(0)

    def seqs(n):
        out = []
        for i in range(n):
            wave = gen.normal(0, 0.3, (6 + 2 * i, 10)).astype(np.float32)
            out.append(Sequence(wave[:-1], wave[1:]))
        return out

    speech = Dataset(
        name="fsdd-tiny",
        kind="speech",
        in_dim=10,
        out_dim=10,
        head="gmm",
        task="speech",
        splits={"train": seqs(7), "valid": seqs(2), "test": seqs(2)},
    )
    configs = [
        RunConfig(
            dataset="fsdd-a",
            unit="lstm",
            hidden=5,
            batch_size=3,
            max_epochs=2,
            lr=lr,
            seed=s,
            data_seed=d,
        )
        for lr, s, d in MEMBERS
    ]
    assert_each_member_is_its_run_alone(configs, speech, tmp_path)


def test_resume_of_fresh_seeds_after_a_crash_equals_the_uninterrupted_run(tiny, tmp_path):
    configs = members(unit="gru", bptt=5, max_epochs=3)
    whole, whole_dirs = run(configs, tmp_path / "whole", tiny)
    with pytest.raises(Interrupt):
        run(configs, tmp_path / "cut", tiny, on_epoch=stop_at(2))
    again, cut_dirs = run(configs, tmp_path / "cut", tiny)
    for k in range(len(configs)):
        assert again[k]["valid_nll"] == whole[k]["valid_nll"]
        assert again[k]["updates"] == whole[k]["updates"]
        assert (
            metric_lines(cut_dirs[k])[-1]["valid_nll"]
            == (metric_lines(whole_dirs[k])[-1]["valid_nll"])
        )


def test_carry_state_keeps_each_members_own_rows():
    h = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2) + 1
    carried = carry_state((h, None), torch.tensor([True, False]), 4)
    assert carried[1] is None and carried[0].shape == (2, 4, 2)
    assert torch.equal(carried[0][0, :3], h[0]) and not carried[0][0, 3:].any()
    assert not carried[0][1].any()  # a member that starts a new batch starts from zeros
    assert carry_state((h, None), torch.tensor([False, False]), 3) is None
    assert carry_state((h, None), torch.tensor([True, True]), 3)[0] is h


def test_a_shared_batch_order_keeps_the_shared_minibatches(tiny):
    configs = [cfg(lr=lr, seed=s) for lr, s, _ in MEMBERS]
    batches = list(population_batches(tiny.split("train"), configs, 1))
    assert batches and all(b.shared and b.x.dim() == 3 for b in batches)


def test_the_keys_of_committed_runs_do_not_change():
    """``data_seed`` left the group key, not the key: every committed run keeps its key, and
    the runs of batch order 0 (every search) keep their group key."""
    path = ROOT / "docs" / "results" / "grid" / "store-runs.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows
    for row in rows[:60] + [r for r in rows if '"data_seed": 0' not in r["config"]][:20]:
        config = RunConfig.from_dict(json.loads(row["config"]))
        assert config.key() == row["key"]
        if config.data_seed == 0:
            assert config.group_key() == row["group_key"]
    # three committed runs, written out: two of a search (batch order 0: the group key stays)
    # and a fresh seed (data_seed 5: its stored group key, of the population it trained in
    # alone, stays in the store; recomputed it is now its cell's)
    pinned = {
        "001a8120aa11c76a": "91cd4e2e1c5c0c6a",
        "ad6b0e9ef8cd75c8": "3fcbf12d6a6a3812",
        "175cdaedb2cc11e7": "95f182e9a7b15851",
    }
    for key, group in pinned.items():
        (row,) = [r for r in rows if r["key"] == key]
        config = RunConfig.from_dict(json.loads(row["config"]))
        assert (config.key(), config.group_key()) == (key, group)
    assert [r["group_key"] for r in rows if r["key"] == "175cdaedb2cc11e7"] == ["be0846e1957bf75e"]


def test_fresh_seeds_with_the_sparse_input_gather_equal_each_seed_alone(
    tiny, tmp_path, monkeypatch
):
    """Each member's own piano rolls go through the gather (rnnbench.nn.sparse_input) too."""
    from rnnbench.nn import sparse_input

    monkeypatch.setattr(sparse_input, "MIN_WORK", 0)
    gathered = []
    # the autograd pass (project), the manual one (plan) and the compiled update all ask it
    real = sparse_input.plan_arrays

    def plan_arrays(x, w, finite=True):
        out = real(x, w, finite)
        gathered.append(x.ndim if out is not None else None)
        return out

    monkeypatch.setattr(sparse_input, "plan_arrays", plan_arrays)
    configs = members(unit="lstm", bptt=5)
    assert_each_member_is_its_run_alone(configs, tiny, tmp_path)
    assert 4 in gathered  # the members' own (K, T, B, I) windows were gathered
