"""Where a manual training update's CPU time goes, piece by piece.

    PYTHONPATH=src .venv/bin/python benchmarks/manual_pass_parts.py [--configs jsb-lstm-10,...]

For each configuration of ``benchmarks/epoch.py`` it builds the population's model as
``benchmarks/update_pass.py`` does, runs ``rnnbench.train.manual_step.ManualPass`` on the first
20 training updates of epoch 1 (``--repeats`` times, after one warm-up pass), inside
``sparse_input.enabled()`` as the trainer runs it, and times (``time.process_time``) every call
of its pieces by wrapping them: the gather's plan, the gather, the recurrent forward and
backward kernels with their glue, the head (``head_loss.bernoulli_pass`` or ``mixture_pass``,
or for the torch head ``_logits``, ``_evaluate`` and ``backward_products``), the scatter, and
the dense input projection where the gather does not run (speech: ``torch.baddbmm`` or
``addmm``, and the weight gradient's ``torch.bmm``); "other" is the rest of the update (the
bias gradient's sum, the small torch ops, the gradients' assignment). It prints microseconds
per update. ``--torch-head`` runs the head in torch ops (``head_loss._KERNEL`` off), as before the
Bernoulli kernel.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from update_pass import build  # noqa: E402

PIECES = {
    "plan": ("rnnbench.nn.sparse_input", "plan"),
    "gather": ("rnnbench.nn.sparse_input", "gather"),
    "kernel fwd": ("rnnbench.nn.kernels.glue", "forward"),
    "head": ("rnnbench.head_loss", "bernoulli_pass"),
    "mixture head": ("rnnbench.head_loss", "mixture_pass"),
    "head logits": ("rnnbench.head_loss", "_logits"),
    "head loss": ("rnnbench.head_loss", "_evaluate"),
    "head bwd": ("rnnbench.head_loss", "backward_products"),
    "kernel bwd": ("rnnbench.nn.kernels.glue", "backward"),
    "scatter": ("rnnbench.nn.sparse_input", "scatter_with_bias"),
    # the dense input projection (speech) and its weight's gradient, as ManualPass calls them
    "proj baddbmm": ("torch", "baddbmm"),
    "proj addmm": ("torch", "addmm"),
    "proj bmm": ("torch", "bmm"),
}
KERNEL_HEADS = ("head", "mixture head")
TORCH_HEAD = ("head logits", "head loss", "head bwd")


def wrap_pieces(spent: dict) -> None:
    import importlib

    def timed(label, fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - start

        return run

    for label, (module, name) in PIECES.items():
        mod = importlib.import_module(module)
        setattr(mod, name, timed(label, getattr(mod, name)))


def main() -> None:
    import torch

    from rnnbench import head_loss
    from rnnbench.nn import sparse_input
    from rnnbench.train import manual_step

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="jsb-lstm-10,jsb-gru-10,jsb-lstm-1,jsb-gru-authors-3")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--torch-head", action="store_true")
    p.add_argument("--data-dir", default=str(ROOT / "data"))
    args = p.parse_args()
    torch.set_num_threads(1)
    head_loss._KERNEL = not args.torch_head
    spent: dict = {}
    wrap_pieces(spent)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    hidden = KERNEL_HEADS if args.torch_head else TORCH_HEAD
    names = [n for n in PIECES if n not in hidden]
    print(f"| configuration | total | {' | '.join(names)} | other |")
    print("|---|" + "---:|" * (len(names) + 2))
    for name in args.configs.split(","):
        model, cfg, batches = build(name, args.data_dir)
        run = manual_step.ManualPass(model, cfg)
        with sparse_input.enabled():
            for b in batches:
                run(b.x, b.y, b.mask, None, b.shared)
            spent.clear()
            start = time.process_time()
            for _ in range(args.repeats):
                for b in batches:
                    run(b.x, b.y, b.mask, None, b.shared)
            total = time.process_time() - start
        per = 1e6 / (args.repeats * len(batches))
        parts = [spent.get(n, 0.0) * per for n in names]
        other = total * per - sum(parts)
        cells = " | ".join(f"{v:.0f}" for v in parts)
        print(f"| {name} | {total * per:.0f} | {cells} | {other:.0f} |", flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
