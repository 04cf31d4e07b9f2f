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
