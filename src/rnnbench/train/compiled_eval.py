r"""The evaluation pass of a music population in one numba call per split: :func:`sums`.

:func:`rnnbench.train.metrics.split_scores` scores a split batch by batch through
``model.step_nll``: the padding of the batch, the input projection
(:func:`rnnbench.nn.sparse_input.project`, its plan and its gather, or the dense product),
the recurrent kernel behind :func:`rnnbench.nn.functional.run_unit` and the Bernoulli head's
kernel (:func:`rnnbench.head_loss.step_nll`), with the checks, conversions and torch
operations between them. On the paper's small models that glue cost about as much as the
kernels or more: a JSB validation pass took 8.9 CPU ms for one LSTM of 36 units, of which the
kernels about 2.4, and 34 ms for a population of 10, of which the kernels about 23
(``benchmarks/eval_pass.py``; compiled: 3.2 and 25 ms).

Here the split's batches are made once and kept (:class:`_Split`: the same batches as
:func:`rnnbench.data.batching.iterate_batches` gives ``split_scores``, stored as the keys that
sound in each input and target frame, the masks and the per-sequence step counts), and one
``@njit`` driver per cell (:func:`lstm_eval`, :func:`gru_eval`, :func:`tanh_eval`) runs
every batch of the split, calling the old path's kernels in its order with its arguments:

.. math::
    \xi = W_{ih} x + b_{ih}, \quad
    (h_1, \dots, h_T) = \mathrm{cell}(\xi; W_{hh}, b_{hh}), \quad
    \mathrm{nll}_{t,b} = \sum_d \big[\log(1 + e^{a_d}) - y_d a_d\big],
    \ a = W_{out} h_{t,b} + b_{out},

:math:`\xi` by the gather (``sparse_input._gather_bias``) where
:func:`rnnbench.nn.sparse_input.plan` would let it run (enabled, a binary batch of at most a
quarter of its keys on, at least ``MIN_WORK`` multiply-adds, finite :math:`W_{ih}`), else
by torch's dense ``baddbmm`` exactly as :func:`~rnnbench.nn.functional.project_input` runs
it; the cell's forward kernel (zero initial states, the ``(K, T, B)`` mask); the head's
kernel (``bernoulli.head_pass``, no gradient, 0 on padded steps). The per-step NLLs are then
summed by the same torch reductions as ``split_scores`` (float32 over the steps, float64 over
the sequences), so the scores are bit for bit the old path's, NaN and inf included (a
diverged member's NLL is not finite exactly where it was).

OpenBLAS runs on the thread count the old path's glue picks per product
(:func:`rnnbench.nn.kernels.glue._threads`); a batch whose recurrent and head products would
run on different counts takes the old path. :func:`sums` returns None (the old path runs)
for anything else: not the numba backend on float32 CPU, a variant, a plug-in unit, a head
other than :class:`~rnnbench.heads.BernoulliHead`, inputs or targets that are not binary,
a tracer or transform watching.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numba
import numpy as np
import torch

from rnnbench.nn.kernels import cache

_HERE = Path(__file__).parent
_SOURCES = (
    *sorted((_HERE.parent / "nn" / "kernels").glob("*.py")),
    _HERE.parent / "nn" / "sparse_input.py",
    Path(__file__),
)
STAMP = "rnnbench-eval.sha256"


def _drop_stale() -> None:
    """Delete this module's cached drivers when a source they compile in has changed (numba
    keys a cached function on its own file only; as ``compiled_driver`` does)."""
    cache.drop_stale_module(__name__.rsplit(".", 1)[-1], _HERE, _SOURCES, STAMP)


_drop_stale()

from rnnbench.nn import sparse_input  # noqa: E402  (after the stale cache is gone)
from rnnbench.nn.kernels import bernoulli, glue  # noqa: E402
from rnnbench.nn.kernels.gru import gru_forward  # noqa: E402
from rnnbench.nn.kernels.lstm import lstm_forward  # noqa: E402
from rnnbench.nn.kernels.tanh import tanh_forward  # noqa: E402

__all__ = ["gru_eval", "lstm_eval", "off", "sums", "tanh_eval", "usable", "warm_up"]

_ENABLED = True  # private switch: tests turn it off to compare with the old path

CELLS = ("lstm", "gru", "tanh")
_KEEP = 4  # splits kept (valid, and at the end train, valid, test)

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_NO_TARGET = torch.zeros(0)  # head_loss.usable's target argument (it reads requires_grad)


# ---- the drivers ------------------------------------------------------------------------------


@_jit
def _front(i, w_ih, b_ih, batches, dense, doff):
    """Batch ``i``'s ``xi (K, T, B, GH)`` (the gather, or the dense product torch made), its
    ``(K, T, B)`` mask, its targets ``(1, R, D)`` and its real steps ``(1, R)``."""
    gather, steps, rows, foff, xkeys, xkoff, xends, ykeys, ykoff, yends, mask, D = batches
    K, GH, _ = w_ih.shape
    T, B = steps[i], rows[i]
    F = T * B
    f0 = foff[i]
    if gather[i]:
        ends = np.empty((1, F), np.int64)
        ends[0, :] = xends[f0 : f0 + F]
        keys = np.ascontiguousarray(xkeys[xkoff[i] : xkoff[i + 1]])
        xw = sparse_input._gather_bias(w_ih, keys, ends, b_ih).reshape((K, T, B, GH))
    else:
        xw = np.empty((K, T, B, GH), np.float32)
        xw.reshape(-1)[:] = dense[doff[i] : doff[i] + K * F * GH]
    m = np.empty((K, T, B), np.float32)
    real = np.empty((1, F), np.bool_)
    mk = m.reshape((K, F))
    for k in range(K):
        for f in range(F):
            mk[k, f] = mask[f0 + f]
    for f in range(F):
        real[0, f] = mask[f0 + f] > 0
    y = np.zeros((1, F, D), np.float32)
    start = ykoff[i]
    for f in range(F):
        for e in range(start + (yends[f0 + f - 1] if f else 0), start + yends[f0 + f]):
            y[0, f, ykeys[e]] = 1.0
    return xw, m, y, real


@_jit
def _head(i, out, w_out, b_out, y, real, rows_out, roff):
    """The Bernoulli head's per-step NLL of batch ``i`` into ``rows_out`` (as
    ``head_loss.bernoulli_pass`` runs it without gradients)."""
    K, T, B, H = out.shape
    F = T * B
    rows = rows_out[roff[i] : roff[i] + K * F].reshape((K, F))
    e3 = np.empty((0, 0, 0), np.float32)
    bernoulli.head_pass(
        out.reshape((K, F, H)), w_out, b_out, y, real, np.ones(K, np.float32), False, rows,
        e3, np.empty((0, 0, 0), np.float32), np.empty((0, 0), np.float32),
    )  # fmt: skip


@_jit
def lstm_eval(lo, hi, w_ih, b_ih, w_hh, b_hh, w_ch, peephole, w_out, b_out, batches, dense,
              doff, rows_out, roff):  # fmt: skip
    """Batches ``lo..hi-1`` of the split (module docstring), the LSTM (``w_ch (K, 3, H)``, or
    ``(K, 3, 1)`` zeros without peepholes, as the glue passes them)."""
    K, H = w_hh.shape[0], w_hh.shape[2]
    for i in range(lo, hi):
        xw, m, y, real = _front(i, w_ih, b_ih, batches, dense, doff)
        B = xw.shape[2]
        h0 = np.zeros((K, B, H), np.float32)
        c0 = np.zeros((K, B, H), np.float32)
        out = lstm_forward(xw, w_hh, b_hh, w_ch, peephole, m, h0, c0)[0]
        _head(i, out, w_out, b_out, y, real, rows_out, roff)


@_jit
def gru_eval(lo, hi, w_ih, b_ih, w_hh, b_hh, before, w_out, b_out, batches, dense, doff,
             rows_out, roff):  # fmt: skip
    """:func:`lstm_eval` for the GRU (``before``: the reset gate before the product)."""
    K, H = w_hh.shape[0], w_hh.shape[2]
    for i in range(lo, hi):
        xw, m, y, real = _front(i, w_ih, b_ih, batches, dense, doff)
        h0 = np.zeros((K, xw.shape[2], H), np.float32)
        out = gru_forward(xw, w_hh, b_hh, before, m, h0)[0]
        _head(i, out, w_out, b_out, y, real, rows_out, roff)


@_jit
def tanh_eval(lo, hi, w_ih, b_ih, w_hh, b_hh, w_out, b_out, batches, dense, doff, rows_out,
              roff):  # fmt: skip
    """:func:`lstm_eval` for the tanh RNN."""
    K, H = w_hh.shape[0], w_hh.shape[2]
    for i in range(lo, hi):
        xw, m, y, real = _front(i, w_ih, b_ih, batches, dense, doff)
        h0 = np.zeros((K, xw.shape[2], H), np.float32)
        out = tanh_forward(xw, w_hh, b_hh, m, h0)[0]
        _head(i, out, w_out, b_out, y, real, rows_out, roff)


# ---- the split's batches, made once -----------------------------------------------------------


class _Split:
    """A split's evaluation batches (those of ``iterate_batches(seqs, batch_size, seed=0,
    epoch=0, shuffle=False)``) as the driver reads them, and what ``split_scores`` takes of
    their masks; ``ok`` False where the compiled pass cannot run them (a value neither 0 nor
    1, a batch without steps)."""

    def __init__(self, seqs, batch_size: int) -> None:
        from rnnbench.data.batching import iterate_batches

        self.ok = False
        steps, rows, density_ok = [], [], []
        xk, xe, yk, ye, masks = [], [], [], [], []
        self.lengths, self.step_count, self.sequences = [], 0, 0
        for batch in iterate_batches(seqs, batch_size, seed=0, epoch=0, shuffle=False):
            T, B, I = batch.x.shape
            D = batch.y.shape[-1]
            if T == 0:
                return
            x = batch.x.numpy().reshape(T * B, I)
            found_x = sparse_input._keys(x, 1.0)
            found_y = sparse_input._keys(batch.y.numpy().reshape(T * B, D), 1.0)
            if found_x is None or found_y is None:
                return
            steps.append(T)
            rows.append(B)
            # the plan's density test, as sparse_input._keys makes it
            density_ok.append(not len(found_x[0]) > sparse_input.MAX_DENSITY * (T * B) * I)
            xk.append(found_x[0])
            xe.append(found_x[1])
            yk.append(found_y[0])
            ye.append(found_y[1])
            masks.append(batch.mask.numpy().reshape(-1))
            lengths = batch.mask.sum(0).double()  # as split_scores takes them
            real = lengths > 0
            every = bool(real.all())
            self.lengths.append((lengths, real, every, None if every else lengths[real]))
            self.step_count += int(lengths.sum())
            self.sequences += int(real.sum())
        if not steps:
            return
        self.I, self.D = I, D
        self.steps = np.array(steps, np.int64)
        self.rows = np.array(rows, np.int64)
        self.density_ok = np.array(density_ok, np.bool_)
        sizes = self.steps * self.rows
        self.foff = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.xkeys, self.xkoff = _joined(xk)
        self.ykeys, self.ykoff = _joined(yk)
        self.xends = np.concatenate(xe).astype(np.int64)
        self.yends = np.concatenate(ye).astype(np.int64)
        self.mask = np.concatenate(masks).astype(np.float32)
        self.ok = True

    def batches(self, gather: np.ndarray) -> tuple:
        """The driver's ``batches`` tuple, gathering where ``gather``."""
        return (
            gather, self.steps, self.rows, self.foff, self.xkeys, self.xkoff, self.xends,
            self.ykeys, self.ykoff, self.yends, self.mask, self.D,
        )  # fmt: skip

    def dense_x(self, i: int) -> torch.Tensor:
        """Batch ``i``'s padded inputs ``(T, B, I)``, as ``iterate_batches`` made them."""
        return self._dense(i, self.xkeys, self.xkoff, self.xends, self.I)

    def dense_y(self, i: int) -> torch.Tensor:
        """Batch ``i``'s padded targets ``(T, B, D)``."""
        return self._dense(i, self.ykeys, self.ykoff, self.yends, self.D)

    def _dense(self, i: int, all_keys, koff, all_ends, width: int) -> torch.Tensor:
        """Batch ``i``'s 0/1 frames ``(T, B, width)`` from its sounding keys."""
        T, B = int(self.steps[i]), int(self.rows[i])
        out = np.zeros((T * B, width), np.float32)
        f0 = int(self.foff[i])
        keys = all_keys[koff[i] : koff[i + 1]]
        ends = all_ends[f0 : f0 + T * B]
        starts = np.concatenate([[0], ends[:-1]])
        out[np.repeat(np.arange(T * B), ends - starts), keys] = 1.0
        return torch.from_numpy(out).view(T, B, width)

    def mask_of(self, i: int) -> torch.Tensor:
        T, B = int(self.steps[i]), int(self.rows[i])
        f0 = int(self.foff[i])
        return torch.from_numpy(self.mask[f0 : f0 + T * B]).view(T, B)


def _joined(parts: list) -> tuple[np.ndarray, np.ndarray]:
    """The arrays ``parts`` end to end and their offsets (``len(parts) + 1``)."""
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    keys = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
    return keys, offsets


_SPLITS: OrderedDict = OrderedDict()


def _split(seqs, batch_size: int) -> _Split:
    """The :class:`_Split` of ``seqs`` at ``batch_size``, made once per list of sequences
    (the same sequences, their same arrays; the list is kept so that its ids stay valid)."""
    key = (id(seqs), batch_size)
    ident = tuple((id(s), id(s.inputs), id(s.targets)) for s in seqs)
    found = _SPLITS.get(key)
    if found is not None and found[0] is seqs and found[1] == ident:
        _SPLITS.move_to_end(key)
        return found[2]
    split = _Split(seqs, batch_size)
    _SPLITS[key] = (seqs, ident, split)
    while len(_SPLITS) > _KEEP:
        _SPLITS.popitem(last=False)
    return split


# ---- the pass ---------------------------------------------------------------------------------


def usable(model, device) -> bool:
    """Whether :func:`sums` may run ``model`` (module docstring): the conditions under which
    ``step_nll`` without gradients runs the fused head and the numba kernels eagerly (and
    :func:`sums` checks that no gradient is wanted)."""
    from rnnbench import head_loss
    from rnnbench.heads import BernoulliHead
    from rnnbench.models import SequenceModel
    from rnnbench.nn import functional, ops

    if not _ENABLED or torch.device(device).type != "cpu":
        return False
    if type(model) is not SequenceModel or model.unit not in CELLS or model.variant:
        return False
    if type(model.head) is not BernoulliHead or model.backend not in ("auto", "numba"):
        return False
    if not functional.numba_available() or not head_loss._ENABLED or not head_loss._KERNEL:
        return False
    for p in model.parameters():
        if p.dtype != torch.float32 or p.device.type != "cpu" or not p.is_contiguous():
            return False
    if not head_loss.usable(model, _NO_TARGET):
        return False
    return ops._eager(model.weight_out.detach())


def sums(model, seqs, *, device="cpu", batch_size: int) -> tuple | None:
    """``split_scores``'s sums over ``seqs``: ``(frame sum (K,), per-sequence sum (K,),
    steps, sequences)`` (float64 tensors, ints), or None where the old path runs."""
    if not seqs or torch.is_grad_enabled() or not usable(model, device):
        return None
    split = _split(seqs, batch_size)
    if not split.ok or (model.in_dim, model.head.out_dim) != (split.I, split.D):
        return None
    m = model
    w_ih = m.weight_ih_l0.detach()
    K, GH, I = w_ih.shape
    H = m.weight_hh_l0.shape[-1]
    D = m.weight_out.shape[1]
    n = len(split.steps)
    T, B = split.steps, split.rows
    gather = _gathers(split, w_ih)
    # the dense product of the batches that do not gather, as project_input runs it
    doff = np.full(n, -1, np.int64)
    parts, at = [], 0
    for i in np.flatnonzero(~gather):
        x = split.dense_x(int(i))
        flat = x.reshape(1, -1, I).expand(K, -1, I)
        xw = torch.baddbmm(m.bias_ih_l0.unsqueeze(1), flat, m.weight_ih_l0.transpose(1, 2))
        parts.append(xw.numpy().reshape(-1))
        doff[i] = at
        at += parts[-1].shape[0]
    dense = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    roff = K * split.foff
    rows_out = np.empty(int(roff[-1]), np.float32)
    weights = [p.detach().numpy() for p in (m.weight_ih_l0, m.bias_ih_l0, m.weight_hh_l0,
                                            m.bias_hh_l0)]  # fmt: skip
    if m.unit == "lstm":
        v = m.weight_ch_l0.detach().numpy() if m.peephole else np.zeros((K, 3, 1), np.float32)
        cell = (lstm_eval, (*weights, v, bool(m.peephole)))
    elif m.unit == "gru":
        cell = (gru_eval, (*weights, m.reset == "before"))
    else:
        cell = (tanh_eval, tuple(weights))
    tail = (m.weight_out.detach().numpy(), m.bias_out.detach().numpy(), split.batches(gather),
            dense, doff, rows_out, roff)  # fmt: skip
    # OpenBLAS threads per batch as the glue picks them for the cell's and the head's products
    threads = [
        (glue._threads(int(B[i]) * GH * H), glue._threads(int(T[i] * B[i]) * D * H))
        for i in range(n)
    ]
    i = 0
    while i < n:
        t_cell, t_head = threads[i]
        if t_cell != t_head:  # one batch, two thread counts: the old path runs it
            per, _ = m.step_nll(split.dense_x(i), split.dense_y(i), split.mask_of(i))
            rows_out[roff[i] : roff[i + 1]] = per.numpy().reshape(-1)
            i += 1
            continue
        j = i + 1
        while j < n and threads[j] == (t_cell, t_cell):
            j += 1
        _run(t_cell, cell[0], i, j, *cell[1], *tail)
        i = j
    return _reduce(split, rows_out, roff, K)


def _gathers(split: _Split, w_ih: torch.Tensor) -> np.ndarray:
    """Per batch, whether :func:`rnnbench.nn.sparse_input.plan` would gather its input
    (enabled, the density, ``MIN_WORK``, finite weights), else the dense product runs."""
    K, GH, I = w_ih.shape
    work = K * split.steps * split.rows * GH * I
    gather = split.density_ok & (work >= sparse_input.MIN_WORK) & sparse_input._ON.get()
    if gather.any() and not sparse_input._finite(w_ih.numpy()):
        gather[:] = False
    return gather


def _run(threads: int, driver, *args) -> None:
    """``driver(*args)`` with numba's BLAS calls on ``threads`` threads (as ``glue._call``)."""
    if glue._set_blas_threads is None:
        driver(*args)
        return
    previous = glue._set_blas_threads(threads)
    try:
        driver(*args)
    finally:
        glue._set_blas_threads(previous)


def _reduce(split: _Split, rows_out: np.ndarray, roff: np.ndarray, K: int) -> tuple:
    """``split_scores``'s sums of the per-step NLLs, with its torch reductions."""
    total = per_seq = None
    for i, (lengths, real, every, real_lengths) in enumerate(split.lengths):
        T, B = int(split.steps[i]), int(split.rows[i])
        per = torch.from_numpy(rows_out[roff[i] : roff[i + 1]]).view(K, T, B)
        rows = per.sum(1).double()  # (K, B)
        part = rows.sum(1)
        means = (rows / lengths if every else rows[:, real] / real_lengths).sum(1)
        total = part if total is None else total + part
        per_seq = means if per_seq is None else per_seq + means
    return total, per_seq, split.step_count, split.sequences


@contextlib.contextmanager
def off() -> Iterator[None]:
    """Inside the block ``split_scores`` takes the old path (the warm-up's second pass)."""
    global _ENABLED
    was, _ENABLED = _ENABLED, False
    try:
        yield
    finally:
        _ENABLED = was


def warm_up(model) -> None:
    """Load the gather's finite check, which :func:`sums` calls outside its driver (the
    warm-up's ``split_nll`` compiles the driver, and under :func:`off` the old path's
    kernels, which batches left to it and the training pass call with the same types)."""
    if usable(model, "cpu"):
        sparse_input._finite(model.weight_ih_l0.detach().numpy())
