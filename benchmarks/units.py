"""One training step of each recurrent unit, as a ratio to torch's own module.

    .venv/bin/python benchmarks/units.py [--task music speech] [--batch 1 16 64]
        [--backend numba torch] [--steps 200] [--repeat 10] [--threads 1] [--quick]
        [--device cpu|cuda] [--variants nig cifg mgu ...]

A step is what training does per minibatch: forward over T steps, a Linear(H, 88) head with
binary cross-entropy on random notes, backward, gradient-norm clipping to 1 and an RMSprop
update. Music sizes read 88 inputs (LSTM 36, GRU 46, tanh 100 units), speech sizes 20 inputs
(LSTM 195, GRU 227, tanh 400 units). Each row prints the best of ``--repeat`` timed steps (the
machine is shared; the minimum is the least disturbed) in milliseconds, and two
ratios measured in the same run: against torch's module of the same kind and size (nn.LSTM,
nn.GRU, nn.RNN; only nn.LSTM is fused on CPU, by oneDNN) and against nn.LSTM at the task's
LSTM size (the issue's target: the peephole LSTM and the reset-before GRU within 2x of it at
batch 16, 4x at batch 1). torch runs with ``torch.set_num_threads(--threads)``.

``--device cuda`` runs every module and tensor on the GPU (only the ``torch`` backend exists
there, so it is the default; torch's modules are then cuDNN's fused kernels) and waits for the
GPU (``torch.cuda.synchronize``) before reading the clock.

``--variants NAME ...`` adds rows for unit variants (:mod:`rnnbench.nn.variants`) at the
full unit's hidden size, so the rows compare the kernels' cost per step at equal ``H``
(a variant that removes a gate has fewer weights; matching parameters would give it more
units).
"""

from __future__ import annotations

import argparse
import time

import torch

from rnnbench.nn import GRU, LSTM, RNN, variants

OUTPUTS = 88
TASKS = {  # task: (inputs, {unit: hidden})
    "music": (88, {"lstm": 36, "gru": 46, "tanh": 100}),
    "speech": (20, {"lstm": 195, "gru": 227, "tanh": 400}),
}
NATIVE = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "tanh": torch.nn.RNN}
# (label, unit, constructor of our module given (inputs, hidden, backend))
FORMS = [
    ("tanh", "tanh", lambda i, h, b: RNN(i, h, backend=b)),
    ("lstm peephole", "lstm", lambda i, h, b: LSTM(i, h, peephole=True, backend=b)),
    ("lstm", "lstm", lambda i, h, b: LSTM(i, h, peephole=False, backend=b)),
    ("gru reset-before", "gru", lambda i, h, b: GRU(i, h, reset="before", backend=b)),
    ("gru reset-after", "gru", lambda i, h, b: GRU(i, h, reset="after", backend=b)),
]


def time_training_step(
    unit: torch.nn.Module, inputs, hidden, batch, steps, repeat, device="cpu"
) -> float:
    """Fastest of ``repeat`` training steps of ``unit`` + a Linear/BCE head, in milliseconds."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(steps, batch, inputs, generator=gen).to(device)
    y = (torch.rand(steps, batch, OUTPUTS, generator=gen) < 0.1).float().to(device)
    unit = unit.to(device)
    head = torch.nn.Linear(hidden, OUTPUTS).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    params = list(unit.parameters()) + list(head.parameters())
    optimiser = torch.optim.RMSprop(params, lr=1e-3, alpha=0.95, eps=1e-6)

    def step():
        optimiser.zero_grad()
        logits = head(unit(x)[0])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()

    for _ in range(2):
        step()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", nargs="+", default=["music", "speech"], choices=list(TASKS))
    p.add_argument("--batch", nargs="+", type=int, default=[1, 16, 64])
    p.add_argument(
        "--backend",
        nargs="+",
        default=None,
        choices=["numba", "torch"],
        help="our units' kernels (default numba and torch on CPU, torch on cuda)",
    )
    p.add_argument("--steps", type=int, default=200, help="sequence length T (default 200)")
    p.add_argument("--repeat", type=int, default=10, help="timed steps per row (default 10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="music only, batch 1 and 16, numba backend (torch on cuda), 5 repeats",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument(
        "--variants",
        nargs="+",
        default=[],
        metavar="NAME",
        help="also time these unit variants at the full unit's size (e.g. nig cifg mgu)",
    )
    args = p.parse_args()
    for name in args.variants:
        unit = "lstm" if name in variants.NAMES["lstm"] else "gru"
        if name not in variants.NAMES[unit]:
            p.error(
                f"unknown variant {name!r}; use one of {sorted(variants.NAMES['lstm'])} "
                f"or {sorted(variants.NAMES['gru'])}"
            )
        cls = LSTM if unit == "lstm" else GRU
        FORMS.append(
            (
                f"{unit} {name}",
                unit,
                lambda i, h, b, cls=cls, v=name: cls(i, h, backend=b, variant=v),
            )
        )
    try:
        device = torch.device(args.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        p.error(f"--device must be cpu or cuda, not {args.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: PyTorch sees no CUDA GPU")
    default_backends = ["numba", "torch"] if device.type == "cpu" else ["torch"]
    if args.backend is None:
        args.backend = default_backends
    if device.type == "cuda" and "numba" in args.backend:
        p.error("the numba backend runs on CPU only; use --backend torch with --device cuda")
    if args.quick:
        args.task, args.batch, args.repeat = ["music"], [1, 16], 5
        args.backend = default_backends[:1]
    torch.set_num_threads(args.threads)
    where = ""
    if device.type == "cuda":  # cuDNN may run float32 RNNs on TF32 tensor cores
        where = (
            f", {torch.cuda.get_device_name(device)}, TF32 allowed: cuDNN "
            f"{torch.backends.cudnn.allow_tf32}, matmul {torch.backends.cuda.matmul.allow_tf32}"
        )
    print(
        f"torch {torch.__version__}{where}, torch.set_num_threads({args.threads}), "
        f"T={args.steps}, best of {args.repeat} steps"
    )
    print("| task | batch | unit | backend | H | ms/step | x same-kind torch | x nn.LSTM |")
    print("|---|---|---|---|---|---|---|---|")
    torch.manual_seed(0)
    for task in args.task:
        inputs, sizes = TASKS[task]
        for batch in args.batch:
            native_ms = {}
            for unit, native_cls in NATIVE.items():
                hidden = sizes[unit]
                ms = time_training_step(
                    native_cls(inputs, hidden),
                    inputs,
                    hidden,
                    batch,
                    args.steps,
                    args.repeat,
                    device,
                )
                native_ms[unit] = ms
                label = f"nn.{native_cls.__name__}"
                _row(task, batch, label, "native", hidden, ms, 1.0, ms / native_ms["lstm"])
            for label, unit, make in FORMS:
                hidden = sizes[unit]
                for backend in args.backend:
                    ms = time_training_step(
                        make(inputs, hidden, backend),
                        inputs,
                        hidden,
                        batch,
                        args.steps,
                        args.repeat,
                        device,
                    )
                    _row(
                        task,
                        batch,
                        label,
                        backend,
                        hidden,
                        ms,
                        ms / native_ms[unit],
                        ms / native_ms["lstm"],
                    )


def _row(task, batch, label, backend, hidden, ms, same_kind, vs_lstm) -> None:
    print(
        f"| {task} | {batch} | {label} | {backend} | {hidden} | {ms:.2f} | "
        f"{same_kind:.2f} | {vs_lstm:.2f} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
