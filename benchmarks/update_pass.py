"""CPU time of one training update's forward and backward pass: autograd against the manual pass.

    .venv/bin/python benchmarks/update_pass.py [--configs jsb-lstm-10,jsb-gru-10,...] [--repeats 10]

For each configuration of ``benchmarks/epoch.py``'s JSB table it builds the population's model
(paper initialisation, one thread), takes the first 20 training updates of epoch 1 and times
``rnnbench.train.manual_step.AutogradPass`` (``SequenceModel.nll`` and ``backward``) and
``ManualPass`` (the same pieces without autograd) on them, alternating block by block
(``--repeats`` blocks each), inside ``sparse_input.enabled()`` as the trainer runs them. It
prints the median CPU milliseconds (``time.process_time``) per update of each and their ratio.
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

from epoch import CONFIGS  # noqa: E402


def measure(name: str, repeats: int, data_dir: str) -> tuple[float, float]:
    import torch

    from rnnbench.data.registry import load_dataset
    from rnnbench.nn import sparse_input
    from rnnbench.train import manual_step, population
    from rnnbench.train.config import RunConfig
    from rnnbench.train.minibatches import population_batches

    dataset_name, unit, members, overrides, _ = CONFIGS[name]
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
    passes = [cls(model, configs[0]) for cls in (manual_step.AutogradPass, manual_step.ManualPass)]

    def block(run) -> float:
        start = time.process_time()
        for b in batches:
            for p in model.parameters():
                p.grad = None
            run(b.x, b.y, b.mask, None, b.shared)
        return (time.process_time() - start) / len(batches) * 1e3

    times: list[list[float]] = [[], []]
    with sparse_input.enabled():
        for run in passes:  # numba cache loads, first allocations
            block(run)
        for _ in range(repeats):
            for i, run in enumerate(passes):
                times[i].append(block(run))
    return statistics.median(times[0]), statistics.median(times[1])


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
    print("| configuration | autograd CPU ms per update | manual CPU ms | ratio |")
    print("|---|---:|---:|---:|")
    for name in args.configs.split(","):
        auto, manual = measure(name, args.repeats, args.data_dir)
        print(f"| {name} | {auto:.3f} | {manual:.3f} | {auto / manual:.2f}x |")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
