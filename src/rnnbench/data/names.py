"""Parsing data set names with options, and deterministic file splits.

A name is ``BASE`` or ``BASE?key=value&key=value``; for user data the base is
``midi:PATH`` or ``wav:PATH``. Examples: ``midi:songs/?fps=8``, ``wav:~/takes?sr=16000&seg=1000``,
``fsdd-a?sr=16000``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

from rnnbench.errors import RnnbenchError

# The --data-dir help of every command: the folders looked in, in order (rnnbench.data.locate).
# Here, not in locate, so that building the CLI parser imports nothing beyond the standard library.
DATA_DIR_HELP = (
    "the data folder (default: $RNNBENCH_DATA, else the user cache folder, else the "
    "checkout's data/; a folder given here or in $RNNBENCH_DATA is the only one looked in)"
)


def split_options(name: str, allowed: dict[str, type]) -> tuple[str, dict]:
    """``"base?a=1&b=2"`` -> ``("base", {"a": 1, "b": 2})``, each value converted by its type."""
    base, _, query = name.partition("?")
    options: dict = {}
    if not query:
        return base, options
    for part in query.split("&"):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if key not in allowed or not eq:
            known = ", ".join(f"{k}=N" for k in allowed) or "none"
            raise RnnbenchError(
                f"Option {part!r} in data set name {name!r} is not understood; "
                f"the options for this data set are: {known}."
            )
        try:
            number = allowed[key](value)
        except ValueError:
            number = None
        if number is None or not math.isfinite(number) or number <= 0:
            raise RnnbenchError(
                f"Option {key}={value!r} in data set name {name!r} must be a positive, finite "
                "number."
            )
        options[key] = number
    return base, options


def hash_split(names: Sequence[str], *, fraction: float = 0.1) -> dict[str, list[str]]:
    """Split file names into train/valid/test deterministically.

    Files are ordered by the SHA-256 of their name (relative path, ``/`` separators); the
    first ``max(1, round(fraction * n))`` go to test, the next as many to valid, the rest to
    train. The split depends only on the set of names, never on the machine or the order
    the files were listed in. Needs at least 3 files so that every split is non-empty.
    """
    ordered = sorted(names, key=lambda s: (hashlib.sha256(s.encode("utf-8")).hexdigest(), s))
    n = len(ordered)
    if n < 3:
        raise RnnbenchError(
            f"Found only {n} file(s); a train/valid/test split needs at least 3, so add more files."
        )
    k = max(1, round(fraction * n))
    return {
        "test": sorted(ordered[:k]),
        "valid": sorted(ordered[k : 2 * k]),
        "train": sorted(ordered[2 * k :]),
    }


USER_KINDS = ("midi:", "wav:", "music:")


def absolute_name(name: str) -> str:
    """``midi:songs?fps=8`` -> ``midi:/abs/path/songs?fps=8``; other names unchanged.

    Run keys hash the data set name, so a user folder must be named the same way from any
    working directory: its path is made absolute (and ``~`` expanded).
    """
    kind = next((k for k in USER_KINDS if name.startswith(k)), None)
    if kind is None:
        return name
    path, sep, query = name[len(kind) :].partition("?")
    if not path:
        return name
    return f"{kind}{Path(path).expanduser().absolute()}{sep}{query}"


def task_of(dataset: str) -> str:
    """``"speech"`` for fsdd-a, fsdd-b and ``wav:`` folders, else ``"music"`` (Table 1's sizes)."""
    base = dataset.partition("?")[0]
    return "speech" if base in ("fsdd-a", "fsdd-b") or base.startswith("wav:") else "music"
