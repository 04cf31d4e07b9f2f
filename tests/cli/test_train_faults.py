"""`rnnbench train` under faults: a refused second process, a lost store write, damaged
checkpoints."""

from __future__ import annotations

import pytest

from rnnbench import locks
from rnnbench.errors import RnnbenchError
from rnnbench.store import Store
from rnnbench.train import checkpoint as ckpt
from rnnbench.train.config import RunConfig
from tests.cli.test_train import jsb_file, run_train  # noqa: F401 (a fixture)


def _argv(data, out, epochs=2):
    return [
        "--dataset",
        f"music:{data}",
        "--unit",
        "gru",
        "--hidden",
        "4",
        "--max-epochs",
        str(epochs),
        "--batch-size",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]


def _key(data, epochs=2):
    return RunConfig(
        dataset=f"music:{data}", unit="gru", hidden=4, max_epochs=epochs, batch_size=2
    ).key()


def test_a_refused_train_leaves_the_live_runs_row_alone(jsb_file, tmp_path):  # noqa: F811
    key = _key(jsb_file)
    run_dir = tmp_path / "runs" / key
    run_dir.mkdir(parents=True)
    with Store(tmp_path / "results.db") as store:
        config = RunConfig(
            dataset=f"music:{jsb_file}", unit="gru", hidden=4, max_epochs=2, batch_size=2
        )
        store.start_run(key, config.to_dict(), str(run_dir))
        before = store.get_run(key)
    # Another process is training the folder (the lock is taken on a second descriptor,
    # which flock treats as another holder).
    with (
        locks.hold(run_dir / ckpt.LOCK, "busy: {owner}"),
        pytest.raises(RnnbenchError, match="is being trained by pid"),
    ):
        run_train(_argv(jsb_file, tmp_path))
    with Store(tmp_path / "results.db") as store:
        after = store.get_run(key)
    assert after["status"] == "running" and after["error"] is None
    assert after["attempts"] == before["attempts"] == 1


def test_train_backfills_epochs_the_store_missed(jsb_file, tmp_path, monkeypatch):  # noqa: F811
    """A store write that failed (or a death between checkpoint and store) loses no epoch."""
    key = _key(jsb_file, epochs=3)
    real = Store.log_epoch

    def lost_at_epoch_2(self, k, record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt  # dies after the checkpoint, before the store write
        real(self, k, record)

    monkeypatch.setattr(Store, "log_epoch", lost_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_train(_argv(jsb_file, tmp_path, epochs=3))
    with Store(tmp_path / "results.db") as store:
        assert [e["epoch"] for e in store.epochs(key)] == [1]
    monkeypatch.setattr(Store, "log_epoch", real)
    assert run_train(_argv(jsb_file, tmp_path, epochs=3)) == 0
    with Store(tmp_path / "results.db") as store:
        assert [e["epoch"] for e in store.epochs(key)] == [1, 2, 3]
        assert store.get_run(key)["status"] == "done"


@pytest.mark.parametrize("damaged", [("last.pt",), ("last.pt", "prev.pt")])
def test_unreadable_checkpoints_stop_with_how_to_start_afresh(tmp_path, damaged):
    for name in damaged:
        (tmp_path / name).write_bytes(b"not a checkpoint")
    with pytest.raises(RnnbenchError) as err:
        ckpt.checkpoints(tmp_path)
    message = str(err.value)
    assert "cannot resume" in message and "start it afresh" in message
    assert all(name in message for name in damaged)


def test_one_readable_checkpoint_is_enough(tmp_path):
    ckpt.atomic_save({"epoch": 4}, tmp_path / "prev.pt")
    (tmp_path / "last.pt").write_bytes(b"torn")
    assert [c["epoch"] for c in ckpt.checkpoints(tmp_path)] == [4]
