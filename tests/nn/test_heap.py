"""The kernels' per-call arrays reuse mapped pages (:mod:`rnnbench.nn.kernels.heap`)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

# A GRU population of 10 at JSB's shapes, as the trainer calls the kernels: every forward's
# outputs (about 2.7 MB) are freed a call later. In a fresh process, so that no earlier test
# has shaped the heap.
_SCRIPT = """
import json, resource
import torch
from rnnbench.nn.kernels import glue, heap
K, T, B, H = 10, 60, 4, 46
xw, w = torch.randn(K, T, B, 3 * H), 0.1 * torch.randn(K, 3 * H, H)
args = ("gru", "before", False, "", xw, w, torch.zeros(K, 3 * H), None, torch.ones(T, B),
        torch.zeros(K, B, H), None)
for _ in range(3):  # the heap grows to two calls' outputs, then holds
    outs = glue.forward(*args)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    outs = glue.forward(*args)
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps([heap.keep_freed_memory(), after - before]))
"""


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_kernel_outputs_reuse_mapped_pages():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    kept, faults = json.loads(out.stdout.strip().splitlines()[-1])
    assert kept
    # glibc's defaults mapped fresh pages for every call: about 600 faults per forward here
    assert faults < 200


# A training update's pattern without the kernels: four 1 MiB buffers written and freed at
# the top of the heap, 20 times. Off: nothing of rnnbench imported, glibc's defaults.
_UPDATES = """
import resource, sys
import numpy as np
if sys.argv[1] == "on":
    from rnnbench.nn.kernels import heap
    assert heap.keep_freed_memory()
a = np.ones(1 << 18, np.float32)  # 1 MiB: above glibc's default mmap threshold
del a  # (glibc raises its threshold to 1 MiB, and its trim threshold to 2 MiB)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    blocks = [np.empty(1 << 18, np.float32) for _ in range(4)]
    for b in blocks:
        b[:] = 1.0
    del blocks, b
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _update_faults(mode: str) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _UPDATES, mode], env=env, capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_freed_buffers_are_reused_without_page_faults():
    """By default glibc trims the freed buffers off its heap after each round and they fault
    in again (about 1,000 pages a round); not once the thresholds are set."""
    assert _update_faults("off") > 10_000  # measured 19,873
    assert _update_faults("on") < 2_000  # the first round's 1,024 pages at most (measured 769)


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_the_trainer_sets_it(monkeypatch):
    from rnnbench.models import SequenceModel
    from rnnbench.nn.kernels import heap
    from rnnbench.train import manual_step

    monkeypatch.setattr(heap, "_done", None)
    calls = []
    real = heap.keep_freed_memory
    monkeypatch.setattr(heap, "keep_freed_memory", lambda: calls.append(1) or real())
    manual_step.select(SequenceModel("gru", 4, 4, 3, head="bernoulli"), object())
    assert calls and heap._done and heap.keep_freed_memory()
