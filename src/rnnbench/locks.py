"""Exclusive locks that keep two processes from training the same runs at once.

Two ``rnnbench reproduce`` commands started on the same results folder, or a ``rnnbench train``
started on a run a sweep is training, would otherwise both train the same run folder and write
each other's ``last.pt`` and ``metrics.jsonl``. :func:`hold` takes an advisory lock
(``fcntl.flock``) on a small file; a second process asking for it gets one clear sentence
instead of the lock. The kernel drops the lock when its process ends, even by ``kill -9``, so
a crash never leaves a stale lock behind and resuming needs no cleanup.

The lock file holds the owner's pid and host, only to name it in the message. Locks are
advisory and local to one machine's kernel (on NFS, Linux maps ``flock`` to NFS locks, which
work when the server supports them). Where ``fcntl`` does not exist (Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from rnnbench.errors import RnnbenchError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["hold", "LockBusy"]


class LockBusy(RnnbenchError):
    """Another live process holds the lock."""


@contextlib.contextmanager
def hold(path: str | Path, busy: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` for the ``with`` block.

    ``busy`` is the message when another process holds it; ``{owner}`` in it is replaced by
    "pid N on HOST" of the holder. Raises :class:`LockBusy` at once (never waits).
    """
    path = Path(path)
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RnnbenchError(
            f"Cannot create the lock file {path} ({exc.strerror}); choose a writable folder."
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(busy.replace("{owner}", _owner(path))) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _owner(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"pid {int(info['pid'])} on {info['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
