"""Seconds per training epoch of paper-size speech populations, from a few hundred updates.

    python benchmarks/device/speech_epoch.py --device cuda \
        [--dataset fsdd-a] [--units lstm gru tanh] [--members 1 10] [--updates 200] \
        [--batch-size 16] [--full-epoch lstm] [--limit N]

An update is the protocol's inner loop (:mod:`rnnbench.train.protocol`) on one training
minibatch: batch to the device, weight noise on, forward, backward, noise off, per-member
gradient clipping, RMSProp, as :func:`rnnbench.train.population.train_population` runs it.
For each unit (the paper's speech sizes, ~169k parameters per member: LSTM 195, GRU 227,
tanh 400 units; 20-component Gaussian-mixture head) and population size K, after 3 warm-up
updates, ``--updates`` updates are timed (cycling over the epoch's batches) and one clean
validation pass. The epoch estimate is (updates per epoch) x (time per update) + the
validation pass; checkpoints and the final evaluation are not included.

``--full-epoch UNIT`` then trains one real epoch of a K = max(--members) population of that
unit with ``train_population`` and prints its recorded epoch seconds, to check the estimate.
``--limit N`` keeps the first N segments of each split (a smoke test: the numbers then
describe the cut data). The last line is the numbers as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rnnbench.data.batching import iterate_batches
from rnnbench.data.registry import load_dataset
from rnnbench.models import SequenceModel, paper_hidden
from rnnbench.train.config import RunConfig
from rnnbench.train.metrics import split_nll
from rnnbench.train.population import resolve_device, train_population
from rnnbench.train.protocol import (
    PopulationRMSProp,
    WeightNoise,
    clip_member_grad_norms,
    finite_members,
)


def updater(model: SequenceModel, k: int, device: torch.device, cfg: RunConfig):
    """One protocol update of the K-member ``model`` on a batch (as ``_Population`` does)."""
    params = list(model.parameters())
    lrs = np.exp(np.random.default_rng(0).uniform(-12, -6, k)).tolist()
    opt = PopulationRMSProp(
        params, lrs, decay=cfg.rms_decay, momentum=cfg.rms_momentum, eps=cfg.rms_eps
    )
    noise = WeightNoise(list(range(k)), cfg.weight_noise, device)
    weights = model.weight_matrices()
    active = torch.ones(k, dtype=torch.bool, device=device)

    def update(batch) -> None:
        nonlocal active
        x, y, mask = (t.to(device) for t in (batch.x, batch.y, batch.mask))
        opt.zero_grad()
        with noise.applied(weights):
            nll_sum, n, _ = model.nll(x, y, mask)
            loss = nll_sum / n
            loss.sum().backward()
        norms = clip_member_grad_norms(params, cfg.clip)
        active = active & finite_members(loss, norms).to(device)
        opt.step(active)

    return update


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(unit, k, data, batches, args, device) -> dict:
    cfg = RunConfig(dataset=args.dataset, unit=unit, batch_size=args.batch_size)
    hidden = paper_hidden("speech", unit)
    model = SequenceModel(
        unit,
        data.in_dim,
        data.out_dim,
        hidden,
        head=data.head,
        population=k,
        seeds=list(range(k)),
        backend=args.backend,
    ).to(device)
    model.train()
    update = updater(model, k, device, cfg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for b in batches[:3]:
        update(b)
    sync(device)
    start = time.perf_counter()
    for i in range(args.updates):
        update(batches[i % len(batches)])
    sync(device)
    per_update = (time.perf_counter() - start) / args.updates
    model.eval()
    start = time.perf_counter()
    valid = split_nll(model, data.split("valid"), device=device)
    sync(device)
    valid_s = time.perf_counter() - start
    epoch_s = per_update * len(batches) + valid_s
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    return {
        "unit": unit,
        "hidden": hidden,
        "params_per_member": model.param_count(),
        "members": k,
        "ms_per_update": round(1e3 * per_update, 3),
        "ms_per_model_update": round(1e3 * per_update / k, 3),
        "updates_per_epoch": len(batches),
        "valid_s": round(valid_s, 3),
        "epoch_s": round(epoch_s, 2),
        "model_epoch_s": round(epoch_s / k, 3),
        "peak_gpu_mib": round(peak, 1),
        "finite_valid": bool(torch.isfinite(valid).all()),
    }


def full_epoch(unit: str, k: int, data, args, device) -> dict:
    lrs = np.exp(np.random.default_rng(0).uniform(-12, -6, k)).tolist()
    configs = [
        RunConfig(
            dataset=args.dataset,
            unit=unit,
            lr=lr,
            seed=s,
            batch_size=args.batch_size,
            max_epochs=1,
            patience=2,
        )
        for s, lr in enumerate(lrs)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        out = train_population(
            configs,
            out_dirs=[Path(tmp) / f"m{i}" for i in range(k)],
            dataset=data,
            device=device,
            backend=args.backend,
        )
        wall = time.perf_counter() - start
    return {
        "unit": unit,
        "members": k,
        "epoch_s": round(max(r["seconds"] for r in out), 2),
        "wall_s": round(wall, 2),
        "updates": out[0]["updates"],
        "valid_nll": [r["valid_nll"] for r in out],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fsdd-a")
    p.add_argument(
        "--units",
        nargs="*",
        default=["lstm", "gru", "tanh"],
        choices=["tanh", "lstm", "gru"],
        help="units to time (none: only --full-epoch)",
    )
    p.add_argument("--members", type=int, nargs="+", default=[1, 10])
    p.add_argument("--updates", type=int, default=200, help="timed updates per row")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="auto", choices=["auto", "numba", "torch"])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--full-epoch", default=None, choices=["tanh", "lstm", "gru"])
    p.add_argument("--limit", type=int, default=None, help="segments per split (smoke test)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    start = time.perf_counter()
    data = load_dataset(args.dataset)
    load_s = time.perf_counter() - start
    if args.limit:
        cut = {name: seqs[: args.limit] for name, seqs in data.splits.items()}
        data = dataclasses.replace(data, name=f"{data.name} (first {args.limit})", splits=cut)
    batches = list(iterate_batches(data.split("train"), args.batch_size, seed=0, epoch=1))
    frames = sum(b.steps for b in batches) / len(batches)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"{data.name}: {len(data.split('train'))} training segments, {len(batches)} updates "
        f"per epoch at batch {args.batch_size} (~{frames:.0f} real steps per batch), loaded in "
        f"{load_s:.1f} s; {device} ({gpu}), backend {args.backend}, torch {torch.__version__}"
    )
    if args.units:
        print(
            "| unit | H | params/member (with output layer) | K | ms/update | ms/model/update | "
            "valid pass s | s/epoch (est.) | s/model-epoch | peak GPU MiB |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for unit in args.units:
        for k in args.members:
            r = measure(unit, k, data, batches, args, device)
            rows.append(r)
            print(
                f"| {unit} | {r['hidden']} | {r['params_per_member']:,} | {k} | "
                f"{r['ms_per_update']:.1f} | {r['ms_per_model_update']:.2f} | {r['valid_s']:.2f} "
                f"| {r['epoch_s']:.1f} | {r['model_epoch_s']:.2f} | {r['peak_gpu_mib']:.0f} |",
                flush=True,
            )
    full = None
    if args.full_epoch:
        full = full_epoch(args.full_epoch, max(args.members), data, args, device)
        print(
            f"one real epoch, {full['unit']} K={full['members']}: {full['epoch_s']:.1f} s "
            f"(train + validation; {full['updates']} updates), {full['wall_s']:.1f} s with "
            f"checkpoints and the final evaluation",
            flush=True,
        )
    print(
        json.dumps(
            {
                "benchmark": "speech_epoch",
                "dataset": args.dataset,
                "device": str(device),
                "gpu": gpu,
                "batch_size": args.batch_size,
                "updates_timed": args.updates,
                "rows": rows,
                "full_epoch": full,
            }
        )
    )


if __name__ == "__main__":
    main()
