"""The kernels' per-step product in blocks of columns (``kernels.blas.step_dot``) and the
recurrent weights' gradient in one product (``kernels.common.WEIGHT_GRAD_MIN_ROWS``), at the
paper's speech sizes (batch 16; LSTM 195 units, GRU 227, tanh 400): the product against
float64 and ``np.dot`` (bit for bit below the limit, where the music sizes are), every unit and
form against the torch reference, and NaN reaching the same gradients."""

import numpy as np
import pytest
import torch

from rnnbench.nn.functional import run_unit
from rnnbench.nn.kernels.blas import SMALL_KERNEL_LIMIT, block_width, dot_for_tests
from rnnbench.nn.kernels.common import WEIGHT_GRAD_CHUNK, WEIGHT_GRAD_MIN_ROWS

# the per-step products of the paper-size speech cells (B = 16): forward and backward
SHAPES = [(16, 195, 780), (16, 780, 195), (16, 227, 454), (16, 454, 227), (16, 400, 400)]


def _operands(m, k, n, transposed, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    if transposed:  # as the LSTM backward passes it: w.T of a row-major w
        b = np.ascontiguousarray(b.T).T
    return a, b


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_blocked_product_equals_float64_within_rounding(m, k, n, transposed):
    assert m * k * n > SMALL_KERNEL_LIMIT and 0 < block_width(m, k, n) < n  # blocks run
    a, b = _operands(m, k, n, transposed)
    out = np.full((m, n), np.nan, np.float32)  # beta = 0: the old contents are never read
    dot_for_tests(a, b, out)
    want = a.astype(np.float64) @ b.astype(np.float64)
    bound = 1e-6 * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)).max()
    assert np.abs(out - want).max() <= bound


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize(("m", "k", "n"), [(4, 36, 144), (4, 144, 36), (16, 61, 244), (1, 36, 108)])
def test_products_at_or_below_the_limit_are_np_dots_bit_for_bit(m, k, n, transposed):
    a, b = _operands(m, k, n, transposed, seed=1)
    out, ref = np.empty((m, n), np.float32), np.empty((m, n), np.float32)
    dot_for_tests(a, b, out)
    _np_dot(a, b, ref)
    assert np.array_equal(out, ref)


@pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")  # np.dot on an "A" array
def test_row_strided_operands_and_float64_take_their_own_paths():
    a, b = _operands(16, 195, 780, False, seed=2)
    wide = np.zeros((16, 900), np.float32)
    wide[:, :195] = a
    view = wide[:, :195]  # rows 900 apart: lda 900
    out = np.empty((16, 780), np.float32)
    dot_for_tests(view, b, out)
    ref = np.empty_like(out)
    dot_for_tests(np.ascontiguousarray(view), b, ref)
    assert np.array_equal(out, ref)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    out64 = np.empty((16, 780))
    dot_for_tests(a64, b64, out64)
    np.testing.assert_allclose(out64, a64 @ b64, rtol=1e-12, atol=1e-10)


def test_nan_and_inf_propagate_through_the_blocks():
    a, b = _operands(16, 195, 780, False, seed=3)
    a[3, 7] = np.nan
    b[11, 500] = np.inf
    out = np.empty((16, 780), np.float32)
    dot_for_tests(a, b, out)
    assert np.isnan(out[3]).all()  # a NaN in a row of a: its whole row
    rest = np.delete(out, 3, axis=0)
    assert (~np.isfinite(rest[:, 500])).all()  # an inf in b: its column (inf, or NaN)
    assert np.isfinite(np.delete(rest, 500, axis=1)).all()


def _np_dot(a, b, out):
    from numba import njit

    @njit
    def run(a, b, out):
        np.dot(a, b, out)

    run(a, b, out)


# ---- whole kernels at the paper's sizes against the torch reference ---------------------------

# (cell, peephole, reset, variant, gates kept, H)
FORMS = [
    ("tanh", False, "before", "", 1, 400),
    ("lstm", True, "before", "", 4, 195),
    ("lstm", False, "before", "cifg", 3, 195),
    ("gru", False, "before", "", 3, 227),
    ("gru", False, "after", "", 3, 227),
    ("gru", False, "before", "mgu", 2, 227),
]
T, B, I = 5, 16, 20


def _inputs(cell, peephole, gates, H, K, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen)).requires_grad_()

    return {
        "x": rand(T, B, I),
        "w_ih": rand(K, gates * H, I, scale=0.3),
        "w_hh": rand(K, gates * H, H, scale=1.0 / H**0.5),
        "b_ih": rand(K, gates * H),
        "b_hh": rand(K, gates * H),
        "h0": rand(K, B, H),
        "c0": rand(K, B, H) if cell == "lstm" else None,
        "w_ch": rand(K, 3, H) if peephole else None,
    }


def _grads(cell, reset, variant, inputs, mask, backend):
    for t in inputs.values():
        if t is not None:
            t.grad = None
    out, h_n, c_n = run_unit(
        cell, **inputs, reset=reset, mask=mask, backend=backend, variant=variant
    )
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    loss = (out * weights).sum() + (h_n**2).sum()
    if c_n is not None:
        loss = loss + c_n.sin().sum()
    loss.backward()
    grads = {name: t.grad.clone() for name, t in inputs.items() if t is not None}
    return out.detach(), grads


@pytest.mark.parametrize(("cell", "peephole", "reset", "variant", "gates", "H"), FORMS)
def test_paper_size_kernels_equal_torch(cell, peephole, reset, variant, gates, H):
    rows = T * B
    chunks = -(-rows * gates * H * H // WEIGHT_GRAD_CHUNK)
    assert -(-rows // chunks) < WEIGHT_GRAD_MIN_ROWS  # the weight gradient is one product
    inputs = _inputs(cell, peephole, gates, H, K=2)
    mask = torch.ones(2, T, B)
    mask[0, 3:, 5] = 0  # padded rows
    mask[1, 4:] = 0  # a padded tail
    out_ref, ref = _grads(cell, reset, variant, inputs, mask, "torch")
    out, got = _grads(cell, reset, variant, inputs, mask, "numba")
    assert (out - out_ref).abs().max().item() <= 2e-5
    assert got.keys() == ref.keys()
    for name in ref:
        scale = ref[name].abs().max().item()
        assert (got[name] - ref[name]).abs().max().item() <= 2e-5 * max(scale, 1.0), name


@pytest.mark.parametrize(("cell", "peephole", "reset", "variant", "gates", "H"), FORMS[:4])
def test_a_nan_in_paper_size_weights_reaches_the_same_gradients(
    cell, peephole, reset, variant, gates, H
):
    inputs = _inputs(cell, peephole, gates, H, K=2, seed=1)
    with torch.no_grad():
        inputs["w_hh"][1, 3, 2] = float("nan")  # member 1 only
    mask = torch.ones(T, B)
    _, ref = _grads(cell, reset, variant, inputs, mask, "torch")
    _, got = _grads(cell, reset, variant, inputs, mask, "numba")
    for name in ref:
        assert torch.equal(got[name].isnan(), ref[name].isnan()), name
        if name == "x":  # shared by the members: its gradient sums theirs
            continue
        assert got[name][1].isnan().any(), name
        assert not got[name][0].isnan().any(), name
