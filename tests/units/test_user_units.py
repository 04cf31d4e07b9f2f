"""User units: the registry, one sentence per bad unit, committed keys unchanged, and the
security rule (a store or export naming a unit file imports nothing)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnbench.cli import main
from rnnbench.errors import RnnbenchError
from rnnbench.models import SequenceModel
from rnnbench.train.config import RunConfig
from rnnbench.units import registry
from tests.sweeps.test_kill import write_tiny_music

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "units" / "lntanh.py"

CELL = """
import torch
from rnnbench.units import Unit

class Cell(Unit):
    name = "{name}"
    state = ("h",)
    def shapes(self, I, H):
        return {{"w": (H, I), "u": (H, H)}}
    def step(self, p, x, state):
        (h,) = state
        {body}
"""


def cell(tmp_path, name="mycell", body="return (torch.tanh(x @ p['w'].T + h @ p['u'].T),)"):
    path = tmp_path / f"{name}_{abs(hash(body))}.py"
    path.write_text(CELL.format(name=name, body=body), encoding="utf-8")
    return f"{path}:Cell"


def test_committed_keys_of_built_in_units_do_not_change():
    for folder in ("jsb", "pianomidi"):
        path = ROOT / "docs" / "results" / "ablations" / folder / "store-runs.csv"
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))[:40]
        assert rows
        for row in rows:
            assert RunConfig.from_dict(json.loads(row["config"])).key() == row["key"]


def test_a_user_unit_trains_in_a_model_and_its_source_is_in_the_key(tmp_path):
    loaded = registry.load(f"{EXAMPLE}:LayerNormTanh")
    assert loaded.source.startswith("file:lntanh.py:LayerNormTanh@")
    cfg = RunConfig(dataset="jsb", unit="lntanh", unit_source=loaded.source)
    changed = RunConfig(dataset="jsb", unit="lntanh", unit_source=loaded.source[:-1] + "x")
    assert cfg.key() != changed.key()
    with pytest.raises(RnnbenchError, match="^unit 'lntanh' was trained from .* the cell changed"):
        registry.check_config("lntanh", changed.unit_source)
    with pytest.raises(RnnbenchError, match="is not a built-in unit"):
        RunConfig(dataset="jsb", unit="nosuchunit")


@pytest.mark.parametrize(
    ("name", "body", "match"),
    [
        ("wrongstate", "return (h[:, :1],)", r"returned state 'h' of shape \(2, 1\)"),
        ("nanstep", "return (h * float('nan'),)", "returned a non-finite 'h'"),
        ("missing", "return (x @ p['v'].T,)", "reads parameter 'v', which its shapes"),
        ("gru", "return (h,)", "which is a built-in unit; rename it"),
    ],
)
def test_bad_units_get_one_sentence(tmp_path, name, body, match):
    with pytest.raises(RnnbenchError, match=match) as info:
        registry.load(spec := cell(tmp_path, name, body))
        SequenceModel(name, 3, 3, 4, head="bernoulli")
    assert "\n" not in str(info.value)
    # and the CLI says it without a traceback
    if name == "gru":
        assert main(["train", "--dataset", "jsb", "--unit", spec, "--out", str(tmp_path)]) == 2


def test_a_store_naming_a_unit_file_imports_nothing(tmp_path):
    marker = tmp_path / "imported"
    unit = tmp_path / "evil.py"
    unit.write_text(
        f"open({str(marker)!r}, 'w').write('x')\n" + CELL.format(name="evil", body="return (h,)"),
        encoding="utf-8",
    )
    source = "file:evil.py:Cell@0123456789abcdef"
    cfg = RunConfig(dataset="jsb", unit="evil", unit_source=source)
    from rnnbench.store import Store

    with Store(tmp_path / "results.db") as store:
        store.queue_run(cfg.key(), cfg.to_dict(), str(tmp_path / "runs" / cfg.key()))
    code = (
        "import sys; from rnnbench.cli import main; "
        f"sys.exit(main(['sample', '--store', {str(tmp_path / 'results.db')!r}, "
        "'--dataset', 'jsb', '--unit', 'evil']))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_a_unit_file_goes_through_ablate_quick_and_its_report_rebuilds_without_it(tmp_path):
    music = tmp_path / "tiny.pickle"
    write_tiny_music(music)
    out = tmp_path / "out"
    argv = ["ablate", "--quick", "--sets", f"music:{music}", "--unit", f"{EXAMPLE}:LayerNormTanh"]
    argv += ["--candidates", "2", "--max-epochs", "2", "--seeds", "3", "--workers", "2"]
    argv += ["--threads", "1", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    with open(out / "report" / "ablations.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["unit"], r["variant"]) for r in rows] == [
        ("lstm", "full"),
        ("gru", "full"),
        ("lntanh", "vs lstm"),
        ("lntanh", "vs gru"),
    ]
    assert rows[3]["paired_seeds"] == "1 2 3" and rows[3]["recurrent_params"] == "18711"
    md = (out / "report" / "ablations.md").read_text(encoding="utf-8")
    assert "lntanh" in md.split("## Samples", 1)[1]
    # A fresh process rebuilds the report from the exports without importing the unit: its
    # rows are there, with what the store holds.
    marker = tmp_path / "imported"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    code = (
        "import sys, builtins; from rnnbench.cli import main; "
        f"rc = main(['ablate', '--report-only', '--no-samples', '--store', "
        f"{str(out / 'report')!r}, '--report', {str(tmp_path / 'rebuilt')!r}]); "
        f"open({str(marker)!r}, 'w').write(str([m for m in sys.modules if 'rnnbench_unit' in m]))"
        "; sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "[]"
    with open(tmp_path / "rebuilt" / "ablations.csv", encoding="utf-8") as f:
        again = list(csv.DictReader(f))
    assert [r["test_nll_mean"] for r in again] == [r["test_nll_mean"] for r in rows]


def test_params_counts_plug_in_units(capsys):
    assert main(["params", "--task", "music", "--unit", "mingru", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["units"]["mingru"]
    assert (row["hidden"], row["recurrent_params"]) == (105, 18_690)


def test_a_sweep_file_naming_a_unit_imports_nothing(tmp_path):
    from rnnbench.sweeps.grid import parse_sweep

    marker = tmp_path / "imported"
    (tmp_path / "evil2.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    spec = {"name": "s", "datasets": ["jsb"], "units": ["evil2"], "hidden": [4]}
    spec["lr"] = {"values": [1e-3]}
    with pytest.raises(RnnbenchError, match="unknown unit 'evil2'.*--unit FILE.py:Class"):
        parse_sweep(spec, "grid.toml")
    assert not marker.exists()


def test_a_loaded_unit_goes_into_a_sweep_grid_with_its_source():
    from rnnbench.sweeps.grid import parse_sweep

    loaded = registry.load(f"{EXAMPLE}:LayerNormTanh")
    spec = {"name": "s", "datasets": ["jsb"], "units": ["lntanh", "mingru"], "budgets": [5000]}
    spec["lr"] = {"values": [1e-3]}
    _, pops = parse_sweep(spec, "grid.toml")
    by_unit = {p.configs[0].unit: p.configs[0] for p in pops}
    assert by_unit["lntanh"].unit_source == loaded.source and by_unit["mingru"].unit_source == ""
    assert by_unit["lntanh"].hidden == registry_hidden("lntanh", 5000)


def registry_hidden(unit, budget):
    from rnnbench.models import match_hidden

    return match_hidden("music", unit, budget)


def test_train_and_sample_a_unit_file_and_refuse_it_changed(tmp_path, monkeypatch, capsys):
    music = tmp_path / "tiny.pickle"
    write_tiny_music(music)
    unit = tmp_path / "lntanh.py"
    unit.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    spec, out = f"{unit}:LayerNormTanh", tmp_path / "out"
    argv = ["train", "--dataset", f"music:{music}", "--unit", spec, "--hidden", "4"]
    argv += ["--lr", "1e-3", "--max-epochs", "1", "--threads", "1", "--out", str(out)]
    assert main([*argv, "--no-progress", "--json"]) == 0
    run_dir = Path(json.loads(capsys.readouterr().out)["run_dir"])
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert config["unit"] == "lntanh" and config["unit_source"].startswith("file:lntanh.py:")
    samples = ["sample", str(run_dir), "--steps", "5", "--out", str(tmp_path / "s")]
    assert main([*samples, "--unit", spec]) == 0
    # a changed cell is a different run: sampling the old run with it is one sentence
    unit.write_text(unit.read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
    monkeypatch.setattr(registry, "_LOADED", {})
    assert main([*samples, "--unit", spec]) == 2
    assert "the cell changed" in capsys.readouterr().err
    monkeypatch.setattr(registry, "_LOADED", {})
    assert main(samples) == 2  # without --unit: nothing is imported, one sentence
    assert "no --unit option loaded it" in capsys.readouterr().err


def test_a_unit_from_a_module_and_from_an_installed_entry_point(tmp_path, monkeypatch):
    import importlib.metadata

    (tmp_path / "my_units_mod.py").write_text(CELL.format(name="modcell", body="return (h,)"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_LOADED", {})
    by_module = registry.load("my_units_mod:Cell")
    assert by_module.source.startswith("module:my_units_mod:Cell@")
    monkeypatch.setattr(registry, "_LOADED", {})
    ep = importlib.metadata.EntryPoint("modcell", "my_units_mod:Cell", registry.GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [ep])
    by_entry = registry.load("modcell")
    assert by_entry.source.startswith("entry:my_units_mod:Cell@") and registry.known("modcell")
    with pytest.raises(RnnbenchError, match="--unit nosuch: not a built-in unit .* give path/"):
        registry.load("nosuch")


def test_an_unknown_unit_on_the_command_line_is_one_sentence(capsys):
    assert main(["train", "--dataset", "jsb", "--unit", "elman"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--unit elman: not a built-in unit" in err
