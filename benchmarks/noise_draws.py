"""The weight noise's draws per epoch: torch's ``normal_`` calls against noise_stream's numba.

Trains each configuration of ``benchmarks/epoch.py`` (the same populations, rates and data)
twice per repeat in one process, :mod:`rnnbench.train.noise_stream` on and off, alternating,
and prints the CPU seconds spent inside ``noise_stream.draw`` per epoch (the min over
repeats), the numbers drawn and the ratio, all measured in the same run:

    PYTHONPATH=src .venv/bin/python benchmarks/noise_draws.py [--configs jsb-lstm-10,...]
        [--epochs 2] [--repeats 2]

Both ways draw the very same numbers (the runs end bit for bit the same).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import epoch  # noqa: E402  (benchmarks/epoch.py: the configurations)


def _configs(name: str, epochs: int):
    import numpy as np

    from rnnbench.train.config import RunConfig
    from rnnbench.train.presets import with_preset

    dataset_name, unit, members, overrides, _ = epoch.CONFIGS[name]
    if epoch.SEEDS in overrides or overrides.get(epoch.PART, 1) != 1:
        raise SystemExit(f"{name}: choose a configuration of rates (not seeds or parts)")
    lrs = np.exp(np.random.default_rng(0).uniform(-9, -6, members)).tolist()
    fields = dict(dataset=dataset_name, unit=unit, max_epochs=epochs, patience=1000)
    if overrides.get("protocol") == "authors":
        fields = with_preset({**fields, **overrides})
        fields.pop("patience")
        fields["max_epochs"] = epochs
    else:
        fields.update(overrides)
    return dataset_name, [RunConfig(**fields, lr=lr, seed=k) for k, lr in enumerate(lrs)]


def main() -> None:
    import torch

    from rnnbench.data.registry import load_dataset
    from rnnbench.train import noise_stream, population

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="jsb-gru-authors-3,jsb-lstm-10,jsb-lstm-1")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--data-dir", default=str(ROOT.parent / "data"))
    args = p.parse_args()
    torch.set_num_threads(1)
    spent = {"cpu": 0.0, "calls": 0, "numbers": 0}
    real = noise_stream.draw

    def timed(generators, fast, members=None):
        start = time.process_time()
        real(generators, fast, members)
        spent["cpu"] += time.process_time() - start
        spent["calls"] += 1
        spent["numbers"] += sum(p.numel() for k, parts in enumerate(fast["draws"])
                                if members is None or members[k] for p in parts)  # fmt: skip

    noise_stream.draw = timed
    print(f"noise_stream usable here: {noise_stream.usable()}")
    for name in args.configs.split(","):
        dataset_name, configs = _configs(name, args.epochs)
        dataset = load_dataset(dataset_name, args.data_dir)
        best = {}
        for _ in range(args.repeats):
            for enabled in (False, True):
                noise_stream._ENABLED = enabled
                spent.update(cpu=0.0, calls=0, numbers=0)
                with tempfile.TemporaryDirectory() as tmp:
                    dirs = [Path(tmp) / c.key() for c in configs]
                    population.train_population(configs, out_dirs=dirs, dataset=dataset)
                per_epoch = {k: v / args.epochs for k, v in spent.items()}
                if enabled not in best or per_epoch["cpu"] < best[enabled]["cpu"]:
                    best[enabled] = per_epoch
        old, new = best[False], best[True]
        print(
            f"{name}: {old['numbers'] / 1e6:.2f} M numbers in {old['calls']:.0f} calls per "
            f"epoch; torch {old['cpu'] * 1e3:.1f} ms ({old['cpu'] / old['numbers'] * 1e9:.2f} "
            f"ns/number), noise_stream {new['cpu'] * 1e3:.1f} ms "
            f"({new['cpu'] / new['numbers'] * 1e9:.2f} ns/number): {old['cpu'] / new['cpu']:.2f}x",
            flush=True,
        )
    noise_stream._ENABLED = True


if __name__ == "__main__":
    main()
