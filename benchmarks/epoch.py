"""Seconds per training epoch, against the core's peak, optionally against another commit.

    .venv/bin/python benchmarks/epoch.py [--configs jsb-lstm-10,jsb-gru-10,...] [--epochs 3]
        [--repeats 3] [--baseline REV] [--threads 1]

For each configuration (the table of issue 22; ``--configs all`` adds the slow Nottingham and
FSDD-A ones; ``--configs jsb-lstm-seeds-5,jsb-lstm-seeds-5-apart,jsb-lstm-seeds-5-shared``,
named only, times five fresh seeds of one cell as one population against one after another
and against the five reading one shared batch order, in this tree, and prints the seconds per
member-epoch each way) a worker process trains a fresh population with
:func:`rnnbench.train.population.train_population` for ``1 + --epochs`` epochs and times every
epoch (``_Population._one_epoch``: training, validation, metrics and checkpoints); the first
epoch (numba cache loads, first allocations) is dropped and the median of the others is the
run's epoch time. It prints, per configuration:

- the epoch time, the median over ``--repeats`` runs;
- the analytic FLOPs of an epoch: per member and real time step ``2 (G H I + G H H + P H)``
  for the input projection, the recurrence and the output layer (dense, G gates, P head
  parameters), three times that for a training step (forward, and the backward's two
  products) and once per validation step;
- the achieved GFLOP/s and its share of the core's peak, measured in the same run as the best
  one-thread float32 SGEMM of two 2048 x 2048 matrices (``torch.matmul``);
- a breakdown of the epoch, timed by wrapping the code's functions in the worker:
  ``kernels`` (the fused recurrent kernels with their torch glue, forward and backward, in
  training), ``fwd rest`` (the rest of the training forward: input projection, output layer,
  head and loss; with :class:`rnnbench.train.manual_step.ManualPass`, the rest of its forward
  and backward together), ``bwd rest`` (the rest of autograd's backward; 0 with the manual
  pass), ``optimizer`` (clipping,
  the finite check, RMSProp), ``noise`` (drawing, adding and removing the weight noise),
  ``compiled`` (the whole update where :mod:`rnnbench.train.compiled_update` runs it in one
  numba call: the noise's draws, both passes, clipping and RMSProp; the columns before it are
  then 0 but for updates that take the old path), ``eval`` (the validation pass), ``I/O``
  (checkpoints and metrics) and ``other``.

``--baseline REV`` exports commit ``REV`` (``git archive``, into a cache folder per commit, so
its numba kernels compile once) and runs the same workers on it, alternating the two trees
run by run; it prints both and the speed-up (baseline seconds / these seconds), in wall-clock
and in CPU seconds of the worker process (``time.process_time``: with one thread it equals the
wall clock on a quiet machine, and it is far less disturbed by other jobs on a busy one). The
machine's load average is printed at the start and the end: on a shared machine compare
medians.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SEEDS = "fresh seeds"  # an override that is no RunConfig field: how fresh seeds train
# another: train and validate (and test, untimed) on the first 1/n of the sequences, so
# that a paper-size speech epoch (minutes per model) is timed in seconds; the printed times are
# those of the shortened epoch ("CPU s per model-epoch" scales them back: x n / members)
PART = "part of an epoch"
# name: (dataset, unit, members, RunConfig overrides, slow)
CONFIGS = {
    "jsb-lstm-10": ("jsb", "lstm", 10, {"batch_size": 4}, False),
    "jsb-gru-10": ("jsb", "gru", 10, {"batch_size": 4}, False),
    "jsb-lstm-1": ("jsb", "lstm", 1, {"batch_size": 4}, False),
    "jsb-gru-authors-3": ("jsb", "gru", 3, {"protocol": "authors"}, False),
    "nottingham-tanh-4": ("nottingham", "tanh", 4, {"batch_size": 4}, True),
    "fsdd-a-lstm-1": ("fsdd-a", "lstm", 1, {"hidden": 36}, True),  # the table row
    # the target, "FSDD-A LSTM at 20,000 parameters": 61 units give 20,191 recurrent
    # parameters in the paper's convention (`rnnbench params --task speech --budget 20000`, the
    # size `rnnbench ablate --budget 20000` and `reproduce --quick` train)
    "fsdd-a-lstm-20k": ("fsdd-a", "lstm", 1, {"hidden": 61}, True),
    # issue 22, item 3: five fresh seeds of one cell (one rate; seed s reads batch order s), as
    # one population ("together") and as five populations of one, one after another ("apart",
    # how they trained before); "s per epoch" is all five advancing one epoch
    "jsb-lstm-seeds-5": ("jsb", "lstm", 5, {"batch_size": 4, SEEDS: "together"}, False),
    "jsb-lstm-seeds-5-apart": ("jsb", "lstm", 5, {"batch_size": 4, SEEDS: "apart"}, False),
    "nottingham-lstm-seeds-5": (
        "nottingham",
        "lstm",
        5,
        {"batch_size": 4, SEEDS: "together"},
        True,
    ),
    # the same five reading one batch order (data_seed 0): what the per-member batches cost
    "jsb-lstm-seeds-5-shared": ("jsb", "lstm", 5, {"batch_size": 4, SEEDS: "shared"}, False),
}
# issue 23 section 5: the speech cells at the paper's size (Table 1, `rnnbench params --task
# speech`), a search population of 4 and one run (a fresh seed), on 1/16 of FSDD-A's epoch
# (61 of its 976 updates) and 1/8 of FSDD-B's (8 or 9 of its 66 updates of 798 steps)
_PAPER = {"tanh": 400, "gru": 227, "lstm": 195}
for _set, _part in (("fsdd-a", 16), ("fsdd-b", 8)):
    for _unit, _hidden in _PAPER.items():
        for _k in (4, 1):
            CONFIGS[f"{_set}-{_unit}-paper-{_k}"] = (
                _set,
                _unit,
                _k,
                {"hidden": _hidden, PART: _part},
                True,
            )
# FSDD-B's tanh RNN trains only with backpropagation truncated to 200 steps (issue 23 section 5:
# the gradient through 798 steps overflows float32 under the protocol's weight noise)
for _k in (4, 1):
    CONFIGS[f"fsdd-b-tanh-bptt200-paper-{_k}"] = (
        "fsdd-b",
        "tanh",
        _k,
        {"hidden": _PAPER["tanh"], "bptt": 200, PART: 8},
        True,
    )

PARTS = ("kernels", "fwd rest", "bwd rest", "optimizer", "noise", "compiled", "eval", "I/O")


# ---- the worker: runs inside the tree under test (PYTHONPATH=<tree>/src) ----------------------


class _Clock:
    """Wall time per part of the current epoch, by wrapping the code's functions."""

    def __init__(self):
        self.parts: dict[str, float] = {}
        self.depth = 0  # > 0 inside the validation pass: its kernels belong to "eval"
        self.fwd_kernel = self.bwd_kernel = 0.0

    def add(self, part, seconds):
        self.parts[part] = self.parts.get(part, 0.0) + seconds

    def wrap(self, owner, name, part):
        real = getattr(owner, name)

        @functools.wraps(real)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                if self.depth == 0 or part == "eval":
                    self.add(part, time.perf_counter() - start)

        setattr(owner, name, timed)

    def wrap_outer(self, owner, name, part):
        """:meth:`wrap`, less the time of the wrapped parts that run inside the call (the old
        path's pieces, where the compiled update falls back to them)."""
        real = getattr(owner, name)

        @functools.wraps(real)
        def timed(*args, **kwargs):
            start, inner = time.perf_counter(), sum(self.parts.values())
            kernels = self.fwd_kernel + self.bwd_kernel
            try:
                return real(*args, **kwargs)
            finally:
                nested = sum(self.parts.values()) - inner
                nested += self.fwd_kernel + self.bwd_kernel - kernels
                if self.depth == 0:
                    self.add(part, time.perf_counter() - start - nested)

        setattr(owner, name, timed)

    def wrap_eval(self, owner, name):
        real = getattr(owner, name)

        @functools.wraps(real)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            self.depth += 1
            try:
                return real(*args, **kwargs)
            finally:
                self.depth -= 1
                self.add("eval", time.perf_counter() - start)

        setattr(owner, name, timed)

    def wrap_context(self, owner, name, part):
        real = getattr(owner, name)
        clock = self

        @contextlib.contextmanager
        def timed(*args, **kwargs):
            start = time.perf_counter()
            manager = real(*args, **kwargs)
            manager.__enter__()
            clock.add(part, time.perf_counter() - start)
            try:
                yield
            finally:
                start = time.perf_counter()
                manager.__exit__(None, None, None)
                clock.add(part, time.perf_counter() - start)

        setattr(owner, name, timed)


def _kernel_module():
    """The module whose ``forward`` and ``backward`` the custom op calls (looked up at call
    time, so wrapping its attributes times every kernel call)."""
    from rnnbench.nn import ops

    for name in ("numba_backend", "kernels", "glue"):
        module = getattr(ops, name, None)
        if module is not None and hasattr(module, "forward") and hasattr(module, "backward"):
            return module
    raise SystemExit("no fused kernel module found in this tree")


def _instrument(clock: _Clock):
    import torch

    from rnnbench import models
    from rnnbench.train import authors, population, protocol
    from rnnbench.train import checkpoint as ckpt

    kernels = _kernel_module()
    clock.wrap(models.SequenceModel, "nll", "fwd+kernels")
    clock.wrap(torch.Tensor, "backward", "bwd+kernels")
    clock.wrap_context(protocol.WeightNoise, "applied", "noise")
    for owner in (protocol.PopulationRMSProp, authors.AuthorsRMSProp):
        if "step" in vars(owner):
            clock.wrap(owner, "step", "optimizer")
    clock.wrap(population, "clip_member_grad_norms", "optimizer")
    clock.wrap(population, "finite_members", "optimizer")
    clock.wrap_eval(population, "split_nll")
    if hasattr(population._Population, "_write_epoch"):  # the epoch's files in one go (this
        clock.wrap(population._Population, "_write_epoch", "I/O")  # includes last.pt's dicts)
    else:
        clock.wrap(ckpt, "append_metrics", "I/O")
        clock.wrap(ckpt, "save_last", "I/O")
        clock.wrap(population._Population, "_save_best", "I/O")

    try:  # the update without autograd (issue 22): its forward and backward in one call
        from rnnbench.nn.kernels import glue
        from rnnbench.train import manual_step
    except ImportError:
        glue = manual_step = None
    if manual_step is not None:
        clock.wrap(manual_step.ManualPass, "__call__", "pass")
    try:  # the whole update in one numba call (issue 22, seventh session)
        from rnnbench.train import compiled_update
    except ImportError:
        compiled_update = None
    if compiled_update is not None:
        clock.wrap_outer(compiled_update.CompiledUpdate, "__call__", "compiled")

    # split "kernels" into its forward and backward halves to subtract them from their passes
    real_fwd, real_bwd = kernels.forward, kernels.backward

    def fwd(*a, **k):
        start = time.perf_counter()
        try:
            return real_fwd(*a, **k)
        finally:
            if clock.depth == 0:
                clock.fwd_kernel += time.perf_counter() - start

    def bwd(*a, **k):
        start = time.perf_counter()
        try:
            return real_bwd(*a, **k)
        finally:
            clock.bwd_kernel += time.perf_counter() - start

    kernels.forward, kernels.backward = fwd, bwd
    if glue is not None and glue is not kernels:  # the manual pass calls the glue itself
        glue.forward, glue.backward = fwd, bwd


def _flops(model, dataset, members) -> float:
    w_ih, w_hh, w_out = model.weight_ih_l0, model.weight_hh_l0, model.weight_out
    gh, i = w_ih.shape[1:]
    h = w_hh.shape[2]
    p = w_out.shape[1]
    per_step = 2.0 * (gh * i + gh * h + p * h)
    steps = {s: sum(len(q) for q in dataset.split(s)) for s in ("train", "valid")}
    return members * per_step * (3 * steps["train"] + steps["valid"])


def worker(name: str, epochs: int, threads: int, data_dir: str | None) -> dict:
    import numpy as np
    import torch

    from rnnbench.data.registry import load_dataset
    from rnnbench.train import population
    from rnnbench.train.config import RunConfig

    torch.set_num_threads(threads)
    dataset_name, unit, members, overrides, _ = CONFIGS[name]
    overrides = dict(overrides)
    seeds = overrides.pop(SEEDS, None)
    part = overrides.pop(PART, 1)
    dataset = load_dataset(dataset_name, data_dir)
    for split in ("train", "valid", "test"):  # the first 1/part of the sequences (PART)
        seqs = dataset.splits[split]
        dataset.splits[split] = seqs[: max(1, len(seqs) // part)]
    lrs = np.exp(np.random.default_rng(0).uniform(-9, -6, members)).tolist()
    fields = dict(dataset=dataset_name, unit=unit, max_epochs=epochs + 1, patience=1000)
    if overrides.get("protocol") == "authors":
        from rnnbench.train.presets import with_preset

        fields = with_preset({**fields, **overrides})
        fields.pop("patience")
        fields["max_epochs"] = epochs + 1
    else:
        fields.update(overrides)
    configs = [RunConfig(**fields, lr=lr, seed=k) for k, lr in enumerate(lrs)]
    if seeds is not None:  # fresh seeds 1..K of one cell at one rate
        order = (lambda s: 0) if seeds == "shared" else (lambda s: s)
        configs = [
            RunConfig(**fields, lr=1e-3, seed=s, data_seed=order(s)) for s in range(1, members + 1)
        ]
    clock = _Clock()
    _instrument(clock)
    records = []
    real = population._Population._one_epoch

    def one_epoch(self, *args, **kwargs):
        clock.parts, clock.fwd_kernel, clock.bwd_kernel = {}, 0.0, 0.0
        start, cpu = time.perf_counter(), time.process_time()
        out = real(self, *args, **kwargs)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        parts = clock.parts
        kernels = clock.fwd_kernel + clock.bwd_kernel
        if "pass" in parts:  # the manual pass: its forward and backward rest are one column
            rest = (parts["pass"] - kernels, 0.0)
        else:
            rest = (
                parts.get("fwd+kernels", 0.0) - clock.fwd_kernel,
                parts.get("bwd+kernels", 0.0) - clock.bwd_kernel,
            )
        row = {
            "kernels": kernels,
            "fwd rest": rest[0],
            "bwd rest": rest[1],
            **{k: parts.get(k, 0.0) for k in ("optimizer", "noise", "compiled", "eval", "I/O")},
        }
        # noise is timed inside nothing else; the passes run inside the noise block
        row["other"] = seconds - sum(row.values())
        records.append({"seconds": seconds, "cpu": cpu, "parts": row})
        if not hasattr(self, "_flops"):
            self._flops = _flops(self.model, self.dataset, self.k)
            records[-1]["flops"] = self._flops
        return out

    population._Population._one_epoch = one_epoch
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [Path(tmp) / f"m{k}" for k in range(members)]
        if seeds == "apart":  # one population per seed, one after another
            runs = []
            for config, folder in zip(configs, dirs, strict=True):
                records.clear()
                population.train_population([config], out_dirs=[folder], dataset=dataset)
                runs.append(list(records))
            return _one_after_another(runs, members)
        population.train_population(configs, out_dirs=dirs, dataset=dataset)
    timed = records[1:] or records
    return {
        "seconds": statistics.median(r["seconds"] for r in timed),
        "cpu": statistics.median(r["cpu"] for r in timed),
        "parts": {k: statistics.median(r["parts"][k] for r in timed) for k in (*PARTS, "other")},
        "flops": records[0]["flops"],
        "epochs": [r["seconds"] for r in records],
        "model_epoch": statistics.median(r["cpu"] for r in timed) * part / members,
    }


def _one_after_another(runs: list[list[dict]], members: int) -> dict:
    """Populations of one trained one after another: an epoch of all of them is the sum of
    their median epochs (first epochs dropped), part by part."""
    timed = [r[1:] or r for r in runs]

    def total(get) -> float:
        return sum(statistics.median(get(r) for r in run) for run in timed)

    return {
        "seconds": total(lambda r: r["seconds"]),
        "cpu": total(lambda r: r["cpu"]),
        "parts": {k: total(lambda r, k=k: r["parts"][k]) for k in (*PARTS, "other")},
        "flops": runs[0][0]["flops"] * members,
        "epochs": [sum(r[i]["seconds"] for r in runs) for i in range(len(runs[0]))],
    }


# ---- the driver ------------------------------------------------------------------------------


def sgemm_peak(n: int = 2048, tries: int = 5) -> float:
    """Best one-thread float32 GFLOP/s of an n x n matmul."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    torch.set_num_threads(threads)
    return 2.0 * n**3 / best / 1e9


def export(rev: str) -> Path:
    """The source tree of commit ``rev`` in a cache folder (kept: its numba cache too)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    folder = Path(tempfile.gettempdir()) / f"rnnbench-epoch-{sha[:12]}"
    if not (folder / "src" / "rnnbench").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", sha, "src"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout
        with tempfile.TemporaryFile() as f:
            f.write(archive)
            f.seek(0)
            with tarfile.open(fileobj=f) as tar:
                tar.extractall(folder, filter="data")
    return folder


def run_worker(tree: Path, name: str, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
    command += ["--epochs", str(args.epochs), "--threads", str(args.threads)]
    command += ["--data-dir", str(args.data_dir)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"worker {name} in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _seed_lines(names, results, trees) -> None:
    """Fresh seeds together against one after another: seconds per member-epoch, both ways."""
    pairs = [n for n in names if CONFIGS[n][3].get(SEEDS) == "together"]
    for name in pairs:
        for tree in trees:
            k = CONFIGS[name][2]
            row = {}
            for mode in ("together", "apart", "shared"):
                config = name if mode == "together" else f"{name}-{mode}"
                if config in names:
                    runs = results[config][tree]
                    row[mode] = tuple(
                        statistics.median(r[key] for r in runs) / k for key in ("seconds", "cpu")
                    )
            tw, tc = row["together"]
            line = f"{name} ({tree}): per member-epoch {tw:.3f} s wall, {tc:.3f} CPU s together"
            if "apart" in row:
                aw, ac = row["apart"]
                line += (
                    f"; {aw:.3f} s wall, {ac:.3f} CPU s one after another: {aw / tw:.2f}x wall, "
                    f"{ac / tc:.2f}x CPU"
                )
            if "shared" in row:
                sw, sc = row["shared"]
                line += f"; one shared batch order: {sw:.3f} s wall, {sc:.3f} CPU s"
            print("\n" + line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--configs",
        default="quick",
        help="comma-separated names, 'quick' (default: the JSB ones) or 'all'; names: "
        + ", ".join(CONFIGS),
    )
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per run (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="runs per tree and config (default 3)")
    p.add_argument("--baseline", help="a commit to time in the same run, alternating")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--data-dir", default=str(ROOT / "data"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.epochs, args.threads, args.data_dir)))
        return
    if args.configs == "quick":
        names = [n for n, c in CONFIGS.items() if not c[4] and SEEDS not in c[3]]
    elif args.configs == "all":
        names = [n for n, c in CONFIGS.items() if SEEDS not in c[3]]
    else:
        names = args.configs.split(",")
        unknown = sorted(set(names) - set(CONFIGS))
        if unknown:
            raise SystemExit(f"unknown configs {unknown}; choose from {', '.join(CONFIGS)}")
    trees = {"this": ROOT}
    if args.baseline:
        trees = {"baseline": export(args.baseline), "this": ROOT}
        seeds = [n for n in names if SEEDS in CONFIGS[n][3]]
        if seeds and not (trees["baseline"] / "src/rnnbench/train/minibatches.py").exists():
            raise SystemExit(
                f"{', '.join(seeds)} train fresh seeds together, which {args.baseline} (before "
                "issue 22's per-member batches) cannot; leave them out or pick a later baseline"
            )
    print(f"load average at start: {_load()}", flush=True)
    peaks = [sgemm_peak()]
    results: dict[str, dict[str, list[dict]]] = {n: {t: [] for t in trees} for n in names}
    for name in names:
        for rep in range(args.repeats):
            order = list(trees) if rep % 2 == 0 else list(reversed(trees))
            for tree in order:
                r = run_worker(trees[tree], name, args)
                results[name][tree].append(r)
                print(
                    f"  {name} {tree} run {rep + 1}: {r['seconds']:.3f} s/epoch, "
                    f"{r['cpu']:.3f} CPU s "
                    f"(epochs {', '.join(f'{s:.2f}' for s in r['epochs'])}; load {_load()})",
                    flush=True,
                )
    peaks.append(sgemm_peak())
    peak = max(peaks)
    print(f"load average at end: {_load()}")
    print(f"one-thread SGEMM peak (2048^2 float32, best of the run): {peak:.1f} GFLOP/s\n")
    head = "| configuration | tree | s per epoch | CPU s | GFLOP per epoch | GFLOP/s | % of peak |"
    head += " " + " | ".join(PARTS) + " | other |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name in names:
        for tree in trees:
            runs = results[name][tree]
            seconds = statistics.median(r["seconds"] for r in runs)
            cpu = statistics.median(r["cpu"] for r in runs)
            flops = runs[0]["flops"]
            parts = {k: statistics.median(r["parts"][k] for r in runs) for k in (*PARTS, "other")}
            rate = flops / seconds / 1e9
            cells = " | ".join(f"{parts[k]:.3f}" for k in (*PARTS, "other"))
            print(
                f"| {name} | {tree} | {seconds:.3f} | {cpu:.3f} | {flops / 1e9:.2f} | {rate:.1f} | "
                f"{100 * rate / peak:.1f}% | {cells} |"
            )
    _seed_lines(names, results, trees)
    if args.baseline:
        print()
        for name in names:
            base = statistics.median(r["seconds"] for r in results[name]["baseline"])
            this = statistics.median(r["seconds"] for r in results[name]["this"])
            base_cpu = statistics.median(r["cpu"] for r in results[name]["baseline"])
            this_cpu = statistics.median(r["cpu"] for r in results[name]["this"])
            pairs = [
                b["seconds"] / t["seconds"]
                for b, t in zip(results[name]["baseline"], results[name]["this"], strict=True)
            ]
            print(
                f"{name}: {base:.3f} -> {this:.3f} s per epoch, speed-up {base / this:.2f}x "
                f"(per alternating pair: {', '.join(f'{x:.2f}' for x in pairs)}); CPU seconds "
                f"{base_cpu:.3f} -> {this_cpu:.3f}, {base_cpu / this_cpu:.2f}x"
            )
    parts = [n for n in names if CONFIGS[n][3].get(PART, 1) != 1]
    if parts:  # the shortened epochs scaled to a whole epoch of one model
        print("\nCPU s per model-epoch (a whole epoch, per member; PART):")
        for name in parts:
            cells = [
                f"{tree} {statistics.median(r['model_epoch'] for r in results[name][tree]):.2f}"
                for tree in trees
            ]
            print(f"  {name}: {', '.join(cells)}")


if __name__ == "__main__":
    main()
