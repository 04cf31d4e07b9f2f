"""CPU time of the compiled update's driver and of its parts outside the recurrent passes.

    .venv/bin/python benchmarks/driver_parts.py [--configs jsb-gru-10,jsb-lstm-10]
        [--updates 40] [--repeats 5] [--rounds 3] [--baseline REV]

For each configuration of ``benchmarks/epoch.py`` (a population trained by
:mod:`rnnbench.train.compiled_update`) the script builds the population as
:func:`rnnbench.train.population.train_population` does, warms it up, trains one real epoch
while keeping the driver's arguments of its first ``--updates`` updates, then times, in CPU
microseconds per update (``time.process_time``, the best of ``--repeats`` rounds over the kept
updates, on copies of everything the driver writes):

- ``driver``: the whole driver call (noise, passes, norms, clip, finite check, RMSProp);
- ``gather``: the members' input projections by the gather (``compiled_driver._gather``);
- ``scatter``: its transpose, ``sparse_input._scatter_bias``, per member (zero gradients);
- ``noise``: the noisy weights and their finite check (``compiled_driver._front``);
- ``sums``: the float64 NLL sums (``_sums``);
- ``step``: the RMSProp step over all members at once (``step``, on the update's gradients).

The parts are timed alone, on arrays that are out of cache as they were when the driver took
them all after the passes; the driver's own figure is what counts. Each configuration runs in
a worker process per tree, ``--rounds`` times; ``--baseline REV`` runs commit ``REV`` too
(exported as ``benchmarks/epoch.py`` exports it), alternating the trees, and prints the
medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import epoch as epoch_bench  # noqa: E402  (benchmarks/epoch.py: configs)


def _population(name: str, data_dir: str, tmp: str):
    import numpy as np
    import torch

    from rnnbench.data.registry import load_dataset
    from rnnbench.train import population
    from rnnbench.train.config import RunConfig

    torch.set_num_threads(1)
    dataset_name, unit, members, overrides, _ = epoch_bench.CONFIGS[name]
    fields = dict(dataset=dataset_name, unit=unit, max_epochs=1000, patience=1000, **overrides)
    lrs = np.exp(np.random.default_rng(0).uniform(-9, -6, members)).tolist()
    configs = [RunConfig(**fields, lr=lr, seed=k) for k, lr in enumerate(lrs)]
    dataset = load_dataset(dataset_name, data_dir)
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
    return pop, cfg


def _copy(x):
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.copy()
    if isinstance(x, tuple):
        return tuple(_copy(v) for v in x)
    return x


def _time(fn, calls, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for args in calls:
            fn(*args)
        best = min(best, time.process_time() - start)
    return best / len(calls) * 1e6


def _gathers():
    """The gather of every member of an update, as the driver runs it (one jitted loop)."""
    import numba

    from rnnbench.train import compiled_driver as cd

    @numba.njit
    def gathers(w_ih, b_ih, keys, ends, K, T, B):
        for k in range(K):
            cd._gather(w_ih, b_ih, keys, ends, k, T, B)

    return gathers


def _scatters():
    """The gather's transpose (``sparse_input._scatter_bias``) of every member of an update,
    on zero gradients."""
    import numba
    import numpy as np

    from rnnbench.nn import sparse_input
    from rnnbench.train import compiled_driver as cd

    @numba.njit
    def scatters(w_ih, b_ih, keys, ends, K, T, B):
        GH, I = w_ih.shape[1], w_ih.shape[2]
        d = np.zeros((1, T * B, GH), np.float32)
        for k in range(K):
            kk, ee = cd._member_keys(keys, ends, k)
            sparse_input._scatter_bias(d, kk, ee, I)

    return scatters


def run(name: str, updates: int, repeats: int, data_dir: str) -> dict:
    from rnnbench.nn import sparse_input
    from rnnbench.nn.kernels import glue
    from rnnbench.train import compiled_driver as cd
    from rnnbench.train.warmup import warm_up

    with tempfile.TemporaryDirectory() as tmp:
        pop, cfg = _population(name, data_dir, tmp)
        kept = []
        real = pop.compiled.driver

        def keep(*args):
            if len(kept) < updates:
                kept.append(_copy(args))
            return real(*args)

        with sparse_input.enabled():
            warm_up(pop.model, pop.dataset, cfg, pop.device, pop.compiled)
            pop.compiled.driver = keep
            pop._train_epoch(1, None)

        def driver(*args):  # numba's BLAS on one thread, as the update runs it
            return glue._call(0, real, *args)

        calls = [_copy(a) for a in kept]
        outs = [driver(*a) for a in calls]
        # argument positions: compiled_driver.lstm_update's signature
        fronts = [a[:7] for a in calls]
        sums = [(o[1],) for o in outs]
        steps = [(o[7], *a[23:34], a[34], a[36]) for a, o in zip(calls, outs, strict=True)]
        gathers = [(a[6], a[7], a[13], a[14], *a[15].shape) for a in calls]
        found = {
            "driver": _time(driver, calls, repeats),
            "gather": _time(_gathers(), gathers, repeats),
            "scatter": _time(_scatters(), gathers, repeats),
            "noise": _time(cd._front, fronts, repeats),
            "sums": _time(cd._sums, sums, repeats),
            "step": _time(cd.step, steps, repeats),
        }
    return found


def _worker(tree: Path, name: str, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
    command += ["--updates", str(args.updates), "--repeats", str(args.repeats)]
    command += ["--data-dir", args.data_dir]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"worker {name} in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="jsb-gru-10,jsb-lstm-10")
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default=None)
    parser.add_argument("--data-dir", default=str(epoch_bench.ROOT / "data"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run(args.worker, args.updates, args.repeats, args.data_dir)))
        return
    trees = {"this": epoch_bench.ROOT}
    if args.baseline:
        trees = {"baseline": epoch_bench.export(args.baseline), **trees}
    print("load average at start:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    found: dict[tuple[str, str], list[dict]] = {}
    for name in args.configs.split(","):
        for r in range(args.rounds):
            for tree in list(trees) if r % 2 == 0 else list(reversed(trees)):
                parts = _worker(trees[tree], name, args)
                found.setdefault((name, tree), []).append(parts)
                shown = ", ".join(f"{k} {v:.0f}" for k, v in parts.items())
                print(f"  {name} {tree} round {r + 1}: {shown} µs per update")
    print("load average at end:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print("\n| configuration | part | " + " | ".join(trees) + " | ratio |")
    print("|---|---|" + "---:|" * (len(trees) + 1))
    for name in args.configs.split(","):
        for part in found[(name, "this")][0]:
            med = {t: statistics.median(p[part] for p in found[(name, t)]) for t in trees}
            ratio = f"{med['baseline'] / med['this']:.2f}x" if "baseline" in med else ""
            cells = " | ".join(f"{med[t]:.0f}" for t in trees)
            print(f"| {name} | {part} | {cells} | {ratio} |")


if __name__ == "__main__":
    main()
