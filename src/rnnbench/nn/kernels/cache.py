"""Numba's on-disk cache of the kernels, dropped when any kernel module's source changes.

Numba keys a cached function on its own source file's modification time and size only. The
kernels of :mod:`~rnnbench.nn.kernels.lstm`, ``gru``, ``tanh`` and ``mixture`` inline helpers
of :mod:`~rnnbench.nn.kernels.common`, so after an edit (or a ``git checkout``) that changes
``common.py`` alone, the cached LSTM kernel would still run the old helper: tests pass on
stale code, and a study resumed on a new commit trains with the old one. :func:`drop_stale`
hashes every module of the package and, when the hash differs from the one stamped in
``__pycache__``, deletes the package's cached functions (``*.nbi``, ``*.nbc``) before any
kernel is loaded; numba then compiles afresh and caches again.

Where ``__pycache__`` cannot be written (a read-only install), numba caches elsewhere and
an install rewrites every file, which numba's own check already catches; nothing is done.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["STAMP", "drop_stale", "drop_stale_module", "source_digest"]

STAMP = "rnnbench-kernels.sha256"


def source_digest(folder: Path) -> str:
    """SHA-256 over the names and contents of the ``*.py`` files of ``folder``, in name order."""
    h = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def drop_stale(folder: Path) -> bool:
    """Delete ``folder/__pycache__``'s numba cache files if the sources changed since the
    stamp was written, then stamp the current sources. Returns whether files were dropped."""
    cache = Path(folder) / "__pycache__"
    try:
        digest = source_digest(folder)
        stamp = cache / STAMP
        if stamp.is_file() and stamp.read_text().strip() == digest:
            return False
        stale = [*cache.glob("*.nbi"), *cache.glob("*.nbc")]
        for path in stale:
            path.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        tmp = cache / f".{STAMP}.{id(stale)}.tmp"
        tmp.write_text(digest + "\n")
        tmp.replace(stamp)
        return bool(stale)
    except OSError:  # read-only install or a race with another process: numba's check remains
        return False


def drop_stale_module(module: str, folder: Path, sources, stamp: str) -> None:
    """:func:`drop_stale` for one module whose cached functions inline code of other files
    (the training drivers, ``rnnbench.train.compiled_driver`` and ``compiled_eval``): hash
    ``sources`` (names and contents, in the order given) and, when the digest differs from
    ``folder/__pycache__/stamp``, delete that module's cached functions (``module.*.nbi``,
    ``module.*.nbc``, ``module`` the module's last name) and stamp the digest."""
    cache = Path(folder) / "__pycache__"
    try:
        h = hashlib.sha256()
        for path in sources:
            h.update(Path(path).name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
        digest = h.hexdigest()
        mark = cache / stamp
        if mark.is_file() and mark.read_text().strip() == digest:
            return
        for path in [*cache.glob(f"{module}.*.nb[ic]")]:
            path.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        tmp = cache / f".{stamp}.{id(h)}.tmp"
        tmp.write_text(digest + "\n")
        tmp.replace(mark)
    except OSError:  # a read-only install: numba's own check remains
        return
