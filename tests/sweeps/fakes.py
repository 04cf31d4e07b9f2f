"""Fake trainers with train_population's signature, for testing the engines without torch work.

They live in an importable module because the local engine spawns its workers.
The data set name picks the behaviour: ``boom`` always raises, ``flaky`` raises on its first
call, ``die`` kills its worker process on the first call, ``full`` finds the disk full,
``resume`` trains 2 epochs and fails unless its run folder holds a ``last.pt`` (naming the
last epoch, as a resumed trainer would read it), from which it trains epochs up to 3,
``slow`` takes 400 epochs of 0.25 s (meant to be interrupted: it cannot finish before a
test's Ctrl-C, however loaded the machine), ``early`` reports its first member finished
(``on_result``) and then fails, anything else trains 2 epochs. A member diverges when its
learning rate is above ``DIVERGE_ABOVE``; the validation NLL is lowest at lr = e^-8
otherwise. Every call appends a line to ``calls.log`` beside the run folders.
"""

import errno
import json
import math
import os
import time
from pathlib import Path

DIVERGE_ABOVE = math.exp(-6.5)


def _log_call(out_dirs, configs, device="cpu"):
    """Log this call; return how many calls this data set has had, this one included."""
    log = Path(out_dirs[0]).parent / "calls.log"
    dataset = configs[0].dataset
    line = {"dataset": dataset, "keys": [c.key() for c in configs], "device": device}
    with open(log, "a") as f:
        f.write(json.dumps(line) + "\n")
    return sum(1 for line in open(log) if json.loads(line)["dataset"] == dataset)


def valid_nll(lr: float) -> float:
    return (math.log(lr) + 8.0) ** 2 + 1.0


def fake_train(
    configs, *, out_dirs, data_dir=None, device="cpu", on_epoch=None, progress=False, on_result=None
):
    Path(out_dirs[0]).parent.mkdir(parents=True, exist_ok=True)
    calls = _log_call(out_dirs, configs, device)
    dataset = configs[0].dataset
    if dataset == "boom":
        raise ValueError("boom: this run always fails")
    if dataset == "flaky" and calls == 1:
        raise RuntimeError("flaky: first call fails")
    if dataset == "die" and calls == 1:
        os._exit(9)
    if dataset == "full":
        raise OSError(errno.ENOSPC, "No space left on device", str(out_dirs[0]))
    epochs, pause = (400, 0.25) if dataset == "slow" else (2, 0.0)
    results = []
    for k, (config, folder) in enumerate(zip(configs, out_dirs, strict=True)):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        diverged = config.lr > DIVERGE_ABOVE
        nll = math.nan if diverged else valid_nll(config.lr) + config.seed * 0.01
        first = 1
        if dataset == "resume":
            last = folder / "last.pt"
            first, epochs = (int(last.read_text()) + 1, 3) if last.exists() else (1, 2)
        for epoch in range(first, epochs + 1):
            time.sleep(pause)
            record = {
                "epoch": epoch,
                "train_nll": nll,
                "valid_nll": nll,
                "updates": 5 * epoch,
                "seconds": 0.01 * epoch,
                "status": "diverged" if diverged else "training",
            }
            with open(folder / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if on_epoch is not None:
                on_epoch(k, record)
            (folder / "last.pt").write_text(str(epoch))
        if dataset == "resume" and first == 1:
            raise RuntimeError("resume: the first try stops after epoch 2")
        (folder / "best.pt").write_bytes(b"fake")
        results.append(
            {
                "status": "diverged" if diverged else "done",
                "train_nll": nll,
                "valid_nll": nll,
                "test_nll": nll,
                "best_epoch": 2,
                "epochs": 2,
                "updates": 10,
                "seconds": 0.02,
                "checkpoint": str(folder / "best.pt"),
                "params": 100,
            }
        )
        if dataset == "early":
            on_result(k, results[-1])
            raise RuntimeError("early: the rest of the population fails")
    return results
