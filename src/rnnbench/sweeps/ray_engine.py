"""The Ray engine: one Ray Tune trial per population, on a local Ray or a cluster.

Design:

- Each population is one trial of a function trainable. The trial trains in its own trial
  folder on whatever node runs it, and after every epoch reports the members' epoch records
  with a checkpoint of its run folders (``tune.report(metrics, checkpoint=
  Checkpoint.from_directory(...))``); Tune keeps the latest. A trial that fails is restarted from
  that checkpoint up to ``retries`` times (``FailureConfig(max_failures=retries)``), and the
  trainer resumes from the ``last.pt`` inside it.
- The driver alone writes the SQLite store: a Tune callback (which runs in the driver) logs the
  epoch records as they arrive; when the grid ends, the driver copies each finished trial's run
  folders from its last checkpoint into ``OUT/runs/<key>`` and records the results. Workers on
  other hosts never touch the store or ``OUT``.
- Nothing is ever read back from Ray's own state: ``OUT/ray`` (or ``RNNBENCH_RAY_STORAGE``)
  holds pickles (``tuner.pkl``, experiment state) that anyone able to write to a results
  folder could craft, so rnnbench never calls ``Tuner.restore``. The store and the run folders
  (``last.pt`` read with ``weights_only=True``, ``metrics.jsonl``) are the only truth: the
  driver mirrors each trial's latest checkpoint into ``OUT/runs/<key>`` as it arrives, and
  every sweep starts a fresh experiment (``OUT/ray/rnnbench-<hash>-<nonce>``; earlier local
  experiment folders of the same grid are deleted unread), whose trials are handed the files
  of their run folders and resume from ``last.pt``. Runs the store already has as finished
  are skipped before anything starts, as in the local engine.
- Chained populations (``then``, how ``reproduce`` runs its seeds after its learning-rate
  search) run as a next phase, one experiment per phase.

Quiet by default: our progress bar only. Ray's and Tune's own output (the configuration box, the
TensorBoard hint, the logger callbacks' files, the "experiment checkpoint sync" warning Tune
repeats at every epoch of a fast grid) is turned off unless ``verbose`` (``--verbose``). SIGTERM
stops a Ray sweep as it stops a local one: ``ray.init`` installs Ray's native handler (which
prints a stack dump and leaves runs ``running``), so the CLI's handler is put back after it;
the interrupted runs go back to ``queued``.

On a multi-node cluster, Tune needs a ``storage_path`` every node can reach; set
``RNNBENCH_RAY_STORAGE`` to a shared folder or a cloud URI (default ``OUT/ray``). Every node
reads the data itself: ``--data-dir`` (or ``RNNBENCH_DATA``) must name a folder that holds the
data sets on each node, and rnnbench must be installed there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import uuid
from pathlib import Path

from rnnbench.errors import RnnbenchError
from rnnbench.store import Store
from rnnbench.sweeps import common
from rnnbench.sweeps.grid import Population
from rnnbench.train.config import RunConfig

try:  # Ray is optional: rnnbench[ray]
    import ray
    from ray import tune
except ImportError:  # pragma: no cover - exercised where Ray is missing
    ray = tune = None

INSTALL = "pip install 'rnnbench[ray]'"


def _require_ray() -> None:
    if ray is None:
        raise RnnbenchError(
            f"The Ray engine needs Ray Tune, which is not installed: run {INSTALL}."
        )


def _trainable(config: dict, train_fn=None, data_dir=None, device="cpu", resume=None) -> None:
    """One population, run inside a Ray worker; reports epoch records and checkpoints.

    ``resume``: per trial id, the files of its members' run folders on the driver
    (``{key: {name: bytes}}``), written into the trial's work folder before training so the
    trainer resumes from their ``last.pt``; Tune's own checkpoint (a retry within this
    experiment) wins over them.
    """
    trial = config["trial"]
    import torch

    torch.set_num_threads(max(1, int(trial.get("threads", 1))))
    from rnnbench.units.registry import load

    for spec in trial.get("units", ()):  # the user units the driver's command line named
        load(spec)
    configs = [RunConfig.from_dict(d) for d in trial["configs"]]
    work = Path(tune.get_context().get_trial_dir()) / "runs"
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a restart: the checkpoint, not what a dead try left behind
        shutil.rmtree(work, ignore_errors=True)
        with checkpoint.as_directory() as saved:
            shutil.copytree(saved, work)
    else:
        for key, files in ((resume or {}).get(str(trial["id"])) or {}).items():
            folder = work / key
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (folder / name).write_bytes(data)
    work.mkdir(parents=True, exist_ok=True)
    out_dirs = [work / c.key() for c in configs]
    pending: list[tuple[int, dict]] = []

    def flush(extra: dict | None = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            snapshot = Path(tmp) / "runs"
            shutil.copytree(work, snapshot)
            metrics = {"records": json.dumps(pending), **(extra or {})}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(snapshot)))
        pending.clear()

    def on_epoch(k: int, record: dict) -> None:
        if pending and pending[-1][1]["epoch"] != record["epoch"]:
            flush()
        pending.append((k, common.plain(record)))

    if train_fn is None:
        from rnnbench.train.population import train_population as train_fn
    results = train_fn(
        configs,
        out_dirs=out_dirs,
        data_dir=data_dir,
        device=device,
        on_epoch=on_epoch,
        progress=False,
    )
    flush({"results": json.dumps(common.plain(list(results)))})


class DriverCallback(tune.Callback if tune is not None else object):
    """Runs in the driver: logs each trial's epoch records to the store as they arrive.

    Picklable (Tune saves it with the experiment): it keeps the store's path and each trial's
    member keys, not the open store.
    """

    def __init__(
        self, store_path: str, members: dict[str, list[str]], starts: dict, out: str = ""
    ) -> None:
        self.store_path, self.members, self.starts = str(store_path), members, starts
        self.out = str(out)
        self.display = None
        self._store: Store | None = None

    def __getstate__(self) -> dict:
        return {
            "store_path": self.store_path,
            "members": self.members,
            "starts": self.starts,
            "out": self.out,
        }

    def _open(self) -> Store:
        if self._store is None:
            self._store = Store(self.store_path)
        return self._store

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        """The population's runs become ``running`` (attempts, versions, host, time)."""
        for key, config, run_dir, labels in self.starts.get(_trial_id(trial), []):
            self._open().start_run(key, config, run_dir, labels=labels)

    def on_trial_restore(self, iteration, trials, trial, **info) -> None:
        self.on_trial_start(iteration, trials, trial)

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        keys = self.members.get(_trial_id(trial))
        if keys is None:
            return
        records = json.loads(result.get("records") or "[]")
        for k, record in records:
            self._open().log_epoch(keys[k], record)
        if self.display is not None:
            for k, record in records:
                self.display.tally.epoch(_trial_id(trial), k, record)
            self.display.update(sum(1 for t in trials if t.status == "RUNNING"))

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        """Mirror the trial's latest run folders into ``OUT/runs/<key>``: what the next sweep
        resumes from, instead of Ray's experiment state."""
        starts = self.starts.get(_trial_id(trial), [])
        if not starts or not self.out:
            return
        with checkpoint.as_directory() as saved:
            for key, _config, run_dir, _labels in starts:
                if (Path(saved) / key).is_dir():
                    _replace_folder(Path(saved) / key, Path(run_dir))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if self.display is not None:
            self.display.tally.ended(_trial_id(trial))


def run_ray(
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
    address: str | None = None,
    train_fn=None,
    cpus_per_trial: float = 1,
    verbose: bool = False,
) -> dict[str, int]:
    """Train every population as a Ray Tune trial; the driver writes ``store``.

    ``address``: ``None`` starts (or reuses) a local Ray; ``"auto"`` or ``"ray://HOST:PORT"``
    joins a cluster. ``workers`` caps concurrent trials. ``verbose`` shows Ray's and Tune's
    own output. Returns run counts as :func:`rnnbench.sweeps.local.run_local`.
    """
    _require_ray()
    out = Path(out).resolve()
    common.check_writable(out / "runs")
    if not verbose:
        quiet_tune()
    if not ray.is_initialized():
        level = logging.INFO if verbose else logging.ERROR
        try:
            with keep_sigterm():
                if address:
                    ray.init(
                        address=address,
                        include_dashboard=False,
                        log_to_driver=False,
                        logging_level=level,
                    )
                else:
                    ray.init(include_dashboard=False, log_to_driver=False, logging_level=level)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RnnbenchError(
                f"Cannot connect to Ray at {address or 'a new local instance'} ({exc}): start "
                "the cluster (ray start --head) or check --address."
            ) from exc
    storage = os.environ.get("RNNBENCH_RAY_STORAGE") or str(out / "ray")
    tally = common.Tally(planned=common.planned_runs(populations, then))
    tally.estimate.workers = workers or int(ray.cluster_resources().get("CPU", 1) // cpus_per_trial)
    display = common.Display(progress, tally)
    phase = list(populations)
    try:
        while phase:
            chained: list[Population] = []
            todo: list[Population] = []
            for pop in phase:
                left = common.admit(store, pop, out, tally, display, 0)
                if left is not None:
                    todo.append(left)
                else:
                    chained += common.chain(then, store, pop)
            if todo:
                done = _run_phase(
                    todo,
                    store=store,
                    out=out,
                    storage=storage,
                    workers=workers,
                    retries=retries,
                    device=device,
                    data_dir=data_dir,
                    train_fn=train_fn,
                    display=display,
                    cpus=cpus_per_trial,
                    verbose=verbose,
                )
                for pop in done:
                    tally.count(store, pop)
                    tally.failed += sum(
                        1 for r in common.member_runs(store, pop) if r["status"] == "failed"
                    )
                    display.update(0, len(pop.configs))
                    chained += common.chain(then, store, pop)
            phase = chained
    finally:
        display.close()
    return tally.counts()


# Tune's environment switches for its own output; set (where the user has not) unless verbose.
QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",  # no configuration box, no TensorBoard hint
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV/JSON/TensorBoard logger files
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",  # the repeated warning
    "RAY_DEDUP_LOGS": "1",
}


def quiet_tune() -> None:
    """Turn Ray's and Tune's own output off (see :data:`QUIET_ENV`), keeping errors."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for name in ("ray", "ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.ERROR)


class keep_sigterm:  # noqa: N801 - used as a context manager, named like one
    """Put the Python SIGTERM handler in place again after ``ray.init`` replaced it with
    Ray's native one (the CLI's handler turns SIGTERM into a clean stop)."""

    def __enter__(self):
        main = threading.current_thread() is threading.main_thread()
        self.handler = signal.getsignal(signal.SIGTERM) if main else None
        return self

    def __exit__(self, *exc) -> None:
        if callable(self.handler):
            signal.signal(signal.SIGTERM, self.handler)


def _trial_id(trial) -> str:
    return str(trial.config.get("trial", {}).get("id"))


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _experiment_name(todo: list[Population]) -> str:
    keys = sorted(c.key() for pop in todo for c in pop.configs)
    return "rnnbench-" + hashlib.sha256(" ".join(keys).encode()).hexdigest()[:12]


def _clear_old_experiments(storage: str, name: str) -> None:
    """Delete, unread, earlier local experiment folders of this grid (``name``, ``name-*``):
    their pickles are never loaded, and the run folders hold what they had."""
    if "://" in storage:
        return
    root = Path(storage)
    if not root.is_dir():
        return
    for folder in root.iterdir():
        if folder.name == name or folder.name.startswith(name + "-"):
            shutil.rmtree(folder, ignore_errors=True)


def _replace_folder(src: Path, dest: Path) -> None:
    """Copy ``src`` over ``dest`` so that ``dest`` is, at every moment, a whole folder."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = dest.parent / f".{dest.name}.new"
    old = dest.parent / f".{dest.name}.old"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    shutil.copytree(src, staged)
    if dest.exists():
        os.replace(dest, old)
    os.replace(staged, dest)
    shutil.rmtree(old, ignore_errors=True)


def _run_folder_files(folder: Path) -> dict[str, bytes]:
    """The plain files of a run folder (checkpoints, metrics), for a trial to resume from."""
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _run_phase(
    todo,
    *,
    store,
    out,
    storage,
    workers,
    retries,
    device,
    data_dir,
    train_fn,
    display,
    cpus,
    verbose=False,
) -> list[Population]:
    """One Tuner over the populations ``todo``; returns them once recorded in the store."""
    from rnnbench.units.registry import loaded

    units = loaded()  # the user units this command named: each trial loads them again
    by_id = {str(i): pop for i, pop in enumerate(todo)}
    trials = [
        {
            "id": i,
            "name": pop.name,
            "threads": max(1, int(cpus)),
            "configs": [c.to_dict() for c in pop.configs],
            "units": units,
        }
        for i, pop in by_id.items()
    ]
    resume = {
        i: {
            c.key(): files
            for c in p.configs
            if (files := _run_folder_files(common.run_dir(out, c)))
        }
        for i, p in by_id.items()
    }
    trainable = tune.with_resources(
        tune.with_parameters(
            _trainable, train_fn=train_fn, data_dir=data_dir, device=device, resume=resume
        ),
        {"cpu": cpus, "gpu": 1 if str(device).startswith("cuda") else 0},
    )

    members = {i: [c.key() for c in p.configs] for i, p in by_id.items()}
    starts = {
        i: [(c.key(), c.to_dict(), str(common.run_dir(out, c)), p.labels) for c in p.configs]
        for i, p in by_id.items()
    }
    callback = DriverCallback(store.path, members, starts, out=str(out))
    callback.display = display
    for i, pop in by_id.items():
        display.tally.queued(i, pop)
    grid_name = _experiment_name(todo)
    _clear_old_experiments(storage, grid_name)
    name = f"{grid_name}-{uuid.uuid4().hex[:8]}"
    try:
        # A fresh experiment every time, never Tuner.restore: see the module docstring.
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(trials)},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=workers or None,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage,
                failure_config=tune.FailureConfig(max_failures=retries),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[callback],
                verbose=2 if verbose else 0,
            ),
        )
        with keep_sigterm():
            grid = tuner.fit()
    except KeyboardInterrupt:
        for pop in todo:
            common.requeue(store, pop)
        raise
    interrupted = []
    for result in grid:
        pop = by_id.get(str(result.config["trial"]["id"]))
        if pop is None:
            continue
        if result.error is not None:
            common.record_failure(store, pop, common.describe(result.error))
            continue
        if "results" not in (result.metrics or {}):
            interrupted.append(pop)  # Ctrl-C: Tune stopped it; the next run resumes it
            common.requeue(store, pop)
            continue
        with result.checkpoint.as_directory() as saved:
            for c in pop.configs:
                target = common.run_dir(out, c)
                shutil.copytree(Path(saved) / c.key(), target, dirs_exist_ok=True)
        results = json.loads(result.metrics["results"])
        for r, c in zip(results, pop.configs, strict=True):
            if r.get("checkpoint"):
                r["checkpoint"] = str(common.run_dir(out, c) / Path(r["checkpoint"]).name)
        common.record_results(store, pop, out, results)
    if interrupted:
        raise KeyboardInterrupt
    return todo
