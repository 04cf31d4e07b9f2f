"""The recurrent kernels' per-step product at large sizes: :func:`step_dot`, ``out = a @ b``.

The kernels multiply a step's ``(B, H)`` states by the recurrent weights, ``(H, G H)`` or its
transpose, once per step and member. numba sends ``np.dot`` to scipy's OpenBLAS ``sgemm``.
OpenBLAS runs a product of at most :data:`SMALL_KERNEL_LIMIT` multiply-adds (``M N K <=
100^3``) on its small-matrix kernels, without packing, and larger ones through its packing
path, which at a step's few rows packs the whole weight matrix for 16 rows of work. At the
paper's speech sizes (B = 16; LSTM 195 units, GRU 227, tanh 400) every step's product is above
the limit, and measured (one thread, best of 5 x 500 calls, load about 3, AMD EPYC with
AVX-512) the packing path ran at about 52 GFLOP/s against about 106 on the small kernels:
``(16, 195) x (195, 780)`` 90 -> 43 us, ``(16, 780) x (780, 195)`` 94 -> 44 us, ``(16, 400) x
(400, 400)`` 96 -> 45 us, ``(16, 227) x (227, 454)`` 61 -> 29 us (torch's MKL: 61-70 us).

So :func:`step_dot`, for float32 products above the limit, calls the same ``sgemm`` (scipy's
``cython_blas``, the function numba's ``np.dot`` calls) once per block of columns of ``b`` and
``out``, each block below the limit. A column of ``out`` is the same sum over the same ``K``
products either way; only the kernel that sums them changes, so the result equals ``np.dot``'s
within float32 rounding (the order of the multiply-adds inside the kernel may differ). Products
at or below the limit (the music sizes: ``(4, 36) x (36, 144)``), float64 products and
operands that are not row-contiguous (or, for ``b``, a transposed row-contiguous array) go to
``np.dot`` unchanged, so their results are bit for bit those of before. With ``beta = 0``
BLAS never reads ``out``'s old contents; NaN and inf in ``a`` or ``b`` propagate as in any
product.

The blocks run on one thread (the small kernels have no threaded form); the kernels call this
inside :func:`rnnbench.nn.kernels.glue._call`'s thread setting, which a step above the limit
no longer uses. Where scipy's OpenBLAS was built without small kernels (not AVX-512), the
blocks run on its ordinary path at about the unblocked speed.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import binding as ll
from numba import types
from numba.extending import get_cython_function_address, overload

from rnnbench.nn.kernels.common import _gather_rows, _jit

__all__ = ["SMALL_KERNEL_LIMIT", "real_rows_dot", "step_dot"]

# OpenBLAS's sgemm_small_kernel_permit: M * N * K <= 100^3
SMALL_KERNEL_LIMIT = 1_000_000

# scipy's Fortran-convention sgemm (all arguments by pointer), the one numba's np.dot calls,
# under a name of our own: numba links the name when it compiles or loads a cached kernel
_SYMBOL = "rnnbench_scipy_sgemm"
ll.add_symbol(_SYMBOL, get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))
_i8, _i32, _f32 = (types.CPointer(t) for t in (types.int8, types.int32, types.float32))
_sgemm = types.ExternalFunction(
    _SYMBOL,
    types.void(_i8, _i8, _i32, _i32, _i32, _f32, _f32, _i32, _f32, _i32, _f32, _f32, _i32),
)
_N, _T = 78, 84  # 'N', 'T'


@_jit
def block_width(m, k, n):
    """Columns per block for an ``(m, k) x (k, n)`` product above the limit: the largest
    multiple of 32 (else of 16, else any) that keeps a block at or below it; 0 where even one
    column exceeds it."""
    most = SMALL_KERNEL_LIMIT // (m * k)
    if most >= 32:
        return most // 32 * 32
    if most >= 16:
        return most // 16 * 16
    return most


@_jit
def _width(a, b, out):
    """The block width for ``a @ b`` into ``out`` (float32), or 0 for one ``np.dot``: at or
    below the limit, where one column exceeds it, or where an operand's layout is not one
    that :func:`_blocked` takes."""
    M, K = a.shape
    N = b.shape[1]
    if M * K * N <= SMALL_KERNEL_LIMIT:
        return 0
    if a.strides[1] != 4 or out.strides[1] != 4 or not (b.strides[1] == 4 or b.strides[0] == 4):
        return 0
    return block_width(M, K, N)


@_jit
def _blocked(a, b, out, width):
    """``out = a @ b`` in blocks of ``width`` columns, float32; ``a`` and ``out``
    row-contiguous, ``b`` row-contiguous or the transpose of a row-contiguous array."""
    M, K = a.shape
    N = b.shape[1]
    ints = np.empty(6, np.int32)  # n of a block, m, k, ldb, lda, ldc
    flags = np.empty(2, np.int8)  # transb (the column-major view's first operand), transa
    scalars = np.empty(2, np.float32)  # alpha, beta
    scalars[0], scalars[1] = 1.0, 0.0
    flags[1] = _N
    # column-major: out^T (N, M) = op(b)^T (N, K) a^T (K, M)
    if b.strides[1] == 4:  # b row-major: its memory is b^T column-major, no transpose
        flags[0] = _N
        ints[3] = b.strides[0] // 4
    else:  # b = w.T, w row-major (N, K): its memory is b column-major, transposed
        flags[0] = _T
        ints[3] = b.strides[1] // 4
    ints[1], ints[2] = M, K
    ints[4] = a.strides[0] // 4
    ints[5] = out.strides[0] // 4
    for j0 in range(0, N, width):
        ints[0] = min(width, N - j0)
        _sgemm(
            flags[0:].ctypes, flags[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes,
            ints[2:].ctypes, scalars[0:].ctypes, b[:, j0:].ctypes, ints[3:].ctypes,
            a.ctypes, ints[4:].ctypes, scalars[1:].ctypes, out[:, j0:].ctypes,
            ints[5:].ctypes,
        )  # fmt: skip


def step_dot(a, b, out):
    """``np.dot(a, b, out)`` for 2-D ``a (M, K)``, ``b (K, N)``, ``out (M, N)``; float32
    products above :data:`SMALL_KERNEL_LIMIT` in blocks of columns (module docstring)."""
    np.dot(a, b, out)


@overload(step_dot, inline="always")
def _step_dot_impl(a, b, out):
    f32 = types.float32
    if not (a.dtype == f32 and b.dtype == f32 and out.dtype == f32):
        return lambda a, b, out: np.dot(a, b, out)

    def impl(a, b, out):
        width = _width(a, b, out)
        if width == 0:
            np.dot(a, b, out)
        else:
            _blocked(a, b, out, width)

    return impl


@_jit
def real_rows_dot(states, w, out, rows, n, gathered):
    """A forward step's product for its ``n`` real rows ``rows[:n]`` (a step's other rows are
    padding): :func:`step_dot` on all ``B`` rows of ``states`` where more than half are real
    (OpenBLAS's small kernel costs about as much on 3 rows as on 4; ``out``'s row ``b`` is row
    ``b``'s), else on the real rows' states gathered into ``gathered`` (``out``'s row ``i`` is
    row ``rows[i]``'s). Returns whether the product ran on all rows."""
    whole = 2 * n > states.shape[0]
    if whole:
        step_dot(states, w, out)
    elif n > 0:
        _gather_rows(states, rows, n, gathered)
        step_dot(gathered[:n], w, out[:n])
    return whole


@numba.njit(cache=True)
def dot_for_tests(a, b, out):
    """:func:`step_dot` callable from Python (its tests)."""
    step_dot(a, b, out)
