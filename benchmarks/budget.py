"""What an epoch of each study cell costs with this tree, and what the open cells have left.

    .venv/bin/python benchmarks/budget.py [--sets jsb nottingham musedata pianomidi]
        [--units tanh gru lstm] [--protocol paper|authors] [--search 10] [--seeds 5]
        [--exports docs/results/grid] [--threads 1]

Issue 22 asks that the studies' budgets be priced with the trainer of the day. For each data
set and unit (the paper's forms and sizes) a fresh worker process trains, with
:func:`rnnbench.train.population.train_population`, two populations for two epochs each and
times the second epoch (the first loads numba's cache and allocates):

- the learning-rate search: ``--search`` members, one batch order (seed 0's), rates drawn from
  the paper's range (the rate changes the arithmetic of no step);
- the fresh seeds: ``--seeds`` members at one rate, seed s reading batch order s (issue 22:
  a cell's fresh seeds train as one population).

It prints the worker's CPU seconds (``time.process_time``; with one thread this is the wall
clock of a quiet core, and far steadier than the wall clock on a shared machine) and wall
seconds per epoch of each population, and a cell's cost at the epoch cap (``max_epochs``
epochs of each population: an upper bound, since early stopping ends most populations
sooner). With ``--exports FOLDER`` (a committed report folder: ``store-runs.csv`` and
``store-epochs.csv``) it also prices what each unfinished cell has left: the search
population's epochs still to go to the cap (from its furthest recorded epoch) and, if the
seeds have not finished, their population to the cap, at this tree's CPU seconds per epoch.
The machine's load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNFINISHED = {"queued", "running", "failed"}


def worker(
    dataset_name: str, unit: str, members: int, seeds: bool, protocol: str, threads: int
) -> dict:
    """Train one population for two epochs in this process; the second epoch's times."""
    import numpy as np
    import torch

    from rnnbench.data.registry import load_dataset
    from rnnbench.train import population
    from rnnbench.train.config import RunConfig
    from rnnbench.train.presets import with_preset

    torch.set_num_threads(threads)
    dataset = load_dataset(dataset_name)
    fields = {"dataset": dataset_name, "unit": unit}
    if protocol == "authors":
        fields = with_preset({**fields, "protocol": "authors"})
    fields.update(max_epochs=2, patience=1000)
    if seeds:
        configs = [RunConfig(**fields, lr=1e-4, seed=s, data_seed=s) for s in range(1, members + 1)]
    else:
        lrs = np.exp(np.random.default_rng(0).uniform(-9, -6, members)).tolist()
        configs = [RunConfig(**fields, lr=lr, seed=0) for lr in lrs]
    times = []
    real = population._Population._one_epoch

    def one_epoch(self, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        out = real(self, *args, **kwargs)
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
        return out

    population._Population._one_epoch = one_epoch
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [Path(tmp) / f"m{k}" for k in range(members)]
        population.train_population(configs, out_dirs=dirs, dataset=dataset)
    wall, cpu = times[-1]
    return {"wall": wall, "cpu": cpu, "epochs": len(times)}


def _measure(args, dataset: str, unit: str, members: int, seeds: bool) -> dict:
    """Run :func:`worker` in a fresh process on this tree."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import budget; "
        "print(json.dumps(budget.worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), "
        "sys.argv[5] == '1', sys.argv[6], int(sys.argv[7]))))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(args.threads)
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).resolve().parent), dataset, unit]
        + [str(members), "1" if seeds else "0", args.protocol, str(args.threads)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"worker {dataset} {unit} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def left_in_exports(folder: Path, protocol: str) -> dict[tuple[str, str], dict]:
    """Per (data set, unit): the epoch cap, the search's furthest epoch and whether it finished,
    and each fresh seed's ``(finished, furthest epoch)``."""
    with open(folder / "store-runs.csv", newline="", encoding="utf-8") as f:
        runs = list(csv.DictReader(f))
    furthest: dict[str, int] = {}
    with open(folder / "store-epochs.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            furthest[row["key"]] = max(furthest.get(row["key"], 0), int(row["epoch"]))
    cells: dict[tuple[str, str], dict] = {}
    for run in runs:
        config = json.loads(run["config"])
        if (config.get("protocol") or "paper") != protocol:
            continue
        cell = cells.setdefault(
            (run["dataset"], run["unit"]),
            {"cap": int(run["max_epochs"] or 500), "search": 0, "search_done": True, "seeds": []},
        )
        if run["stage"] == "seeds":
            cell["seeds"].append((run["status"] not in UNFINISHED, furthest.get(run["key"], 0)))
        else:
            cell["search"] = max(cell["search"], furthest.get(run["key"], 0))
            cell["search_done"] &= run["status"] not in UNFINISHED
    return cells


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=["jsb", "nottingham", "musedata", "pianomidi"])
    parser.add_argument("--units", nargs="+", default=["tanh", "gru", "lstm"])
    parser.add_argument("--protocol", choices=["paper", "authors"], default="paper")
    parser.add_argument("--search", type=int, default=10, help="search population size")
    parser.add_argument("--seeds", type=int, default=5, help="fresh seeds, one population")
    parser.add_argument("--exports", type=Path, help="a committed report folder to price")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cap", type=int, default=500, help="epoch cap of a cell's runs")
    args = parser.parse_args(argv)
    print(f"load average at the start: {os.getloadavg()[0]:.2f}", flush=True)
    print(
        f"protocol {args.protocol}; search population {args.search}, seeds population "
        f"{args.seeds}; {args.threads} thread(s); seconds per epoch (CPU / wall)"
    )
    cost: dict[tuple[str, str], tuple[float, float]] = {}
    print(
        "| data set | unit | search: CPU s | wall s | seeds: CPU s | wall s | cell at cap, CPU h |"
    )
    print("|---|---|---:|---:|---:|---:|---:|", flush=True)
    for dataset in args.sets:
        for unit in args.units:
            search = _measure(args, dataset, unit, args.search, seeds=False)
            seeds = _measure(args, dataset, unit, args.seeds, seeds=True)
            cost[(dataset, unit)] = (search["cpu"], seeds["cpu"])
            at_cap = args.cap * (search["cpu"] + seeds["cpu"]) / 3600
            print(
                f"| {dataset} | {unit} | {search['cpu']:.2f} | {search['wall']:.2f} | "
                f"{seeds['cpu']:.2f} | {seeds['wall']:.2f} | {at_cap:.2f} |",
                flush=True,
            )
    if args.exports:
        print(f"\nleft in {args.exports} at this tree's CPU seconds per epoch (at most):")
        print(
            "| data set | unit | search epochs left | seeds | CPU h left |\n|---|---|---:|---|---:|"
        )
        total = 0.0
        cells = left_in_exports(args.exports, args.protocol)
        for key, (search_s, seeds_s) in cost.items():
            cell = cells.get(key, {"cap": args.cap, "search": 0, "search_done": False, "seeds": []})
            search_left = 0 if cell["search_done"] else cell["cap"] - cell["search"]
            seeds_done = len(cell["seeds"]) > 0 and all(done for done, _ in cell["seeds"])
            reached = max((e for done, e in cell["seeds"] if not done), default=0)
            seeds_left = 0 if seeds_done else cell["cap"] - reached
            hours = (search_left * search_s + seeds_left * seeds_s) / 3600
            total += hours
            what = "finished" if seeds_done else f"to train (≤ {seeds_left} epochs)"
            print(f"| {key[0]} | {key[1]} | {search_left} | {what} | {hours:.2f} |")
        print(f"| all | | | | {total:.2f} |")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
