"""Train K models of the same shape together: :func:`train_population`.

The members of a population share a data set, a unit and form, a model size and every
protocol constant (their :meth:`RunConfig.group_key`); they differ in learning rate, seed and
batch order (``data_seed``). Their weights are stacked along a leading ``K`` dimension and run
as one batched model. Members of one batch order are fed the same minibatches; members of
different orders (a cell's fresh seeds) each read their own, stacked and padded
(:mod:`rnnbench.train.minibatches`, issue 22). Everything else is per member: the initial
weights and the weight-noise stream (from the member's ``seed``), the learning rate, the
loss normalisation, the truncated-BPTT carry, gradient clipping, early stopping and
divergence. A member's result does not depend on which other members share its population
(up to float rounding, ~1e-6).

Per epoch, for every member still training: one pass over the training batches (the protocol
of :mod:`rnnbench.train.protocol`), a clean validation NLL, early stopping, a line in
``metrics.jsonl`` and an atomic ``last.pt`` (see :mod:`rnnbench.train.checkpoint`). A member
stops when its patience runs out (status ``done``) or when its loss or gradient turns NaN/inf
(status ``diverged``); its parameters and optimiser state stop changing, the others go on.
At the end of that epoch it leaves the population: its best state is scored on train, valid
and test and its run is marked finished, and the others continue as a smaller population built
from the checkpoints just written (the resume path), so a stopped member costs nothing more.
With ``search = "halving"`` a member can also be stopped at a rung of successive halving
(:mod:`rnnbench.train.halving`, ``_Population._halve``): status ``done``, scored the same way.

Per-epoch ``train_nll`` is the running average of the noisy training loss over the epoch
(free to compute); the final ``train_nll`` of the result is a clean evaluation.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from rnnbench import locks as locks_
from rnnbench.errors import RnnbenchError
from rnnbench.nn import sparse_input
from rnnbench.train import authors, compiled_update, epoch_loop, halving, manual_step
from rnnbench.train import checkpoint as ckpt
from rnnbench.train.config import RunConfig
from rnnbench.train.epoch_loop import divergence_reason  # noqa: F401  (tests import it here)
from rnnbench.train.metrics import split_nll, split_scores
from rnnbench.train.protocol import (  # PopulationRMSProp: tests patch its step here
    EarlyStopping,
    PopulationRMSProp,  # noqa: F401
    WeightNoise,
    clip_member_grad_norms,
    finite_members,
)
from rnnbench.train.run_folder import (  # re-exported: callers and tests import them here
    FORMAT,
    checkpoint_at,
    make_folder,
    prepare_folder,
    resolve_device,
    resume_groups,
)
from rnnbench.train.warmup import warm_up

__all__ = ["train_population", "resolve_device"]

OnEpoch = Callable[[int, dict], None]
OnResult = Callable[[int, dict], None]


def train_population(
    configs: Sequence[RunConfig],
    *,
    out_dirs: Sequence[str | Path],
    data_dir=None,
    device: str | torch.device = "cpu",
    on_epoch: OnEpoch | None = None,
    progress: bool = False,
    dataset=None,
    backend: str = "auto",
    on_result: OnResult | None = None,
    on_locked=None,
) -> list[dict]:
    """Train the members ``configs`` together; resume from their folders when possible.

    Args:
        configs: one :class:`RunConfig` per member, all with the same ``group_key()``.
        out_dirs: one run folder per member (created when missing).
        data_dir: where the data lives (see :func:`rnnbench.data.locate.data_root`).
        device: ``"cpu"`` or ``"cuda"``.
        on_epoch: called as ``on_epoch(k, record)`` after each epoch of each member that
            trained in it, with ``record = {"epoch", "train_nll", "valid_nll", "updates",
            "seconds", "status"}`` (the line written to ``metrics.jsonl``).
        progress: show a tqdm bar on stderr with the live training NLL.
        dataset: an already loaded :class:`rnnbench.data.dataset.Dataset` to use instead of
            loading ``configs[0].dataset`` (tests, custom data).
        backend: the recurrent kernel, as :func:`rnnbench.nn.functional.run_unit` takes it
            (``"auto"``: numba on CPU, torch elsewhere). It changes speed, not results beyond
            float rounding, so it is not part of the config.
        on_result: called as ``on_result(k, result)`` as soon as member ``k`` has stopped and
            been scored (the others may train on), or is found finished in its folder, with the
            result it will return for it; a sweep records finished members before their
            population ends.
        on_locked: called with no argument once every run folder is locked, before anything
            is trained: a caller marks its runs started there, so a process refused the lock
            never touches the runs another process is training.

    Returns:
        Per member: ``{"status": "done" | "diverged", "error", "train_nll", "valid_nll", "test_nll",
        "best_epoch", "epochs", "updates", "seconds", "checkpoint", "params", "hidden"}``. The
        NLLs (nats per step, clean, of the restored best state) are None for a diverged member,
        and its ``"error"`` says why in one sentence (None for a done member).
        Finished runs found in their folders are returned without training.

    Each run folder is locked (``.lock``, :mod:`rnnbench.locks`) while it trains: a second
    process asking to train it meanwhile gets an :class:`~rnnbench.errors.RnnbenchError`.
    """
    configs = list(configs)
    out_dirs = [Path(d) for d in out_dirs]
    if not configs:
        raise RnnbenchError("No runs to train; pass at least one RunConfig.")
    if len(out_dirs) != len(configs):
        raise RnnbenchError(
            f"Got {len(configs)} configs but {len(out_dirs)} out_dirs; pass one folder per run."
        )
    if len({d.resolve() for d in out_dirs}) != len(out_dirs):
        raise RnnbenchError("Two members share a run folder; give each member its own folder.")
    groups = {c.group_key() for c in configs}
    if len(groups) > 1:
        raise RnnbenchError(
            "The members of a population must differ only in lr, seed and data_seed; split the "
            "runs into one population per data set, unit, form and protocol setting."
        )
    dev = resolve_device(device)
    with contextlib.ExitStack() as locks:
        for run_dir in out_dirs:
            make_folder(run_dir)
            locks.enter_context(
                locks_.hold(
                    run_dir / ckpt.LOCK,
                    f"The run folder {run_dir} is being trained by {{owner}}; wait for that run to "
                    "finish (or stop it), then run this again.",
                )
            )
        if on_locked is not None:
            on_locked()
        return _train_locked(
            configs,
            out_dirs,
            data_dir=data_dir,
            dev=dev,
            on_epoch=on_epoch,
            progress=progress,
            dataset=dataset,
            backend=backend,
            on_result=on_result,
        )


def _train_locked(
    configs, out_dirs, *, data_dir, dev, on_epoch, progress, dataset, backend, on_result
) -> list[dict]:
    results: list[dict | None] = [None] * len(configs)
    resumable: dict[int, list[dict]] = {}
    for i, (cfg, run_dir) in enumerate(zip(configs, out_dirs, strict=True)):
        found = prepare_folder(cfg, run_dir)
        done = [c for c in found if c.get("finished")]
        if done:
            results[i] = done[0]["result"]
            if on_result is not None:  # it may have finished in an interrupted earlier call
                on_result(i, results[i])
        else:
            resumable[i] = found
    if not resumable:
        return results  # type: ignore[return-value]

    if dataset is None:
        from rnnbench.data.registry import load_dataset

        dataset = load_dataset(configs[0].dataset, data_dir)
    hidden = configs[0].hidden or _paper_hidden(dataset, configs[0])
    bar = None
    if progress:
        from tqdm import tqdm

        cfg = configs[0]
        bar = tqdm(
            total=cfg.max_epochs,
            file=sys.stderr,
            unit="epoch",
            dynamic_ncols=True,
            desc=f"{cfg.dataset} {cfg.unit} x{len(resumable)}",
        )
    try:
        todo = resumable
        while todo:
            # Members no longer training (stopped, diverged, or at max_epochs) are scored on
            # their own; the others go on as a smaller population, from the state just saved.
            stopped = {
                i: found[0]
                for i, found in todo.items()
                if found and found[0]["status"] != "running"
            }
            if stopped:
                for i, result in _finalize(
                    stopped,
                    configs,
                    out_dirs,
                    dataset=dataset,
                    device=dev,
                    backend=backend,
                    hidden=hidden,
                ).items():
                    results[i] = result
                    if on_result is not None:
                        on_result(i, result)
                todo = {i: found for i, found in todo.items() if i not in stopped}
            if not todo:
                break
            start_epoch, members = resume_groups(todo)[0]
            trainer = _Population(
                [configs[i] for i in members],
                [out_dirs[i] for i in members],
                [checkpoint_at(todo[i], start_epoch) for i in members],
                dataset=dataset,
                device=dev,
                backend=backend,
                hidden=hidden,
            )
            saved = trainer.run(on_epoch, bar, members)
            for i, state in zip(members, saved, strict=True):
                todo[i] = [state]
    finally:
        if bar is not None:
            bar.close()
    return results  # type: ignore[return-value]


def _paper_hidden(dataset, cfg) -> int:
    from rnnbench.models import paper_hidden

    if not cfg.variant:  # the paper's size for both forms, as before the variants
        return paper_hidden(dataset.task, cfg.unit)
    return paper_hidden(dataset.task, cfg.unit, variant=cfg.variant, peephole=cfg.peephole)


def _build_model(configs, dataset, *, hidden, device, backend):
    from rnnbench.models import SequenceModel

    cfg = configs[0]
    return SequenceModel(
        cfg.unit,
        dataset.in_dim,
        dataset.out_dim,
        hidden,
        head=dataset.head,
        population=len(configs),
        peephole=cfg.peephole,
        reset=cfg.reset,
        variant=cfg.variant,
        unit_source=cfg.unit_source,  # a user unit: the file --unit loaded, unchanged
        init=cfg.init,
        seeds=[c.seed for c in configs],
        backend=backend,
    ).to(device)


def _finalize(
    states: dict[int, dict], configs, out_dirs, *, dataset, device, backend, hidden
) -> dict[int, dict]:
    """Score the best state of members that stopped; write their finished ``last.pt``."""
    ids = sorted(states)
    model = _build_model(
        [configs[i] for i in ids], dataset, hidden=hidden, device=device, backend=backend
    )
    usable = []
    for slot, i in enumerate(ids):
        best = states[i]["best_model"]
        # A member that diverged after a best epoch keeps that best state: it is scored from
        # it and takes part in the learning-rate choice, like the authors' code, which kept
        # the best parameters seen (docs/training.md, "Divergence").
        usable.append(best is not None)
        model.load_member_state(slot, best if best is not None else states[i]["model"])
    model.eval()
    # Only members with a usable best state get NLLs; a population that only diverged skips
    # the three passes over the data (minutes on the speech sets).
    scores = {
        split: split_scores(model, dataset.split(split), device=device) if any(usable) else None
        for split in ("train", "valid", "test")
    }
    results = {}
    for slot, i in enumerate(ids):
        state, ok = states[i], usable[slot]
        best_path = out_dirs[i] / ckpt.BEST
        best_epoch = state["early_stopping"]["best_epoch"] or None
        if not ok:
            error = state.get("why") or "no epoch reached a finite validation NLL"
        elif state["status"] == "diverged":
            error = diverged_after_best(state["epochs"], best_epoch, state.get("why"))
        else:
            error = state.get("halted")  # stopped at a rung of successive halving, or None
        result = {
            "status": "done" if ok else "diverged",
            "error": error,
            **{
                f"{split}_nll{suffix}": _clean(float(scores[split][kind][slot])) if ok else None
                for split in ("train", "valid", "test")
                for kind, suffix in (("frame", ""), ("sequence", "_seq"))
            },
            "best_epoch": best_epoch,
            "epochs": state["epochs"],
            "updates": state["updates"],
            "seconds": round(state["seconds"], 6),
            "checkpoint": str(best_path) if best_path.exists() else None,
            "params": model.param_count(),
            "hidden": hidden,
        }
        ckpt.save_last(
            {**state, "status": result["status"], "finished": True, "result": result}, out_dirs[i]
        )
        results[i] = result
    return results


DIVERGED_AFTER_BEST = "diverged at epoch"


def diverged_after_best(epoch: int, best_epoch: int | None, why: str | None) -> str:
    """The flag of a run scored from its best state after it diverged: "diverged at epoch 95
    after its best at 92 (scored from its best state): ..." (the store's ``error``)."""
    text = (
        f"{DIVERGED_AFTER_BEST} {epoch} after its best at {best_epoch} (scored from its best state)"
    )
    return f"{text}: {why}" if why else text


def _host(t: torch.Tensor) -> np.ndarray:
    """A small per-member tensor as numpy (a view on CPU)."""
    return t.detach().cpu().numpy()


def _clean(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


class _Population:
    """One lockstep population: the model, the protocol's state and the run folders."""

    def __init__(self, configs, run_dirs, resume, *, dataset, device, backend, hidden):
        self.configs, self.run_dirs, self.device = configs, run_dirs, device
        self.cfg = cfg = configs[0]
        self.k = k = len(configs)
        self.dataset = dataset
        self.hidden = hidden
        self.model = _build_model(configs, dataset, hidden=hidden, device=device, backend=backend)
        self.names = [name for name, _ in self.model.named_parameters()]
        self.params = [p for _, p in self.model.named_parameters()]
        self.optimizer = authors.make_optimizer(cfg, self.params, [c.lr for c in configs])
        self.forward_backward = manual_step.select(self.model, cfg)
        self.noise = WeightNoise([c.seed for c in configs], cfg.weight_noise, device)
        self.compiled = compiled_update.select(
            self.model, cfg, self.optimizer, self.noise, self.forward_backward,
            dataset.split("train"),
        )  # fmt: skip
        self.stopping = EarlyStopping(k, cfg.patience)
        self.status = ["running"] * k
        self.updates = [0] * k
        self.seconds = [0.0] * k
        self.epochs = [0] * k
        self.best_states: list[dict | None] = [None] * k
        self.why: list[str | None] = [None] * k  # why a member diverged, in one sentence
        self.halted: list[str | None] = [None] * k  # why successive halving stopped it
        self.epoch = 0
        if any(r is not None for r in resume):
            self._load(resume)
        else:
            for run_dir in run_dirs:
                (run_dir / ckpt.METRICS).unlink(missing_ok=True)

    # -- state

    def _load(self, resume: list[dict | None]) -> None:
        for k, state in enumerate(resume):
            if state is None:
                raise RnnbenchError(
                    f"{self.run_dirs[k]} has no checkpoint of epoch {self.epoch}; delete the "
                    "population's folders to start afresh."
                )
            self.epoch = state["epoch"]
            self.model.load_member_state(k, state["model"])
            self.optimizer.load_member_state(k, state["optimizer"])
            self.noise.load_member_state(k, state["noise_rng"])
            self.stopping.load_member_state(k, state["early_stopping"])
            self.best_states[k] = state["best_model"]
            self.status[k] = state["status"]
            self.updates[k] = state["updates"]
            self.seconds[k] = state["seconds"]
            self.epochs[k] = state["epochs"]
            self.why[k] = state.get("why")  # absent from checkpoints of older versions
            self.halted[k] = state.get("halted")
            ckpt.truncate_metrics(self.run_dirs[k], self.epoch)
        torch.set_rng_state(resume[0]["torch_rng"])
        ckpt.set_numpy_rng_state(resume[0]["numpy_rng"])

    def _member_checkpoint(self, k: int) -> dict:
        """Everything needed to continue member ``k`` bitwise (``last.pt``)."""
        return {
            "format": FORMAT,
            "config": self.configs[k].to_dict(),
            "epoch": self.epoch,
            "finished": False,
            "result": None,
            "status": self.status[k],
            "epochs": self.epochs[k],
            "updates": self.updates[k],
            "seconds": self.seconds[k],
            "model": self._model_state(k),
            "optimizer": self.optimizer.member_state(k),
            "noise_rng": self.noise.member_state(k),
            "early_stopping": self.stopping.member_state(k),
            "best_model": self.best_states[k],
            "why": self.why[k],
            "halted": self.halted[k],
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": ckpt.numpy_rng_state(),
        }

    def _model_state(self, k: int, now: bool = False) -> dict:
        """Member ``k``'s parameters, on CPU: the best state itself when this epoch made it
        (then ``last.pt`` stores the tensors once, for ``model`` and ``best_model``)."""
        best = self.best_states[k]
        if not now and best is not None and self.stopping.best_epoch[k] == self.epoch:
            return best
        return {n: t.cpu() for n, t in self.model.member_state(k).items()}

    def _best_file(self, k: int) -> dict:
        """``best.pt`` of member ``k``, whose best state :meth:`_one_epoch` has just taken."""
        return {
            "config": self.configs[k].to_dict(),
            "epoch": self.stopping.best_epoch[k],
            "valid_nll": self.stopping.best[k],
            "hidden": self.hidden,
            "member_state": self.best_states[k],
        }

    def _write_epoch(self, bests: list[int], records: dict[int, dict]) -> list[dict]:
        """The epoch's files in a crash-safe order: all written durably beside their places
        (``ckpt.stage``), the improved members' ``best.pt`` moved in, the metrics lines, the
        ``last.pt`` files moved in. After a kill -9 anywhere every member resumes from this
        epoch or the one before with the metrics lines of the epochs its checkpoint covers."""
        saved = [self._member_checkpoint(k) for k in range(self.k)]
        dirs = self.run_dirs
        staged = ckpt.stage(
            [(self._best_file(k), dirs[k] / ckpt.BEST) for k in bests]
            + [(saved[k], dirs[k] / ckpt.LAST) for k in range(self.k)]
        )
        ckpt.publish(staged[: len(bests)])
        for k, record in records.items():
            ckpt.append_metrics(dirs[k], record)
        ckpt.publish(staged[len(bests) :])
        return saved

    # -- training

    def _train_epoch(self, epoch: int, bar) -> list[float | None]:
        """One pass over the training batches (:func:`rnnbench.train.epoch_loop.train_epoch`);
        each member's mean training NLL of the epoch, None where it took no step."""
        return epoch_loop.train_epoch(self, epoch, bar)

    def _old_update(self, batch, x, y, mask, state, weights, idle):
        """An update's pieces before the step where the compiled update does not run: the
        weight noise around the pass, clipping, the finite check: ``(nll_sum, n, loss,
        state, ok)`` (``ok`` a numpy bool array; :mod:`rnnbench.train.epoch_loop` steps)."""
        self.optimizer.zero_grad()
        with (
            self.noise.applied(weights, batch.live.tolist())
            if idle
            else self.noise.applied(weights)
        ):  # forward and backward: manual_step (without autograd) or autograd
            nll_sum, n, loss, state = self.forward_backward(x, y, mask, state, batch.shared)
        norms = clip_member_grad_norms(self.params, authors.gradient_clip(self.cfg))
        ok = _host(finite_members(loss, norms)).astype(np.bool_)
        return nll_sum, n, loss, self.model.detach_state(state), ok

    def run(self, on_epoch: OnEpoch | None, bar, ids: list[int]) -> list[dict]:
        """Train epochs until a member stops training; return every member's saved state."""
        if bar is not None:
            bar.n = self.epoch
            bar.refresh()
        # Binary sparse inputs (piano rolls) are projected by gathering columns of W_ih
        # (rnnbench.nn.sparse_input: equal to the dense product within float rounding).
        with sparse_input.enabled():
            # no compile time in epochs
            warm_up(self.model, self.dataset, self.cfg, self.device, self.compiled)
            while True:
                saved = self._one_epoch(on_epoch, bar, ids)
                if any(s != "running" for s in self.status):
                    return saved

    def _halve(self, epoch: int, valid, records: dict[int, dict]) -> None:
        """Successive halving (:mod:`rnnbench.train.halving`): at a rung epoch, stop the
        running members of the rates behind; a no-op for the paper's full search."""
        stop = halving.decide(
            self.cfg,
            epoch,
            [c.lr for c in self.configs],
            self.stopping.best,
            [s == "running" for s in self.status],
            last=[float(v) for v in valid],
            best_epochs=self.stopping.best_epoch,
        )
        for k, text in stop.items():
            self.status[k] = "done"
            self.halted[k] = text
            records[k]["status"] = "done"

    def _one_epoch(self, on_epoch, bar, ids) -> list[dict]:
        epoch = self.epoch + 1
        training = [s == "running" for s in self.status]
        start = time.perf_counter()
        self.model.train()
        train_nll = self._train_epoch(epoch, bar)
        self.model.eval()
        valid = split_nll(self.model, self.dataset.split("valid"), device=self.device)
        elapsed = time.perf_counter() - start
        self.epoch = epoch
        records, bests = {}, []
        for k in range(self.k):
            if not training[k]:
                continue
            self.seconds[k] += elapsed
            self.epochs[k] = epoch
            v = float(valid[k])
            if self.status[k] == "running" and not math.isfinite(v):
                self.status[k] = "diverged"
                self.why[k] = f"its validation NLL was not finite at epoch {epoch}"
            if self.status[k] == "running":
                improved, stop = self.stopping.update(k, epoch, v)
                if improved:
                    self.best_states[k] = self._model_state(k, now=True)
                    bests.append(k)
                if stop or epoch >= self.cfg.max_epochs:
                    self.status[k] = "done"
            records[k] = {
                "epoch": epoch,
                "train_nll": train_nll[k],
                "valid_nll": _clean(v),
                "updates": self.updates[k],
                "seconds": round(self.seconds[k], 6),
                "status": self.status[k],
            }
        self._halve(epoch, valid, records)
        saved = self._write_epoch(bests, records)
        if bar is not None:
            running = [float(valid[k]) for k in range(self.k) if training[k]]
            best = min((v for v in running if math.isfinite(v)), default=float("nan"))
            bar.set_postfix_str(f"epoch {epoch} valid {best:.3f}")
            bar.n = epoch
            bar.refresh()
        if on_epoch is not None:
            for k, record in records.items():
                on_epoch(ids[k], record)
        return saved
