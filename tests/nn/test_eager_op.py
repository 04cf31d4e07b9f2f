"""The eager path of the fused kernels (``rnnbench.nn.ops.FusedRnnEager``, or no autograd node
when no gradient is wanted) gives exactly the custom op's numbers: outputs and every gradient,
for every unit and variant the kernels serve; the op runs wherever something traces."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from rnnbench.nn import ops, variants
from rnnbench.nn.functional import run_unit

# (cell, peephole, reset, variant): every kernel pair, with and without the options
FORMS = [
    ("tanh", False, "before", ""),
    ("lstm", True, "before", ""),
    ("lstm", False, "before", ""),
    ("lstm", True, "before", "cifg"),
    ("lstm", True, "before", "nog"),
    ("lstm", False, "before", "noaf"),
    ("gru", False, "before", ""),
    ("gru", False, "after", ""),
    ("gru", False, "after", "mgu"),
    ("gru", False, "before", "nrg"),
]


def _inputs(cell, peephole, variant, dtype):
    gen = torch.Generator().manual_seed(3)
    K, T, B, I, H = 2, 7, 3, 4, 5

    def rand(*shape):
        return (0.5 * torch.randn(*shape, generator=gen, dtype=dtype)).requires_grad_()

    gates = variants.gate_count(cell, variant)
    peepholes = len(variants.peephole_rows(cell, variant))
    mask = torch.ones(T, B, dtype=dtype)
    mask[4:, 1] = 0
    return {
        "x": rand(K, T, B, I),
        "w_ih": rand(K, gates * H, I),
        "w_hh": rand(K, gates * H, H),
        "b_ih": rand(K, gates * H),
        "b_hh": rand(K, gates * H),
        "h0": rand(K, B, H),
        "c0": rand(K, B, H) if cell == "lstm" else None,
        "w_ch": rand(K, peepholes, H) if peephole else None,
        "mask": mask,
    }


def _run(cell, reset, variant, inputs):
    leaves = {k: v for k, v in inputs.items() if v is not None and v.requires_grad}
    for t in leaves.values():
        t.grad = None
    out, h_n, c_n = run_unit(cell, **inputs, reset=reset, variant=variant, backend="numba")
    loss = (out * out.detach().cos()).sum() + h_n.sum()
    if c_n is not None:
        loss = loss + c_n.exp().sum()
    loss.backward()
    finals = [t.detach() for t in (out, h_n, c_n) if t is not None]
    return finals, {k: t.grad.clone() for k, t in leaves.items()}, out.grad_fn


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("cell", "peephole", "reset", "variant"), FORMS)
def test_eager_path_equals_the_custom_op(monkeypatch, cell, peephole, reset, variant, dtype):
    inputs = _inputs(cell, peephole, variant, dtype)
    finals, grads, node = _run(cell, reset, variant, inputs)
    assert type(node).__name__ == "FusedRnnEagerBackward"
    monkeypatch.setattr(ops, "_eager", lambda xw: False)
    op_finals, op_grads, op_node = _run(cell, reset, variant, inputs)
    assert type(op_node).__name__ != "FusedRnnEagerBackward"
    for a, b in zip(finals, op_finals, strict=True):
        assert torch.equal(a, b)
    assert grads.keys() == op_grads.keys()
    for name in grads:
        assert torch.equal(grads[name], op_grads[name]), name
    monkeypatch.undo()
    with torch.no_grad():  # no autograd node at all: the same outputs
        out = run_unit(cell, **inputs, reset=reset, variant=variant, backend="numba")[0]
    assert torch.equal(out, finals[0])


def test_nan_propagates_on_the_eager_path():
    inputs = _inputs("lstm", True, "", torch.float32)
    with torch.no_grad():
        inputs["w_hh"][0, 0, 0] = float("nan")
    finals, grads, _ = _run("lstm", "before", "", inputs)
    assert finals[0][0].isnan().any() and not finals[0][1].isnan().any()
    assert grads["w_hh"][0].isnan().any() and not grads["w_hh"][1].isnan().any()


class _Watch(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def test_the_op_runs_where_something_watches():
    inputs = _inputs("gru", False, "", torch.float32)
    xw = inputs["x"]
    assert ops._eager(xw)
    with _Watch():
        assert not ops._eager(xw)
    assert not ops._eager(torch.nn.Parameter(xw.detach()))  # a subclass: the op
    assert not torch.vmap(lambda t: torch.tensor(ops._eager(t)))(xw).any()
