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


def outputs_and_grads(cell, reset, inputs, mask, backend, variant=""):
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


# (cell, variant, peephole) for the padded-tail test: the full units and every variant kernel
TAIL_FORMS = [("tanh", "", False), ("lstm", "", True), ("lstm", "", False), ("gru", "", False)]
TAIL_FORMS += [("gru", "after", False), ("gru", "nrg", False), ("gru", "mgu", False)]
TAIL_FORMS += [("lstm", v, v != "np") for v in ("np", "nig", "nfg", "noaf", "cifg")]


@pytest.mark.parametrize(("cell", "variant", "peephole"), TAIL_FORMS)
def test_members_padded_tails_are_skipped_exactly(cell, variant, peephole):
    """Issue 22: members reading their own batches are padded to the longest member's steps;
    the fused kernels skip a member's all-padding tail. Outputs, final states and every
    gradient equal the torch loop, which runs every step, for members with tails of 0, 4 and
    9 (no real step at all) of 9 steps, and the skipped steps give what running them gives:
    output 0 and the state kept."""
    from rnnbench.nn import variants

    G = variants.gate_count(cell, variant) if cell != "tanh" else 1
    K, T, B, I, H = 3, 9, 2, 3, 4
    gen = torch.Generator().manual_seed(7)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen, dtype=torch.float64)).requires_grad_()

    rows = len(variants.peephole_rows(cell, variant)) if peephole else 0
    inputs = {
        "x": rand(K, T, B, I),
        "w_ih": rand(K, G * H, I, scale=0.5),
        "w_hh": rand(K, G * H, H, scale=0.5),
        "b_ih": rand(K, G * H),
        "b_hh": rand(K, G * H),
        "h0": rand(K, B, H),
        "c0": rand(K, B, H) if cell == "lstm" else None,
        "w_ch": rand(K, rows, H) if rows else None,
    }
    mask = torch.ones(K, T, B, dtype=torch.float64)
    mask[1, 5:] = 0  # member 1: its last 4 steps are padding in both rows
    mask[1, 3:, 1] = 0  # (and its second row is shorter still)
    mask[2] = 0  # member 2: no real step in this batch

    ref_finals, ref_grads = outputs_and_grads(cell, "before", inputs, mask, "torch", variant)
    finals, grads = outputs_and_grads(cell, "before", inputs, mask, "numba", variant)
    for a, b in zip(finals, ref_finals, strict=True):
        assert (a - b).abs().max().item() <= 1e-10
    for name in grads:
        assert (grads[name] - ref_grads[name]).abs().max().item() <= 1e-10, name
    out, h_n = finals[0], finals[1]
    assert out[1, 5:].abs().max().item() == 0 and out[2].abs().max().item() == 0
    assert torch.equal(h_n[2], inputs["h0"][2].detach())  # no real step: the state is h0
    # a member with no real step gets no gradient into its weights, h0 gets the final's
    assert grads["w_hh"][2].abs().max().item() == 0
    assert torch.equal(grads["h0"][2], 2 * inputs["h0"][2].detach())


@pytest.mark.parametrize(("cell", "variant", "peephole"), TAIL_FORMS)
def test_skipped_tails_are_written_whatever_memory_the_kernels_get(cell, variant, peephole):
    """The kernels allocate their outputs uninitialised: a skipped tail must still be written
    (out, gate activations and gradients 0, states held). Calls with every step real come
    first, so the buffers the later calls get back from the allocator hold numbers."""
    from rnnbench.nn import variants
    from rnnbench.nn.kernels import glue

    G = variants.gate_count(cell, variant) if cell != "tanh" else 1
    K, T, B, H = 2, 7, 3, 4
    gen = torch.Generator().manual_seed(3)
    rows = len(variants.peephole_rows(cell, variant)) if peephole else 0
    w_hh, b_hh = torch.randn(K, G * H, H, generator=gen), torch.randn(K, G * H, generator=gen)
    w_ch = torch.randn(K, rows, H, generator=gen) if rows else None
    h0, c0 = torch.randn(K, B, H, generator=gen), torch.randn(K, B, H, generator=gen)
    tail = torch.ones(K, T, B)
    tail[0, 4:] = 0
    tail[1] = 0
    reset = "after" if variant == "after" else "before"
    v = "" if variant in ("after", "np") else variant  # run_unit passes these so
    for mask in (torch.ones(K, T, B), tail, torch.ones(K, T, B), tail):
        xw = torch.randn(K, T, B, G * H, generator=gen)
        out, h_n, c_n, hs, cs, acts, aux = glue.forward(
            cell, reset, peephole, v, xw, w_hh, b_hh, w_ch, mask, h0, c0
        )
        d_out, d_hn = torch.randn(K, T, B, H, generator=gen), torch.randn(K, B, H, generator=gen)
        d_cn = torch.randn(K, B, H, generator=gen) if cell == "lstm" else None
        d_xw, d_w, d_b, d_v, d_h0, d_c0 = glue.backward(
            cell, reset, peephole, v, d_out, d_hn, d_cn, w_hh, w_ch, mask, out, hs, cs, acts, aux
        )
    assert out[0, 4:].abs().max() == 0 and out[1].abs().max() == 0
    assert torch.equal(hs[0, 5:], hs[0, 4:5].expand(3, B, H))
    assert torch.equal(h_n[1], h0[1]) and torch.equal(d_h0[1], d_hn[1])
    if cell == "lstm":
        assert torch.equal(c_n[1], c0[1]) and torch.equal(d_c0[1], d_cn[1])
    if acts.numel():
        assert acts[0, 4:].abs().max() == 0 and acts[1].abs().max() == 0
    assert d_xw[0, 4:].abs().max() == 0 and d_xw[1].abs().max() == 0
    assert d_w[1].abs().max() == 0 and d_b[1].abs().max() == 0
