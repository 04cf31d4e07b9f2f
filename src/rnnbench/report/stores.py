"""Several results stores read as one: runs merged by key, curves from the row that won.

One grid is often trained across machines or sessions (JSB in one store, the other data sets in
another). :func:`open_stores` reads them all; when a run's key is in more than one store, a
finished row (done or diverged) wins over an unfinished one (queued, running, failed), and
between equals the row updated last wins (the earlier store on a tie). A run's per-epoch
metrics are read from the store its winning row came from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rnnbench.errors import RnnbenchError
from rnnbench.store import FINISHED, Store
from rnnbench.train.config import with_defaults

StorePaths = str | os.PathLike | Sequence[str | os.PathLike]


@dataclass
class Sources:
    """The merged runs of the stores at ``paths`` and where each run's row came from."""

    paths: list[Path]
    stores: list[Store] = field(default_factory=list)
    metas: list[dict[str, str]] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    origin: dict[str, int] = field(default_factory=dict)  # run key -> index into ``paths``
    shared: set[str] = field(default_factory=set)  # keys found in more than one store
    recorded: list[list[dict]] = field(default_factory=list)  # each store's training commands

    def epochs(self, key: str) -> list[dict]:
        """Per-epoch metrics of one run, from the store its row came from."""
        return self.stores[self.origin[key]].epochs(key)

    def counts(self) -> list[int]:
        """How many of the merged runs came from each store, in the order of ``paths``."""
        counts = [0] * len(self.paths)
        for index in self.origin.values():
            counts[index] += 1
        return counts

    @property
    def commands(self) -> list[dict]:
        """The training commands every store recorded (``Store.add_command``), read when the
        stores were opened, so they stay readable after :meth:`close` (a store read from
        exports lives in a temporary folder that closing deletes)."""
        return [c for commands in self.recorded for c in commands]

    @property
    def quick(self) -> bool:
        """True when any store is marked quick (``reproduce --quick``)."""
        return any(meta.get("quick") == "1" for meta in self.metas)

    def close(self) -> None:
        import shutil

        for store in self.stores:
            store.close()
            temp = getattr(store, "_cleanup", None)
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)

    def __enter__(self) -> Sources:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def store_paths(paths: StorePaths) -> list[Path]:
    """One path or several as a list of distinct paths (a path given twice is read once)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    unique: dict[Path, Path] = {}
    for p in map(Path, paths):
        unique.setdefault(p.resolve(), p)
    if not unique:
        raise RnnbenchError("No results store given: name one with --store.")
    return list(unique.values())


def open_stores(paths: StorePaths) -> Sources:
    """Open every store and merge their runs; close them with :meth:`Sources.close`.

    Raises :class:`RnnbenchError` naming the first store that is missing or holds no runs.
    """
    sources = Sources(store_paths(paths))
    try:
        for index, path in enumerate(sources.paths):
            store, runs = _open(path)
            sources.stores.append(store)
            sources.metas.append(store.meta())
            sources.recorded.append(store.commands())
            _merge(sources, runs, index)
    except BaseException:
        sources.close()
        raise
    return sources


def _open(path: Path) -> tuple[Store, list[dict]]:
    """The store at ``path`` and its runs; a missing or empty store is an error naming it.

    ``path`` may also be a folder of exports (:mod:`rnnbench.report.exports`: a committed
    report folder), read into a temporary store that :meth:`Sources.close` deletes."""
    from rnnbench.report import exports

    if path.is_dir() and exports.is_export(path):
        temp = exports.materialize(path)
        store = Store(temp, readonly=True)
        store._cleanup = temp.parent  # noqa: SLF001 - deleted with the store (Sources.close)
        # ``confined``: the run's recorded folders came from a file anyone can edit, so its
        # checkpoint is looked for only inside this folder (rnnbench.samples.find_run_dir).
        confined = str(path.resolve())
        runs = [
            {**r, "config": with_defaults(r["config"]), "confined": confined} for r in store.runs()
        ]
        if not runs:
            store.close()
            raise RnnbenchError(f"The exports in {path} hold no runs: point --store elsewhere.")
        return store, runs
    if not path.is_file():
        raise RnnbenchError(
            f"No results store at {path}: run `rnnbench reproduce` or `rnnbench train` "
            "first, or point --store at an existing results.db or a report folder with its "
            "exports (store-runs.csv)."
        )
    store = Store(path, readonly=True)
    try:
        # Configs stored before a field existed read as that field's default, so old and new
        # runs of the same setting fall into one cell.
        runs = [{**r, "config": with_defaults(r["config"])} for r in store.runs()]
        if not runs:
            raise RnnbenchError(
                f"The results store {path} holds no runs: run `rnnbench reproduce` first, "
                "or point --store at another results.db."
            )
    except BaseException:
        store.close()
        raise
    return store, runs


def _merge(sources: Sources, runs: list[dict], index: int) -> None:
    """Add one store's runs; a key already seen keeps the row that :func:`wins`."""
    position = {r["key"]: i for i, r in enumerate(sources.runs)}
    for run in runs:
        key = run["key"]
        if key not in position:
            position[key] = len(sources.runs)
            sources.runs.append(run)
            sources.origin[key] = index
            continue
        sources.shared.add(key)
        if wins(run, sources.runs[position[key]]):
            sources.runs[position[key]] = run
            sources.origin[key] = index


def wins(new: dict, old: dict) -> bool:
    """Whether row ``new`` replaces row ``old`` of the same run: finished first, then newer."""
    return _rank(new) > _rank(old)


def _rank(run: dict) -> tuple[bool, datetime]:
    return run["status"] in FINISHED, _stamp(run.get("updated"))


def _stamp(text: str | None) -> datetime:
    """An ISO 8601 timestamp as an aware datetime (UTC when it names no zone); oldest if none."""
    try:
        stamp = datetime.fromisoformat(str(text))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
