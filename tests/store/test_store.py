"""The SQLite results store: round trips, filters, upserts, concurrent writers, errors."""

import json
import math
import multiprocessing as mp
import sqlite3

import pytest

from rnnbench.errors import RnnbenchError
from rnnbench.store import Store, form_of


def config(dataset="jsb", unit="lstm", lr=1e-3, seed=0, **extra):
    return {"dataset": dataset, "unit": unit, "lr": lr, "seed": seed, **extra}


def test_round_trip_of_a_run(tmp_path):
    store = Store(tmp_path / "r.db")
    store.start_run("k1", config(hidden=36, peephole=True), "runs/k1", labels={"stage": "lr"})
    store.log_epoch("k1", {"epoch": 1, "train_nll": 9.0, "valid_nll": 9.5, "updates": 10})
    store.log_epoch("k1", {"epoch": 2, "train_nll": 8.0, "valid_nll": 8.5, "updates": 20})
    result = {"train_nll": 8.0, "valid_nll": 8.5, "test_nll": 8.7, "best_epoch": 2, "epochs": 2}
    store.finish_run("k1", "done", {**result, "checkpoint": tmp_path / "best.pt"})

    run = store.get_run("k1")
    assert run["status"] == "done"
    assert run["config"] == config(hidden=36, peephole=True)
    assert (run["dataset"], run["unit"], run["form"], run["hidden"]) == (
        "jsb",
        "lstm",
        "peephole",
        36,
    )
    assert run["test_nll"] == 8.7 and run["best_epoch"] == 2 and run["stage"] == "lr"
    assert run["checkpoint"] == str(tmp_path / "best.pt")
    assert run["attempts"] == 1 and run["error"] is None
    assert run["python"] and run["torch"] and run["numpy"] and run["host"]
    assert run["created"] and run["started"] and run["finished"]
    assert [e["epoch"] for e in store.epochs("k1")] == [1, 2]
    assert store.get_run("missing") is None


def test_epoch_upsert_rewrites_an_epoch_harmlessly(tmp_path):
    store = Store(tmp_path / "r.db")
    store.start_run("k", config(), "d")
    store.log_epoch("k", {"epoch": 1, "train_nll": 3.0, "valid_nll": 4.0})
    store.log_epochs("k", [{"epoch": 1, "train_nll": 2.0, "valid_nll": 2.5}, {"epoch": 2}])
    epochs = store.epochs("k")
    assert [(e["epoch"], e["train_nll"]) for e in epochs] == [(1, 2.0), (2, None)]


def test_restart_counts_attempts_and_clears_the_error(tmp_path):
    store = Store(tmp_path / "r.db")
    store.start_run("k", config(), "d")
    store.finish_run("k", "failed", error="ValueError: boom")
    assert store.get_run("k")["error"] == "ValueError: boom"
    store.start_run("k", config(), "d")
    run = store.get_run("k")
    assert run["attempts"] == 2 and run["status"] == "running" and run["error"] is None


def test_queue_never_overwrites_a_known_run(tmp_path):
    store = Store(tmp_path / "r.db")
    store.start_run("k", config(), "d")
    store.finish_run("k", "done", {"valid_nll": 1.0})
    store.queue_run("k", config(), "d")
    store.queue_run("q", config(seed=1), "d2", labels={"quick": True})
    assert store.get_run("k")["status"] == "done"
    assert store.get_run("q")["status"] == "queued" and store.get_run("q")["quick"] is True


def test_nan_is_stored_as_null(tmp_path):
    store = Store(tmp_path / "r.db")
    store.start_run("k", config(), "d")
    store.finish_run("k", "diverged", {"valid_nll": math.nan, "train_nll": math.inf})
    run = store.get_run("k")
    assert run["status"] == "diverged" and run["valid_nll"] is None and run["train_nll"] == math.inf


def test_filters(tmp_path):
    store = Store(tmp_path / "r.db")
    for i, (dataset, unit) in enumerate([("jsb", "lstm"), ("jsb", "gru"), ("fsdd-a", "gru")]):
        store.start_run(f"k{i}", config(dataset, unit, reset="after"), f"d{i}")
    store.finish_run("k1", "done")
    assert {r["key"] for r in store.runs()} == {"k0", "k1", "k2"}
    assert {r["key"] for r in store.runs(dataset="jsb")} == {"k0", "k1"}
    assert {r["key"] for r in store.runs(unit="gru")} == {"k1", "k2"}
    assert {r["key"] for r in store.runs(dataset="jsb", unit="gru")} == {"k1"}
    assert {r["key"] for r in store.runs(status="running")} == {"k0", "k2"}
    assert {r["key"] for r in store.runs(status=["done", "running"])} == {"k0", "k1", "k2"}
    assert {r["key"] for r in store.runs(form="reset-after")} == {"k1", "k2"}
    with pytest.raises(ValueError):
        store.runs(colour="red")


def test_form_names():
    assert form_of({"unit": "tanh"}) == "plain"
    assert form_of({"unit": "lstm", "peephole": False}) == "no-peephole"
    assert form_of({"unit": "gru", "reset": "before"}) == "reset-before"


def test_meta_and_set_status(tmp_path):
    store = Store(tmp_path / "r.db")
    store.set_meta("quick", 1)
    assert store.meta() == {"quick": "1"}
    store.start_run("a", config(), "d")
    store.start_run("b", config(seed=1), "d")
    store.finish_run("b", "done")
    store.set_status(["a", "b"], "queued", only=["running"])
    assert store.get_run("a")["status"] == "queued" and store.get_run("b")["status"] == "done"


def test_commands_are_appended_in_order_and_a_hand_edited_value_reads_as_none(tmp_path):
    store = Store(tmp_path / "r.db")
    assert store.commands() == []
    store.add_command("rnnbench reproduce --sets jsb")
    store.set_meta("quick", 1)
    Store(tmp_path / "r.db").add_command("rnnbench reproduce --sets jsb --workers 2")
    made = store.commands()
    assert [c["command"] for c in made] == [
        "rnnbench reproduce --sets jsb",
        "rnnbench reproduce --sets jsb --workers 2",
    ]
    assert made[0]["at"] <= made[1]["at"] and made[0]["host"]
    store.set_meta("commands", "{not json")
    assert store.commands() == []
    store.add_command("rnnbench train --dataset jsb")  # starts a fresh list, loses no run
    assert [c["command"] for c in store.commands()] == ["rnnbench train --dataset jsb"]


class _InterruptAfterBegin:
    """A connection whose next BEGIN runs, then a Ctrl-C strikes before the write's try."""

    def __init__(self, conn):
        self.conn, self.armed = conn, True

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def execute(self, sql, *args):
        result = self.conn.execute(sql, *args)
        if self.armed and sql.startswith("BEGIN"):
            self.armed = False
            raise KeyboardInterrupt
        return result


def test_a_write_interrupted_after_begin_does_not_block_the_next_write(tmp_path):
    # Ctrl-C during a sweep could land right after BEGIN IMMEDIATE; the transaction stayed
    # open, the cleanup's set_status(..., "queued") failed with "cannot start a transaction
    # within a transaction", and interrupted runs stayed "running" in the store.
    store = Store(tmp_path / "r.db")
    store.start_run("a", config(), "d")
    real = store._connect()
    store._conn = _InterruptAfterBegin(real)
    with pytest.raises(KeyboardInterrupt):
        store.log_epoch("a", {"epoch": 1, "train_nll": 9.0})
    store._conn = real
    store.set_status(["a"], "queued", only=["running"])
    assert store.get_run("a")["status"] == "queued"
    assert Store(tmp_path / "r.db").get_run("a")["status"] == "queued"


def _writer(path, worker, rows):
    store = Store(path)
    for i in range(rows):
        key = f"w{worker}-{i}"
        store.start_run(key, config(seed=i, lr=worker), f"runs/{key}")
        store.log_epoch(key, {"epoch": 1, "train_nll": float(i)})
        store.log_epoch(key, {"epoch": 1, "train_nll": float(i) + 0.5})
        store.finish_run(key, "done", {"valid_nll": float(i)})


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "r.db"
    Store(path).close()
    workers, rows = 4, 40
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, rows)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = Store(path)
    runs = store.runs(status="done")
    assert len(runs) == workers * rows
    assert all(store.epochs(r["key"])[0]["train_nll"] == r["seed"] + 0.5 for r in runs)
    assert store.integrity_check() == "ok"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_unwritable_place_gives_one_clear_sentence(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # `rnnbench train --out FILE/x` puts the store there too: name both flags.
    with pytest.raises(RnnbenchError, match="--out or --store"):
        Store(blocker / "sub" / "r.db")
    folder = tmp_path / "folder.db"
    folder.mkdir()
    with pytest.raises(RnnbenchError, match="--store"):
        Store(folder)


def test_a_file_that_is_not_a_store(tmp_path):
    path = tmp_path / "r.db"
    path.write_text("this is not sqlite, just text " * 100)
    with pytest.raises(RnnbenchError, match="not a readable rnnbench results store"):
        Store(path)


def test_readonly_reads_while_a_writer_holds_the_store_and_never_writes(tmp_path):
    path = tmp_path / "r.db"
    with Store(path) as store:
        store.start_run("k1", config(), "runs/k1")
        store.log_epoch("k1", {"epoch": 1, "train_nll": 9.0, "valid_nll": 9.5})
    before = path.read_bytes()

    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a sweep in the middle of a write
    try:
        with Store(path, readonly=True) as ro:
            assert [r["key"] for r in ro.runs()] == ["k1"]
            assert [e["epoch"] for e in ro.epochs("k1")] == [1]
            with pytest.raises(RnnbenchError, match="read-only"):
                ro.set_meta("x", 1)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert path.read_bytes() == before


def test_readonly_on_a_file_that_is_not_a_store(tmp_path):
    path = tmp_path / "r.db"
    path.write_text("this is not sqlite, just text " * 100)
    with pytest.raises(RnnbenchError, match="not a readable rnnbench results store"):
        Store(path, readonly=True).runs()


def test_import_run_copies_a_finished_run_and_keeps_what_is_finished_here(tmp_path):
    def row(key, status, valid):
        return {
            "key": key,
            "config": json.dumps({"dataset": "jsb", "unit": "gru", "lr": 1e-3, "seed": 0}),
            "dataset": "jsb",
            "unit": "gru",
            "status": status,
            "valid_nll": valid,
            "not_a_column": 1,  # dropped
        }

    epochs = [{"epoch": 1, "train_nll": 9.0, "valid_nll": 8.5, "updates": 10, "seconds": 2.0}]
    with Store(tmp_path / "r.db") as store:
        store.queue_run("b", {"dataset": "jsb", "unit": "gru", "lr": 1e-3}, "runs/b")
        store.start_run("c", {"dataset": "jsb", "unit": "gru", "lr": 1e-3}, "runs/c")
        store.finish_run("c", "done", {"valid_nll": 7.0})
        assert store.import_run(row("a", "done", 8.0), epochs, "/git/grid")
        assert store.import_run(row("b", "diverged", 8.1), epochs, "/git/grid")  # was queued
        assert not store.import_run(row("c", "done", 9.9), epochs, "/git/grid")  # finished here
        with pytest.raises(ValueError, match="only finished runs"):
            store.import_run(row("d", "running", 1.0), [], "/git/grid")
        runs = {r["key"]: r for r in store.runs()}
        assert set(runs) == {"a", "b", "c"}
        assert (runs["a"]["status"], runs["a"]["valid_nll"], runs["a"]["imported"]) == (
            "done",
            8.0,
            "/git/grid",
        )
        assert runs["b"]["status"] == "diverged" and runs["c"]["valid_nll"] == 7.0
        assert runs["c"]["imported"] is None
        assert store.epochs("a") == [{"key": "a", **epochs[0]}]
