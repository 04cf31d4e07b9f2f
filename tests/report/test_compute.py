"""The report's Compute section: worker time per cell and stage, one population counted once."""

from __future__ import annotations

from rnnbench.report import build_report
from rnnbench.report.compute import compute_table, stage_costs
from rnnbench.report.results import build_cells
from rnnbench.store import Store

from .conftest import add_run, md_table


def _run(key, stage, seconds, epochs, lr=1e-3, seed=0, status="done", sweep="reproduce"):
    config = {"dataset": "jsb", "unit": "gru", "lr": lr, "seed": seed, "max_epochs": 500}
    return {
        "key": key,
        "config": config,
        "status": status,
        "stage": stage,
        "sweep": sweep if stage else None,
        "valid_nll": 1.0,
        "seconds": None if status in ("queued", "running") else seconds,
        "epochs": epochs,
    }


def test_a_population_counts_once_its_longest_member_and_stages_add_up():
    runs = [
        _run("a", "lr", 100.0, 500, lr=1e-4),  # ran every epoch of the search population
        _run("b", "lr", 40.0, 120, lr=1e-3),
        _run("c", "lr", 7.0, 20, lr=1e-2),
        _run("d", "seeds", 30.0, 300, seed=1),
        _run("e", "seeds", 12.0, 90, seed=2),
    ]
    # the search's members share epoch 1's seconds (one population); each fresh seed read its
    # own batch order and trained alone, one after another: a population each
    first = {"a": 0.2, "b": 0.2, "c": 0.2, "d": 0.1, "e": 0.13}
    [cell] = build_cells(runs)
    costs = stage_costs(cell, lambda k: [{"epoch": 1, "seconds": first[k]}])
    costs = {c.stage: (c.runs, c.seconds, c.epochs, c.population_epochs) for c in costs}
    assert costs == {"lr": (3, 100.0, 500, 500), "seeds": (2, 42.0, 300, 390)}


def test_fresh_seeds_trained_one_after_another_add_up_in_a_hand_made_store(tmp_path):
    # Issue 23: the seeds stage was counted as one population (its longest seed), which
    # undercounted every cell by all its other seeds' time.
    path = tmp_path / "results.db"
    with Store(path) as store:
        add_run(store, "jsb", "gru", 1e-3, 0, status="done", valid=[3.0, 2.0], max_epochs=2)
        add_run(store, "jsb", "gru", 3e-3, 0, status="done", valid=[3.0, 2.5], max_epochs=2)
        for seed in (1, 2, 3):
            add_run(
                store,
                "jsb",
                "gru",
                1e-3,
                seed,
                status="done",
                valid=[3.0, 2.0, 1.9],
                stage="seeds",
                max_epochs=3,
                data_seed=seed,
                seconds_per_epoch=10.0 * seed,
            )
    out = build_report(path, tmp_path / "report")
    rows = {r[2]: r for r in md_table((out / "report.md").read_text(), "Compute")}
    # search: one population of 2 members, 2 epochs of 1 s; seeds: 3 x 10 s + 3 x 20 s + 3 x 30 s
    # per epoch: the search's 2 s over its 2 epochs; the seeds' 180 s over 3 populations x 3
    assert rows["learning-rate search"][3:] == ["2", "2", "0.0 min", "1.00 s"]
    assert rows["seeds"][3:] == ["3", "3", "3.0 min", "20.0 s"]
    assert rows[""][5] == "3.0 min"  # the total row ("all")


def test_unfinished_runs_count_their_last_epoch_and_queued_stages_say_so():
    runs = [
        _run("a", "lr", 0, 0, status="running"),
        _run("b", "lr", 0, 0, lr=1e-2, status="queued"),
        _run("c", "seeds", 0, 0, seed=1, status="queued"),
    ]
    curves = {"a": [{"epoch": 1, "seconds": 2.0}, {"epoch": 2, "seconds": 4.5}]}
    [cell] = build_cells(runs)
    table = compute_table([cell], lambda k: curves.get(k, []))
    rows = {r[2]: r for r in table.rows}
    assert rows["learning-rate search (still training)"][4:] == ["2", "0.1 min", "2.25 s"]
    assert rows["seeds (queued)"][4:] == ["0", "0.0 min", ""]


def test_train_populations_are_told_apart_by_their_first_epoch():
    # `rnnbench train` stores no stage: two members of one command share epoch 1's seconds,
    # a second command's run does not.
    runs = [
        _run("a", None, 50.0, 10),
        _run("b", None, 40.0, 8, lr=1e-2),
        _run("c", None, 70.0, 12, lr=1e-4),
    ]
    first = {"a": 5.0, "b": 5.0, "c": 7.0}
    [cell] = build_cells(runs)
    [cost] = stage_costs(cell, lambda k: [{"epoch": 1, "seconds": first[k]}])
    assert (cost.runs, cost.seconds, cost.epochs) == (3, 120.0, 12)


def test_the_report_has_the_compute_section(report_dir):
    rows = md_table((report_dir / "report.md").read_text(), "Compute")
    # the fake store: every run trained 6 epochs, 1.5 s each; seed 0 in the "lr" stage, the
    # fresh seeds 1 and 2 in the "seeds" stage, for each of the 5 cells
    cells = [r for r in rows if r[0] != "all"]
    assert len(cells) == 10 and {r[2] for r in cells} == {"learning-rate search", "seeds"}
    assert {(r[4], r[5], r[6]) for r in cells} == {("6", "0.1 min", "1.50 s")}
    assert rows[-1][0] == "all" and rows[-1][3] == str(sum(int(r[3]) for r in cells))
    assert "Compute" in (report_dir / "report.html").read_text()


def test_old_fresh_seeds_imported_count_apart_and_new_ones_trained_together_count_once(tmp_path):
    """Issue 22: fresh seeds now train as one population (one group key, one first epoch);
    fresh seeds of earlier versions, imported from an export, keep the group keys they were
    stored with (the store never recomputes them) and count one after another."""
    import json

    from rnnbench.train.config import RunConfig

    path = tmp_path / "results.db"
    with Store(path) as store:
        for unit in ("gru", "lstm"):  # each cell's search: one population
            add_run(store, "jsb", unit, 1e-3, 0, status="done", valid=[3.0, 2.0], max_epochs=2)
        old = []
        for seed in (1, 2, 3):  # an earlier version's seeds: alone each, 10, 20, 30 s/epoch
            cfg = RunConfig(dataset="jsb", unit="gru", lr=1e-3, seed=seed, data_seed=seed)
            cfg = RunConfig.from_dict({**cfg.to_dict(), "batch_size": 16, "max_epochs": 3})
            row = {
                "key": cfg.key(),
                "config": json.dumps(cfg.to_dict(), sort_keys=True),
                "dataset": "jsb",
                "unit": "gru",
                "group_key": f"old-population-{seed}",  # as the old code stored it
                "sweep": "t",
                "stage": "seeds",
                "status": "done",
                "valid_nll": 1.9,
                "seconds": 30.0 * seed,
                "epochs": 3,
            }
            epochs = [{"epoch": e, "valid_nll": 2.0, "seconds": 10.0 * seed * e} for e in (1, 2, 3)]
            old.append((row, epochs))
        assert store.import_runs(old, "export") == 3
        new = [  # this version: the three seeds trained together, 20 s per epoch
            add_run(
                store,
                "jsb",
                "lstm",
                1e-3,
                seed,
                status="done",
                valid=[3.0, 2.0, 1.9],
                stage="seeds",
                max_epochs=3,
                data_seed=seed,
                seconds_per_epoch=20.0,
            )
            for seed in (1, 2, 3)
        ]
        kept = {store.get_run(row["key"])["group_key"] for row, _ in old}
        assert kept == {"old-population-1", "old-population-2", "old-population-3"}
        assert len({store.get_run(k)["group_key"] for k in new}) == 1
    out = build_report(path, tmp_path / "report", samples=False)
    md = (out / "report.md").read_text()
    rows = {(r[1].split(" ")[0], r[2]): r for r in md_table(md, "Compute")}
    # old: 3 x 10 s + 3 x 20 s + 3 x 30 s = 3.0 min; new: one population of 3 x 20 s = 1.0 min
    # per population epoch both are 20 s: the old seeds' 10, 20 and 30 s, averaged
    assert rows[("GRU", "seeds")][3:] == ["3", "3", "3.0 min", "20.0 s"]
    assert rows[("LSTM", "seeds")][3:] == ["3", "3", "1.0 min", "20.0 s"]
    assert "the fresh seeds of a cell also train as one population" in md


def test_an_epoch_is_shared_only_among_the_runs_that_trained_together():
    from rnnbench.report.compute import epoch_sharing

    def run(key, group):
        return {"key": key, "group_key": group, "stage": "seeds", "sweep": "t"}

    runs = [run("a", "g"), run("b", "g"), run("c", "g"), run("d", "h")]
    rows = {
        "a": [{"epoch": 1, "seconds": 2.0}, {"epoch": 2, "seconds": 4.0}],
        "b": [{"epoch": 1, "seconds": 2.0}],  # trained with a (same first epoch), stopped at 1
        "c": [{"epoch": 1, "seconds": 3.0}, {"epoch": 2, "seconds": 6.0}],  # alone, after
        "d": [{"epoch": 1, "seconds": 2.0}],  # another group key: another cell
    }
    assert epoch_sharing(runs[0], runs, rows.__getitem__) == {1: 2, 2: 1}
    assert epoch_sharing(runs[2], runs, rows.__getitem__) == {1: 1, 2: 1}
    assert epoch_sharing(runs[3], [], rows.__getitem__) == {1: 1}
