"""The local engine: N worker processes on this machine, each training one population at a time.

Design:

- Workers are ``spawn``-ed processes (no fork after torch has started its thread pools), each
  with ``torch.set_num_threads(max(1, cores // workers))``. The parent hands each worker one
  population at a time through the worker's own queue, so it always knows which population a
  worker holds; a worker that dies (segfault, out of memory, ``kill -9``) costs that population
  one attempt, and a fresh worker takes its place.
- Worker count: one per CPU core on cpu, one per visible GPU on ``cuda`` (``--workers`` sets
  another); plain ``cuda`` gives worker ``i`` the GPU ``cuda:i mod n``.
- Only the parent writes the results store: workers send ``(epoch record)`` and
  ``(results)`` messages back over one queue. When a population finishes, the parent also
  upserts every epoch from the run folders' ``metrics.jsonl``, so the store has every finished
  epoch even when a message was lost to a kill.
- A population that raises is retried ``retries`` times (the trainer resumes from
  ``last.pt``), then its members are marked ``failed`` with the error; the sweep goes on.
  An ``RnnbenchError`` (a user problem, e.g. a missing data set) is not retried. A full disk or
  an unwritable folder stops the sweep with one sentence.
- Ctrl-C: workers ignore SIGINT; the parent terminates them, puts their runs back to
  ``queued`` (their ``last.pt`` stays) and re-raises ``KeyboardInterrupt`` (the CLI exits 130).
  Workers also die with the parent (Linux ``PR_SET_PDEATHSIG``, and a parent check after every
  epoch), so a ``kill -9`` of the sweep never leaves orphans writing run folders.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnbench.errors import RnnbenchError
from rnnbench.store import Store
from rnnbench.sweeps import common
from rnnbench.sweeps.grid import Population


def cpu_cores() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def gpu_count(device: str) -> int:
    """Visible GPUs for ``--device cuda`` (0 for cpu, 1 for a device with an index)."""
    if not str(device).startswith("cuda"):
        return 0
    if ":" in str(device):
        return 1
    import torch

    return max(1, torch.cuda.device_count())


def default_workers(device: str = "cpu") -> int:
    """One worker per CPU core on cpu; one per visible GPU on cuda (a population already fills
    a GPU better than several processes time-sharing it, and each process holds its own CUDA
    context)."""
    return gpu_count(device) or cpu_cores()


def worker_device(device: str, slot: int) -> str:
    """The device of worker ``slot``: plain ``cuda`` spreads workers over the visible GPUs."""
    n = gpu_count(device)
    return f"cuda:{slot % n}" if str(device) == "cuda" and n > 1 else device


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _default_train(configs, **kwargs):
    from rnnbench.train.population import train_population

    return train_population(configs, **kwargs)


def _worker(wid: int, tasks, results, train_fn, threads: int, parent: int, units=()) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != parent:
        return
    import torch

    torch.set_num_threads(threads)
    from rnnbench.units.registry import load

    for spec in units:  # the user units the parent's command line named (issue 24)
        load(spec)
    train = train_fn or _default_train
    while True:
        task = tasks.get()
        if task is None:
            return
        tid, configs, out_dirs, data_dir, device = task

        def on_epoch(k: int, record: dict, tid=tid) -> None:
            if os.getppid() != parent:  # the sweep was killed: stop, last.pt is saved
                os._exit(1)
            results.put(("epoch", wid, tid, k, common.plain(record)))

        def on_result(k: int, result: dict, tid=tid) -> None:
            results.put(("result", wid, tid, k, common.plain(result)))

        try:
            out = train(
                configs,
                out_dirs=out_dirs,
                data_dir=data_dir,
                device=device,
                on_epoch=on_epoch,
                progress=False,
                on_result=on_result,
            )
            results.put(("done", wid, tid, common.plain(list(out))))
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            kind = (
                "fatal"
                if common.is_fatal(exc)
                else ("user" if isinstance(exc, RnnbenchError) else "error")
            )
            where = getattr(exc, "filename", None) or ""
            code = getattr(exc, "errno", None)
            results.put(("error", wid, tid, common.describe(exc), kind, str(where), code))
            if not isinstance(exc, Exception):
                return


@dataclass
class _Task:
    tid: int
    population: Population
    attempt: int = 0


@dataclass
class _Worker:
    wid: int
    process: Any
    tasks: Any
    slot: int = 0
    device: str = "cpu"
    task: _Task | None = None


def run_local(
    populations: list[Population],
    *,
    store: Store,
    out: Path,
    workers: int | None = None,
    retries: int = 2,
    device: str = "cpu",
    data_dir: str | None = None,
    then: common.Then | None = None,
    progress: bool = True,
    train_fn=None,
    threads: int | None = None,
) -> dict[str, int]:
    """Train every population with a pool of worker processes; results go to ``store``.

    ``train_fn`` replaces ``train_population`` (tests inject fakes; it must be importable by
    name, as workers are spawned). ``then(population, runs)`` is called when a population is
    finished (or found finished) with its members' store rows; the populations it returns are
    queued too. ``threads``: torch threads per worker (default: cores // workers, at least 1).
    Returns counts of runs: total, done, diverged, failed, skipped (found finished).
    """
    out = Path(out)
    common.check_writable(out / "runs")
    n_workers = max(1, workers or default_workers(device))
    threads = threads or max(1, cpu_cores() // n_workers)
    ctx = mp.get_context("spawn")
    from rnnbench.units.registry import loaded

    loaded_units = tuple(loaded())
    results = ctx.Queue()
    tally = common.Tally(planned=common.planned_runs(populations, then))
    tally.estimate.workers = n_workers
    pending: deque[_Task] = deque()
    pool: list[_Worker] = []
    next_id = iter(range(1 << 62))
    display = common.Display(progress, tally)

    def add(pops: list[Population], *, first: bool = False) -> None:
        # Chained populations (``first``: reproduce's seeds) jump the queue, so a data set ×
        # unit cell is finished before the next cell's search starts: an interrupted grid
        # leaves whole cells behind, not ten half-done searches.
        tasks = []
        for pop in pops:
            todo = common.admit(store, pop, out, tally, display, _busy())
            if todo is not None:
                tasks.append(_Task(next(next_id), todo))
                tally.queued(tasks[-1].tid, todo)
            else:
                add(common.chain(then, store, pop), first=True)
        if first:
            pending.extendleft(reversed(tasks))
        else:
            pending.extend(tasks)

    def _busy() -> int:
        return sum(1 for w in pool if w.task is not None)

    def spawn() -> _Worker:
        tasks = ctx.Queue()
        wid = next(next_id)
        taken = {w.slot for w in pool if w.process.is_alive()}
        slot = min(set(range(len(pool) + 1)) - taken)
        proc = ctx.Process(
            target=_worker,
            name=f"rnnbench-worker-{wid}",
            daemon=True,
            args=(wid, tasks, results, train_fn, threads, os.getpid(), loaded_units),
        )
        proc.start()
        worker = _Worker(wid, proc, tasks, slot, worker_device(device, slot))
        pool.append(worker)
        return worker

    def assign() -> None:
        while pending:
            idle = [w for w in pool if w.task is None and w.process.is_alive()]
            if not idle and len(pool) < n_workers:
                idle = [spawn()]
            if not idle:
                return
            task = pending.popleft()
            worker = idle[0]
            worker.task = task
            pop = task.population
            common.start(store, pop, out)
            dirs = [str(common.run_dir(out, c)) for c in pop.configs]
            worker.tasks.put((task.tid, pop.configs, dirs, data_dir, worker.device))
            display.update(_busy())

    def finish(worker: _Worker) -> _Task:
        task = worker.task
        worker.task = None
        tally.ended(task.tid, for_good=False)
        return task

    def failed(task: _Task, error: str, kind: str) -> None:
        if kind != "user" and task.attempt < retries:
            task.attempt += 1
            common.requeue(store, task.population)
            pending.append(task)
            return
        common.record_failure(store, task.population, error)
        tally.ended(task.tid)
        tally.failed += len(task.population.configs)
        display.update(_busy(), len(task.population.configs))
        add(common.chain(then, store, task.population), first=True)

    def handle(message: tuple) -> None:
        kind, wid = message[0], message[1]
        worker = next((w for w in pool if w.wid == wid), None)
        if worker is None or worker.task is None or worker.task.tid != message[2]:
            return  # a message from a task that was already given up on
        task = worker.task
        if kind == "epoch":
            _, _, _, k, record = message
            common.record_epoch(store, task.population.configs[k], record)
            tally.epoch(task.tid, k, record)
            display.update(_busy())
        elif kind == "result":  # one member finished while the others train on
            _, _, _, k, result = message
            common.record_result(store, task.population.configs[k], out, result)
        elif kind == "done":
            finish(worker)
            tally.ended(task.tid)
            common.record_results(store, task.population, out, message[3])
            tally.count(store, task.population)
            display.update(_busy(), len(task.population.configs))
            add(common.chain(then, store, task.population), first=True)
        elif kind == "error":
            _, _, _, error, why, where, code = message
            finish(worker)
            if why == "fatal":
                common.requeue(store, task.population)
                raise common.fatal_error(OSError(code, error.splitlines()[0]), where or out)
            failed(task, error, why)

    def reap() -> None:
        for worker in list(pool):
            if worker.process.is_alive():
                continue
            pool.remove(worker)
            if worker.task is not None:
                task = finish(worker)
                code = worker.process.exitcode
                failed(task, f"WorkerDied: the worker process ended with exit code {code}", "error")

    try:
        add(populations)
        while pending or any(w.task is not None for w in pool):
            assign()
            with contextlib.suppress(queue.Empty):
                handle(results.get(timeout=0.5))
            reap()
            display.tick()
        for worker in pool:
            worker.tasks.put(None)
        for worker in pool:
            worker.process.join(timeout=30)
        return tally.counts()
    finally:
        _shutdown(pool, store)
        display.close()


def _shutdown(pool: list[_Worker], store: Store) -> None:
    """Stop every worker still alive; their runs go back to queued."""
    for worker in pool:
        if worker.process.is_alive():
            worker.process.terminate()
    deadline = time.monotonic() + 10
    for worker in pool:
        worker.process.join(timeout=max(0.1, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5)
        worker.tasks.cancel_join_thread()
        if worker.task is not None:
            with contextlib.suppress(RnnbenchError):
                common.requeue(store, worker.task.population)
