"""Epoch times hold no start-up time (issue 12 §4, issue 22 §5). The first call of a numba
kernel with a new argument type compiles it, or loads it from numba's on-disk cache (1-45 s
on a loaded 2-core machine, against 0.1 s for the tiny epochs here), and that used to land in
epoch 1. No timing here: in a fresh process, after :func:`rnnbench.train.warmup.warm_up`, every
numba dispatcher of rnnbench already holds every signature the epoch will call it with, so
training the epoch compiles (or loads) nothing. A dispatcher gains a signature exactly when a
call compiles or loads one, so the check cannot be fooled by a loaded machine; and it fails
when the warm-up stops warming a kernel (the test below disables the update's warm-up and
sees the check catch it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnbench.train.config import RunConfig
from rnnbench.train.population import train_population
from rnnbench.train.warmup import warm_up

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
import json, sys
from pathlib import Path
import numba, torch
torch.set_num_threads(1)
from rnnbench.train import population, warmup
from rnnbench.train.config import RunConfig
from rnnbench.train.presets import with_preset
from tests.train.conftest import tiny_dataset

data, out, unit, protocol, skip_update, hidden = sys.argv[1:]

def compiled():
    # every rnnbench numba dispatcher: its compiled signatures
    found = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("rnnbench"):
            for attr, value in list(vars(module).items()):
                if isinstance(value, numba.core.dispatcher.Dispatcher):
                    found[f"{value.py_func.__module__}.{value.__name__}"] = {
                        str(s) for s in value.signatures
                    }
    return found

if skip_update == "1":
    warmup._warm_update = lambda *a, **k: None
warmed = {}
real = population.warm_up

def warm_up(*args, **kwargs):
    real(*args, **kwargs)
    warmed.update(compiled())

population.warm_up = warm_up
ds = tiny_dataset(Path(data), frames=40, counts=(8, 3, 3))
fields = with_preset(dict(dataset="jsb", unit=unit, hidden=int(hidden), batch_size=2, max_epochs=1,
                          protocol=protocol, seed=0))
configs = [RunConfig(**fields, lr=lr) for lr in (1e-3, 2e-3)]
population.train_population(configs, out_dirs=[Path(out) / "a", Path(out) / "b"], dataset=ds,
                            backend="numba")
after = compiled()
new = {n: sorted(s - warmed.get(n, set())) for n, s in after.items() if s - warmed.get(n, set())}
print(json.dumps({"new": new, "used": sorted(n for n, s in after.items() if s)}))
"""


def _epoch_compiles(data_root, tmp_path, unit, protocol, skip_update=False, hidden=12) -> dict:
    """Run a two-member population for one epoch in a fresh process; ``new``: the signatures
    compiled (or loaded) after the warm-up, per dispatcher; ``used``: dispatchers called."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    args = [str(data_root), str(tmp_path), unit, protocol, "1" if skip_update else "0", str(hidden)]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, env=env, timeout=900
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


UPDATE = {
    "paper": "rnnbench.train.fused._rmsprop",
    "authors": "rnnbench.train.fused._authors",
}


@pytest.mark.parametrize(
    ("unit", "protocol", "hidden"),
    [("gru", "paper", 12), ("lstm", "authors", 12), ("lstm", "paper", 36)],
)
def test_after_the_warm_up_the_first_epoch_compiles_nothing(
    data_root, tmp_path, unit, protocol, hidden
):
    """At 36 LSTM units the input product is large enough for the gather, and the update runs
    as one compiled driver call (rnnbench.train.compiled_update), warmed up too."""
    result = _epoch_compiles(data_root, tmp_path, unit, protocol, hidden=hidden)
    assert result["new"] == {}, f"compiled during epoch 1, after the warm-up: {result['new']}"
    driver = f"rnnbench.train.compiled_driver.{unit}_update"
    assert (driver in result["used"]) == (hidden == 36)
    # the epoch did run the fused kernels: the recurrent unit's and the update's
    assert f"rnnbench.nn.kernels.{unit}.{unit}_backward" in result["used"]
    assert UPDATE[protocol] in result["used"]
    assert "rnnbench.train.fused._sq_norms" in result["used"]


def test_the_check_catches_a_warm_up_that_skips_the_update_kernels(data_root, tmp_path):
    result = _epoch_compiles(data_root, tmp_path, "gru", "paper", skip_update=True)
    assert UPDATE["paper"] in result["new"]
    assert "rnnbench.train.fused._sq_norms" in result["new"]


def test_warm_up_changes_nothing_the_run_computes(tiny, tmp_path):
    cfg = RunConfig(dataset="jsb", unit="lstm", hidden=5, batch_size=2, max_epochs=2)
    results = []
    for name, calls in (("with", True), ("without", False)):
        import rnnbench.train.population as population

        real = population.warm_up
        if not calls:
            population.warm_up = lambda *a, **k: None
        try:
            torch.manual_seed(0)
            (r,) = train_population([cfg], out_dirs=[tmp_path / name], dataset=tiny)
        finally:
            population.warm_up = real
        results.append((r["train_nll"], r["valid_nll"], r["test_nll"]))
    assert results[0] == results[1]
    assert callable(warm_up)
