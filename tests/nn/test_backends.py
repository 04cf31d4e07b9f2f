"""The fused numba backend equals the torch reference loop: outputs and every gradient, with
masks, several population members, shared and per-member inputs, and both dtypes."""

import pytest
import torch

from rnnbench.errors import RnnbenchError
from rnnbench.nn.functional import run_unit

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}

# (cell, gates, peephole, reset)
FORMS = [
    ("tanh", 1, False, "before"),
    ("lstm", 4, True, "before"),
    ("lstm", 4, False, "before"),
    ("gru", 3, False, "before"),
    ("gru", 3, False, "after"),
]


def random_inputs(cell, gates, peephole, *, K, shared_x, bias, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    T, B, I, H = 9, 4, 3, 5

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen, dtype=dtype)).requires_grad_()

    x = rand(T, B, I) if shared_x else rand(K, T, B, I)
    inputs = {
        "x": x,
        "w_ih": rand(K, gates * H, I, scale=0.5),
        "w_hh": rand(K, gates * H, H, scale=0.5),
        "b_ih": rand(K, gates * H) if bias else None,
        "b_hh": rand(K, gates * H) if bias else None,
        "h0": rand(K, B, H),
        "c0": rand(K, B, H) if cell == "lstm" else None,
        "w_ch": rand(K, 3, H) if peephole else None,
    }
    mask = torch.ones(T, B, dtype=dtype)
    mask[6:, 1] = 0
    mask[2:, 3] = 0
    return inputs, mask


def outputs_and_grads(cell, reset, inputs, mask, backend):
    for t in inputs.values():
        if t is not None:
            t.grad = None
    out, h_n, c_n = run_unit(cell, **inputs, reset=reset, mask=mask, backend=backend)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    loss = (out * weights).sum() + (h_n**2).sum()
    if c_n is not None:
        loss = loss + c_n.sin().sum()
    loss.backward()
    finals = [out, h_n] + ([c_n] if c_n is not None else [])
    grads = {name: t.grad for name, t in inputs.items() if t is not None}
    return [f.detach() for f in finals], grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    ("K", "shared_x", "bias"), [(1, True, True), (3, False, True), (2, True, False)]
)
@pytest.mark.parametrize(("cell", "gates", "peephole", "reset"), FORMS)
def test_numba_equals_torch(cell, gates, peephole, reset, K, shared_x, bias, dtype):
    inputs, mask = random_inputs(
        cell, gates, peephole, K=K, shared_x=shared_x, bias=bias, dtype=dtype, seed=K
    )
    ref_finals, ref_grads = outputs_and_grads(cell, reset, inputs, mask, "torch")
    finals, grads = outputs_and_grads(cell, reset, inputs, mask, "numba")
    tol = TOLERANCE[dtype]
    for a, b in zip(finals, ref_finals, strict=True):
        assert (a - b).abs().max().item() <= tol
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert (grads[name] - ref_grads[name]).abs().max().item() <= tol, name


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_padded_steps_keep_state_and_output_zero(backend):
    inputs, mask = random_inputs(
        "lstm", 4, True, K=1, shared_x=True, bias=True, dtype=torch.float64, seed=0
    )
    out, h_n, c_n = run_unit("lstm", **inputs, mask=mask, backend=backend)
    assert out[:, 2:, 3].abs().max().item() == 0
    assert torch.equal(h_n[:, 3], out[:, 1, 3])
    short, h_short, c_short = run_unit(
        "lstm", **{**inputs, "x": inputs["x"][:2]}, mask=mask[:2], backend=backend
    )
    assert torch.equal(h_n[:, 3], h_short[:, 3])
    assert torch.equal(c_n[:, 3], c_short[:, 3])


def test_auto_picks_the_fused_backend_on_cpu():
    inputs, mask = random_inputs(
        "gru", 3, False, K=1, shared_x=True, bias=True, dtype=torch.float32, seed=0
    )
    out = run_unit("gru", **inputs, mask=mask, backend="auto")[0]
    # eager: the op's autograd.Function twin (rnnbench.nn.ops.FusedRnnEager)
    assert type(out.grad_fn).__name__ == "FusedRnnEagerBackward"


@pytest.mark.parametrize(
    "bad",
    [{"cell": "lstn"}, {"reset": "middle"}, {"backend": "cuda"}, {"cell": "gru", "peephole": True}],
)
def test_bad_arguments_raise_one_clear_error(bad):
    cell = bad.get("cell", "lstm")
    gates = {"lstm": 4, "gru": 3}.get(cell, 4)
    H = 2
    w_ch = torch.zeros(1, 3, H) if bad.get("peephole") else None
    with pytest.raises(RnnbenchError):
        run_unit(
            cell,
            torch.zeros(3, 1, 2),
            torch.zeros(1, gates * H, 2),
            torch.zeros(1, gates * H, H),
            w_ch=w_ch,
            reset=bad.get("reset", "before"),
            backend=bad.get("backend", "auto"),
        )


def test_double_backward_needs_the_torch_backend():
    inputs, mask = random_inputs(
        "tanh", 1, False, K=1, shared_x=True, bias=True, dtype=torch.float64, seed=0
    )
    for backend in ("torch", "numba"):
        out = run_unit("tanh", **inputs, mask=mask, backend=backend)[0]
        (grad,) = torch.autograd.grad(out.pow(2).sum(), inputs["w_hh"], create_graph=True)
        if backend == "torch":
            grad.sum().backward()
        else:
            with pytest.raises(RuntimeError):
                grad.sum().backward()
