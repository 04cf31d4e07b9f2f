"""Data sets: location, loading, verification, download and batching.

See docs/DESIGN.md (``rnnbench.data``) and docs/data.md. The names below are imported on first
use (PEP 562), so that importing a light submodule (``rnnbench.data.names``, as the command
line's parser does) loads no numpy.
"""

from __future__ import annotations

import importlib

__all__ = ["Dataset", "Sequence", "data_root", "list_datasets", "load_dataset"]
_HOME = {
    "Dataset": "rnnbench.data.dataset",
    "Sequence": "rnnbench.data.dataset",
    "data_root": "rnnbench.data.locate",
    "list_datasets": "rnnbench.data.registry",
    "load_dataset": "rnnbench.data.registry",
}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'rnnbench.data' has no attribute {name!r}")
