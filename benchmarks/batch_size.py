"""What a training epoch costs at each batch size: the measurement behind the music default.

    .venv/bin/python benchmarks/batch_size.py \
        [--dataset nottingham] [--sequences 48] [--batch 1 4 16] [--members 10] [--threads 1]

The same training sequences (the first ``--sequences`` of the split) are trained once per batch
size by a population of ``--members`` models at the paper's size: weight noise, forward,
backward, clipping, RMSProp, as in training. Printed per unit: microseconds per real frame
(per population; lower is cheaper) and updates per pass, and the cost per frame relative to
batch 16. An epoch costs frames × that, so a batch size with a ratio at or below 1 buys its
extra updates for free.
"""

from __future__ import annotations

import argparse

import torch
from population_step import per_model_ms, updater

from rnnbench.data.batching import iterate_batches
from rnnbench.data.registry import load_dataset


def frame_cost(unit: str, members: int, data, seqs, batch: int):
    """Best of 3 passes (after a warm-up): (seconds per real frame, updates per pass)."""
    batches = list(iterate_batches(seqs, batch, seed=0, epoch=1))
    frames = sum(len(s.inputs) for s in seqs)
    ms = per_model_ms(updater(unit, members, data, "auto"), batches, members)
    return ms * 1e-3 * members * len(batches) / frames, len(batches)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="nottingham")
    p.add_argument("--sequences", type=int, default=48)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--units", nargs="+", default=["tanh", "lstm", "gru"])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    seqs = data.split("train")[: args.sequences]
    print(
        f"{args.dataset}: {len(seqs)} sequences, {sum(len(s.inputs) for s in seqs)} frames, "
        f"population of {args.members}, {args.threads} thread(s)"
    )
    for unit in args.units:
        costs = {b: frame_cost(unit, args.members, data, seqs, b) for b in args.batch}
        ref = costs.get(16, costs[max(costs)])[0]
        cells = [
            f"batch {b}: {c * 1e6:6.1f} us/frame ({c / ref:.2f}x), {n} updates"
            for b, (c, n) in costs.items()
        ]
        print(f"{unit:5s} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
