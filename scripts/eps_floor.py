"""How often RMSProp's ε = 0.01 floor binds at initialisation, per cost scale.

For each music set and unit (paper sizes, ``init="paper"``, seed 0) the gradients of the first
30 training sequences (batch 1, in the epoch-1 order of ``data_seed`` 0) are taken with the
cost summed over steps and notes (the authors' code) and per step (the paper protocol, with
the gradient clipped to norm 1); the root-mean-square over those 30 gradients stands in for
√v. Printed: its median over all weights and the share of weights with RMS below 0.01, whose
RMSProp step the floor would set (weights of notes that never sound have RMS 0 and count)::

    RNNBENCH_DATA=/path/to/data python scripts/eps_floor.py

The results are in docs/training.md ("The authors' protocol preset").
"""

from __future__ import annotations

import torch

from rnnbench.data.batching import iterate_batches
from rnnbench.data.registry import load_dataset
from rnnbench.models import SequenceModel, paper_hidden

SEQUENCES = 30


def main() -> None:
    torch.set_num_threads(1)
    for name in ("jsb", "nottingham"):
        ds = load_dataset(name)
        for unit in ("tanh", "gru", "lstm"):
            model = SequenceModel(
                unit,
                ds.in_dim,
                ds.out_dim,
                paper_hidden("music", unit),
                head=ds.head,
                population=1,
                peephole=unit == "lstm",
                init="paper",
                seeds=[0],
            )
            sq: dict[str, torch.Tensor] = {}
            batches = iterate_batches(ds.split("train"), 1, seed=0, epoch=1)
            for _, batch in zip(range(SEQUENCES), batches, strict=False):
                for mode in ("sum", "step"):
                    model.zero_grad()
                    total, n, _ = model.nll(batch.x, batch.y, batch.mask)
                    (total if mode == "sum" else total / n).sum().backward()
                    g = torch.cat([p.grad.flatten() for p in model.parameters()])
                    if mode == "step":
                        g = g * min(1.0, 1.0 / g.norm().item())
                    sq[mode] = sq.get(mode, 0) + g * g
            for mode, total in sq.items():
                rms = (total / SEQUENCES).sqrt()
                print(
                    f"{name} {unit} {mode}: median RMS {rms.median():.2e}, "
                    f"below 0.01: {(rms < 0.01).double().mean():.1%}"
                )


if __name__ == "__main__":
    main()
