"""Choosing an engine: clear errors for unknown engines, stray --address and missing Ray."""

import pytest

from rnnbench.errors import RnnbenchError
from rnnbench.store import Store
from rnnbench.sweeps import run_sweep


def test_unknown_engine(tmp_path):
    with pytest.raises(RnnbenchError, match="Unknown engine 'slurm'"):
        run_sweep([], store=Store(tmp_path / "r.db"), out=tmp_path, engine="slurm")


def test_address_needs_the_ray_engine(tmp_path):
    with pytest.raises(RnnbenchError, match="--address only applies"):
        run_sweep([], store=Store(tmp_path / "r.db"), out=tmp_path, address="auto")


def test_missing_ray_names_the_extra_to_install(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    from rnnbench.sweeps import ray_engine

    monkeypatch.setattr(ray_engine, "ray", None)
    with pytest.raises(RnnbenchError, match=r"pip install 'rnnbench\[ray\]'"):
        run_sweep([], store=Store(tmp_path / "r.db"), out=tmp_path, engine="ray")
