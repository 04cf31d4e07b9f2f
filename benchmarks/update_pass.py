"""CPU time of one training update's forward and backward pass: autograd against the manual pass.

    .venv/bin/python benchmarks/update_pass.py [--configs jsb-lstm-10,jsb-gru-10,...] [--repeats 10]

For each configuration of ``benchmarks/epoch.py``'s JSB table it builds the population's model
(paper initialisation, one thread), takes the first 20 training updates of epoch 1 and times
``rnnbench.train.manual_step.AutogradPass`` (``SequenceModel.nll`` and ``backward``) and
``ManualPass`` (the same pieces without autograd) on them, the latter twice: with the
Bernoulli head's numba pass (``head_loss.bernoulli_pass``, as the trainer runs it) and with
the head in torch ops (``head_loss._KERNEL`` off, as before it), alternating block by block
(``--repeats`` blocks each), inside ``sparse_input.enabled()`` as the trainer runs them. It
prints the median CPU milliseconds (``time.process_time``) per update of each and the ratios.
No weight noise, clipping or optimizer step: the pass alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from epoch import CONFIGS, PART  # noqa: E402


def build(name: str, data_dir: str):
    """The population's model (paper initialisation), its first config and the first 20
    training updates of epoch 1, for ``CONFIGS[name]``."""
    import torch

    from rnnbench.data.registry import load_dataset
    from rnnbench.train import population
    from rnnbench.train.config import RunConfig
    from rnnbench.train.minibatches import population_batches

    dataset_name, unit, members, overrides, _ = CONFIGS[name]
    overrides = {k: v for k, v in overrides.items() if k != PART}  # whole epochs' batches here
    fields = dict(dataset=dataset_name, unit=unit, max_epochs=3, patience=1000)
    if overrides.get("protocol") == "authors":
        from rnnbench.train.presets import with_preset

        fields = with_preset({**fields, **overrides})
        fields.pop("patience")
    else:
        fields.update(overrides)
    configs = [RunConfig(**fields, lr=1e-3, seed=k) for k in range(members)]
    dataset = load_dataset(dataset_name, data_dir)
    hidden = population._paper_hidden(dataset, configs[0])
    model = population._build_model(
        configs, dataset, hidden=hidden, device=torch.device("cpu"), backend="auto"
    )
    batches = list(population_batches(dataset.split("train"), configs, 1))[:20]
    return model, configs[0], batches


def measure(name: str, repeats: int, data_dir: str) -> tuple[float, float, float]:
    from rnnbench import head_loss
    from rnnbench.nn import sparse_input
    from rnnbench.train import manual_step

    model, config, batches = build(name, data_dir)
    classes = (manual_step.AutogradPass, manual_step.ManualPass, manual_step.ManualPass)
    passes = [cls(model, config) for cls in classes]
    kernel = (True, False, True)  # the torch head's ops, then the Bernoulli kernel

    def block(i: int) -> float:
        run = passes[i]
        head_loss._KERNEL = kernel[i]
        start = time.process_time()
        for b in batches:
            for p in model.parameters():
                p.grad = None
            run(b.x, b.y, b.mask, None, b.shared)
        return (time.process_time() - start) / len(batches) * 1e3

    times: list[list[float]] = [[], [], []]
    try:
        with sparse_input.enabled():
            for i in range(len(passes)):  # numba cache loads, first allocations
                block(i)
            for _ in range(repeats):
                for i in range(len(passes)):
                    times[i].append(block(i))
    finally:
        head_loss._KERNEL = True
    auto, torch_head, fused = (statistics.median(t) for t in times)
    return auto, torch_head, fused


def main() -> None:
    import os

    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="jsb-lstm-10,jsb-gru-10,jsb-lstm-1,jsb-gru-authors-3")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--data-dir", default=str(ROOT / "data"))
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        "| configuration | autograd CPU ms per update | manual, torch head | manual, head kernel "
        "| autograd / manual | torch head / head kernel |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.configs.split(","):
        auto, torch_head, fused = measure(name, args.repeats, args.data_dir)
        print(
            f"| {name} | {auto:.3f} | {torch_head:.3f} | {fused:.3f} | {auto / fused:.2f}x "
            f"| {torch_head / fused:.2f}x |"
        )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
