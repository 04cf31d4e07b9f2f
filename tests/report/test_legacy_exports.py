"""Report folders written before the exports get them (issue 23): rnnbench.legacy_exports
rebuilds each run's config from runs.csv's columns and the stated protocol, checked against
the run's recorded key, and `rnnbench report --store FOLDER` then rebuilds the report."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rnnbench.cli import main as rnnbench_main
from rnnbench.errors import RnnbenchError
from rnnbench.exports_schema import read_exports
from rnnbench.legacy_exports import convert, main
from rnnbench.sweeps.grid import lr_candidates, stable_seed
from rnnbench.train.config import RunConfig

ROOT = Path(__file__).resolve().parents[2]
RUN_HEADER = [
    "key",
    "dataset",
    "unit",
    "form",
    "stage",
    "lr",
    "seed",
    "batch_size",
    "hidden",
    "status",
    "epochs",
    "best_epoch",
    "train_nll",
    "valid_nll",
    "test_nll",
    "seconds",
    "params",
    "error",
]
CURVE_HEADER = [
    "dataset",
    "unit",
    "form",
    "lr",
    "seed",
    "key",
    "in_figure",
    "epoch",
    "train_nll",
    "valid_nll",
    "updates",
    "seconds_per_model",
]
FORMS = {"tanh": "plain", "gru": "reset-before", "lstm": "peephole"}
SIZES = {"tanh": 100, "gru": 46, "lstm": 36}  # the paper's music sizes
EPOCHS = 4


def _study():
    """A small legacy study as the pre-export reproduce wrote it: per-unit draws of 3 rates
    (ln lr ~ U(-12, -6)), seed 0 at each, then seeds 1-3 at the second draw; 4 epochs."""
    runs = []
    for u, unit in enumerate(("tanh", "gru", "lstm")):
        lrs = lr_candidates(3, seed=stable_seed("jsb", unit), low=-12, high=-6)
        plan = [(lr, 0, "lr") for lr in lrs] + [(lrs[1], s, "seeds") for s in (1, 2, 3)]
        for lr, seed, stage in plan:
            config = RunConfig(dataset="jsb", unit=unit, lr=lr, seed=seed, max_epochs=EPOCHS)
            test = 8.0 + 0.1 * u + 0.01 * seed + (0.2 if lr != lrs[1] else 0.0)
            runs.append((config, stage, test))
    return runs


def _legacy_folder(folder: Path, runs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "runs.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(RUN_HEADER)
        for config, stage, test in runs:
            w.writerow(
                [config.key(), "jsb", config.unit, FORMS[config.unit], stage]
                + [f"{config.lr:.10g}", config.seed, 4, SIZES[config.unit], "done"]
                + [EPOCHS, EPOCHS, f"{test - 0.5:.10g}", f"{test - 0.1:.10g}", f"{test:.10g}"]
                + [12.5, 20000, ""]
            )
    with open(folder / "curves.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CURVE_HEADER)
        for config, stage, test in runs:
            if stage != "seeds":
                continue
            for e in range(1, EPOCHS + 1):
                w.writerow(
                    ["jsb", config.unit, FORMS[config.unit], f"{config.lr:.10g}", config.seed]
                    + [config.key(), 0, e, f"{test + 1 / e:.10g}", f"{test + 0.5 / e:.10g}"]
                    + [10 * e, 3.0 * e]
                )
    return folder


ARGS = dict(
    settings={"max_epochs": EPOCHS, "hidden": None}, lr_draws=(3, -12, -6, "unit"), sweep="x"
)


def test_a_legacy_folder_converts_exactly_and_its_report_rebuilds(tmp_path):
    runs = _study()
    folder = _legacy_folder(tmp_path / "legacy", runs)
    done = convert(folder, **ARGS)
    assert done == {"runs": 18, "epochs": 9 * EPOCHS, "runs_with_epochs": 9}
    found = read_exports(folder, strict=True)
    assert not found.skipped
    # Every config is the one that trained the run: the full-precision rate from the draws,
    # the stated protocol, and the key that hashes them.
    by_key = {r["key"]: r for r in found.runs}
    for config, stage, test in runs:
        row = by_key[config.key()]
        assert json.loads(row["config"]) == config.to_dict()
        assert row["lr"] == config.lr  # not the 10-digit text
        assert row["stage"] == stage and row["test_nll"] == pytest.approx(test)
        assert row["group_key"] == config.group_key() and row["quick"] == 0
    one = next(c for c, s, _ in runs if s == "seeds")
    assert [e["epoch"] for e in found.epochs[one.key()]] == list(range(1, EPOCHS + 1))
    assert all(e["seconds"] is None for e in found.epochs[one.key()])  # not known: left empty
    note = found.meta["legacy_conversion"]
    assert "max_epochs=4" in note and "per-epoch seconds" in note
    # The report rebuilds from the folder, with today's rules: the fresh seeds 1-3 only.
    out = tmp_path / "report"
    assert rnnbench_main(["report", "--store", str(folder), "--out", str(out), "--no-samples"]) == 0
    with open(out / "table2.csv", newline="", encoding="utf-8") as f:
        rows = {
            (r["unit"], r["split"]): r
            for r in csv.DictReader(f)
            if r["dataset"] == "jsb" and r["seeds"] not in ("", "0")
        }
    assert rows[("gru", "test")]["seeds"] == "3"
    assert rows[("gru", "test")]["seed_list"] == "1 2 3"
    assert float(rows[("gru", "test")]["nll_mean"]) == pytest.approx(8.1 + 0.02)
    assert float(rows[("gru", "test")]["lr"]) == pytest.approx(runs[7][0].lr, rel=1e-9)


def test_a_protocol_stated_wrongly_is_refused_naming_the_run(tmp_path):
    runs = _study()
    folder = _legacy_folder(tmp_path / "legacy", runs)
    with pytest.raises(RnnbenchError, match=r"line 2, column key: .* hashes to .*--set"):
        convert(folder, **{**ARGS, "settings": {"max_epochs": 500, "hidden": None}})
    # without the draws, runs.csv's 10-digit rates hash differently: refused, not invented
    with pytest.raises(RnnbenchError, match="hashes to"):
        convert(folder, **{**ARGS, "lr_draws": None})
    with pytest.raises(RnnbenchError, match=r"column lr: .* none of the 3 draws"):
        convert(folder, **{**ARGS, "lr_draws": (3, -12, -6, "dataset")})
    assert not list(folder.glob("store-*")) and not list(folder.glob(".legacy-*"))


@pytest.mark.parametrize(
    "edit, sentence",
    [
        (lambda h, r: (h[:5] + h[6:], [x[:5] + x[6:] for x in r]), "has no lr column"),
        (lambda h, r: (h, [[*r[0][:6], "fast", *r[0][7:]], *r[1:]]), "line 2, column seed: "),
        (lambda h, r: (h, [[*r[0][:5], "abc", *r[0][6:]], *r[1:]]), "column lr: 'abc' is not"),
        (lambda h, r: (h, [[*r[0][:14], "inf", *r[0][15:]], *r[1:]]), "column test_nll: inf"),
        (lambda h, r: (h, [[*r[0][:3], "peephole", *r[0][4:]], *r[1:]]), "column form: "),
        (lambda h, r: (h, [r[0], r[0]]), "line 3, column key: run .* has a second row"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(tmp_path, capsys, edit, sentence):
    folder = _legacy_folder(tmp_path / "legacy", _study())
    with open(folder / "runs.csv", newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    header, rows = edit(header, rows)
    with open(folder / "runs.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    argv = [str(folder), "--set", "max_epochs=4", "--set", "hidden=null"]
    assert main([*argv, "--lr-draws", "3", "-12", "-6", "unit"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnbench: error: ") and "\n" not in err
    assert __import__("re").search(sentence, err), err
    assert "Traceback" not in err
    assert not list(folder.glob("store-*"))


def test_bad_options_and_existing_exports_are_refused(tmp_path, capsys):
    folder = _legacy_folder(tmp_path / "legacy", _study())
    assert main([str(folder), "--set", "lr=0.1"]) == 2
    assert "read from each run's columns" in capsys.readouterr().err
    assert main([str(folder), "--set", "max_epochs=twenty"]) == 2
    assert "not a JSON value" in capsys.readouterr().err
    assert main([str(folder), "--lr-draws", "3", "-6", "-12", "unit"]) == 2
    assert "LOW < HIGH" in capsys.readouterr().err
    assert main([str(tmp_path), "--set", "hidden=null"]) == 2
    assert "has no runs.csv" in capsys.readouterr().err
    convert(folder, **ARGS)
    assert main([str(folder), "--set", "max_epochs=4"]) == 2
    assert "already holds store-runs.csv" in capsys.readouterr().err


def test_the_script_runs_from_a_checkout(tmp_path):
    folder = _legacy_folder(tmp_path / "legacy", _study())
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "legacy_exports.py"), str(folder)]
        + ["--set", "max_epochs=4", "--set", "hidden=null", "--lr-draws", "3", "-12", "-6"]
        + ["unit", "--sweep", "reproduce"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr
    assert "every rebuilt config hashes to its run's key" in done.stdout


def test_short_rows_and_bad_settings_are_one_sentence(tmp_path, capsys):
    folder = _legacy_folder(tmp_path / "legacy", _study())
    text = (folder / "runs.csv").read_text("utf-8").splitlines()
    text[1] = ",".join(text[1].split(",")[:4])  # a row cut short: key, dataset, unit, form
    (folder / "runs.csv").write_text("\n".join(text) + "\n", "utf-8")
    argv = [str(folder), "--lr-draws", "3", "-12", "-6", "unit", "--set", "max_epochs=4"]
    assert main([*argv, "--set", "hidden=null"]) == 2
    err = capsys.readouterr().err
    assert "line 2, column status: '' is not a run status" in err and "Traceback" not in err
    folder = _legacy_folder(tmp_path / "other", _study())
    argv[0] = str(folder)
    assert main([*argv, "--set", "hidden=50"]) == 2
    assert "column hidden: 100 is not the size --set hidden=50 states (50)" in (
        capsys.readouterr().err
    )
    assert main([*argv, "--set", "patience=0", "--set", "hidden=null"]) == 2
    err = capsys.readouterr().err
    assert "line 2: the config rebuilt from its columns and --set is not valid" in err
    assert not list(folder.glob("store-*"))


def test_converted_exports_seed_a_training_store(tmp_path):
    """--resume-from reads converted exports too: their empty cells (attempts) take the
    store's defaults, and every finished run is copied with its epochs."""
    from rnnbench.report.exports import import_finished
    from rnnbench.store import Store

    runs = _study()
    folder = _legacy_folder(tmp_path / "legacy", runs)
    convert(folder, **ARGS)
    with Store(tmp_path / "train" / "results.db") as store:
        assert import_finished(folder, store) == (18, 18)
        one = next(c for c, s, _ in runs if s == "seeds")
        row = store.get_run(one.key())
        assert row["status"] == "done" and row["attempts"] == 0 and row["quick"] == 0
        assert len(store.epochs(one.key())) == EPOCHS
