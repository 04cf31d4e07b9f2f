"""The native-compatible forms equal torch.nn.RNN / LSTM / GRU given the same weights."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_sequence

from rnnbench.nn import GRU, LSTM, RNN

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}

# (name, our module with the native form, the torch.nn module)
NATIVE_FORMS = [
    ("tanh", lambda *a, **k: RNN(*a, **k), torch.nn.RNN),
    ("lstm", lambda *a, **k: LSTM(*a, peephole=False, **k), torch.nn.LSTM),
    ("gru", lambda *a, **k: GRU(*a, reset="after", **k), torch.nn.GRU),
]
BACKENDS = ["torch", "numba"]


def make_pair(make_ours, native_cls, input_size, hidden, *, bias, batch_first, backend, dtype):
    native = native_cls(input_size, hidden, bias=bias, batch_first=batch_first).to(dtype)
    ours = make_ours(input_size, hidden, bias=bias, batch_first=batch_first, backend=backend)
    ours = ours.to(dtype)
    ours.load_state_dict(native.state_dict())  # strict: a key mismatch raises
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in native.named_parameters()]
    for a, b in zip(ours.parameters(), native.parameters(), strict=True):
        assert torch.equal(a, b)  # the values were copied, not just accepted
    return ours, native


def initial_state(cell, batch, hidden, dtype, unbatched=False):
    shape = (1, hidden) if unbatched else (1, batch, hidden)
    h0 = torch.randn(shape, dtype=dtype, requires_grad=True)
    if cell == "lstm":
        return (h0, torch.randn(shape, dtype=dtype, requires_grad=True))
    return h0


def leaves(x, hx):
    states = list(hx) if isinstance(hx, tuple) else [hx]
    return [x, *states]


def outputs_and_grads(module, x, hx, inputs):
    for t in inputs:
        t.grad = None
    module.zero_grad()
    out, h_n = module(x, hx)
    out_data = out.data if isinstance(out, torch.nn.utils.rnn.PackedSequence) else out
    finals = list(h_n) if isinstance(h_n, tuple) else [h_n]
    weights = torch.linspace(-1, 1, out_data.numel(), dtype=out_data.dtype)
    loss = (out_data.reshape(-1) * weights).sum() + sum((f**2).sum() for f in finals)
    loss.backward()
    grads = [t.grad.clone() for t in inputs] + [p.grad.clone() for p in module.parameters()]
    return [out_data.detach(), *[f.detach() for f in finals], *grads]


def assert_close(ours, native, tol):
    assert len(ours) == len(native)
    for a, b in zip(ours, native, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= tol


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("cell", "make_ours", "native_cls"), NATIVE_FORMS)
@settings(max_examples=6, deadline=None, derandomize=True)
@given(
    steps=st.integers(1, 6),
    batch=st.integers(1, 4),
    input_size=st.integers(1, 5),
    hidden=st.integers(1, 6),
    bias=st.booleans(),
    batch_first=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_padded_input_matches_native(
    cell,
    make_ours,
    native_cls,
    backend,
    dtype,
    steps,
    batch,
    input_size,
    hidden,
    bias,
    batch_first,
    seed,
):
    torch.manual_seed(seed)
    ours, native = make_pair(
        make_ours,
        native_cls,
        input_size,
        hidden,
        bias=bias,
        batch_first=batch_first,
        backend=backend,
        dtype=dtype,
    )
    shape = (batch, steps, input_size) if batch_first else (steps, batch, input_size)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    hx = initial_state(cell, batch, hidden, dtype)
    inputs = leaves(x, hx)
    assert_close(
        outputs_and_grads(ours, x, hx, inputs),
        outputs_and_grads(native, x, hx, inputs),
        TOLERANCE[dtype],
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("cell", "make_ours", "native_cls"), NATIVE_FORMS)
@settings(max_examples=5, deadline=None, derandomize=True)
@given(
    lengths=st.lists(st.integers(1, 7), min_size=1, max_size=5),
    hidden=st.integers(1, 5),
    enforce_sorted=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_packed_input_matches_native(
    cell, make_ours, native_cls, backend, dtype, lengths, hidden, enforce_sorted, seed
):
    torch.manual_seed(seed)
    input_size = 3
    if enforce_sorted:
        lengths = sorted(lengths, reverse=True)
    ours, native = make_pair(
        make_ours,
        native_cls,
        input_size,
        hidden,
        bias=True,
        batch_first=False,
        backend=backend,
        dtype=dtype,
    )
    seqs = [torch.randn(n, input_size, dtype=dtype, requires_grad=True) for n in lengths]
    hx = initial_state(cell, len(lengths), hidden, dtype)
    inputs = [*seqs, *leaves(seqs[0], hx)[1:]]

    def packed():
        return pack_sequence(seqs, enforce_sorted=enforce_sorted)

    ours_result = outputs_and_grads(ours, packed(), hx, inputs)
    assert_close(ours_result, outputs_and_grads(native, packed(), hx, inputs), TOLERANCE[dtype])
    out, _ = ours(packed(), hx)
    assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
    assert torch.equal(out.batch_sizes, packed().batch_sizes)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("cell", "make_ours", "native_cls"), NATIVE_FORMS)
def test_unbatched_input_matches_native(cell, make_ours, native_cls, backend):
    torch.manual_seed(0)
    ours, native = make_pair(
        make_ours,
        native_cls,
        4,
        5,
        bias=True,
        batch_first=False,
        backend=backend,
        dtype=torch.float64,
    )
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    hx = initial_state(cell, 1, 5, torch.float64, unbatched=True)
    inputs = leaves(x, hx)
    assert_close(
        outputs_and_grads(ours, x, hx, inputs), outputs_and_grads(native, x, hx, inputs), 1e-10
    )


@pytest.mark.parametrize(("cell", "make_ours", "native_cls"), NATIVE_FORMS)
def test_default_state_and_return_structure_match_native(cell, make_ours, native_cls):
    ours, native = make_pair(
        make_ours,
        native_cls,
        3,
        4,
        bias=True,
        batch_first=True,
        backend="auto",
        dtype=torch.float32,
    )
    x = torch.randn(2, 5, 3)
    (out, h_n), (ref_out, ref_h_n) = ours(x), native(x)
    assert out.shape == ref_out.shape
    assert type(h_n) is type(ref_h_n)
    if cell == "lstm":
        assert [t.shape for t in h_n] == [t.shape for t in ref_h_n]
    else:
        assert h_n.shape == ref_h_n.shape
    native.load_state_dict(ours.state_dict())
