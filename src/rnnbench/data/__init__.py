"""Data sets: location, loading, verification, download and batching.

See docs/DESIGN.md (``rnnbench.data``) and docs/data.md.
"""

from rnnbench.data.dataset import Dataset, Sequence
from rnnbench.data.locate import data_root
from rnnbench.data.registry import list_datasets, load_dataset

__all__ = ["Dataset", "Sequence", "data_root", "list_datasets", "load_dataset"]
