"""Shared test setup: the data shipped with the checkout (``data/``) unless told otherwise."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED_DATA = REPO / "data"

# Pin the data folder for the whole run (subprocesses inherit it), so a user cache folder never
# takes the place of the shipped data; an RNNBENCH_DATA given by the caller still wins.
os.environ["RNNBENCH_DATA"] = str(Path(os.environ.get("RNNBENCH_DATA") or SHIPPED_DATA).resolve())


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data folder (the checkout's ``data/``); the suite needs it."""
    root = Path(os.environ["RNNBENCH_DATA"])
    assert root.is_dir(), f"RNNBENCH_DATA={root} is not a folder"
    return root
