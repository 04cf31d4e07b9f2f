"""Sweeps: grids of populations trained crash-safely by a local or a Ray engine.

:func:`run_sweep` is the one entry point the commands use; the engines share the rules of
:mod:`rnnbench.sweeps.common` (run folders, skipping finished runs, writing the store).
"""

from __future__ import annotations

from pathlib import Path

from rnnbench.errors import RnnbenchError

ENGINES = ("local", "ray")


def run_sweep(
    populations, *, store, out, engine: str = "local", address: str | None = None, **kwargs
) -> dict[str, int]:
    """Train ``populations`` (a list of :class:`~rnnbench.sweeps.grid.Population`).

    ``engine``: ``"local"`` (worker processes) or ``"ray"`` (Ray Tune; ``address`` joins a
    cluster). Other keyword arguments go to :func:`~rnnbench.sweeps.local.run_local` /
    :func:`~rnnbench.sweeps.ray_engine.run_ray`: ``workers``, ``retries``, ``device``,
    ``data_dir``, ``then``, ``progress``, ``train_fn``. Returns counts of runs.

    One sweep at a time per store: the sweep holds ``<store>.lock`` (:mod:`rnnbench.locks`),
    and a second sweep on the same store stops at once with one sentence, before it touches
    a run (two sweeps would otherwise train the same unfinished runs side by side).
    """
    from rnnbench.locks import hold

    path = Path(store.path)
    with hold(
        path.with_name(path.name + ".lock"),
        f"Another rnnbench sweep ({{owner}}) is using the store {path}; wait for it to "
        "finish or stop it (it resumes later), or give this one another --out or --store.",
    ):
        return _run(populations, store=store, out=out, engine=engine, address=address, **kwargs)


def _run(populations, *, store, out, engine, address, **kwargs) -> dict[str, int]:
    if engine == "local":
        if address:
            raise RnnbenchError("--address only applies to --engine ray; drop it or add that.")
        from rnnbench.sweeps.local import run_local

        return run_local(populations, store=store, out=Path(out), **kwargs)
    if engine == "ray":
        from rnnbench.sweeps.ray_engine import run_ray

        return run_ray(populations, store=store, out=Path(out), address=address, **kwargs)
    raise RnnbenchError(f"Unknown engine {engine!r}: use {' or '.join(ENGINES)}.")
