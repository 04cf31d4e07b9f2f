"""What scoring a split costs at each evaluation batch size: the measurement behind
``rnnbench.train.metrics.EVAL_BATCH_SIZE``.

    .venv/bin/python benchmarks/eval_batch.py \
        [--dataset musedata] [--unit lstm] [--batch 1 2 4 8 16 64] [--members 10] [--threads 1]

A population of ``--members`` models at the paper's size scores the whole validation split
(``--sequences N``: its first N) with ``split_nll``, once per batch size, best of
``--repeat``. For reference, the same run times ``--members`` passes of PyTorch's ``nn.LSTM``
(the task's LSTM size) and a linear output over the same padded batches, without gradients:
the "x nn.LSTM" column divides by it. Every batch size must give the same NLL (to 1e-6).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from rnnbench.data.batching import iterate_batches
from rnnbench.data.registry import load_dataset
from rnnbench.models import SequenceModel, paper_hidden
from rnnbench.train.metrics import split_nll


def best_seconds(fn, repeat: int) -> float:
    fn()  # warm-up: compiles the numba kernels for these shapes
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@torch.no_grad()
def torch_lstm_pass(data, seqs, batch: int, members: int) -> None:
    hidden = paper_hidden(data.task, "lstm")
    lstm, out = nn.LSTM(data.in_dim, hidden), nn.Linear(hidden, data.out_dim)
    for b in iterate_batches(seqs, batch, seed=0, epoch=0, shuffle=False):
        for _ in range(members):
            out(lstm(b.x)[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="musedata")
    p.add_argument("--unit", default="lstm", choices=["tanh", "lstm", "gru"])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8, 16, 64])
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--sequences", type=int, default=None)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    seqs = data.split("valid")[: args.sequences]
    model = SequenceModel(
        args.unit,
        data.in_dim,
        data.out_dim,
        paper_hidden(data.task, args.unit),
        head=data.head,
        population=args.members,
        seeds=list(range(args.members)),
    ).eval()
    steps = sum(len(s) for s in seqs)
    print(
        f"{args.dataset} valid: {len(seqs)} sequences, {steps} steps; {args.unit} population "
        f"of {args.members}; {args.threads} thread(s)"
    )
    scores = []
    for batch in args.batch:
        ours = best_seconds(
            lambda b=batch: scores.append(split_nll(model, seqs, batch_size=b)), args.repeat
        )
        ref = best_seconds(
            lambda b=batch: torch_lstm_pass(data, seqs, b, args.members), args.repeat
        )
        print(
            f"batch {batch:3d}: {ours:7.2f} s ({ours / steps * 1e6:6.1f} us/step), "
            f"{args.members} x nn.LSTM {ref:7.2f} s, x nn.LSTM {ours / ref:5.2f}",
            flush=True,
        )
    spread = (torch.stack(scores).amax(0) - torch.stack(scores).amin(0)).max().item()
    print(f"largest NLL difference between batch sizes: {spread:.2e}")
    if spread > 1e-6 * float(torch.stack(scores).abs().max()):
        raise SystemExit("the NLL depends on the evaluation batch size: a bug")


if __name__ == "__main__":
    main()
