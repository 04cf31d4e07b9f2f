"""What weight noise costs a trained model, in NLL per step, and which layer's noise costs it.

For each run folder, the best checkpoint (``best.pt``) is scored on the first ``--sequences``
training sequences: clean, then with Gaussian noise of the run's ``weight_noise`` σ on every
noised matrix (what training sees), on the recurrent layer only (the authors' code), and on
the output layer only; each noisy score is the mean of ``--draws`` fresh draws::

    .venv/bin/python scripts/noise_cost.py RUN_DIR [RUN_DIR ...]

The results are in docs/training.md ("What weight noise costs").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from rnnbench.data.registry import load_dataset
from rnnbench.errors import RnnbenchError
from rnnbench.models import SequenceModel
from rnnbench.train import checkpoint as ckpt
from rnnbench.train.config import RunConfig
from rnnbench.train.metrics import split_nll
from rnnbench.train.protocol import WeightNoise

PLACES = ("all", "recurrent", "output")


def load_best(run_dir: Path, dataset) -> tuple[RunConfig, SequenceModel, int]:
    """The run's config, its best state as a population of one, and that state's epoch."""
    path = Path(run_dir) / ckpt.BEST
    if not path.exists():
        raise RnnbenchError(f"{run_dir} has no {ckpt.BEST}; train the run for an epoch first.")
    state = ckpt.load(path)
    cfg = RunConfig.from_dict(state["config"])
    model = SequenceModel(
        cfg.unit,
        dataset.in_dim,
        dataset.out_dim,
        int(state["hidden"]),
        head=dataset.head,
        population=1,
        peephole=cfg.peephole,
        reset=cfg.reset,
        init=cfg.init,
        seeds=[cfg.seed],
    )
    model.load_member_state(0, state["member_state"])
    return cfg, model.eval(), int(state["epoch"])


def places(model: SequenceModel) -> dict[str, list[torch.nn.Parameter]]:
    """The matrices each score puts noise on: all of them, the recurrent layer's, the output's."""
    recurrent = model.weight_matrices(output=False)
    every = model.weight_matrices(output=True)
    output = [w for w in every if all(w is not r for r in recurrent)]
    return {"all": every, "recurrent": recurrent, "output": output}


def noise_cost(model: SequenceModel, seqs, *, sigma: float, draws: int, seed: int = 0) -> dict:
    """NLL per step on ``seqs``: clean, and with noise on each set of matrices (mean of draws)."""
    scores = {"clean": float(split_nll(model, seqs))}
    for place, weights in places(model).items():
        noise = WeightNoise([seed], sigma)
        values = []
        for _ in range(draws):
            with torch.no_grad(), noise.applied(weights):
                values.append(float(split_nll(model, seqs)))
        scores[place] = sum(values) / draws
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--sequences", type=int, default=300, help="training sequences scored")
    parser.add_argument("--draws", type=int, default=3, help="noise draws per score")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    datasets = {}
    if not args.json:
        print("| run | data set | unit | lr | epoch | clean | all | recurrent only | output only |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for run_dir in args.runs:
        name = json.loads((run_dir / ckpt.CONFIG).read_text())["dataset"]
        if name not in datasets:
            datasets[name] = load_dataset(name, data_dir=args.data_dir)
        dataset = datasets[name]
        cfg, model, epoch = load_best(run_dir, dataset)
        seqs = dataset.split("train")[: args.sequences]
        scores = noise_cost(model, seqs, sigma=cfg.weight_noise, draws=args.draws)
        if args.json:
            print(
                json.dumps({"run": run_dir.name, "config": cfg.to_dict(), "epoch": epoch, **scores})
            )
        else:
            cells = " | ".join(f"{scores[p]:.2f}" for p in ("clean", *PLACES))
            print(f"| {run_dir.name} | {name} | {cfg.unit} | {cfg.lr:.3g} | {epoch} | {cells} |")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RnnbenchError as exc:
        print(f"noise_cost: {exc}", file=sys.stderr)
        sys.exit(2)
