"""The kernels package (rnnbench.nn.kernels): layout, no import circle, thread choice, the
row-wide gate activation."""

from __future__ import annotations

import subprocess
import sys

import numba
import numpy as np
import pytest
import torch

from rnnbench.nn import kernels, numba_backend
from rnnbench.nn.kernels import common, glue


def test_the_kernels_do_not_import_the_autograd_ops():
    code = (
        "import sys, rnnbench.nn.kernels, rnnbench.nn.kernels.glue; "
        "print('rnnbench.nn.ops' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_former_module_names_the_same_functions():
    assert numba_backend.forward is kernels.forward is glue.forward
    assert numba_backend.lstm_backward is glue.lstm_backward


def test_small_per_step_products_run_on_one_blas_thread(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    monkeypatch.setattr(glue, "_cores", lambda: 8)
    monkeypatch.setattr(glue, "_busy_cores", lambda: 0.0)  # a quiet 8-core machine
    monkeypatch.setattr(glue, "_idle_seen", [-glue.IDLE_REFRESH, 1])  # read them afresh
    assert glue._threads(4 * 36 * 144) == 1  # JSB LSTM, batch 4
    assert glue._threads(16 * 400 * 400) == 8  # speech tanh, batch 16
    assert glue._threads(glue.SMALL_PRODUCT) == 1  # one thread's worth of work
    assert glue._threads(3 * glue.SMALL_PRODUCT) == 3


def test_a_loaded_machine_gets_no_more_threads_than_idle_cores(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    monkeypatch.setattr(glue, "_cores", lambda: 8)
    big = 16 * 400 * 400
    monkeypatch.setattr(glue, "_busy_cores", lambda: 5.5)  # 2.5 cores idle, this one included
    monkeypatch.setattr(glue, "_idle_seen", [-glue.IDLE_REFRESH, 1])
    assert glue._threads(big) == 2
    monkeypatch.setattr(glue, "_busy_cores", lambda: 12.0)  # oversubscribed
    assert glue._threads(big) == 2  # the reading is kept for IDLE_REFRESH seconds
    monkeypatch.setattr(glue, "_idle_seen", [-glue.IDLE_REFRESH, 1])
    assert glue._threads(big) == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # one thread: nothing to read
    monkeypatch.setattr(glue, "_idle_seen", [-glue.IDLE_REFRESH, 1])
    assert glue._threads(big) == 1 and glue._idle_seen[0] < 0
    monkeypatch.undo()
    assert glue._busy_cores() >= 0.0 and glue._cores() >= 1  # the real readings


def test_one_torch_thread_runs_every_product_on_one_without_reading_the_load(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)

    def unread():
        raise AssertionError("the load average was read")

    monkeypatch.setattr(glue, "_busy_cores", unread)
    monkeypatch.setattr(glue, "_cores", unread)
    assert glue._threads(16 * 400 * 400) == 1
    assert glue._threads(4 * 36 * 144) == 1


@numba.njit
def _gates_and_blocks(x, half, one, zero):
    out = np.empty((4, x.shape[0]), x.dtype)
    for j in range(x.shape[0]):
        out[0, j] = common._gate(x[j], half, half)
        out[1, j] = common._sigmoid(x[j])
        out[2, j] = common._gate(x[j], one, zero)
        out[3, j] = common._tanh(x[j])
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_row_wide_gate_is_the_per_block_activation_exactly(dtype):
    """The LSTM forward's one loop over a row of gate blocks (``common._gate``) computes
    ``_sigmoid`` and ``_tanh`` bit for bit, NaN and infinities included."""
    rng = np.random.default_rng(0)
    special = [np.nan, np.inf, -np.inf, 0.0, -0.0, 7.9, -7.9, 50.0, -50.0, 1e-30]
    x = np.concatenate([rng.standard_normal(1000) * 6, special]).astype(dtype)
    out = _gates_and_blocks(x, dtype(0.5), dtype(1), dtype(0))  # as the kernel's rows
    assert np.array_equal(out[0], out[1], equal_nan=True)
    assert np.array_equal(out[2], out[3], equal_nan=True)
    assert np.isnan(out[0, 1000]) and np.isnan(out[2, 1000])
