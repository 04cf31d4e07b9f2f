"""Training time of one population as it grows: K = 1, 10, 100 stacked models on one device.

    python benchmarks/device/population_scale.py --device cuda \
        [--members 1 10 100] [--epochs 2] [--dataset jsb] [--unit lstm] [--batch-size 16]

For each K, :func:`rnnbench.train.population.train_population` trains K members at the
paper's size with the full protocol (weight noise, clipping, RMSProp, a validation pass and
checkpoints every epoch, the final clean evaluation), the paper's learning-rate candidates and
seeds 0..K-1, patience above the epochs so every member trains every epoch. A 1-epoch K = 1
run first warms up (CUDA context, kernels, data loading) and is not timed.

Prints, per K: the wall-clock seconds of the whole call, the seconds of its epochs (training
and validation only, as the run's metrics record them: no checkpoints, no final evaluation),
milliseconds per model per update for both, and the peak GPU memory. On CPU the default
backend is numba, on cuda the per-step torch loop (``--backend`` overrides). The last line is
the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rnnbench.data.registry import load_dataset
from rnnbench.train.config import RunConfig
from rnnbench.train.population import resolve_device, train_population


def configs_for(k: int, args) -> list[RunConfig]:
    # The paper's learning-rate candidates (log lr ~ U(-12, -6)), from a fixed seed.
    lrs = np.exp(np.random.default_rng(0).uniform(-12, -6, k)).tolist()
    return [
        RunConfig(
            dataset=args.dataset,
            unit=args.unit,
            lr=lr,
            seed=s,
            batch_size=args.batch_size,
            max_epochs=args.epochs,
            patience=args.epochs + 1,
        )
        for s, lr in enumerate(lrs)
    ]


def timed(configs, dataset, device, backend) -> tuple[float, list[dict]]:
    with tempfile.TemporaryDirectory() as tmp:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = train_population(
            configs,
            out_dirs=[Path(tmp) / f"m{k}" for k in range(len(configs))],
            dataset=dataset,
            device=device,
            backend=backend,
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="jsb")
    p.add_argument("--unit", default="lstm", choices=["tanh", "lstm", "gru"])
    p.add_argument("--members", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="auto", choices=["auto", "numba", "torch"])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dataset = load_dataset(args.dataset)

    warm = RunConfig(**{**configs_for(1, args)[0].to_dict(), "max_epochs": 1, "patience": 2})
    timed([warm], dataset, device, args.backend)

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"{args.dataset} {args.unit} (paper size), batch {args.batch_size}, {args.epochs} "
        f"epoch(s), {device} ({gpu}), backend {args.backend}, torch {torch.__version__}"
    )
    print(
        "| K | hidden | updates per member | wall s | epochs s | ms/model/update (wall) | "
        "ms/model/update (epochs) | peak GPU MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for k in args.members:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        wall, out = timed(configs_for(k, args), dataset, device, args.backend)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
        updates = out[0]["updates"]
        epochs_s = max(r["seconds"] for r in out)
        row = {
            "members": k,
            "hidden": out[0]["hidden"],
            "updates": updates,
            "wall_s": round(wall, 3),
            "epochs_s": round(epochs_s, 3),
            "ms_per_model_update_wall": round(1e3 * wall / (k * updates), 3),
            "ms_per_model_update_epochs": round(1e3 * epochs_s / (k * updates), 3),
            "peak_gpu_mib": round(peak, 1),
            "diverged": sum(r["status"] == "diverged" for r in out),
        }
        rows.append(row)
        print(
            f"| {k} | {row['hidden']} | {updates} | {wall:.2f} | {epochs_s:.2f} | "
            f"{row['ms_per_model_update_wall']:.2f} | {row['ms_per_model_update_epochs']:.2f} "
            f"| {peak:.0f} |",
            flush=True,
        )
    print(
        json.dumps(
            {
                "benchmark": "population_scale",
                "dataset": args.dataset,
                "unit": args.unit,
                "device": str(device),
                "gpu": gpu,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
