"""A tiny music data set for the trainer tests: a few short JSB sequences."""

from __future__ import annotations

import pytest

from rnnbench.data.dataset import Dataset, Sequence


def tiny_dataset(data_root, *, frames: int = 16, counts=(6, 3, 3)) -> Dataset:
    """The first few JSB sequences of each split, cut to at most ``frames`` frames."""
    from rnnbench.data.registry import load_dataset

    jsb = load_dataset("jsb", data_root)
    splits = {}
    for split, n in zip(("train", "valid", "test"), counts, strict=True):
        seqs = jsb.split(split)[:n]
        # Different lengths, so padding and frame weighting are exercised.
        splits[split] = [
            Sequence(s.inputs[: frames - i], s.targets[: frames - i], s.source)
            for i, s in enumerate(seqs)
        ]
    return Dataset(
        name="jsb-tiny",
        kind="music",
        in_dim=jsb.in_dim,
        out_dim=jsb.out_dim,
        head=jsb.head,
        task="music",
        splits=splits,
    )


@pytest.fixture(scope="session")
def tiny(data_root) -> Dataset:
    return tiny_dataset(data_root)
