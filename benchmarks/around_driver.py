"""CPU time of a training epoch's Python around the compiled update's numba driver.

    .venv/bin/python benchmarks/around_driver.py [--configs jsb-lstm-1,jsb-gru-authors-3]
        [--epochs 6] [--repeats 2] [--baseline REV]

For each configuration of ``benchmarks/epoch.py`` (a population trained by
:mod:`rnnbench.train.compiled_update`) a worker process builds the population as
:func:`rnnbench.train.population.train_population` does, warms it up, trains one real epoch,
then replaces the driver (``CompiledUpdate.driver``) by a stub that returns the shapes of its
outputs at once (no step taken) and times ``_Population._train_epoch`` ``--epochs`` times in
CPU seconds (``time.process_time``). What is left is everything per update but the driver:
the batches, the gather's plan, the masks, the weight noise's ``normal_`` draws, the
bookkeeping of the loop. It prints the best epoch of each run and the median over
``--repeats`` runs; ``--baseline REV`` runs commit ``REV`` too (exported as
``benchmarks/epoch.py`` exports it), alternating the trees, and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import epoch as epoch_bench  # noqa: E402  (benchmarks/epoch.py: configs and export)


def _stub(real_out):
    """A driver that returns arrays shaped as the real one's outputs for these arguments."""
    import numpy as np

    def driver(*args):
        h0, real = args[18], args[21]
        K, B, H = h0.shape
        rows = np.zeros((K, real.shape[1]), np.float32)
        zeros = np.zeros((K, B, H), np.float32)
        norms = np.zeros(K, real_out[4].dtype)
        total = np.zeros(K, real_out[5].dtype)
        return True, rows, zeros, zeros.copy(), norms, total, True, real_out[7]

    return driver


def worker(name: str, epochs: int, data_dir: str | None) -> dict:
    import numpy as np
    import torch

    from rnnbench.data.registry import load_dataset
    from rnnbench.nn import sparse_input
    from rnnbench.train import population
    from rnnbench.train.config import RunConfig
    from rnnbench.train.warmup import warm_up

    torch.set_num_threads(1)
    dataset_name, unit, members, overrides, _ = epoch_bench.CONFIGS[name]
    overrides = dict(overrides)
    fields = dict(dataset=dataset_name, unit=unit, max_epochs=1000, patience=1000)
    if overrides.get("protocol") == "authors":
        from rnnbench.train.presets import with_preset

        fields = with_preset({**fields, **overrides})
        fields.pop("patience")
        fields["max_epochs"] = 1000
    else:
        fields.update(overrides)
    lrs = np.exp(np.random.default_rng(0).uniform(-9, -6, members)).tolist()
    configs = [RunConfig(**fields, lr=lr, seed=k) for k, lr in enumerate(lrs)]
    dataset = load_dataset(dataset_name, data_dir)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        dirs = [Path(tmp) / f"m{k}" for k in range(members)]
        for d in dirs:
            d.mkdir()
        cfg = configs[0]
        pop = population._Population(
            configs, dirs, [None] * members, dataset=dataset, device=torch.device("cpu"),
            backend="auto", hidden=cfg.hidden or population._paper_hidden(dataset, cfg),
        )  # fmt: skip
        if not pop.compiled:
            raise SystemExit(f"{name}: the compiled update does not run there")
        outputs = []
        real = pop.compiled.driver

        def keep(*args):
            out = real(*args)
            outputs[:] = [out]
            return out

        with sparse_input.enabled():
            warm_up(pop.model, pop.dataset, cfg, pop.device, pop.compiled)
            pop.compiled.driver = keep
            pop._train_epoch(1, None)
            pop.compiled.driver = _stub(outputs[0])
            times = []
            for e in range(2, 2 + epochs):
                start = time.process_time()
                pop._train_epoch(e, None)
                times.append(time.process_time() - start)
    return {"best": min(times), "median": statistics.median(times)}


def run_worker(tree: Path, name: str, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
    command += ["--epochs", str(args.epochs), "--data-dir", str(args.data_dir)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"worker {name} in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="jsb-lstm-1,jsb-gru-authors-3")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline", default=None)
    parser.add_argument("--data-dir", default=str(epoch_bench.ROOT / "data"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.epochs, args.data_dir)))
        return
    trees = {"this": epoch_bench.ROOT}
    if args.baseline:
        trees = {"baseline": epoch_bench.export(args.baseline), **trees}
    print("load average at start:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    found: dict[tuple[str, str], list[float]] = {}
    for name in args.configs.split(","):
        for repeat in range(args.repeats):
            order = list(trees) if repeat % 2 == 0 else list(reversed(trees))
            for tree in order:
                best = run_worker(trees[tree], name, args)["best"]
                found.setdefault((name, tree), []).append(best)
                print(f"  {name} {tree} run {repeat + 1}: {best * 1e3:.1f} CPU ms per epoch")
    print("load average at end:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print("\n| configuration | " + " | ".join(trees) + " | ratio |")
    print("|---|" + "---:|" * (len(trees) + 1))
    for name in args.configs.split(","):
        med = {t: statistics.median(found[(name, t)]) * 1e3 for t in trees}
        ratio = f"{med['baseline'] / med['this']:.2f}x" if "baseline" in med else ""
        print(f"| {name} | " + " | ".join(f"{med[t]:.1f}" for t in trees) + f" | {ratio} |")


if __name__ == "__main__":
    main()
