"""One pass of a population over its training batches: :func:`train_epoch`.

Per update (:mod:`rnnbench.train.protocol`): each member's truncated-BPTT carry, the whole
update in one numba call where :mod:`rnnbench.train.compiled_update` runs it, else the old
pieces (the weight noise around the forward and backward pass, per-member clipping, the finite
check, the optimiser's step on the members still training that have a window); a member whose
loss or gradient is not finite is marked diverged with one sentence on why
(:func:`divergence_reason`) and stops changing.

The per-member bookkeeping (which members train, have a window, stepped; the running NLL of
the epoch) is numpy bool and float64 arrays of ``K`` entries: on the paper's small models an
update takes about a millisecond, and each torch operation on a tiny tensor costs a few
microseconds of it. The numbers are those of the torch bookkeeping it replaced.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from rnnbench.train import authors
from rnnbench.train.minibatches import carry_state, population_batches

__all__ = ["train_epoch", "divergence_reason"]


def divergence_reason(loss: float, epoch: int, batch: int, steps: int) -> str:
    """One sentence on why a member stopped at training ``batch`` of ``epoch``.

    A finite loss with a non-finite gradient is float32 overflow in the backward pass: the
    gradient grew through ``steps`` time steps faster than clipping (applied after the backward
    pass) can help; a non-finite loss is the forward pass itself blowing up.
    """
    where = f"at epoch {epoch}, batch {batch}"
    if not math.isfinite(loss):
        return f"its training loss was not finite {where}"
    return (
        f"its gradient overflowed {where} while its loss ({loss:.3f}) was finite: backpropagation "
        f"through {steps} time steps exploded past float32, so clipping after the backward pass "
        "could not help; truncate it (--bptt) or lower the weight noise"
    )


def _host(t) -> np.ndarray:
    """A small per-member tensor (or array) as numpy (a view on CPU)."""
    return t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)


def train_epoch(pop, epoch: int, bar) -> list[float | None]:
    """One pass of ``pop`` (a :class:`rnnbench.train.population._Population`) over its
    training batches of ``epoch``; each member's mean training NLL (None: no step)."""
    cfg, dev = pop.cfg, pop.device
    active = np.array([s == "running" for s in pop.status], np.bool_)
    sums = np.zeros(pop.k, np.float64)
    steps = np.zeros(pop.k, np.float64)
    weights = pop.model.weight_matrices(output=cfg.noise_output)
    pop.optimizer.scale_lr(authors.schedule(cfg, epoch))
    on_cpu = torch.device(dev).type == "cpu"
    state = None
    last_shown = 0.0
    batches = population_batches(pop.dataset.split("train"), pop.configs, epoch)
    for number, batch in enumerate(batches, 1):
        live = batch.live.numpy()
        # each member's own truncated-BPTT carry, fitted to this update's rows
        if state is not None:
            carry = batch.carry.numpy()
            state = (
                carry_state(state, batch.carry.to(dev), batch.x.shape[-2]) if carry.any() else None
            )
        x, y, mask = batch.x, batch.y, batch.mask
        if not on_cpu:
            x, y, mask = (t.to(dev) for t in (x, y, mask))
        idle = not live.all()  # a member without a window draws no noise
        may_step = active & live
        # the whole update in one numba call where it runs (rnnbench.train.compiled_update:
        # the same numbers, its step already taken, numpy results), else the pieces
        done = pop.compiled(batch, x, y, mask, state, may_step) if pop.compiled else None
        if done is not None:
            nll_sum, n, loss, state, ok = done
        else:
            nll_sum, n, loss, state, ok = pop._old_update(batch, x, y, mask, state, weights, idle)
        bad = may_step & ~ok
        if bad.any():
            for k in np.flatnonzero(bad).tolist():
                pop.status[k] = "diverged"
                pop.why[k] = divergence_reason(float(_host(loss)[k]), epoch, number, batch.steps[k])
        active = active & ok
        took = active & live
        if done is None:
            pop.optimizer.step(torch.from_numpy(took).to(dev))
        # the epoch's running NLL in float64 numpy
        for k in np.flatnonzero(took).tolist():
            pop.updates[k] += 1
        sums += np.where(took, _host(nll_sum).astype(np.float64), 0.0)
        steps += took * (_host(n).astype(np.float64) if np.ndim(n) else float(n))
        if bar is not None and time.monotonic() - last_shown > 0.5:
            last_shown = time.monotonic()
            live_nll = (sums / np.maximum(steps, 1))[steps > 0]
            if live_nll.size:
                bar.set_postfix_str(f"epoch {epoch} train {live_nll.min():.3f}")
        if not took.any() and not active.any():
            break
    return [_finite(float(sums[k] / steps[k])) if steps[k] > 0 else None for k in range(pop.k)]


def _finite(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)
