"""The ablation report on a hand-made store: the paired test, Holm, speed of learning, and the
paper's report unchanged by ablation runs beside its own."""

import csv
import math
import shutil

import pytest

from rnnbench.report import build_report
from rnnbench.report.ablations import ABLATION_FILES, build_ablation_report
from rnnbench.store import Store
from rnnbench.train.config import RunConfig
from tests.report.conftest import md_table

FINAL = {"": (8.0, 8.1, 8.2), "after": (8.1, 8.3, 8.2)}  # test = valid NLL of seeds 1, 2, 3
CURVES = {"": [9.0, 8.4, 8.0], "after": [9.5, 8.6, 8.1]}


def add_ablation_run(store, variant, lr, seed, stage, final, curve, hidden=46):
    cfg = RunConfig(
        dataset="jsb",
        unit="gru",
        lr=lr,
        seed=seed,
        data_seed=seed,
        hidden=hidden,
        batch_size=16,
        reset="after" if variant == "after" else "before",
        variant="" if variant == "after" else variant,
    )
    key = cfg.key()
    store.start_run(key, cfg.to_dict(), f"runs/{key}", labels={"sweep": "ablate", "stage": stage})
    store.log_epochs(
        key,
        [
            {"epoch": e, "train_nll": v, "valid_nll": v, "updates": e, "seconds": 1.0 * e}
            for e, v in enumerate(curve, start=1)
        ],
    )
    result = {"train_nll": final, "valid_nll": final, "test_nll": final, "epochs": len(curve)}
    store.finish_run(key, "done", result)
    return key


def fill_ablations(path):
    with Store(path) as store:
        for variant in ("", "after"):
            for lr, final in ((1e-3, 9.0), (3e-3, 8.5)):  # 3e-3 wins the search
                add_ablation_run(store, variant, lr, 0, "lr", final, [9.6, final])
            for seed, final in zip((1, 2, 3), FINAL[variant], strict=True):
                add_ablation_run(store, variant, 3e-3, seed, "seeds", final, CURVES[variant])


def rows(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_variant_against_its_full_unit_paired_by_seed_and_its_speed(tmp_path):
    store = tmp_path / "results.db"
    fill_ablations(store)
    out = build_ablation_report(store, tmp_path / "report")
    for name in ABLATION_FILES:
        if name not in ("gradflow.png",):  # no checkpoints here: no gradient-flow curves
            assert (out / name).is_file(), name
    full, after = rows(out / "ablations.csv")
    assert (full["variant"], after["variant"]) == ("full", "after")
    assert float(full["test_nll_mean"]) == pytest.approx(8.1)
    # diffs 0.1, 0.2, 0.0: mean 0.1, sd 0.1, t = sqrt(3); two-sided p with 2 df:
    # 1 - sqrt(3) / sqrt(5) (the t(2) CDF is 1/2 + t / (2 sqrt(2 + t^2)))
    assert after["paired_seeds"] == "1 2 3"
    assert float(after["diff_vs_full"]) == pytest.approx(0.1)
    assert float(after["t"]) == pytest.approx(math.sqrt(3))
    assert float(after["p"]) == pytest.approx(1 - math.sqrt(3 / 5))
    assert float(after["p_holm"]) == pytest.approx(float(after["p"]))  # one test
    assert after["verdict"].startswith("no significant difference")
    speed = rows(out / "speed.csv")
    assert [float(r["threshold"]) for r in speed] == pytest.approx([8.1 * 1.05] * 6)
    assert [r["epochs_to_threshold"] for r in speed] == ["2"] * 3 + ["3"] * 3
    # the three seeds of a cell share their epochs' seconds and group key: one population (as
    # they train since issue 22), so each epoch's second is shared by three models
    assert [float(r["seconds_to_threshold"]) for r in speed] == pytest.approx(
        [2.0 / 3] * 3 + [3.0 / 3] * 3
    )
    assert float(speed[0]["auc"]) == pytest.approx((9.0 + 8.4) / 2 + (8.4 + 8.0) / 2)
    md = (out / "ablations.md").read_text(encoding="utf-8")
    assert "Without a checkpoint or earlier rows" in md


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: v for k, v in r.items() if k != "provenance"} for r in csv.DictReader(f)]


def test_the_paper_report_is_the_same_with_ablation_runs_in_its_store(store_path, tmp_path):
    mixed = tmp_path / "mixed.db"
    shutil.copy(store_path, mixed)
    fill_ablations(mixed)
    before = build_report(store_path, tmp_path / "before")
    after = build_report(mixed, tmp_path / "after")
    for name in ("runs.csv", "store-runs.csv", "curves.csv"):
        # every column but the provenance, which names the store each was built from
        assert _rows(after / name) == _rows(before / name), name
        assert len(_rows(before / name)) > 1, name
    md_before = (before / "report.md").read_text("utf-8")
    md_after = (after / "report.md").read_text("utf-8")
    for heading in ("Table 2: NLL per time step", "Learning-rate choice", "GRU against LSTM"):
        assert md_table(md_after, heading) == md_table(md_before, heading)


def add_variant_run(store, variant, lr, seed, stage, final, curve, *, error=None):
    """A GRU variant's run (62 units), through ``add_ablation_run``; a run that diverged
    after its best epoch 1 (``error``) is stored as done with that flag."""
    key = add_ablation_run(store, variant, lr, seed, stage, final, curve, hidden=62)
    if error:
        result = {"train_nll": final, "valid_nll": final, "test_nll": final}
        store.finish_run(
            key, "done", {**result, "epochs": len(curve), "best_epoch": 1}, error=error
        )


def test_a_cell_whose_runs_all_diverged_before_learning_did_not_train(tmp_path):
    # Issue 23: the Piano-midi.de noaf cell's near-initial best states were reported as an
    # effect size of +51 nats. A cell whose every run diverged before it beat the per-note
    # marginal (JSB's is about 11 nats on the validation split) did not train: no statistics,
    # not in Holm's family, no gate use; a cell that diverged *after* learning is compared.
    store = tmp_path / "results.db"
    fill_ablations(store)
    late = "diverged at epoch 2 after its best at 1 (scored from its best state): overflow"
    with Store(store) as s:
        for lr, final in ((1e-3, 60.5), (3e-3, 58.0)):
            add_variant_run(s, "nrg", lr, 0, "lr", final, [final, 80.0], error=late)
        for seed, final in zip((1, 2, 3), (59.0, 59.2, 59.1), strict=True):
            add_variant_run(s, "nrg", 3e-3, seed, "seeds", final, [final, 90.0], error=late)
        for lr, final in ((1e-3, 9.0), (3e-3, 8.6)):
            add_variant_run(s, "nug", lr, 0, "lr", final, [final, 70.0], error=late)
        for seed, final in zip((1, 2, 3), (8.5, 8.45, 8.6), strict=True):
            add_variant_run(s, "nug", 3e-3, seed, "seeds", final, [final, 70.0], error=late)
    out = build_ablation_report(store, tmp_path / "report", samples=False)
    by = {r["variant"]: r for r in rows(out / "ablations.csv")}
    nrg, nug, after = by["nrg"], by["nug"], by["after"]
    assert nrg["verdict"] == "did not train (all runs diverged)"
    assert "all 5 runs diverged before learning" in nrg["note"]
    for column in ("test_nll_mean", "ci95_low", "diff_vs_full", "p", "p_holm", "holm_tests"):
        assert nrg[column] == "", column
    # the family is the two variants that trained: after and nug
    assert nug["holm_tests"] == after["holm_tests"] == "2"
    assert float(nug["diff_vs_full"]) == pytest.approx((0.5 + 0.35 + 0.4) / 3)
    # Holm over exactly these two p-values
    (p1, r1), (p2, r2) = sorted((float(r["p"]), r) for r in (nug, after))
    first = min(1.0, 2 * p1)
    assert float(r1["p_holm"]) == pytest.approx(first)
    assert float(r2["p_holm"]) == pytest.approx(min(1.0, max(first, p2)))
    md = (out / "ablations.md").read_text()
    assert "Holm's correction over the 2 tests of this report" in md
    assert "did not train (all runs diverged): all 5 runs diverged before learning" in md
    assert not any(r["variant"] == "nrg" for r in rows(out / "gates.csv"))
