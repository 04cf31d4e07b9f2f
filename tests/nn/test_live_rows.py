"""The fused kernels compute a step's real rows only (``kernels.common._step_rows``): batches
whose rows end at different steps (a row of length 1, rows ending apart, all rows equal),
against the torch reference loop in both dtypes; a padding row's output, state and gradients
exactly those of padding (out 0, the state kept, no gradient into the step, the state's
gradient passed through); and a mask value other than 0 or 1 still runs its whole step."""

import numpy as np
import pytest
import torch

from rnnbench.nn.functional import run_unit
from rnnbench.nn.kernels import gru, lstm, tanh

# (cell, peephole, reset, variant, gates kept)
FORMS = [
    ("tanh", False, "before", "", 1),
    ("lstm", False, "before", "", 4),
    ("lstm", True, "before", "", 4),
    ("gru", False, "before", "", 3),
    ("gru", False, "after", "", 3),
    ("gru", False, "after", "mgu", 2),
    ("lstm", False, "before", "cifg", 3),
]
T, B, I, H = 13, 4, 5, 6
# per member: rows of very different lengths (one of length 1), rows that end at different
# steps, and rows all of the same length
LENGTHS = [[13, 1, 7, 4], [2, 9, 9, 13], [13, 13, 13, 13], [5, 1, 3, 5]]
K = len(LENGTHS)


def length_mask(dtype, lengths=LENGTHS):
    mask = torch.zeros(len(lengths), T, B, dtype=dtype)
    for k, row in enumerate(lengths):
        for b, n in enumerate(row):
            mask[k, :n, b] = 1
    return mask


def inputs_for(cell, peephole, gates, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen, dtype=dtype)).requires_grad_()

    return {
        "x": rand(T, B, I),
        "w_ih": rand(K, gates * H, I, scale=0.5),
        "w_hh": rand(K, gates * H, H, scale=0.5),
        "b_ih": rand(K, gates * H),
        "b_hh": rand(K, gates * H),
        "h0": rand(K, B, H),
        "c0": rand(K, B, H) if cell == "lstm" else None,
        "w_ch": rand(K, 3, H) if peephole else None,
    }


def run(cell, reset, variant, inputs, mask, backend):
    for t in inputs.values():
        if t is not None:
            t.grad = None
    out, h_n, c_n = run_unit(
        cell, **inputs, reset=reset, mask=mask, backend=backend, variant=variant
    )
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    loss = (out * weights).sum() + (h_n**2).sum()
    if c_n is not None:
        loss = loss + c_n.sin().sum()
    loss.backward()
    results = {"out": out.detach(), "h_n": h_n.detach()}
    if c_n is not None:
        results["c_n"] = c_n.detach()
    results.update({name: t.grad.clone() for name, t in inputs.items() if t is not None})
    return results


# Fractional mask values only for the GRU forms: the tanh and LSTM backward kernels read the
# blended state of a step with 0 < m < 1 where torch differentiates through it (so before this
# change too, 7755466); the modules and the trainer only ever build masks of 0 and 1.
CASES = [(*form, False) for form in FORMS] + [(*form, True) for form in FORMS if form[0] == "gru"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("cell", "peephole", "reset", "variant", "gates", "fraction"), CASES)
def test_rows_of_different_lengths_equal_torch(
    cell, peephole, reset, variant, gates, dtype, fraction
):
    mask = length_mask(dtype)
    if fraction:  # a step with a mask value neither 0 nor 1 runs all its rows
        mask[0, 3, 2] = 0.5
        mask[3, 0, 1] = 0.25
    inputs = inputs_for(cell, peephole, gates, dtype)
    ref = run(cell, reset, variant, inputs, mask, "torch")
    got = run(cell, reset, variant, inputs, mask, "numba")
    assert got.keys() == ref.keys()
    rel = 1e-10 if dtype == torch.float64 else 2e-5
    for name in ref:
        scale = ref[name].abs().max().item()
        assert (got[name] - ref[name]).abs().max().item() <= rel * max(scale, 1.0), name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("cell", "peephole", "reset", "variant", "gates"), FORMS)
def test_padding_rows_change_nothing_and_get_no_gradient(
    cell, peephole, reset, variant, gates, dtype
):
    """What a padding row's input holds changes no result of any row; its input's gradient,
    its output and its share of the weights' gradients are exactly 0; its final state is its
    state at its last real step."""
    mask = length_mask(dtype)
    inputs = inputs_for(cell, peephole, gates, dtype)
    base = run(cell, reset, variant, inputs, mask, "numba")
    pad = mask[0] == 0  # x is shared by the members: member 0's padding
    for k in range(1, K):
        pad &= mask[k] == 0
    with torch.no_grad():
        inputs["x"][pad] = 1e3 * torch.randn(int(pad.sum()), I, dtype=dtype)
    other = run(cell, reset, variant, inputs, mask, "numba")
    for name in base:
        assert torch.equal(base[name], other[name]), name
    assert torch.all(base["x"][pad] == 0)
    assert torch.all(base["out"][mask == 0] == 0)
    for k, row in enumerate(LENGTHS):
        for b, n in enumerate(row):
            assert torch.equal(base["h_n"][k, b], base["out"][k, n - 1, b] / mask[k, n - 1, b])


def _state_checks(mask, out, hs, cs=None):
    Kn, Tn, Bn = mask.shape
    for k in range(Kn):
        for t in range(Tn):
            for b in range(Bn):
                if mask[k, t, b] == 0:
                    assert np.all(out[k, t, b] == 0)
                    assert np.array_equal(hs[k, t + 1, b], hs[k, t, b])
                    if cs is not None:
                        assert np.array_equal(cs[k, t + 1, b], cs[k, t, b])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("before", [True, False])
def test_the_gru_kernels_keep_a_padding_rows_state_and_pass_its_gradient(dtype, before):
    rng = np.random.default_rng(1)
    mask = length_mask(torch.float64).numpy().astype(dtype)
    xw = rng.standard_normal((K, T, B, 3 * H)).astype(dtype)
    w = (0.5 * rng.standard_normal((K, 3 * H, H))).astype(dtype)
    b_hh = rng.standard_normal((K, 3 * H)).astype(dtype)
    h0 = rng.standard_normal((K, B, H)).astype(dtype)
    out, h_n, hs, acts, aux = gru.gru_forward(xw, w, b_hh, before, mask, h0)
    _state_checks(mask, out, hs)
    d_out = rng.standard_normal(out.shape).astype(dtype) * mask[..., None]
    d_hn = rng.standard_normal(h_n.shape).astype(dtype)
    d_xw, d_w, d_b, d_h0 = gru.gru_backward(d_out, d_hn, w, before, mask, hs, acts, aux)
    assert np.all(d_xw[mask == 0] == 0)
    # member 0's row 1 is real at step 0 only: its d_h0 is step 0's backward of d_hn passed
    # unchanged through the 12 padding steps, exactly what the first step alone gives it
    first = gru.gru_backward(
        d_out[:1, :1], d_hn[:1], w[:1], before, mask[:1, :1], hs[:1, :2].copy(),
        acts[:1, :1].copy(), aux[:1, :1].copy(),
    )  # fmt: skip
    assert np.array_equal(first[3][0, 1], d_h0[0, 1])
    assert np.array_equal(first[0][0, 0, 1], d_xw[0, 0, 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("peephole", [False, True])
def test_the_lstm_kernels_keep_a_padding_rows_state_and_pass_its_gradient(dtype, peephole):
    rng = np.random.default_rng(2)
    mask = length_mask(torch.float64).numpy().astype(dtype)
    xw = rng.standard_normal((K, T, B, 4 * H)).astype(dtype)
    w = (0.5 * rng.standard_normal((K, 4 * H, H))).astype(dtype)
    b_hh = rng.standard_normal((K, 4 * H)).astype(dtype)
    w_ch = rng.standard_normal((K, 3, H)).astype(dtype)
    h0 = rng.standard_normal((K, B, H)).astype(dtype)
    c0 = rng.standard_normal((K, B, H)).astype(dtype)
    out, h_n, c_n, hs, cs, acts = lstm.lstm_forward(xw, w, b_hh, w_ch, peephole, mask, h0, c0)
    _state_checks(mask, out, hs, cs)
    d_out = rng.standard_normal(out.shape).astype(dtype) * mask[..., None]
    d_hn = rng.standard_normal(h_n.shape).astype(dtype)
    d_cn = rng.standard_normal(c_n.shape).astype(dtype)
    d_pre, d_w, d_b, d_h0, d_c0, d_w_ch = lstm.lstm_backward(
        d_out, d_hn, d_cn, w, w_ch, peephole, mask, hs, cs, acts
    )
    assert np.all(d_pre[mask == 0] == 0)
    first = lstm.lstm_backward(
        d_out[:1, :1], d_hn[:1], d_cn[:1], w[:1], w_ch[:1], peephole, mask[:1, :1],
        hs[:1, :2].copy(), cs[:1, :2].copy(), acts[:1, :1].copy(),
    )  # fmt: skip
    assert np.array_equal(first[3][0, 1], d_h0[0, 1])
    assert np.array_equal(first[4][0, 1], d_c0[0, 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_tanh_kernels_keep_a_padding_rows_state_and_pass_its_gradient(dtype):
    rng = np.random.default_rng(3)
    mask = length_mask(torch.float64).numpy().astype(dtype)
    xw = rng.standard_normal((K, T, B, H)).astype(dtype)
    w = (0.5 * rng.standard_normal((K, H, H))).astype(dtype)
    b_hh = rng.standard_normal((K, H)).astype(dtype)
    h0 = rng.standard_normal((K, B, H)).astype(dtype)
    out, h_n, hs = tanh.tanh_forward(xw, w, b_hh, mask, h0)
    _state_checks(mask, out, hs)
    d_out = rng.standard_normal(out.shape).astype(dtype) * mask[..., None]
    d_hn = rng.standard_normal(h_n.shape).astype(dtype)
    d_pre, d_w, d_b, d_h0 = tanh.tanh_backward(d_out, d_hn, w, mask, out, hs)
    assert np.all(d_pre[mask == 0] == 0)
    first = tanh.tanh_backward(
        d_out[:1, :1], d_hn[:1], w[:1], mask[:1, :1], out[:1, :1].copy(), hs[:1, :2].copy()
    )
    assert np.array_equal(first[3][0, 1], d_h0[0, 1])
