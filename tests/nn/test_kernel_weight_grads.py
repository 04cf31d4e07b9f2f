"""The recurrent weights' gradients of the fused kernels at shapes large enough that the
backward kernels sum them in chunks of rows (``kernels.common.WEIGHT_GRAD_CHUNK``, uneven
chunks here), against the torch reference loop: every unit and form, two variants, padded
tails and per-member masks, both dtypes; and a NaN in the recurrent weights reaching the
same gradients as through torch."""

import pytest
import torch

from rnnbench.nn.functional import run_unit
from rnnbench.nn.kernels.common import WEIGHT_GRAD_CHUNK

# (cell, peephole, reset, variant, gates kept, H): T * B * G * H above WEIGHT_GRAD_CHUNK
FORMS = [
    ("tanh", False, "before", "", 1, 100),
    ("lstm", False, "before", "", 4, 48),
    ("lstm", True, "before", "", 4, 48),
    ("lstm", False, "before", "cifg", 3, 56),
    ("gru", False, "before", "", 3, 64),
    ("gru", False, "after", "", 3, 64),
    ("gru", False, "after", "mgu", 2, 80),
]
T, B, I = 29, 3, 7


def inputs_for(cell, peephole, gates, H, K, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen, dtype=dtype)).requires_grad_()

    return {
        "x": rand(T, B, I),
        "w_ih": rand(K, gates * H, I, scale=0.3),
        "w_hh": rand(K, gates * H, H, scale=0.3 / H**0.5),
        "b_ih": rand(K, gates * H),
        "b_hh": rand(K, gates * H),
        "h0": rand(K, B, H),
        "c0": rand(K, B, H) if cell == "lstm" else None,
        "w_ch": rand(K, 3, H) if peephole else None,
    }


def grads(cell, reset, variant, inputs, mask, backend):
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
    return {name: t.grad.clone() for name, t in inputs.items() if t is not None}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("cell", "peephole", "reset", "variant", "gates", "H"), FORMS)
def test_chunked_weight_gradients_equal_torch(cell, peephole, reset, variant, gates, H, dtype):
    assert T * B * gates * H * H > WEIGHT_GRAD_CHUNK  # the chunked path runs
    K = 2
    inputs = inputs_for(cell, peephole, gates, H, K, dtype)
    mask = torch.ones(K, T, B, dtype=dtype)
    mask[0, 20:, 1] = 0  # member 0: a shorter row
    mask[1, 17:] = 0  # member 1: a padded tail of 12 steps, skipped by the kernels
    mask[1, 5:, 2] = 0
    ref = grads(cell, reset, variant, inputs, mask, "torch")
    got = grads(cell, reset, variant, inputs, mask, "numba")
    assert got.keys() == ref.keys()
    rel = 1e-10 if dtype == torch.float64 else 2e-5
    for name in ref:
        scale = ref[name].abs().max().item()
        assert (got[name] - ref[name]).abs().max().item() <= rel * max(scale, 1.0), name


@pytest.mark.parametrize(("cell", "peephole", "reset", "variant", "gates", "H"), FORMS)
def test_a_nan_in_the_recurrent_weights_reaches_the_same_gradients(
    cell, peephole, reset, variant, gates, H
):
    inputs = inputs_for(cell, peephole, gates, H, 2, torch.float32, seed=1)
    with torch.no_grad():
        inputs["w_hh"][1, 3, 2] = float("nan")  # member 1 only
    mask = torch.ones(T, B)
    ref = grads(cell, reset, variant, inputs, mask, "torch")
    got = grads(cell, reset, variant, inputs, mask, "numba")
    for name in ref:
        assert torch.equal(got[name].isnan(), ref[name].isnan()), name
        finite = ~ref[name].isnan()
        assert torch.allclose(got[name][finite], ref[name][finite], rtol=1e-4, atol=1e-4), name
        if name == "x":  # shared by the members: its gradient sums theirs
            continue
        assert got[name][1].isnan().any(), name  # the NaN member's gradients are NaN
        assert not got[name][0].isnan().any(), name  # the other member stays finite
