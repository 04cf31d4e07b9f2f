"""What every fused kernel shares: the numba decorator, the activations (a rational tanh in
float32 that vectorises, libm in float64) and the masked state update.

NaN propagates through the activations and the update as through torch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numba
import numpy as np
from numba import types
from numba.extending import overload

from rnnbench.nn.kernels import cache

# before any kernel is compiled or loaded: numba's cache would keep a kernel built on an old
# version of this module (it checks only the kernel's own file; rnnbench.nn.kernels.cache)
cache.drop_stale(Path(__file__).parent)

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")

# ---- activations: libm in float64; in float32 a rational tanh that vectorises ----------------
# tanh(x) ~ x P(x^2) / Q(x^2) on x clamped to +-7.905 (where float32 tanh rounds to +-1), the
# minimax fit of Eigen / XLA / MLAS, within a few float32 ulps; sigmoid(x) = (1 + tanh(x/2)) / 2.
# NaN propagates (tanh(NaN) = NaN) and +-inf saturates to +-1, exactly as torch.tanh.
# libm's expf and tanhf are opaque calls that stop LLVM from vectorising the gate loops, and
# numba has no SVML here, so the rational form makes the float32 kernels about 2x faster.

_TANH_CLAMP = np.float32(7.90531110763549805)
_P1, _P3, _P5, _P7, _P9, _P11, _P13 = (
    np.float32(c)
    for c in (
        4.89352455891786e-03,
        6.37261928875436e-04,
        1.48572235717979e-05,
        5.12229709037114e-08,
        -8.60467152213735e-11,
        2.00018790482477e-13,
        -2.76076847742355e-16,
    )
)
_Q0, _Q2, _Q4, _Q6 = (
    np.float32(c)
    for c in (
        4.89352518554385e-03,
        2.26843463243900e-03,
        1.18534705686654e-04,
        1.19825839466702e-06,
    )
)
_HALF = np.float32(0.5)


def _tanh(x):
    return math.tanh(x)


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@overload(_tanh, inline="always")
def _tanh_impl(x):
    if x != types.float32:
        return lambda x: math.tanh(x)

    def rational_tanh(x):
        # x first: numba's min and max follow Python's, which return their first argument
        # when a comparison with NaN is False, so NaN passes through the clamp and the
        # rational form, as through torch.tanh (max(-C, min(C, x)) returned C for NaN).
        x = max(min(x, _TANH_CLAMP), -_TANH_CLAMP)
        x2 = x * x
        p = _P1 + x2 * (_P3 + x2 * (_P5 + x2 * (_P7 + x2 * (_P9 + x2 * (_P11 + x2 * _P13)))))
        q = _Q0 + x2 * (_Q2 + x2 * (_Q4 + x2 * _Q6))
        return x * p / q

    return rational_tanh


@overload(_sigmoid, inline="always")
def _sigmoid_impl(x):
    if x != types.float32:
        return lambda x: 1.0 / (1.0 + math.exp(-x))
    return lambda x: _HALF * _tanh(_HALF * x) + _HALF


def _gate(x, s, shift):
    """``tanh(x)`` where ``s == 1`` (``shift`` 0), ``sigmoid(x)`` where ``s == 0.5`` (``shift``
    0.5): one loop over a row of gate blocks of both kinds, with no remainder per block."""
    return s * math.tanh(s * x) + shift


@overload(_gate, inline="always")
def _gate_impl(x, s, shift):
    if x != types.float32:  # libm, as _tanh and _sigmoid: the same numbers as before

        def libm_gate(x, s, shift):
            if s == 1:
                return math.tanh(x)
            return 1.0 / (1.0 + math.exp(-x))

        return libm_gate
    # _sigmoid's own arithmetic at s = shift = 1/2; tanh exactly at s = 1, shift = 0
    return lambda x, s, shift: s * _tanh(s * x) + shift


# ---- the masked state update, shared by all cells -----------------------------------------------


@_jit
def _finish_step(m, new, prev, out_row):
    """``out = m * new``; the state ``new`` becomes ``m * new + (1 - m) * prev``."""
    if m == 1:
        out_row[:] = new
    else:
        for j in range(new.shape[0]):
            out_row[j] = m * new[j]
            new[j] = out_row[j] + (1 - m) * prev[j]


@_jit
def _keep_cell(m, new, prev):
    if m != 1:
        for j in range(new.shape[0]):
            new[j] = m * new[j] + (1 - m) * prev[j]


# ---- a member's padded tail: steps where none of its rows is real ------------------------------
# A population whose members read their own batches (fresh seeds, issue 22) pads every batch to
# the longest member's. On a step where all of a member's rows are padding the state is kept
# and the output is 0, and the backward passes the state's gradient through unchanged with no
# gradient into the step: the kernels skip that tail and write what those steps would give
# (out 0, the last state repeated; gradients 0). For finite values this is the same arithmetic;
# a NaN or inf can only reach the tail from the real steps' state, which already carries it
# into the loss.


@_jit
def _live_steps(mask_k):
    """1 + the last step at which any of one member's rows is real; 0 when none is."""
    T, B = mask_k.shape
    for t in range(T - 1, -1, -1):
        for b in range(B):
            if mask_k[t, b] != 0:
                return t + 1
    return 0


@_jit
def _hold_tail(states, L):
    """``states (T + 1, B, H)`` of one member: the steps after ``L`` keep state ``L``."""
    for t in range(L + 1, states.shape[0]):
        states[t] = states[L]


# ---- a member's padded rows inside its live steps -------------------------------------------
# A batch's sequences are padded at their end to the longest, so inside the live steps some
# rows are padding (about 26% of JSB's (step, row) slots at batch 4). Where every mask value at
# a step is 0 or 1, the kernels compute the real rows only (their states gathered into a
# compact buffer for the product) and write what a padding row gives for finite values: out
# 0, the state kept, no gradient into the step, the state's gradient passed through. The
# per-row arithmetic of the real rows is unchanged (a product's row does not depend on the
# other rows). A step with any other mask value runs all its rows as before.


@_jit
def _step_rows(mask_kt, rows):
    """The rows to compute at one step, into ``rows``; returns their count: the real rows
    (mask 1) where every mask value is 0 or 1, else all rows."""
    B = mask_kt.shape[0]
    n = 0
    for b in range(B):
        m = mask_kt[b]
        if m == 1:
            rows[n] = b
            n += 1
        elif m != 0:
            for c in range(B):
                rows[c] = c
            return B
    return n


@_jit
def _member_rows(mask_k, L):
    """:func:`_step_rows` for the steps ``t < L`` of one member: ``rows (L, B)``, ``count
    (L)`` and ``first (L + 1)``, the offset of each step's rows in a compact array of the
    computed (step, row) slots in order (``first[L]`` of them)."""
    B = mask_k.shape[1]
    rows = np.empty((max(L, 1), B), np.intp)
    count = np.empty(max(L, 1), np.intp)
    first = np.empty(L + 1, np.intp)
    first[0] = 0
    for t in range(L):
        count[t] = _step_rows(mask_k[t], rows[t])
        first[t + 1] = first[t] + count[t]
    return rows, count, first


@_jit
def _gather_rows(src, rows, n, dst):
    """``dst[i] = src[rows[i]]`` for ``i < n``."""
    for i in range(n):
        b = rows[i]
        for j in range(src.shape[1]):
            dst[i, j] = src[b, j]


# ---- the recurrent weights' gradients, inside the backward kernels ----------------------------
# One member's gradient is one product of (T*B, G)^T by (T*B, H). OpenBLAS (scipy's, the one
# numba calls) runs products up to a few hundred thousand multiply-adds on its small-matrix
# kernels and larger ones on its packing path, which at these shapes is slower per
# multiply-add: at T*B = 240 rows, one thread, (240, 144)^T (240, 36) took 42 us in one
# product and 25 us in two of 120 rows (the GRU's (240, 138)^T (240, 46): 54 and 34 us). So
# the rows go in chunks of at most WEIGHT_GRAD_CHUNK multiply-adds, summed in float32 (a
# different order of the same sum: the same result within float32 rounding). Where that would
# leave fewer than WEIGHT_GRAD_MIN_ROWS rows per chunk (the paper's speech sizes: 5 to 8 rows
# of 768, about 150 products and as many sums of the whole gradient), the gradient is one
# product: at (768, 780)^T (768, 195), one thread, 5.4 -> 3.0 ms (issue 22, seventh session;
# chunks of 32 rows still beat one product at G H = 25,000: 0.41 against 0.52 ms).

WEIGHT_GRAD_CHUNK = 800_000
WEIGHT_GRAD_MIN_ROWS = 24


@_jit
def _weight_grads(d, inputs, d_w, d_b):
    """One member's ``d_w = sum_t,b d[t, b]^T inputs[t, b]`` and ``d_b = sum_t,b d[t, b]``;
    ``d (T, B, G)`` and ``inputs (T, B, H)`` contiguous: :func:`_weight_grads_rows` on their
    ``T B`` rows."""
    T, B, G = d.shape
    H = inputs.shape[2]
    _weight_grads_rows(d.reshape(T * B, G), inputs.reshape(T * B, H), d_w, d_b)


@_jit
def _weight_grads_rows(flat, flat_in, d_w, d_b):
    """``d_w = flat^T flat_in`` and ``d_b = sum_r flat[r]``; ``flat (R, G)`` and ``flat_in
    (R, H)`` contiguous. The product runs in chunks of rows of at most
    :data:`WEIGHT_GRAD_CHUNK` multiply-adds each, or whole where such chunks would have
    fewer than :data:`WEIGHT_GRAD_MIN_ROWS` rows (see above)."""
    rows, G = flat.shape
    H = flat_in.shape[1]
    d_b[:] = 0
    if rows == 0:
        d_w[:] = 0
        return
    chunks = max(1, -(-rows * G * H // WEIGHT_GRAD_CHUNK))
    step = -(-rows // chunks)
    if step < WEIGHT_GRAD_MIN_ROWS:
        step = rows
    np.dot(flat[:step].T, flat_in[:step], d_w)
    if step < rows:
        part = np.empty_like(d_w)
        for start in range(step, rows, step):
            stop = min(start + step, rows)
            np.dot(flat[start:stop].T, flat_in[start:stop], part)
            d_w += part
    for r in range(rows):
        for j in range(G):
            d_b[j] += flat[r, j]


@_jit
def _transposed(w):
    """A contiguous copy of ``w.T`` (the per-step product's right operand)."""
    return np.ascontiguousarray(w.T)
