"""Warm-up: one-off start-up costs happen before an epoch's clock starts.

An epoch's recorded time (``seconds`` in ``metrics.jsonl`` and the store) is meant to measure
training, the paper's wall-clock comparison. The first call of each fused numba kernel in a
process compiles it (4.7-10.2 s per unit measured on 2 cores, against 0.15-0.4 s for a whole
quick JSB epoch after it) or loads it from numba's on-disk cache (``cache=True`` in
:mod:`rnnbench.nn.kernels`, about a second); torch's first operations allocate and
dispatch for the first time too. All of that used to land in epoch 1, so whichever run was
chosen as "best" carried it in Figure 2 or not.

:func:`warm_up` runs the population's model once forward and backward (the training path) and
once forward without gradients (the evaluation path: the compiled one of
:mod:`rnnbench.train.compiled_eval` where it runs, and the old one) on the first steps of two
training sequences, before the first timed epoch, and the update's kernels (clipping, RMSProp, the
weight noise's sum) once on copies of the parameters and their gradients. With ``t_e`` the
time epoch ``e`` takes, the recorded cumulative time after epoch ``n`` is
``seconds_n = sum_{e <= n} t_e``, with no start-up term.

It changes nothing the run computes: no optimizer step, gradients cleared afterwards, and
torch's and numpy's random generators (and CUDA's, on a GPU) put back as they were, so a run
is bitwise the same with or without it.
"""

from __future__ import annotations

import numpy as np
import torch

from rnnbench.data.dataset import Sequence

STEPS = 3  # time steps of the warm-up sequences
ROWS = 2  # sequences in the warm-up batch


def warm_up(model, dataset, cfg, device, update=None) -> None:
    """Compile (or load) every kernel the epochs will call, outside any timed region (and
    ``update``'s driver, a :class:`rnnbench.train.compiled_update.CompiledUpdate`, on copies)."""
    from rnnbench.data.batching import iterate_batches
    from rnnbench.train import compiled_eval
    from rnnbench.train.metrics import split_nll

    seqs = [
        Sequence(s.inputs[:STEPS], s.targets[:STEPS], s.source)
        for s in dataset.split("train")[:ROWS]
        if len(s) > 0
    ]
    if not seqs:
        return
    dev = torch.device(device)
    cpu_rng, np_rng = torch.get_rng_state(), np.random.get_state()
    cuda_rng = torch.cuda.get_rng_state_all() if dev.type == "cuda" else None
    was_training = model.training
    try:
        model.train()
        batch = next(iter(iterate_batches(seqs, len(seqs), seed=0, epoch=1, bptt=cfg.bptt)))
        x, y, mask = (t.to(dev) for t in (batch.x, batch.y, batch.mask))
        nll_sum, n, _ = model.nll(x, y, mask, None)
        (nll_sum / n).sum().backward()
        _warm_update(model, cfg)
        model.eval()
        split_nll(model, seqs, device=dev)  # the compiled evaluation's driver, where it runs
        if compiled_eval.usable(model, dev):  # and the old path's kernels it bypasses
            with compiled_eval.off():
                split_nll(model, seqs, device=dev)
            compiled_eval.warm_up(model)
        if update is not None:
            update.warm_up()
    finally:
        for p in model.parameters():
            p.grad = None
        model.train(was_training)
        torch.set_rng_state(cpu_rng)
        np.random.set_state(np_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _warm_update(model, cfg) -> None:
    """The update's kernels (per-member clipping, the protocol's RMSProp: fused numba kernels
    on CPU, :mod:`rnnbench.train.fused`) run once on copies of the parameters and of their
    gradients, so their compilation is not in epoch 1 either; the model is not touched. The
    kernels are called directly, with the argument types the optimizer passes them."""
    from rnnbench.train import fused
    from rnnbench.train.authors import gradient_clip, is_authors

    if cfg.weight_noise and hasattr(model, "weight_matrices"):  # the noise's kernel, on copies
        from rnnbench.train import fused_noise, noise_stream

        fused_noise.warm_up(model.weight_matrices(output=cfg.noise_output))
        noise_stream.warm_up()
    params = [p for _, p in model.named_parameters()]
    if not params or any(p.grad is None for p in params):
        return
    ps = [p.detach().clone() for p in params]
    gs = [p.grad.detach().clone() for p in params]
    if not fused.usable(ps + gs):
        return
    fused.member_grad_norms(gs, gradient_clip(cfg))
    k = ps[0].shape[0]
    state = ([torch.zeros_like(p) for p in ps], [torch.zeros_like(p) for p in ps])
    lr, active = torch.zeros(k, dtype=ps[0].dtype), torch.ones(k, dtype=torch.bool)
    rms = {"decay": cfg.rms_decay, "momentum": cfg.rms_momentum, "eps": cfg.rms_eps}
    if is_authors(cfg):
        fused.authors_step(ps, gs, *state, lr, active, clip=cfg.clip, **rms)
    else:
        fused.rmsprop_step(ps, gs, *state, lr, active, **rms)
