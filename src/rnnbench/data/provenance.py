"""Which file a built-in music data set was read from, and whether it is the published one.

A data folder looked in before the checkout's ``data/`` (the user cache folder, ``--data-dir``,
``$RNNBENCH_DATA``; :mod:`rnnbench.data.locate`) may hold a file of the same name that is not
the published one: a truncated download, or another corpus saved under that name. It loads
without error and silently shadows the shipped copy, so :func:`checksum_state` compares the
file with the SHA-256 published for it (:data:`rnnbench.data.checksums.MUSIC_SHA256`), and
:func:`note_if_changed` says so once per file on stderr; ``rnnbench data list`` shows the
state of every set.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rnnbench.data.checksums import MUSIC_SHA256

VERIFIED = "checksum verified"
CHANGED = "checksum differs from the published file"
UNCHECKED = "no published checksum"
_noted: set[tuple[str, int, int]] = set()


def checksum_state(path: Path) -> str:
    """:data:`VERIFIED`, :data:`CHANGED` or :data:`UNCHECKED` (a ``.pickle`` copy)."""
    from rnnbench.data.fetch import sha256_file

    expected = MUSIC_SHA256.get(Path(path).name)
    if expected is None:
        return UNCHECKED
    return VERIFIED if sha256_file(Path(path)) == expected else CHANGED


def note_if_changed(name: str, path: Path, origin: str | None = None, *, stream=None) -> str:
    """Print, once per file, which file ``name`` was read from when its checksum differs from
    the published one; returns the checksum state."""
    state = checksum_state(path)
    if state != CHANGED:
        return state
    try:
        info = Path(path).stat()
        mark = (str(path), info.st_mtime_ns, info.st_size)
    except OSError:
        mark = (str(path), 0, 0)
    if mark in _noted:
        return state
    _noted.add(mark)
    where = f" ({origin})" if origin else ""
    print(
        f"note: {name} was read from {path}{where}, whose SHA-256 differs from the published "
        f"file's, so its numbers are not the benchmark's; delete it or run `rnnbench data "
        f"fetch {name} --force` to replace it.",
        file=sys.stderr if stream is None else stream,
    )
    return state
