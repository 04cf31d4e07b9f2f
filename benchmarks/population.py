"""Population training against one run after another: same members, data and epochs.

    .venv/bin/python benchmarks/population.py \
        [--dataset jsb] [--unit lstm] [--members 10] [--epochs 2] [--threads 1]

Both sides call :func:`rnnbench.train.population.train_population` with the paper's protocol
at the paper's music size (batch 16, weight noise, clipping, a validation pass and
checkpoints every epoch): once with all members stacked into one population, once per member
(K = 1) in turn. Patience exceeds the epochs, so every member trains every epoch on both
sides. Prints the wall-clock seconds of each side, the speed-up and the largest difference
of the members' final test NLL (the two sides compute the same thing).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rnnbench.data.registry import load_dataset
from rnnbench.train.config import RunConfig
from rnnbench.train.population import train_population


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="jsb")
    p.add_argument("--unit", default="lstm", choices=["tanh", "lstm", "gru"])
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "numba", "torch"],
        help="kernel of the population (default auto: numba on CPU)",
    )
    p.add_argument(
        "--single-backend",
        default="auto",
        choices=["auto", "numba", "torch"],
        help="kernel of the one-after-another runs (default auto)",
    )
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset)
    # The paper's learning-rate candidates: log lr ~ U(-12, -6), from a fixed seed.
    lrs = np.exp(np.random.default_rng(0).uniform(-12, -6, args.members)).tolist()
    configs = [
        RunConfig(
            dataset=args.dataset,
            unit=args.unit,
            lr=lr,
            seed=k,
            batch_size=args.batch_size,
            max_epochs=args.epochs,
            patience=args.epochs + 1,
        )
        for k, lr in enumerate(lrs)
    ]
    # Warm-up (numba compilation, data loading), not timed.
    with tempfile.TemporaryDirectory() as tmp:
        warm = RunConfig(**{**configs[0].to_dict(), "max_epochs": 1})
        for i, backend in enumerate((args.backend, args.single_backend)):
            train_population(
                [warm],
                out_dirs=[Path(tmp) / f"w{i}"],
                dataset=dataset,
                device=args.device,
                backend=backend,
            )

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        together = train_population(
            configs,
            out_dirs=[Path(tmp) / f"p{k}" for k in range(len(configs))],
            dataset=dataset,
            device=args.device,
            backend=args.backend,
        )
        t_pop = time.perf_counter() - start
        start = time.perf_counter()
        alone = [
            train_population(
                [c],
                out_dirs=[Path(tmp) / f"s{k}"],
                dataset=dataset,
                device=args.device,
                backend=args.single_backend,
            )[0]
            for k, c in enumerate(configs)
        ]
        t_seq = time.perf_counter() - start

    diff = max(
        abs(a["test_nll"] - b["test_nll"])
        for a, b in zip(together, alone, strict=True)
        if a["test_nll"] is not None and b["test_nll"] is not None
    )
    steps = together[0]["updates"]
    print(
        f"{args.dataset} {args.unit} hidden {together[0]['hidden']} batch {args.batch_size}, "
        f"{args.members} members x {args.epochs} epochs ({steps} updates each), "
        f"{args.threads} thread(s), {args.device}; kernels: population {args.backend}, "
        f"one after another {args.single_backend}"
    )
    print(
        f"population of {args.members}: {t_pop:8.2f} s  "
        f"({1000 * t_pop / (args.members * steps):.2f} ms per model per update)"
    )
    print(
        f"one after another:  {t_seq:8.2f} s  "
        f"({1000 * t_seq / (args.members * steps):.2f} ms per model per update)"
    )
    print(
        f"speed-up: {t_seq / t_pop:.2f}x   largest test-NLL difference: {diff:.2e}"
        + ("" if math.isfinite(diff) else " (a member diverged)")
    )


if __name__ == "__main__":
    main()
