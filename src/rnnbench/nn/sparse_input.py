r"""The input projection of binary, sparse inputs as a gather: :func:`project`.

A piano-roll frame has about 4 of its 88 keys on, so the dense product
:math:`W x_t + b` of :func:`rnnbench.nn.functional.project_input` multiplies mostly zeros.
For inputs that are exactly 0 or 1 the product is the sum of the columns of :math:`W` for the
keys that sound,

.. math:: W x_t + b = \sum_{i : x_{t,i} = 1} W_{:,i} + b,

which a numba kernel computes for all steps and members, with a backward that adds each
step's gradient into the columns of its keys (the dense product's backward adds zeros
elsewhere). The terms are the same (``1 * w`` is exact); only their order of summation differs,
so the result equals the dense one within float rounding.

The gather runs only where it is exact and cheaper: a 3-D input shared by all members, or a
4-D one per member (members reading their own minibatches, issue 22), on CPU, that needs no
gradient, with every value 0 or 1, at most a quarter of them on, a dense product
of at least :data:`MIN_WORK` multiply-adds (below, the dense product is as fast), and weights
that are all finite (a NaN or inf in a column of an unplayed key would reach every step through the
dense product's ``0 * w``; the dense product then runs and keeps that). It is switched on only
inside :func:`enabled` (the population trainer), so compiled, exported, traced and
functionally transformed models keep the dense product.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import numba
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "enabled",
    "gather",
    "is_enabled",
    "KeyTable",
    "plan_window",
    "plan",
    "plan_arrays",
    "project",
    "scatter",
    "scatter_with_bias",
]

_ON = contextvars.ContextVar("rnnbench_sparse_input", default=False)
MAX_DENSITY = 0.25
# Below this many multiply-adds of the dense product the gather's fixed costs (the checks, the
# transposed copy of W, autograd) outweigh what it saves. Measured fwd+bwd on 1 thread, JSB
# shapes, before the kernels indexed their arrays: 2.2M: dense 259 us, gather 283; 3.6M: 328
# vs 293; 30M: 2178 vs 1075 (then 1 << 22). Since (CPU us, best of 5, a loaded 2-core EPYC;
# dense projection, bias sum and weight gradient against plan, gather and scatter): 0.5M: 61
# vs 51; 0.7M: 61 vs 62; 1.0M: 71 vs 67; 1.5M: 93 vs 71; 2.2M: 156 vs 106; 3.5M: 177 vs 111.
MIN_WORK = 1 << 20


@contextlib.contextmanager
def enabled(on: bool = True) -> Iterator[None]:
    """Inside the block, :func:`rnnbench.nn.functional.project_input` may gather (see above)."""
    token = _ON.set(bool(on))
    try:
        yield
    finally:
        _ON.reset(token)


def is_enabled() -> bool:
    """Whether the calling code runs inside :func:`enabled`."""
    return _ON.get()


def project(x: Tensor, w_ih: Tensor, b_ih: Tensor | None) -> Tensor | None:
    """``W x + b_ih`` as ``(K, T, B, G*H)`` by gathering, or None where the dense product must
    run (not enabled, or not exact: see the module docstring)."""
    found = plan(x, w_ih)
    if found is None:
        return None
    K, GH, _ = w_ih.shape
    T, B = x.shape[-3:-1]
    needs_grad = torch.is_grad_enabled() and (
        w_ih.requires_grad or (b_ih is not None and b_ih.requires_grad)
    )
    if not needs_grad:  # evaluation: the bias inside the gather (the same sums, bit for bit)
        return gather(w_ih, *found, b_ih).view(K, T, B, GH)
    xw = _Gather.apply(w_ih, *found)
    if b_ih is not None:
        xw = xw + b_ih.unsqueeze(1)
    return xw.reshape(K, T, B, GH)


def plan(x: Tensor, w_ih: Tensor) -> tuple[Tensor, Tensor] | None:
    """The keys that sound, ``(keys, ends (M, T*B))`` as :func:`gather` and :func:`scatter`
    take them, where the gather may run (see the module docstring); else None."""
    # compiling or tracing first: dynamo cannot trace ContextVar.get (fullgraph compile)
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return None
    if not _ON.get() or x.dim() not in (3, 4) or x.device.type != "cpu" or x.requires_grad:
        return None
    if x.dtype != w_ih.dtype or w_ih.dtype not in (torch.float32, torch.float64):
        return None
    found = plan_arrays(x.detach().contiguous().numpy(), w_ih.detach().contiguous().numpy())
    if found is None:
        return None
    return torch.from_numpy(found[0]), torch.from_numpy(found[1])


def plan_arrays(
    x: np.ndarray, w: np.ndarray, finite: bool = True
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`plan` on contiguous numpy arrays already on CPU, of one float dtype, outside
    autograd, with the gather enabled (the caller's checks): ``x (T, B, I)`` or ``(M, T, B,
    I)``, ``w (K, G*H, I)``; ``(keys, ends (M, T*B))`` or None (the conditions on the
    shapes, the work, the values and the weights of the module docstring; ``finite=False``:
    all but the weights', for a caller that checks them itself)."""
    K, GH, I = w.shape
    T, B = x.shape[-3:-1]
    M = 1 if x.ndim == 3 else x.shape[0]  # inputs: one shared, or one per member
    if M not in (1, K) or K * T * B * GH * I < MIN_WORK:
        return None
    found = _keys(x.reshape(M * T * B, I), MAX_DENSITY)
    if found is None or finite and not _finite(w):
        return None
    return found[0], found[1].reshape(M, T * B)


def gather(w_ih: Tensor, keys: Tensor, ends: Tensor, b_ih: Tensor | None = None) -> Tensor:
    """``W x`` as ``(K, T*B, G*H)`` from :func:`plan`'s keys, without autograd; with ``b_ih``
    ``W x + b_ih``, the bias added to each step's sum as :func:`project` adds it (bit for bit)
    but without a second pass over the result."""
    if b_ih is None:
        table = w_ih.detach().transpose(1, 2).contiguous().numpy()
        return torch.from_numpy(_gather(table, keys.numpy(), ends.numpy()))
    w = w_ih.detach().contiguous().numpy()
    bias = b_ih.detach().contiguous().numpy()
    return torch.from_numpy(_gather_bias(w, keys.numpy(), ends.numpy(), bias))


def scatter_with_bias(
    d_xw: Tensor, keys: Tensor, ends: Tensor, n_keys: int
) -> tuple[Tensor, Tensor]:
    """:func:`scatter` and the bias's gradient ``(K, G*H)`` (``d_xw`` summed over the steps,
    in float64, rounded once) in one pass over ``d_xw``."""
    d_out = d_xw.detach().contiguous().numpy()
    d_w, d_bias = _scatter_bias(d_out, keys.numpy(), ends.numpy(), n_keys)
    return torch.from_numpy(d_w), torch.from_numpy(d_bias)


def scatter(d_xw: Tensor, keys: Tensor, ends: Tensor, n_keys: int) -> Tensor:
    """The gather's backward: the gradient ``(K, G*H, I)`` (contiguous, ``W_ih``'s layout)
    of ``W`` from the gradient ``d_xw (K, T*B, G*H)`` of :func:`gather`'s output."""
    d_out = d_xw.detach().contiguous().numpy()
    d_table = _scatter(d_out, keys.numpy(), ends.numpy(), n_keys)
    return torch.from_numpy(np.ascontiguousarray(d_table.transpose(0, 2, 1)))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _keys(x, max_density):
    """The keys that sound at each step of ``x (steps, I)``: ``(keys, ends)``, step f's keys
    in ``keys[ends[f-1]:ends[f]]``, in increasing order; None when a value is neither 0 nor 1
    or more than ``max_density`` of them are 1."""
    F, I = x.shape
    flat = x.reshape(-1)
    count = 0
    other = 0
    for j in range(flat.shape[0]):  # branch-free, so that it vectorises
        v = flat[j]
        count += np.int64(v == 1)
        other += np.int64(v != 1) & np.int64(v != 0)  # NaN too
    if other or count > max_density * F * I:
        return None
    keys = np.empty(count, np.int64)
    ends = np.empty(F, np.int64)
    n = 0
    for f in range(F):
        for i in range(I):
            if x[f, i] == 1:
                keys[n] = i
                n += 1
        ends[f] = n
    return keys, ends


class KeyTable:
    """The keys that sound in each frame of a list of sequences, found once: a batch's
    :func:`plan_arrays` keys without scanning its dense padded input (:meth:`window`).

    ``seqs``: the sequences (anything with an ``inputs`` array ``(T_s, I)``, as
    :class:`rnnbench.data.dataset.Sequence`), held so that :meth:`window` reads only the very
    sequence objects it was built from. A sequence with a value other than 0 or 1 has no keys
    here; a window that reads it is scanned as before.
    """

    def __init__(self, seqs) -> None:
        self.seqs = list(seqs)
        inputs = [s.inputs for s in self.seqs]
        self.lengths = np.array([a.shape[0] for a in inputs], np.int64)
        self.first = np.zeros(len(inputs) + 1, np.int64)  # each sequence's first frame
        np.cumsum(self.lengths, out=self.first[1:])
        self.binary = np.zeros(len(inputs), np.bool_)
        keys, ends, total = [], [], 0
        for s, a in enumerate(inputs):
            x = np.ascontiguousarray(a, np.float32)  # as the batches hold it
            found = _keys(x.reshape(x.shape[0], -1), 1.0)  # any density
            if found is None:
                ends.append(np.full(a.shape[0], total, np.int64))
                continue
            self.binary[s] = True
            keys.append(found[0])
            ends.append(found[1] + total)
            total += found[0].shape[0]
        self._binary = self.binary.tolist()  # read per window: a list is faster to index
        self.keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        self.ends = np.concatenate(ends) if ends else np.zeros(0, np.int64)  # over all frames

    def window(self, seqs, rows: np.ndarray, start: int, T: int, B: int):
        """``(keys, ends (1, T*B), count)`` of the padded window of steps ``start..start+T``
        of the sequences ``seqs[i]``, ``i`` in ``rows`` (batch row ``b`` = ``rows[b]``,
        padding past a row's length and for ``b >= len(rows)``) as :func:`_keys` finds them on
        that dense window; None when a row's sequence is not the table's or has a value other
        than 0 or 1."""
        rows = np.asarray(rows, np.int64)
        mine, binary = self.seqs, self._binary
        if len(seqs) != len(mine):
            return None
        for i in rows.tolist():
            if seqs[i] is not mine[i] or not binary[i]:
                return None
        keys, ends = _window_keys(
            self.keys, self.ends, self.first, self.lengths, rows, int(start), T, B
        )
        return keys, ends.reshape(1, T * B), keys.shape[0]


def plan_window(table: KeyTable, window, x: np.ndarray, w: np.ndarray, finite: bool = True):
    """:func:`plan_arrays` of a shared ``x (T, B, I)`` that is the padded window ``(seqs, rows,
    start)`` (:class:`rnnbench.train.minibatches.PopulationBatch`), from ``table``'s keys when
    it holds those sequences (no scan of ``x``), else by :func:`plan_arrays`: the same ``(keys,
    ends)`` or None, under the same conditions (``finite`` as there)."""
    K, GH, I = w.shape
    T, B, _ = x.shape
    if K * T * B * GH * I < MIN_WORK:
        return None
    found = table.window(*window[:2], window[2], T, B)
    if found is None:
        return plan_arrays(x, w, finite)
    keys, ends, count = found
    if count > MAX_DENSITY * (T * B) * I or finite and not _finite(w):
        return None
    return keys, ends


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _window_keys(keys, ends, first, lengths, rows, start, T, B):
    """:meth:`KeyTable.window`'s keys: step ``t`` of batch row ``b`` (frame ``f = t B + b``)
    reads frame ``start + t`` of sequence ``rows[b]`` while it has one, else nothing."""
    F = T * B
    out_ends = np.empty(F, np.int64)
    n = 0
    for pass_ in range(2):
        if pass_ == 1:
            out = np.empty(n, np.int64)
            n = 0
        else:
            out = np.empty(0, np.int64)
        for t in range(T):
            for b in range(B):
                if b < rows.shape[0] and start + t < lengths[rows[b]]:
                    g = first[rows[b]] + start + t
                    lo = ends[g - 1] if g > 0 else 0
                    if pass_ == 1:
                        for e in range(lo, ends[g]):
                            out[n + e - lo] = keys[e]
                    n += ends[g] - lo
                out_ends[t * B + b] = n
    return out, out_ends


# reassociated (vectorised) sum: NaN and inf still propagate (no fast-math NaN assumptions)
@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _finite(w):
    flat = w.reshape(-1)
    total = flat[0] * 0
    for j in range(flat.shape[0]):
        total += flat[j] * 0  # NaN for any NaN or inf
    return total == 0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gather(table, keys, ends):
    """``out[k, f] = sum of table[k, i] over the keys i of step f of member k's input`` (in
    ``keys[ends[m, f-1]:ends[m, f]]``, ``m`` = 0 for an input shared by the members, ``k`` for
    one per member; ``ends (M, F)`` counts on across rows); ``table (K, I, GH)``."""
    K, _, GH = table.shape
    M, F = ends.shape
    out = np.zeros((K, F, GH), table.dtype)
    for k in range(K):
        m = 0 if M == 1 else k
        start = 0 if m == 0 else ends[m - 1, F - 1]
        for f in range(F):
            o = out[k, f]
            for e in range(start, ends[m, f]):
                row = table[k, keys[e]]
                for j in range(GH):
                    o[j] += row[j]
            start = ends[m, f]
    return out


# The per-step loops below index the arrays (``table[k, i, j]``) instead of taking a row view
# per key and step: each view costs an allocation-free but atomic reference count, which at
# JSB's sizes (10 members, 280 steps, 4 keys) took most of the kernels' time.


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gather_bias(w, keys, ends, bias):
    """:func:`_gather` with ``bias[k]`` added to each step's sum (the same roundings), from
    ``w (K, GH, I)`` as the module stores it: each member's table ``w[k].T`` is transposed
    into one scratch block that stays in cache (no transposed copy of all of W per update)."""
    K, GH, I = w.shape
    M, F = ends.shape
    out = np.empty((K, F, GH), w.dtype)
    acc = np.empty(GH, w.dtype)
    table = np.empty((I, GH), w.dtype)
    for k in range(K):
        for j in range(GH):
            for i in range(I):
                table[i, j] = w[k, j, i]
        m = 0 if M == 1 else k
        start = 0 if m == 0 else ends[m - 1, F - 1]
        for f in range(F):
            for j in range(GH):
                acc[j] = 0
            for e in range(start, ends[m, f]):
                i = keys[e]
                for j in range(GH):
                    acc[j] += table[i, j]
            for j in range(GH):
                out[k, f, j] = acc[j] + bias[k, j]
            start = ends[m, f]
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _scatter_bias(d_out, keys, ends, n_keys):
    """:func:`_scatter` (the same sums), written as ``d_w (K, GH, I)`` (``W_ih``'s layout:
    each member's sums in one scratch block, transposed out of it), and ``sum_f d_out[k, f]``
    (accumulated in float64)."""
    K, F, GH = d_out.shape
    M = ends.shape[0]
    d_w = np.empty((K, GH, n_keys), d_out.dtype)
    d_table = np.empty((n_keys, GH), d_out.dtype)
    d_bias = np.zeros((K, GH), np.float64)
    for k in range(K):
        d_table[:] = 0
        m = 0 if M == 1 else k
        start = 0 if m == 0 else ends[m - 1, F - 1]
        for f in range(F):
            for j in range(GH):
                d_bias[k, j] += d_out[k, f, j]
            for e in range(start, ends[m, f]):
                i = keys[e]
                for j in range(GH):
                    d_table[i, j] += d_out[k, f, j]
            start = ends[m, f]
        for j in range(GH):
            for i in range(n_keys):
                d_w[k, j, i] = d_table[i, j]
    return d_w, d_bias.astype(d_out.dtype)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _scatter(d_out, keys, ends, n_keys):
    """The gather's backward: ``d_table[k, i] = sum of d_out[k, f] over the steps f where key
    i sounds``; ``(K, I, GH)``."""
    K, F, GH = d_out.shape
    M = ends.shape[0]
    d_table = np.zeros((K, n_keys, GH), d_out.dtype)
    for k in range(K):
        m = 0 if M == 1 else k
        start = 0 if m == 0 else ends[m - 1, F - 1]
        for f in range(F):
            d = d_out[k, f]
            for e in range(start, ends[m, f]):
                row = d_table[k, keys[e]]
                for j in range(GH):
                    row[j] += d[j]
            start = ends[m, f]
    return d_table


class _Gather(torch.autograd.Function):
    """``W x`` for binary ``x`` given as its keys: ``(K, T*B, G*H)``; differentiable in W."""

    @staticmethod
    def forward(ctx, w_ih, keys, ends):
        ctx.save_for_backward(keys, ends)
        ctx.n_keys = w_ih.shape[2]
        return gather(w_ih, keys, ends)

    @staticmethod
    def backward(ctx, d_out):
        keys, ends = ctx.saved_tensors
        d_out = d_out.detach().contiguous().numpy()
        d_table = _scatter(d_out, keys.numpy(), ends.numpy(), ctx.n_keys)
        return torch.from_numpy(d_table).transpose(1, 2), None, None
