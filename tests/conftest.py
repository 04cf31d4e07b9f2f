"""Shared test setup: point the data lookup at ../shared/data unless told otherwise."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

if "RNNBENCH_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["RNNBENCH_DATA"] = str(SHARED_DATA)
elif "RNNBENCH_DATA" in os.environ:
    # The README passes ../shared/data; tests that change directory must still find it.
    os.environ["RNNBENCH_DATA"] = str(Path(os.environ["RNNBENCH_DATA"]).resolve())


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data folder (../shared/data in CI); the suite needs it."""
    root = Path(os.environ["RNNBENCH_DATA"])
    assert root.is_dir(), f"RNNBENCH_DATA={root} is not a folder"
    return root
