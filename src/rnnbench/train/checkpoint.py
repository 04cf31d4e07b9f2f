"""Atomic checkpoints of one run folder.

A run folder holds ``config.json``, ``metrics.jsonl`` (one JSON line per epoch), ``best.pt``
(the best epoch's member state and config) and ``last.pt`` (everything needed to resume
bitwise), plus ``prev.pt``, the ``last.pt`` of the epoch before. Every file is written to a
temporary file in the same folder and moved into place with ``os.replace``, so a crash leaves
either the old or the new file, never a torn one. Checkpoints are plain dicts of tensors,
numbers, strings and lists, loadable with ``torch.load(path, weights_only=True)``.

Why ``prev.pt``: a population writes its members' ``last.pt`` one after another; a crash in
between leaves some members one epoch ahead. Every member still has the older epoch (in
``last.pt`` or ``prev.pt``), so the population resumes from it.

A population's epoch writes all its files in two steps (:func:`stage`, then :func:`publish`):
every file is serialised in memory, written to its temporary file, and all of them are made
durable by ``fsync`` calls issued together from a few threads, so the file system commits them
in one journal commit instead of one per file (issue 22: 20 files took ~100 ms one after
another, ~10 ms together); only then are they moved into place, one ``os.replace`` each.

``.lock`` is the trainer's lock (:mod:`rnnbench.locks`): a second process cannot train the
same folder while the first one is alive.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import torch

from rnnbench.errors import RnnbenchError

__all__ = [
    "CONFIG",
    "METRICS",
    "BEST",
    "LAST",
    "PREV",
    "LOCK",
    "atomic_write_bytes",
    "atomic_save",
    "load",
    "save_last",
    "stage",
    "publish",
    "remove_leftovers",
    "checkpoints",
    "read_metrics",
    "append_metrics",
    "truncate_metrics",
    "numpy_rng_state",
    "set_numpy_rng_state",
]

CONFIG, METRICS, BEST, LAST, PREV = "config.json", "metrics.jsonl", "best.pt", "last.pt", "prev.pt"
LOCK = ".lock"


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new temporary file in ``path``'s folder (made if needed): its descriptor and name."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise RnnbenchError(
            f"Cannot write to {path.parent} ({exc.strerror}); choose a writable folder with --out."
        ) from exc


def _tmp_then_replace(path: Path, write) -> None:
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise RnnbenchError(
            f"Writing {path} failed ({exc.strerror}); free disk space or choose another folder."
        ) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _tmp_then_replace(path, lambda f: f.write(data))


def _serialised(obj: dict) -> memoryview:
    """``torch.save(obj)`` into memory: one ``write`` to the file afterwards costs less CPU
    than ``torch.save``'s many small writes to a file object (0.95 against 1.05–1.1 ms for a
    JSB member's ``last.pt``, ``benchmarks/epoch_files.py``)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer()


def atomic_save(obj: dict, path: Path) -> None:
    """``torch.save`` to ``path`` atomically."""
    data = _serialised(obj)
    _tmp_then_replace(path, lambda f: f.write(data))


def load(path: Path) -> dict:
    """``torch.load(path, weights_only=True, map_location="cpu")`` with a clear error."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # a damaged or foreign file
        raise RnnbenchError(
            f"Cannot read checkpoint {path} ({exc.__class__.__name__}); delete it to start the "
            "run afresh."
        ) from exc


def save_last(obj: dict, run_dir: Path) -> None:
    """Move ``last.pt`` to ``prev.pt``, then write ``obj`` as the new ``last.pt``."""
    run_dir = Path(run_dir)
    last = run_dir / LAST
    if last.exists():
        os.replace(last, run_dir / PREV)
    atomic_save(obj, last)


_POOL: tuple[int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def _fsync_pool() -> ThreadPoolExecutor:
    """The threads that issue :func:`stage`'s ``fsync`` calls together, made again in a forked
    child (a fork copies the pool but not its threads)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            _POOL = (os.getpid(), ThreadPoolExecutor(8, thread_name_prefix="rnnbench-fsync"))
        return _POOL[1]


def _write_error(path: Path, exc: OSError) -> RnnbenchError:
    return RnnbenchError(
        f"Writing {path} failed ({exc.strerror}); free disk space or choose another folder."
    )


def stage(items: Sequence[tuple[dict, Path]]) -> list[tuple[Path, Path]]:
    """Write each ``(obj, path)`` durably to a temporary file beside ``path``; move nothing.

    Returns ``(temporary, path)`` pairs for :func:`publish`. All files are ``fsync``-ed
    together before this returns, so whatever :func:`publish` then moves into place is whole
    on disk. On any failure every temporary file is removed and nothing is in place.
    """
    staged: list[tuple[Path, Path]] = []
    fds: list[int] = []
    try:
        for obj, path in items:
            path = Path(path)
            data = _serialised(obj)
            fd, tmp = _temp_beside(path)
            fds.append(fd)
            staged.append((Path(tmp), path))
            try:
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
            except OSError as exc:
                raise _write_error(path, exc) from exc
        if len(fds) > 1:  # together: one journal commit for all of them
            syncs = [_fsync_pool().submit(os.fsync, fd) for fd in fds]
            wait(syncs)  # every fsync is over before any descriptor is closed
            errors = [(i, f.exception()) for i, f in enumerate(syncs) if f.exception()]
        else:
            errors = []
            for i, fd in enumerate(fds):
                try:
                    os.fsync(fd)
                except OSError as exc:
                    errors.append((i, exc))
        if errors:
            i, exc = errors[0]
            if not isinstance(exc, OSError):
                raise exc
            raise _write_error(staged[i][1], exc) from exc
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        for fd in fds:
            os.close(fd)
    return staged


def publish(staged: Sequence[tuple[Path, Path]]) -> None:
    """Move :func:`stage`'s files into place, in order; a ``last.pt`` first moves the old one
    to ``prev.pt`` (as :func:`save_last`). A crash part-way leaves each file old or new.

    A file replaced this way is kept alive by a hard link until every move is done, then the
    links are removed together: freeing a file's blocks takes ~4 ms on the project's ext4 disk
    (``os.replace`` over an existing file waits for it), twenty frees together ~5 ms.
    """
    doomed: list[Path] = []
    try:
        for i, (tmp, path) in enumerate(staged):
            moves = [(path, path.parent / PREV)] if path.name == LAST and path.exists() else []
            for src, dst in [*moves, (tmp, path)]:
                try:
                    doomed += _linked(dst)
                    os.replace(src, dst)
                except OSError as exc:
                    for rest, _ in staged[i:]:
                        rest.unlink(missing_ok=True)
                    raise _write_error(path, exc) from exc
    finally:
        if len(doomed) > 1:
            wait([_fsync_pool().submit(_unlink, p) for p in doomed])
        else:
            for p in doomed:
                _unlink(p)


def _linked(path: Path) -> list[Path]:
    """A hard link ``.NAME.old`` beside ``path`` when it exists (one left by a crash is
    replaced), so that replacing ``path`` does not free its blocks; ``[]`` otherwise."""
    if not path.exists():
        return []
    link = path.parent / f".{path.name}.old"
    try:
        try:
            os.link(path, link)
        except FileExistsError:
            link.unlink()
            os.link(path, link)
    except OSError:  # a file system without hard links: the replace frees the file itself
        return []
    return [link]


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def remove_leftovers(run_dir: Path) -> None:
    """Delete the temporary files and links a killed writer left in ``run_dir`` (hidden
    ``.NAME.*.tmp`` and ``.NAME.old`` of this module's files); call it holding the lock."""
    names = (CONFIG, METRICS, BEST, LAST, PREV)
    for path in Path(run_dir).glob(".*"):
        left = path.name.endswith(".tmp") or path.name.endswith(".old")
        if left and any(path.name.startswith(f".{name}.") for name in names):
            _unlink(path)


def checkpoints(run_dir: Path) -> list[dict]:
    """The readable resume checkpoints of a folder (``last.pt`` first, then ``prev.pt``).

    An unreadable one is skipped while the other can be read; when every checkpoint there is
    unreadable, resuming stops with one sentence saying how to start afresh (never a silent
    restart from epoch 1, which would throw the finished epochs away).
    """
    found, broken = [], []
    for name in (LAST, PREV):
        path = Path(run_dir) / name
        if path.exists():
            try:
                found.append(load(path))
            except RnnbenchError:
                broken.append(name)
    if broken and not found:
        names = " and ".join(broken)
        raise RnnbenchError(
            f"Cannot read {names} in {run_dir} (damaged or not an rnnbench checkpoint), so the "
            f"run cannot resume; delete {names} (and metrics.jsonl) there to start it afresh "
            "from epoch 1."
        )
    return found


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line from a crash; the epoch is redone
    return lines


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def truncate_metrics(run_dir: Path, epoch: int) -> None:
    """Keep the lines of epochs ``<= epoch`` (those covered by the checkpoint resumed from)."""
    keep = [r for r in read_metrics(run_dir) if r.get("epoch", 0) <= epoch]
    text = "".join(json.dumps(r) + "\n" for r in keep)
    atomic_write_bytes(Path(run_dir) / METRICS, text.encode())


def numpy_rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def set_numpy_rng_state(state: dict) -> None:
    np.random.set_state(
        (
            state["name"],
            state["keys"].numpy().astype(np.uint32),
            state["pos"],
            state["has_gauss"],
            state["cached_gaussian"],
        )
    )
