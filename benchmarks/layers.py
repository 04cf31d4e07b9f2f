"""Stacked and bidirectional modules: one training step, ours (numba) against torch.nn's.

    .venv/bin/python benchmarks/layers.py [--batch 1 16] [--steps 100] [--repeat 5]
        [--threads 1] [--backend numba]

The step is :func:`units.time_training_step` (forward, a Linear/BCE head, backward, clipping,
RMSprop) at the music sizes (88 inputs; LSTM 36, GRU 46, tanh 100 units) for each shape
(num_layers, bidirectional) in (2, False), (1, True), (2, True). Each row prints the best of
``--repeat`` steps in milliseconds and its ratio to the torch.nn module of the same kind and
shape, measured in the same run (on CPU nn.LSTM is oneDNN's fused kernel, nn.GRU and nn.RNN
ATen's); ours run the cuDNN form (the same function as torch's) and the paper form.
"""

from __future__ import annotations

import argparse

import torch
from units import time_training_step

from rnnbench.nn import GRU, LSTM, RNN

INPUTS = 88
HIDDEN = {"lstm": 36, "gru": 46, "tanh": 100}
SHAPES = [(2, False), (1, True), (2, True)]
# (label, unit, torch class, our constructor given (hidden, layers, bidirectional, backend))
FORMS = [
    ("tanh", "tanh", torch.nn.RNN,
     lambda h, n, d, b: RNN(INPUTS, h, n, bidirectional=d, backend=b)),
    ("lstm", "lstm", torch.nn.LSTM,
     lambda h, n, d, b: LSTM(INPUTS, h, n, bidirectional=d, peephole=False, backend=b)),
    ("lstm peephole", "lstm", torch.nn.LSTM,
     lambda h, n, d, b: LSTM(INPUTS, h, n, bidirectional=d, backend=b)),
    ("gru reset-after", "gru", torch.nn.GRU,
     lambda h, n, d, b: GRU(INPUTS, h, n, bidirectional=d, reset="after", backend=b)),
    ("gru reset-before", "gru", torch.nn.GRU,
     lambda h, n, d, b: GRU(INPUTS, h, n, bidirectional=d, backend=b)),
]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", nargs="+", type=int, default=[1, 16])
    p.add_argument("--steps", type=int, default=100, help="sequence length T (default 100)")
    p.add_argument("--repeat", type=int, default=5, help="timed steps per row (default 5)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--backend", default="numba", choices=["numba", "torch"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, torch.set_num_threads({args.threads}), T={args.steps}, "
        f"best of {args.repeat} steps, ours on backend={args.backend!r}"
    )
    print("| batch | layers | bidirectional | unit | H | torch.nn ms | ours ms | x torch.nn |")
    print("|---|---|---|---|---|---|---|---|")
    for batch in args.batch:
        for layers, bidirectional in SHAPES:
            native_ms = {}
            for label, unit, native_cls, make in FORMS:
                hidden = HIDDEN[unit]
                if unit not in native_ms:
                    native = native_cls(INPUTS, hidden, layers, bidirectional=bidirectional)
                    native_ms[unit] = _time(native, hidden * (1 + bidirectional), batch, args)
                ours = make(hidden, layers, bidirectional, args.backend)
                ms = _time(ours, hidden * (1 + bidirectional), batch, args)
                print(
                    f"| {batch} | {layers} | {bidirectional} | {label} | {hidden} | "
                    f"{native_ms[unit]:.2f} | {ms:.2f} | {ms / native_ms[unit]:.2f} |",
                    flush=True,
                )


def _time(module, features, batch, args) -> float:
    return time_training_step(module, INPUTS, features, batch, args.steps, args.repeat)


if __name__ == "__main__":
    main()
