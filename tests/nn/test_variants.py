"""The unit variants of issue 13 (rnnbench.nn.variants).

Each variant's forward pass against a reference written here from its equation in plain torch
(not through run_unit or its helpers), on both backends and in both dtypes; gradcheck of the
numba backward; masks; the identities with torch.nn; parameter counts worked out by hand; and
run keys that the new RunConfig field leaves unchanged.
"""

import pytest
import torch

from rnnbench import models
from rnnbench.errors import RnnbenchError
from rnnbench.nn import GRU, LSTM, init_unit, run_unit, variants
from rnnbench.train.config import RunConfig

# The layout each variant must have, written out here (not read from the registry): its gate
# blocks in row order and the peephole rows a peephole LSTM variant keeps.
LAYOUT = {
    ("lstm", "np"): ("ifgo", ""),
    ("lstm", "nig"): ("fgo", "fo"),
    ("lstm", "nfg"): ("igo", "io"),
    ("lstm", "nog"): ("ifg", "if"),
    ("lstm", "niaf"): ("ifgo", "ifo"),
    ("lstm", "noaf"): ("ifgo", "ifo"),
    ("lstm", "cifg"): ("igo", "io"),
    ("lstm", "fb1"): ("ifgo", "ifo"),
    ("gru", "after"): ("rzn", ""),
    ("gru", "nrg"): ("zn", ""),
    ("gru", "nug"): ("rn", ""),
    ("gru", "mgu"): ("fn", ""),
}
CASES = list(LAYOUT)
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}
T, B, I, H = 5, 3, 4, 3

sig, tanh = torch.sigmoid, torch.tanh


# ---- the references, one equation per variant ---------------------------------------------


def lstm_reference(variant, x, p, mask, h, c):
    """The LSTM variants of Greff et al. 2017, step by step; ``p`` holds per-gate blocks."""
    W, U, b, v = p["W"], p["U"], p["b"], p["v"]
    outs = []
    for t in range(x.shape[0]):
        a = {g: x[t] @ W[g].T + h @ U[g].T + b[g] for g in W}
        pv = {g: v.get(g, 0) for g in "ifo"}
        if variant == "nig":
            f = sig(a["f"] + pv["f"] * c)
            c_new = f * c + tanh(a["g"])
            h_new = sig(a["o"] + pv["o"] * c_new) * tanh(c_new)
        elif variant == "nfg":
            i = sig(a["i"] + pv["i"] * c)
            c_new = c + i * tanh(a["g"])
            h_new = sig(a["o"] + pv["o"] * c_new) * tanh(c_new)
        elif variant == "nog":
            i = sig(a["i"] + pv["i"] * c)
            f = sig(a["f"] + pv["f"] * c)
            c_new = f * c + i * tanh(a["g"])
            h_new = tanh(c_new)
        elif variant == "cifg":
            i = sig(a["i"] + pv["i"] * c)
            c_new = (1 - i) * c + i * tanh(a["g"])
            h_new = sig(a["o"] + pv["o"] * c_new) * tanh(c_new)
        else:  # np, niaf, noaf, fb1: all four gates
            i = sig(a["i"] + pv["i"] * c)
            f = sig(a["f"] + pv["f"] * c)
            g = a["g"] if variant == "niaf" else tanh(a["g"])
            c_new = f * c + i * g
            o = sig(a["o"] + pv["o"] * c_new)
            h_new = o * c_new if variant == "noaf" else o * tanh(c_new)
        m = mask[t][:, None]
        h, c = m * h_new + (1 - m) * h, m * c_new + (1 - m) * c
        outs.append(m * h_new)
    return torch.stack(outs), h, c


def gru_reference(variant, x, p, mask, h, reset):
    """The GRU variants, step by step (GRU update convention h = (1 - z) n + z h')."""
    W, U, bi, bh = p["W"], p["U"], p["bi"], p["bh"]
    outs = []
    for t in range(x.shape[0]):
        xw = {g: x[t] @ W[g].T + bi[g] for g in W}
        hu = {g: h @ U[g].T + bh[g] for g in W}
        if variant == "after":
            r, z = sig(xw["r"] + hu["r"]), sig(xw["z"] + hu["z"])
            n = tanh(xw["n"] + r * hu["n"])
            h_new = (1 - z) * n + z * h
        elif variant == "nrg":
            z = sig(xw["z"] + hu["z"])
            n = tanh(xw["n"] + hu["n"])
            h_new = (1 - z) * n + z * h
        elif variant == "nug":
            r = sig(xw["r"] + hu["r"])
            if reset == "before":
                n = tanh(xw["n"] + (r * h) @ U["n"].T + bh["n"])
            else:
                n = tanh(xw["n"] + r * hu["n"])
            h_new = n
        else:  # mgu, Zhou et al. 2016
            f = sig(xw["f"] + hu["f"])
            if reset == "before":
                n = tanh(xw["n"] + (f * h) @ U["n"].T + bh["n"])
            else:
                n = tanh(xw["n"] + f * hu["n"])
            h_new = (1 - f) * h + f * n
        m = mask[t][:, None]
        h = m * h_new + (1 - m) * h
        outs.append(m * h_new)
    return torch.stack(outs), h


# ---- helpers ---------------------------------------------------------------------------------


def draw(unit, variant, dtype, seed=0, peephole=True):
    """Random weights of the variant's layout, ``(K=1, ...)``, as leaf tensors."""
    gates, peeps = LAYOUT[(unit, variant)]
    peephole = peephole and bool(peeps)
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return (0.6 * torch.randn(1, *shape, generator=gen, dtype=torch.float64)).to(dtype)

    G = len(gates)
    w = {
        "x": rand(T, B, I)[0],
        "w_ih": rand(G * H, I),
        "w_hh": rand(G * H, H),
        "b_ih": rand(G * H),
        "b_hh": rand(G * H),
        "h0": rand(B, H),
    }
    if unit == "lstm":
        w["c0"] = rand(B, H)
        w["w_ch"] = rand(len(peeps), H) if peephole else None
    return {k: (t.requires_grad_() if t is not None else None) for k, t in w.items()}


def blocks(unit, variant, w):
    gates, peeps = LAYOUT[(unit, variant)]

    def split(t):
        return dict(zip(gates, t[0].chunk(len(gates)), strict=True))

    if unit == "lstm":
        b_ih, b_hh = split(w["b_ih"]), split(w["b_hh"])
        b = {g: b_ih[g] + b_hh[g] for g in gates}
        v = dict(zip(peeps, w["w_ch"][0], strict=True)) if w["w_ch"] is not None else {}
        return {"W": split(w["w_ih"]), "U": split(w["w_hh"]), "b": b, "v": v}
    return {
        "W": split(w["w_ih"]),
        "U": split(w["w_hh"]),
        "bi": split(w["b_ih"]),
        "bh": split(w["b_hh"]),
    }


def reference(unit, variant, w, mask, reset="before"):
    p = blocks(unit, variant, w)
    if unit == "lstm":
        return lstm_reference(variant, w["x"], p, mask, w["h0"][0], w["c0"][0])
    return (*gru_reference(variant, w["x"], p, mask, w["h0"][0], reset), None)


def run(unit, variant, w, mask, backend, reset="before"):
    kwargs = {k: v for k, v in w.items() if k not in ("x", "w_ih", "w_hh")}
    out, h_n, c_n = run_unit(
        unit,
        w["x"],
        w["w_ih"],
        w["w_hh"],
        **kwargs,
        mask=mask,
        reset=reset,
        backend=backend,
        variant=variant,
    )
    return out[0], h_n[0], (c_n[0] if c_n is not None else None)


def padded_mask(dtype):
    mask = torch.ones(T, B, dtype=dtype)
    mask[3:, 1] = 0
    mask[1:, 2] = 0
    return mask


# ---- forward against the references ----------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("unit,variant", CASES, ids=[f"{u}-{v}" for u, v in CASES])
def test_forward_matches_equation(unit, variant, backend, dtype):
    w = draw(unit, variant, dtype)
    mask = torch.ones(T, B, dtype=dtype)
    reset = "after" if variant == "after" else "before"
    got = run(unit, variant, w, mask, backend)
    want = reference(unit, variant, w, mask, reset)
    for g, e in zip(got, want, strict=True):
        if e is not None:
            torch.testing.assert_close(g, e, **TOL[dtype])


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("unit,variant", CASES, ids=[f"{u}-{v}" for u, v in CASES])
def test_padding_and_other_forms(unit, variant, backend):
    """Masks (padded steps keep the state, output 0) for every variant; LSTM variants also
    without peepholes, GRU variants also with the reset after the product."""
    dtype = torch.float64
    mask = padded_mask(dtype)
    forms = [("before", True)]
    if unit == "lstm" and LAYOUT[(unit, variant)][1]:
        forms.append(("before", False))
    if unit == "gru" and variant in ("nug", "mgu"):
        forms.append(("after", True))
    for reset, peephole in forms:
        w = draw(unit, variant, dtype, seed=1, peephole=peephole)
        got = run(unit, variant, w, mask, backend, reset=reset)
        want = reference(unit, variant, w, mask, "after" if variant == "after" else reset)
        for g, e in zip(got, want, strict=True):
            if e is not None:
                torch.testing.assert_close(g, e, **TOL[dtype])
        assert got[0][3:, 1].abs().max() == 0


# ---- gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize("unit,variant", CASES, ids=[f"{u}-{v}" for u, v in CASES])
def test_numba_backward_gradcheck(unit, variant):
    w = draw(unit, variant, torch.float64, seed=2)
    names = [k for k, t in w.items() if t is not None]
    mask = padded_mask(torch.float64)
    reset = "after" if variant in ("after", "mgu") else "before"

    def f(*tensors):
        args = dict(zip(names, tensors, strict=True))
        full = {k: args.get(k) for k in w}
        out, h_n, c_n = run(unit, variant, full, mask, "numba", reset)
        return (out, h_n) if c_n is None else (out, h_n, c_n)

    assert torch.autograd.gradcheck(f, [w[k] for k in names], eps=1e-6, atol=1e-7)


def test_gradients_agree_between_backends():
    """Every weight's gradient, numba against the torch loop, for the LSTM and GRU variants."""
    for unit, variant in [("lstm", "cifg"), ("lstm", "noaf"), ("gru", "mgu"), ("gru", "nrg")]:
        grads = []
        for backend in ("torch", "numba"):
            w = draw(unit, variant, torch.float64, seed=3)
            out, h_n, c_n = run(unit, variant, w, padded_mask(torch.float64), backend)
            loss = (out.sin()).sum() + (h_n**2).sum() + (0 if c_n is None else c_n.sum())
            loss.backward()
            grads.append([t.grad for t in w.values() if t is not None])
        for a, b in zip(*grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# ---- identities ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_np_is_torch_lstm_and_after_is_torch_gru(backend):
    torch.manual_seed(0)
    x = torch.randn(6, 2, 4)
    native = torch.nn.LSTM(4, 5)
    ours = LSTM(4, 5, variant="np", init="torch", backend=backend)
    assert not ours.peephole and ours.variant == ""
    ours.load_state_dict(native.state_dict())
    torch.testing.assert_close(ours(x)[0], native(x)[0], rtol=1e-5, atol=1e-6)
    native = torch.nn.GRU(4, 5)
    ours = GRU(4, 5, variant="after", init="torch", backend=backend)
    assert ours.reset == "after" and ours.variant == ""
    ours.load_state_dict(native.state_dict())
    torch.testing.assert_close(ours(x)[0], native(x)[0], rtol=1e-5, atol=1e-6)


def test_nrg_is_the_same_function_before_and_after():
    w = draw("gru", "nrg", torch.float64)
    mask = torch.ones(T, B, dtype=torch.float64)
    before = run("gru", "nrg", w, mask, "torch", reset="before")
    after = run("gru", "nrg", w, mask, "numba", reset="after")
    torch.testing.assert_close(before[0], after[0], rtol=1e-12, atol=1e-12)
    assert GRU(3, 4, reset="after", variant="nrg").reset == "before"


# ---- weights, counts, configs -------------------------------------------------------------------


def test_registry_matches_the_layouts():
    for (unit, name), (gates, peeps) in LAYOUT.items():
        v = variants.get(unit, name)
        assert "".join(v.gates) == gates
        assert len(v.gates) == v.G
        if name not in ("np",):
            assert "".join(v.peepholes) == peeps
    assert set(LAYOUT) == set(variants.VARIANTS)
    with pytest.raises(RnnbenchError, match="no variant"):
        variants.get("gru", "nig")


def test_init_removes_the_removed_gates_rows():
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    full = init_unit("lstm", 4, 3, peephole=True, generator=gen())
    nig = init_unit("lstm", 4, 3, peephole=True, generator=gen(), variant="nig")
    assert nig["weight_ih_l0"].shape == (9, 4) and nig["weight_ch_l0"].shape == (2, 3)
    # the same draws, the input gate's rows (0..2) and peephole (row 0) dropped
    torch.testing.assert_close(nig["weight_hh_l0"], full["weight_hh_l0"][3:])
    torch.testing.assert_close(nig["weight_ch_l0"], full["weight_ch_l0"][1:])
    mgu = init_unit("gru", 4, 3, scheme="paper", generator=gen(), variant="mgu")
    assert mgu["weight_hh_l0"].shape == (6, 3)
    fb1 = init_unit("lstm", 4, 3, generator=gen(), variant="fb1")
    assert (fb1["bias_ih_l0"][3:6] + fb1["bias_hh_l0"][3:6] == 1).all()
    torch.testing.assert_close(
        fb1["weight_hh_l0"], init_unit("lstm", 4, 3, generator=gen())["weight_hh_l0"]
    )
    with pytest.raises(RnnbenchError, match="bias=True"):
        init_unit("lstm", 4, 3, bias=False, variant="fb1")


# recurrent parameters at I = 88, H = 10, worked out by hand: G H (I + H) + G H (+ P H)
HAND_COUNTS = {
    ("lstm", ""): 4 * 10 * 98 + 40 + 30,  # 3990
    ("lstm", "np"): 4 * 10 * 98 + 40,  # 3960
    ("lstm", "nig"): 3 * 10 * 98 + 30 + 20,  # 2990
    ("lstm", "nfg"): 2990,
    ("lstm", "nog"): 2990,
    ("lstm", "cifg"): 2990,
    ("lstm", "niaf"): 3990,
    ("lstm", "noaf"): 3990,
    ("lstm", "fb1"): 3990,
    ("gru", ""): 3 * 10 * 98 + 30,  # 2970
    ("gru", "after"): 2970,
    ("gru", "nrg"): 2 * 10 * 98 + 20,  # 1980
    ("gru", "nug"): 1980,
    ("gru", "mgu"): 1980,
}


@pytest.mark.parametrize("unit,variant", list(HAND_COUNTS))
def test_parameter_counts(unit, variant):
    n = models.recurrent_params(unit, 88, 10, convention="paper", variant=variant)
    assert n == HAND_COUNTS[(unit, variant)]
    G = len(LAYOUT.get((unit, variant), ("ifgo" if unit == "lstm" else "rzn",))[0])
    torch_n = models.recurrent_params(unit, 88, 10, convention="torch", variant=variant)
    assert torch_n == n + G * 10
    module = (LSTM if unit == "lstm" else GRU)(88, 10, variant=variant)
    assert sum(p.numel() for p in module.parameters()) == torch_n
    model = models.SequenceModel(unit, 88, 88, 10, head="bernoulli", variant=variant)
    assert model.param_count() == models.total_params(
        unit, 88, 88, 10, head="bernoulli", variant=variant
    )


def test_matching_gives_smaller_units_more_units():
    # music, the paper's budgets in the paper convention (18,108 LSTM; 18,630 GRU)
    assert models.match_hidden("music", "lstm", 18_108, variant="nig") == 45  # 18,180
    assert models.match_hidden("music", "gru", 18_630, variant="mgu") == 62  # 18,724
    assert models.paper_hidden("music", "lstm", variant="cifg") == 45
    assert models.paper_hidden("music", "lstm", variant="noaf") == 36
    assert models.paper_hidden("speech", "gru", variant="nug") == 280  # 168,560 vs 168,888


def test_run_config_keys():
    # A key stored before the variants existed (computed on main at 25d83ee) stays the same.
    assert RunConfig(dataset="jsb", unit="lstm").key() == "c7d2b25c8085b79c"
    assert RunConfig(dataset="jsb", unit="lstm", variant="").key() == "c7d2b25c8085b79c"
    # aliases: one model, one key
    np_ = RunConfig(dataset="jsb", unit="lstm", variant="np")
    assert np_ == RunConfig(dataset="jsb", unit="lstm", peephole=False) and np_.variant == ""
    after = RunConfig(dataset="jsb", unit="gru", variant="after")
    assert after.key() == RunConfig(dataset="jsb", unit="gru", reset="after").key()
    nrg = RunConfig(dataset="jsb", unit="gru", variant="nrg", reset="after")
    assert nrg.key() == RunConfig(dataset="jsb", unit="gru", variant="nrg").key()
    nig = RunConfig(dataset="jsb", unit="lstm", variant="nig")
    assert nig.key() != RunConfig(dataset="jsb", unit="lstm").key()
    assert RunConfig.from_dict(nig.to_dict()) == nig
    with pytest.raises(RnnbenchError, match="variant='mgu'"):
        RunConfig(dataset="jsb", unit="lstm", variant="mgu")


def test_sequence_model_runs_a_variant_population():
    model = models.SequenceModel("gru", 5, 5, 4, head="bernoulli", population=2, variant="mgu")
    x = torch.rand(6, 3, 5)
    nll, steps, _ = model.nll(x, (x > 0.5).float(), torch.ones(6, 3))
    nll.sum().backward()
    assert steps == 18 and model.weight_hh_l0.grad.shape == (2, 8, 4)
    assert "variant='mgu'" in repr(model)


def test_variants_in_sweeps_store_and_params():
    from rnnbench.commands.params import collect
    from rnnbench.store import form_of
    from rnnbench.sweeps.grid import parse_sweep

    spec = {
        "datasets": ["jsb"],
        "units": ["lstm", "gru"],
        "forms": ["paper", "cudnn", "np", "after", "nig", "mgu"],
        "seeds": 1,
        "lr": {"values": [1e-3]},
    }
    _, pops = parse_sweep(spec)
    forms = [form_of(p.configs[0].to_dict()) for p in pops]
    # np and after are the cuDNN forms: one population each, not two
    assert forms == ["peephole", "no-peephole", "nig", "reset-before", "reset-after", "mgu"]
    mgu_after = RunConfig(dataset="jsb", unit="gru", variant="mgu", reset="after").to_dict()
    assert form_of(mgu_after) == "mgu-reset-after"

    class Args:
        task, budget, match, no_peephole, reset, variant = (
            "music",
            None,
            "paper",
            False,
            "before",
            ["nig"],
        )

    report = collect(Args())
    assert report["units"]["lstm nig"]["hidden"] == 45
    assert report["units"]["lstm nig"]["recurrent_params"] == 3 * 45 * (88 + 45) + 3 * 45 + 2 * 45
