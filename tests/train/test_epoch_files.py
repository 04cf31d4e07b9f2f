"""A population epoch's files (issue 22): staged and made durable together, then published.

``checkpoint.stage`` writes every file beside its place and fsyncs them all; ``publish`` moves
them into place (``last.pt`` rotating to ``prev.pt``). A crash at any point of an epoch's
writes must leave every member resumable to the same numbers, with no lost or doubled
metrics line.
"""

from __future__ import annotations

import errno

import pytest
import torch

from rnnbench.errors import RnnbenchError
from rnnbench.train import checkpoint as ckpt
from rnnbench.train import population as population_module
from tests.train.test_population import Interrupt, cfg, load, metric_lines, run


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_stage_moves_nothing_and_publish_puts_every_file_in_place(tmp_path):
    ckpt.atomic_save({"epoch": 1}, tmp_path / "last.pt")
    ckpt.atomic_save({"epoch": 1, "w": torch.ones(3)}, tmp_path / "best.pt")
    staged = ckpt.stage(
        [
            ({"epoch": 2, "w": torch.zeros(3)}, tmp_path / "best.pt"),
            ({"epoch": 2}, tmp_path / "last.pt"),
        ]
    )
    # written beside their places, nothing replaced yet
    assert load(tmp_path / "last.pt")["epoch"] == 1 and load(tmp_path / "best.pt")["epoch"] == 1
    assert all(tmp.exists() and tmp.parent == tmp_path for tmp, _ in staged)
    ckpt.publish(staged[:1])
    assert load(tmp_path / "best.pt")["epoch"] == 2 and load(tmp_path / "last.pt")["epoch"] == 1
    ckpt.publish(staged[1:])
    assert load(tmp_path / "last.pt")["epoch"] == 2 and load(tmp_path / "prev.pt")["epoch"] == 1
    assert torch.equal(load(tmp_path / "best.pt")["w"], torch.zeros(3))
    # no temporary file and no link to a replaced file is left behind
    assert names(tmp_path) == ["best.pt", "last.pt", "prev.pt"]


def test_a_link_left_by_a_crash_is_replaced_and_removed(tmp_path):
    ckpt.atomic_save({"epoch": 1}, tmp_path / "best.pt")
    (tmp_path / ".best.pt.old").write_bytes(b"left by a kill -9 between link and unlink")
    ckpt.publish(ckpt.stage([({"epoch": 2}, tmp_path / "best.pt")]))
    assert load(tmp_path / "best.pt")["epoch"] == 2
    assert names(tmp_path) == ["best.pt"]


def test_a_file_that_cannot_be_serialised_stages_nothing(tmp_path):
    ckpt.atomic_save({"epoch": 1}, tmp_path / "last.pt")
    with pytest.raises(Exception):  # noqa: B017 (pickle's own error, whatever its class)
        ckpt.stage([({"epoch": 2}, tmp_path / "best.pt"), ({"f": lambda: 0}, tmp_path / "last.pt")])
    assert names(tmp_path) == ["last.pt"] and load(tmp_path / "last.pt")["epoch"] == 1


@pytest.mark.parametrize("files", [1, 3])
def test_a_failed_fsync_is_one_sentence_and_leaves_the_old_files(files, tmp_path, monkeypatch):
    ckpt.atomic_save({"epoch": 1}, tmp_path / "last.pt")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.os, "fsync", full)
    items = [({"epoch": 2}, tmp_path / f"m{k}" / "last.pt") for k in range(files - 1)]
    with pytest.raises(RnnbenchError, match="No space left on device.*free disk space"):
        ckpt.stage([*items, ({"epoch": 2}, tmp_path / "last.pt")])
    monkeypatch.undo()
    assert load(tmp_path / "last.pt")["epoch"] == 1
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["last.pt"]


def _crash(monkeypatch, where: str, epoch: int):
    """Raise Interrupt at ``where`` in epoch ``epoch``'s writes (one stage call an epoch, then
    two publish calls, the improved members' best.pt and every last.pt, with the metrics lines
    appended between them)."""
    real_stage, real_publish, real_append = ckpt.stage, ckpt.publish, ckpt.append_metrics
    calls = {"stage": 0, "publish": 0}

    def append_metrics(run_dir, record):
        if where == "in the metrics lines" and record["epoch"] == epoch:
            raise Interrupt
        real_append(run_dir, record)

    def stage(items):
        calls["stage"] += 1
        staged = real_stage(items)
        if where == "after stage" and calls["stage"] == epoch:
            raise Interrupt
        return staged

    def publish(staged):
        calls["publish"] += 1
        bests, lasts = calls["publish"] == 2 * epoch - 1, calls["publish"] == 2 * epoch
        if where == "after best.pt" and bests:
            real_publish(staged)
            raise Interrupt
        if where == "before last.pt" and lasts:
            raise Interrupt
        if where == "between members' last.pt" and lasts:
            real_publish(staged[:1])
            raise Interrupt
        real_publish(staged)

    monkeypatch.setattr(population_module.ckpt, "stage", stage)
    monkeypatch.setattr(population_module.ckpt, "publish", publish)
    monkeypatch.setattr(population_module.ckpt, "append_metrics", append_metrics)


@pytest.mark.parametrize(
    "where",
    [
        "after stage",
        "after best.pt",
        "in the metrics lines",
        "before last.pt",
        "between members' last.pt",
    ],
)
def test_a_crash_anywhere_in_an_epochs_writes_resumes_to_the_same_numbers(
    where, tiny, tmp_path, monkeypatch
):
    configs = [
        cfg(lr=lr, seed=seed, max_epochs=4, weight_noise=0.3)
        for lr, seed in [(1e-3, 0), (3e-2, 1), (1e-1, 2)]
    ]
    straight, straight_dirs = run(configs, tmp_path / "straight", tiny)
    _crash(monkeypatch, where, epoch=3)
    with pytest.raises(Interrupt):
        run(configs, tmp_path / "resumed", tiny)
    monkeypatch.undo()
    dirs = [tmp_path / "resumed" / c.key() for c in configs]
    epochs = [load(d / "last.pt")["epoch"] for d in dirs]
    assert epochs == ([3, 2, 2] if where == "between members' last.pt" else [2, 2, 2])
    resumed, _ = run(configs, tmp_path / "resumed", tiny)

    def same(result):
        return {n: v for n, v in result.items() if n not in ("seconds", "checkpoint")}

    assert [same(r) for r in resumed] == [same(r) for r in straight]
    for d1, d2 in zip(straight_dirs, dirs, strict=True):
        lines1, lines2 = metric_lines(d1), metric_lines(d2)
        assert [r["epoch"] for r in lines2] == [1, 2, 3, 4]  # none lost, none doubled
        for r1, r2 in zip(lines1, lines2, strict=True):
            assert {**r1, "seconds": 0} == {**r2, "seconds": 0}
        for name, state in (("best.pt", "member_state"), ("last.pt", "model")):
            x, y = load(d1 / name), load(d2 / name)
            assert all(torch.equal(x[state][p], y[state][p]) for p in x[state])
        assert names(d2) == names(d1)  # no temporary file or link left


def test_last_pt_stores_the_best_state_once_when_the_epoch_made_it(tiny, tmp_path):
    (result,), (folder,) = run([cfg(lr=1e-3, seed=0, max_epochs=1)], tmp_path, tiny)
    last = load(folder / "prev.pt")  # epoch 1's last.pt (a first epoch always improves)
    assert last["epoch"] == 1 and last["early_stopping"]["best_epoch"] == 1
    for name, tensor in last["model"].items():
        assert tensor.untyped_storage().data_ptr() == (
            last["best_model"][name].untyped_storage().data_ptr()
        )
