"""Packaging guards: what a wheel built from pyproject.toml would leave out."""

from pathlib import Path

import rnnbench

PACKAGE = Path(rnnbench.__file__).parent


def test_every_subpackage_has_an_init_so_the_wheel_ships_it():
    # setuptools' find only takes folders with __init__.py; an editable install hides this.
    folders = [p for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__"]
    assert folders
    missing = [
        str(p.relative_to(PACKAGE))
        for p in folders
        if any(p.glob("*.py")) and not (p / "__init__.py").exists()
    ]
    assert missing == []
