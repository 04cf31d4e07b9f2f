"""The paper's units against references written here from the equations (issue 17 §2).

Every other test of the kernels compares the two backends with each other, or the native forms
with torch.nn, so a mistake shared by both backends in the *paper's* forms (peepholes reading
the wrong cell state, the reset gate in the wrong place, the update gate the wrong way round)
would pass them. These references are written from Chung et al. (2014), eqs. (1)-(11), step by
step in plain torch operations on the modules' named parameters, without run_unit or any of
its helpers:

- tanh:  h_t = tanh(W x_t + b_W + U h_{t-1} + b_U)
- LSTM (Graves 2013, the paper's eqs. 3-7): i and f peek at c_{t-1}, o peeks at the new c_t:
    i_t = σ(W_i x_t + U_i h_{t-1} + v_i ⊙ c_{t-1} + b_i)
    f_t = σ(W_f x_t + U_f h_{t-1} + v_f ⊙ c_{t-1} + b_f)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ tanh(W_c x_t + U_c h_{t-1} + b_c)
    o_t = σ(W_o x_t + U_o h_{t-1} + v_o ⊙ c_t + b_o)
    h_t = o_t ⊙ tanh(c_t)
- GRU (the paper's eqs. 8-11), reset applied to h_{t-1} *before* the recurrent product:
    r_t = σ(W_r x_t + U_r h_{t-1}),  z_t = σ(W_z x_t + U_z h_{t-1})
    h̃_t = tanh(W x_t + U (r_t ⊙ h_{t-1}))
    paper: h_t = (1 − z_t) h_{t-1} + z_t h̃_t
  Our modules keep PyTorch's convention for the update gate, h_t = (1 − z_t) h̃_t + z_t h_{t-1}:
  the same family with z ↦ 1 − z (that is, with the update gate's weights and biases negated),
  which the last test checks explicitly.

Parameter layout (documented in the class docstrings): torch's row blocks, LSTM (i, f, g, o),
GRU (r, z, n); the LSTM's peephole diagonals are the rows of ``weight_ch_l0`` in the order
(i, f, o).
"""

import pytest
import torch

from rnnbench.nn import GRU, LSTM, RNN

T, B, I, H = 7, 3, 4, 5
TOL = {torch.float32: dict(rtol=0, atol=1e-6), torch.float64: dict(rtol=0, atol=1e-12)}
BACKENDS = ["torch", "numba"]

sig, tanh = torch.sigmoid, torch.tanh


def randomise(module, seed=0):
    """Every parameter drawn from U(-0.6, 0.6), peepholes included (not left at their init)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64) * 1.2 - 0.6)
    return module


def params64(module):
    return {n: p.detach().to(torch.float64).clone() for n, p in module.named_parameters()}


def tanh_reference(p, x, h):
    W, U, bW, bU = p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"]
    out = []
    for t in range(x.shape[0]):
        h = tanh(x[t] @ W.T + bW + h @ U.T + bU)
        out.append(h)
    return torch.stack(out), h


def lstm_reference(p, x, h, c, *, peephole, o_reads_previous_cell=False):
    W, U = p["weight_ih_l0"], p["weight_hh_l0"]
    b = p["bias_ih_l0"] + p["bias_hh_l0"]
    Wi, Wf, Wg, Wo = W.split(H)
    Ui, Uf, Ug, Uo = U.split(H)
    bi, bf, bg, bo = b.split(H)
    if peephole:
        vi, vf, vo = p["weight_ch_l0"]
    else:
        vi = vf = vo = torch.zeros(H, dtype=torch.float64)
    out = []
    for t in range(x.shape[0]):
        xt = x[t]
        i = sig(xt @ Wi.T + h @ Ui.T + vi * c + bi)  # peeks at c_{t-1}
        f = sig(xt @ Wf.T + h @ Uf.T + vf * c + bf)  # peeks at c_{t-1}
        c_prev = c
        c = f * c + i * tanh(xt @ Wg.T + h @ Ug.T + bg)
        o = sig(xt @ Wo.T + h @ Uo.T + vo * (c_prev if o_reads_previous_cell else c) + bo)
        h = o * tanh(c)
        out.append(h)
    return torch.stack(out), h, c


def gru_reference(p, x, h, *, reset, paper_update=False):
    W, U = p["weight_ih_l0"], p["weight_hh_l0"]
    Wr, Wz, Wn = W.split(H)
    Ur, Uz, Un = U.split(H)
    bWr, bWz, bWn = p["bias_ih_l0"].split(H)
    bUr, bUz, bUn = p["bias_hh_l0"].split(H)
    out = []
    for t in range(x.shape[0]):
        xt = x[t]
        r = sig(xt @ Wr.T + bWr + h @ Ur.T + bUr)
        z = sig(xt @ Wz.T + bWz + h @ Uz.T + bUz)
        if reset == "before":
            n = tanh(xt @ Wn.T + bWn + (r * h) @ Un.T + bUn)
        else:
            n = tanh(xt @ Wn.T + bWn + r * (h @ Un.T + bUn))
        h = (1 - z) * h + z * n if paper_update else (1 - z) * n + z * h
        out.append(h)
    return torch.stack(out), h


def inputs(seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    h0 = torch.randn(B, H, generator=gen, dtype=torch.float64) * 0.5
    c0 = torch.randn(B, H, generator=gen, dtype=torch.float64) * 0.5
    return x, h0, c0


FORMS = [
    ("tanh", lambda **kw: RNN(I, H, **kw), {}),
    ("lstm peephole (paper)", lambda **kw: LSTM(I, H, **kw), {"peephole": True}),
    ("lstm native", lambda **kw: LSTM(I, H, peephole=False, **kw), {"peephole": False}),
    ("gru reset before (paper)", lambda **kw: GRU(I, H, **kw), {"reset": "before"}),
    ("gru reset after", lambda **kw: GRU(I, H, reset="after", **kw), {"reset": "after"}),
]


def reference(name, p, x, h0, c0, form):
    if name == "tanh":
        out, h = tanh_reference(p, x, h0)
        return out, (h,)
    if name.startswith("lstm"):
        out, h, c = lstm_reference(p, x, h0, c0, **form)
        return out, (h, c)
    out, h = gru_reference(p, x, h0, **form)
    return out, (h,)


def run_module(module, name, x, h0, c0):
    if name.startswith("lstm"):
        out, (h, c) = module(x, (h0[None], c0[None]))
        return out, (h[0], c[0])
    out, h = module(x, h0[None])
    return out, (h[0],)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "make", "form"), FORMS, ids=[f[0] for f in FORMS])
def test_forward_matches_the_papers_equations(name, make, form, backend, dtype):
    module = randomise(make(backend=backend))
    p = params64(module)
    x, h0, c0 = inputs()
    want_out, want_state = reference(name, p, x, h0, c0, form)
    module = module.to(dtype)
    with torch.no_grad():
        got_out, got_state = run_module(module, name, x.to(dtype), h0.to(dtype), c0.to(dtype))
    assert got_out.dtype == dtype
    torch.testing.assert_close(got_out.double(), want_out, **TOL[dtype])
    for got, want in zip(got_state, want_state, strict=True):
        torch.testing.assert_close(got.double(), want, **TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "make", "form"), FORMS, ids=[f[0] for f in FORMS])
def test_gradients_match_autograd_through_the_equations(name, make, form, backend):
    """The numba backend's hand-written backward (and the torch loop) against autograd through
    the references above, in float64, for every parameter, the input and the initial state."""
    module = randomise(make(backend=backend)).double()
    x, h0, c0 = inputs()
    weights = torch.randn(T, B, H, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def loss(out, state):
        return (out * weights).sum() + sum(s.square().sum() for s in state)

    leaves = [t.clone().requires_grad_() for t in (x, h0, c0)]
    out, state = run_module(module, name, *leaves)
    loss(out, state).backward()
    got = {n: q.grad for n, q in module.named_parameters()}

    p = {n: q.detach().clone().requires_grad_() for n, q in module.named_parameters()}
    ref_leaves = [t.clone().requires_grad_() for t in (x, h0, c0)]
    out, state = reference(name, p, *ref_leaves, form)
    loss(out, state).backward()
    for n in p:
        torch.testing.assert_close(got[n], p[n].grad, rtol=0, atol=1e-10, msg=n)
    for mine, ref, label in zip(leaves[:2], ref_leaves[:2], ("x", "h0"), strict=True):
        torch.testing.assert_close(mine.grad, ref.grad, rtol=0, atol=1e-10, msg=label)
    if name.startswith("lstm"):
        torch.testing.assert_close(leaves[2].grad, ref_leaves[2].grad, rtol=0, atol=1e-10)


def test_peepholes_read_the_previous_cell_for_i_and_f_and_the_new_cell_for_o():
    """The reference is not vacuous: reading c_{t-1} for o (or c_t for i, f) gives another
    function, which the module does not compute."""
    module = randomise(LSTM(I, H)).double()
    p = params64(module)
    x, h0, c0 = inputs()
    with torch.no_grad():
        got, _ = run_module(module, "lstm", x, h0, c0)
    wrong, _, _ = lstm_reference(p, x, h0, c0, peephole=True, o_reads_previous_cell=True)
    assert (got - wrong).abs().max() > 1e-3


def test_our_update_convention_is_the_papers_with_the_update_gate_negated():
    """h_t = (1 − z) ⊙ h̃ + z ⊙ h_{t-1} here; the paper writes (1 − z) h_{t-1} + z h̃. Negating
    the update gate's weights and biases (σ(−a) = 1 − σ(a)) maps one onto the other exactly."""
    module = randomise(GRU(I, H)).double()
    x, h0, _ = inputs()
    p = params64(module)
    with torch.no_grad():
        ours, _ = run_module(module, "gru", x, h0, None)
    flipped = dict(p)
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        q = p[name].clone()
        q[H : 2 * H] = -q[H : 2 * H]  # the z block of (r, z, n)
        flipped[name] = q
    paper, _ = gru_reference(flipped, x, h0, reset="before", paper_update=True)
    torch.testing.assert_close(ours, paper, rtol=0, atol=1e-12)
    # and the two conventions on the *same* weights are different functions
    same, _ = gru_reference(p, x, h0, reset="before", paper_update=True)
    assert (ours - same).abs().max() > 1e-3
