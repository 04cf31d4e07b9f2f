"""rnnbench.train.heap: freed buffers are reused, not faulted in again (glibc on Linux)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rnnbench.train import heap, manual_step

CHECK = """
import resource, sys
import numpy as np
from rnnbench.train import heap
if sys.argv[1] == "on":
    assert heap.keep_freed_memory()
a = np.ones(1 << 18, np.float32)  # 1 MiB: above glibc's default mmap threshold
del a  # (glibc raises its threshold to 1 MiB, and its trim threshold to 2 MiB)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # an update's buffers: 4 MiB freed at the top of the heap
    blocks = [np.empty(1 << 18, np.float32) for _ in range(4)]
    for b in blocks:
        b[:] = 1.0
    del blocks, b
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CHECK, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_a_freed_buffer_is_reused_without_page_faults():
    """20 rounds of four 1 MiB buffers: by default glibc trims them off its heap after each
    round, and they fault in again (about 1,000 pages a round); not once set."""
    assert _faults("off") > 10_000  # measured 19,873
    assert _faults("on") < 2_000  # the first round's 1,024 pages at most (measured 769)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_the_trainer_sets_it_once(monkeypatch):
    monkeypatch.setattr(heap, "_done", False)
    calls = []
    real = heap.keep_freed_memory
    monkeypatch.setattr(heap, "keep_freed_memory", lambda: calls.append(1) or real())
    from rnnbench.models import SequenceModel

    manual_step.select(SequenceModel("gru", 4, 4, 3, head="bernoulli"), object())
    assert calls and heap._done and heap.keep_freed_memory()
