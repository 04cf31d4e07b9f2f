"""The validation pass of a music population, compiled against the old path, in CPU time.

For each configuration of ``benchmarks/epoch.py`` that the compiled pass covers
(:mod:`rnnbench.train.compiled_eval`), this builds the population's model as the trainer does
(its RunConfig's hidden size, its members' seeds), and times ``split_nll`` on the validation
split as an epoch runs it (inside ``sparse_input.enabled()``, one thread), alternating the
compiled pass and the old batch loop (``compiled_eval.off()``), ``--rounds`` times each; it
prints the median CPU ms per pass of each and their ratio, after checking that both give
the same NLLs bit for bit. The load average is printed at the start and the end.

    PYTHONPATH=$PWD/src python benchmarks/eval_pass.py --configs jsb-lstm-1,jsb-lstm-10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from epoch import CONFIGS  # noqa: E402


def _model(name: str):
    import numpy as np

    from rnnbench.data.registry import load_dataset
    from rnnbench.train import population
    from rnnbench.train.config import RunConfig
    from rnnbench.train.presets import with_preset

    dataset_name, unit, members, overrides, _ = CONFIGS[name]
    dataset = load_dataset(dataset_name)
    fields = dict(dataset=dataset_name, unit=unit, **overrides)
    if overrides.get("protocol") == "authors":
        fields = with_preset(fields)
    lrs = np.exp(np.random.default_rng(0).uniform(-9, -6, members)).tolist()
    configs = [RunConfig(**fields, lr=lr, seed=k) for k, lr in enumerate(lrs)]
    hidden = configs[0].hidden or population._paper_hidden(dataset, configs[0])
    model = population._build_model(configs, dataset, hidden=hidden, device="cpu", backend="auto")
    return model.eval(), dataset.split("valid")


def main() -> None:
    import torch

    from rnnbench.nn import sparse_input
    from rnnbench.train import compiled_eval
    from rnnbench.train.metrics import split_nll

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="jsb-lstm-1,jsb-gru-authors-3,jsb-lstm-10,jsb-gru-10")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("load average at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    print("| configuration | old CPU ms | compiled CPU ms | ratio |")
    print("|---|---:|---:|---:|")
    for name in args.configs.split(","):
        model, valid = _model(name)
        times = {True: [], False: []}
        with sparse_input.enabled():
            new = split_nll(model, valid)  # compiles or loads
            with compiled_eval.off():
                old = split_nll(model, valid)
            assert torch.equal(new, old), f"{name}: the compiled pass differs"
            for _ in range(args.rounds):
                for on in (True, False):
                    start = time.process_time()
                    if on:
                        split_nll(model, valid)
                    else:
                        with compiled_eval.off():
                            split_nll(model, valid)
                    times[on].append(time.process_time() - start)
        old_ms, new_ms = (1e3 * statistics.median(times[on]) for on in (False, True))
        print(f"| {name} | {old_ms:.1f} | {new_ms:.1f} | {old_ms / new_ms:.2f}x |")
    print("load average at end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
