"""A checkpoint cannot make rnnbench allocate without bound (issue 25 §2): its metadata is
checked against the tensors it holds before any model is built. Every checkpoint here is tiny
and crafted in a temporary folder; no test builds a large model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rnnbench import checkpoint_check
from rnnbench.cli import main
from rnnbench.errors import RnnbenchError
from rnnbench.models import SequenceModel
from rnnbench.samples import build_population, find_run_dir, load_checkpoint
from rnnbench.train.config import RunConfig

JSB = SimpleNamespace(in_dim=88, out_dim=88, head="bernoulli")


def write_best(run_dir: Path, *, unit="tanh", size=4, config_hidden=4, **changes) -> Path:
    """A real best.pt of a ``size``-unit model (``changes`` override its entries)."""
    model = SequenceModel(unit, 88, 88, size, head="bernoulli", population=1, backend="torch")
    config = RunConfig(dataset="jsb", unit=unit, hidden=config_hidden).to_dict()
    data = {"config": config, "hidden": size, "epoch": 1, "valid_nll": 9.0}
    data["member_state"] = model.member_state(0)
    data.update(changes)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save(data, run_dir / "best.pt")
    return run_dir


def test_a_real_checkpoint_loads_and_builds(tmp_path):
    ckpt = load_checkpoint(write_best(tmp_path / "run", unit="lstm"))
    model = build_population([ckpt], JSB)
    assert model.hidden == 4


def test_a_huge_hidden_that_disagrees_with_the_config_is_refused(tmp_path):
    run = write_best(tmp_path / "run", size=4, config_hidden=4)
    data = torch.load(run / "best.pt", weights_only=True)
    torch.save({**data, "hidden": 20000}, run / "best.pt")
    with pytest.raises(RnnbenchError, match="hidden=20000 disagrees with its config's hidden=4"):
        load_checkpoint(run)


def test_a_huge_hidden_that_disagrees_with_the_weights_is_refused_before_building(
    tmp_path, monkeypatch
):
    # The config leaves hidden to the paper's size, so only the weights can contradict it.
    run = write_best(tmp_path / "run", size=4, config_hidden=None)
    data = torch.load(run / "best.pt", weights_only=True)
    torch.save({**data, "hidden": 20000}, run / "best.pt")
    ckpt = load_checkpoint(run)
    built = []
    real_init = SequenceModel.__init__

    def spy(self, *args, **kwargs):
        built.append(torch.empty(0).device.type)  # the default device while building
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(SequenceModel, "__init__", spy)
    with pytest.raises(RnnbenchError, match=r"weight_\w+ in .* have shape .* hidden=20000"):
        build_population([ckpt], JSB)
    assert built == ["meta"]  # only the shape probe was built: nothing was allocated


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"hidden": 1e9}, "hidden=1000000000.0 is not a size"),
        ({"hidden": -3}, "hidden=-3 is not a size"),
        ({"hidden": "4"}, "hidden='4' is not a size"),
        ({"config": "x"}, "its config is a str, not a table of settings"),
        ({"config": {"dataset": "jsb", "unit": "tanh", "lr": "x"}}, "its config is invalid"),
        ({"config": {"dataset": "jsb", "unit": "tanh", "evil": 1}}, "its config is invalid"),
        ({"member_state": "x"}, "member_state is not a table of tensors"),
        ({"member_state": {"w": [1.0]}}, "entry 'w' is not a named tensor"),
    ],
)
def test_bad_metadata_is_one_sentence(tmp_path, changes, words):
    run = write_best(tmp_path / "run", config_hidden=None, **changes)
    with pytest.raises(RnnbenchError) as info:
        load_checkpoint(run)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_non_finite_weights_are_one_sentence(tmp_path):
    run = write_best(tmp_path / "run")
    data = torch.load(run / "best.pt", weights_only=True)
    data["member_state"]["weight_out"][0, 0] = float("nan")
    torch.save(data, run / "best.pt")
    with pytest.raises(RnnbenchError, match="holds non-finite weights .*weight_out"):
        load_checkpoint(run)


def test_an_oversized_checkpoint_is_refused_before_it_is_read(tmp_path):
    run = write_best(tmp_path / "run")
    with open(run / "best.pt", "r+b") as f:  # sparse: no disk, and never read
        f.truncate(checkpoint_check.MAX_CHECKPOINT_BYTES + 1)
    with pytest.raises(RnnbenchError, match="more than the .* rnnbench reads"):
        load_checkpoint(run)


def test_sample_cli_refuses_a_lying_checkpoint_with_exit_2(tmp_path, capsys):
    run = write_best(tmp_path / "run", size=4, config_hidden=None)
    data = torch.load(run / "best.pt", weights_only=True)
    torch.save({**data, "hidden": 20000}, run / "best.pt")
    assert main(["sample", str(run), "--out", str(tmp_path / "s"), "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "have shape" in err
    assert not (tmp_path / "s").exists()


def test_an_imported_runs_folder_is_resolved_only_inside_its_export_folder(tmp_path):
    elsewhere = write_best(tmp_path / "elsewhere" / "runs" / "0123456789abcdef")
    folder = tmp_path / "exports"
    folder.mkdir()
    run = {
        "key": "0123456789abcdef",
        "run_dir": str(elsewhere),
        "checkpoint": str(elsewhere / "best.pt"),
        "imported": str(folder),
    }
    with pytest.raises(RnnbenchError, match="not on this machine"):
        find_run_dir(run, [tmp_path / "elsewhere" / "results.db"])
    # A symlink inside the folder that leads out of it is outside too.
    (folder / "runs").mkdir()
    (folder / "runs" / "0123456789abcdef").symlink_to(elsewhere)
    with pytest.raises(RnnbenchError, match="not on this machine"):
        find_run_dir(run, [])
    (folder / "runs" / "0123456789abcdef").unlink()
    inside = write_best(folder / "runs" / "0123456789abcdef")
    assert find_run_dir(run, []) == inside
    # A run trained here (not imported) is found where the store recorded it.
    assert find_run_dir({**run, "imported": None}, []) == elsewhere


def test_a_damaged_checkpoint_says_so_for_sampling(tmp_path):
    run = write_best(tmp_path / "run")
    (run / "best.pt").write_bytes(b"not a zip file")
    with pytest.raises(RnnbenchError) as info:
        load_checkpoint(run)
    message = str(info.value)
    assert "damaged or not an rnnbench checkpoint" in message and "afresh" not in message


def test_help_texts_name_their_defaults_and_the_same_data_folders(capsys):
    from rnnbench.data.names import DATA_DIR_HELP

    for command in ("report", "sample", "train", "sweep", "baselines", "data list"):
        with pytest.raises(SystemExit):
            main([*command.split(), "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert " ".join(DATA_DIR_HELP.split()) in text, command
        if command in ("report", "sample"):
            assert (
                f"(default ./rnnbench-{dict(report='report', sample='samples')[command]})" in text
            )
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().splitlines()
    assert "/rnnbench-samples/" in ignored
