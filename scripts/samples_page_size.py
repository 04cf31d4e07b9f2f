"""How large the report gets with its Samples section, for a grid-shaped study (docs/samples.md).

    python scripts/samples_page_size.py OUT

Writes untrained run folders (8 hidden units, ``best.pt`` format) for 6 data sets x 3 units
into OUT, records them as done in OUT/results.db, builds the report with and without samples
and prints both sizes of ``report.html`` in bytes. Untrained music models sound about half of
the 88 keys at once, so their renderings are denser (larger) than trained models'.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from rnnbench.data.registry import load_dataset
from rnnbench.models import SequenceModel
from rnnbench.report import build_report
from rnnbench.store import Store
from rnnbench.train.config import RunConfig

SETS = ("jsb", "nottingham", "musedata", "pianomidi", "fsdd-a", "fsdd-b")


def main(out: Path) -> None:
    with Store(out / "results.db") as store:
        for name in SETS:
            ds = load_dataset(name)
            for unit in ("tanh", "gru", "lstm"):
                cfg = RunConfig(dataset=name, unit=unit, lr=1e-3, seed=0, hidden=8)
                key = cfg.key()
                model = SequenceModel(unit, ds.in_dim, ds.out_dim, 8, head=ds.head)
                (out / "runs" / key).mkdir(parents=True, exist_ok=True)
                best = {"config": cfg.to_dict(), "epoch": 1, "valid_nll": 1.0, "hidden": 8}
                best["member_state"] = model.member_state(0)
                torch.save(best, out / "runs" / key / "best.pt")
                store.start_run(key, cfg.to_dict(), str(out / "runs" / key))
                nll = {"train_nll": 1.0, "valid_nll": 1.0, "test_nll": 1.0, "epochs": 1}
                store.finish_run(key, "done", nll)
    for samples in (True, False):
        report = build_report(out / "results.db", out / f"report-{samples}", samples=samples)
        label = "with samples" if samples else "--no-samples"
        print(f"{label}: {(report / 'report.html').stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
