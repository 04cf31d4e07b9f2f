"""rnnbench.nn as a drop-in torch.nn: every behaviour of issue 16 against torch.nn, both backends.

Each table row is one behaviour; the cuDNN forms (RNN, LSTM(peephole=False),
GRU(reset="after")) must do what torch.nn does, the paper forms must say so when they differ.
"""

import re
import subprocess
import sys
import warnings

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_sequence

from rnnbench.errors import RnnbenchError
from rnnbench.nn import GRU, LSTM, RNN, variants

BACKENDS = ["torch", "numba"]
# (name, our class, our form arguments, torch class, arguments both take)
FORMS = [
    ("tanh", RNN, {}, torch.nn.RNN, {}),
    ("relu", RNN, {}, torch.nn.RNN, {"nonlinearity": "relu"}),
    ("lstm", LSTM, {"peephole": False}, torch.nn.LSTM, {}),
    ("gru", GRU, {"reset": "after"}, torch.nn.GRU, {}),
    ("lstm_proj", LSTM, {"peephole": False}, torch.nn.LSTM, {"proj_size": 2}),  # issue 26
]
FORM_IDS = [f[0] for f in FORMS]
LAYOUTS = ["batched", "batch_first", "unbatched", "packed_sorted", "packed_unsorted"]
STACKS = [(1, False), (2, False), (1, True), (2, True)]  # (num_layers, bidirectional)
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5}
I, H, T, B = 3, 4, 5, 3


def pair(form, backend, dtype=torch.float64, **kwargs):
    """Our module and torch's with the same weights (torch's, loaded strictly)."""
    _, ours_cls, ours_form, native_cls, common = form
    native = native_cls(I, H, **common, **kwargs).to(dtype)
    ours = ours_cls(I, H, **common, **kwargs, **ours_form, backend=backend).to(dtype)
    ours.load_state_dict(native.state_dict())
    return ours, native


def make_input(layout, dtype, gen):
    """``(input factory, batch size)``: a fresh input each call, same data, leaves shared."""
    if layout.startswith("packed"):
        lengths = [2, 5, 3] if layout == "packed_unsorted" else [5, 3, 2]
        seqs = [torch.randn(n, I, dtype=dtype, generator=gen).requires_grad_() for n in lengths]
        sort = layout == "packed_sorted"
        return (lambda: pack_sequence(seqs, enforce_sorted=sort)), len(lengths), seqs
    shape = {"batched": (T, B, I), "batch_first": (B, T, I), "unbatched": (T, I)}[layout]
    x = torch.randn(shape, dtype=dtype, generator=gen).requires_grad_()
    return (lambda: x), (None if layout == "unbatched" else B), [x]


def initial_state(lstm, rows, batch, dtype, gen, proj_size=0):
    """``hx``: ``h`` has ``proj_size`` features when there is a projection."""

    def state(size):
        shape = (rows, size) if batch is None else (rows, batch, size)
        return torch.randn(shape, dtype=dtype, generator=gen).requires_grad_()

    h = state(proj_size or H)
    return (h, state(H)) if lstm else h


def run_and_grads(module, make, hx, leaves):
    for t in leaves:
        t.grad = None
    module.zero_grad()
    out, finals = module(make(), hx)
    data = out.data if isinstance(out, PackedSequence) else out
    finals = list(finals) if isinstance(finals, tuple) else [finals]
    weights = torch.linspace(-1, 1, data.numel(), dtype=data.dtype).reshape(data.shape)
    loss = (data * weights).sum() + sum((f**2).sum() for f in finals)
    loss.backward()
    grads = [t.grad for t in leaves] + [p.grad for p in module.parameters()]
    return [data.detach(), *[f.detach() for f in finals], *grads]


def assert_close(ours, native, tol):
    assert len(ours) == len(native)
    for a, b in zip(ours, native, strict=True):
        assert a.shape == b.shape
        assert torch.equal(a.isnan(), b.isnan())
        assert (a - b).nan_to_num().abs().max().item() <= tol


CASES = [
    pytest.param(layout, stack, dtype, id=f"{layout}-{stack[0]}x{'bi' if stack[1] else 'uni'}-{d}")
    for layout in LAYOUTS
    for stack in STACKS
    for dtype, d in [(torch.float64, "f64"), (torch.float32, "f32")]
    if dtype == torch.float64 or (layout == "batched" and stack == (2, True))
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@pytest.mark.parametrize(("layout", "stack", "dtype"), CASES)
def test_outputs_states_and_gradients_match_torch(form, backend, layout, stack, dtype):
    """Layers x directions x layouts x dtypes, in eval mode with inter-layer dropout set."""
    layers, bidirectional = stack
    gen = torch.Generator().manual_seed(len(layout) + layers)
    ours, native = pair(
        form,
        backend,
        dtype,
        num_layers=layers,
        bidirectional=bidirectional,
        batch_first=layout == "batch_first",
        dropout=0.5 if layers > 1 else 0.0,
    )
    ours.eval()
    native.eval()
    make, batch, leaves = make_input(layout, dtype, gen)
    lstm, proj_size = form[0].startswith("lstm"), form[4].get("proj_size", 0)
    hx = initial_state(lstm, layers * (1 + bidirectional), batch, dtype, gen, proj_size)
    leaves = leaves + (list(hx) if isinstance(hx, tuple) else [hx])
    assert_close(
        run_and_grads(ours, make, hx, leaves),
        run_and_grads(native, make, hx, leaves),
        TOLERANCE[dtype],
    )
    out, _ = ours(make())
    assert isinstance(out, PackedSequence) == layout.startswith("packed")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
def test_dropout_acts_between_layers_in_training_only(form, backend):
    x = torch.randn(T, B, I, dtype=torch.float64)
    ours, native = pair(form, backend, num_layers=2, dropout=1.0)  # layer 2 reads zeros
    assert torch.allclose(ours(x)[0], native(x)[0], atol=1e-12)
    ours.eval()
    native.eval()
    assert torch.allclose(ours(x)[0], native(x)[0], atol=1e-12)
    ours.train()
    ours.dropout = 0.5
    assert not torch.equal(ours(x)[0], ours(x)[0])  # a fresh mask each call


# (positional arguments after (I, H), for our class and torch's)
POSITIONAL = {
    "tanh": (2, "relu", False, True, 0.25, True),
    "lstm": (2, False, True, 0.25, True, 0),
    "gru": (2, False, True, 0.25, True),
}
CUDNN_FORM = {"tanh": {}, "lstm": {"peephole": False}, "gru": {"reset": "after"}}
ATTRIBUTES = ["input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout"]
ATTRIBUTES += ["bidirectional", "proj_size", "mode"]


@pytest.mark.parametrize(
    ("ours_cls", "native_cls", "key"),
    [(RNN, torch.nn.RNN, "tanh"), (LSTM, torch.nn.LSTM, "lstm"), (GRU, torch.nn.GRU, "gru")],
)
def test_constructor_by_position_and_keyword_is_torchs(ours_cls, native_cls, key):
    args = POSITIONAL[key]
    ours, native = ours_cls(I, H, *args), native_cls(I, H, *args)
    names = ["num_layers", "bias", "batch_first", "dropout", "bidirectional", "proj_size"]
    if key == "tanh":
        names.insert(1, "nonlinearity")
    by_keyword = ours_cls(I, H, **dict(zip(names, args, strict=False)))
    for module in (ours, by_keyword):
        for attr in ATTRIBUTES + (["nonlinearity"] if key == "tanh" else []):
            assert getattr(module, attr) == getattr(native, attr), attr
        # the paper's default forms add weight_ch_lk (LSTM) or _extra_state (GRU)
        module = ours_cls(I, H, *args, **CUDNN_FORM[key])
        assert module._flat_weights_names == native._flat_weights_names
        assert list(module.state_dict()) == list(native.state_dict())
        shapes = [[p.shape for p in layer] for layer in module.all_weights]
        assert shapes == [[p.shape for p in layer] for layer in native.all_weights]
    assert ours.dropout == 0.25 and isinstance(ours.dropout, float)


@pytest.mark.parametrize(
    "make",
    [
        lambda nn: nn.GRU(0, 4),
        lambda nn: nn.GRU(3, 4.0),
        lambda nn: nn.LSTM(3, 4, bias=1),
        lambda nn: nn.LSTM(3, 4, batch_first=None),
        lambda nn: nn.RNN(3, 4, 0),
        lambda nn: nn.RNN(3, 4, dropout=2),
        lambda nn: nn.RNN(3, 4, nonlinearity="sigmoid"),
    ],
    ids=["input0", "hidden-float", "bias-int", "batch_first-None", "layers0", "dropout2", "nl"],
)
def test_constructor_refusals_are_torchs(make):
    import rnnbench.nn

    with pytest.raises(Exception) as native:
        make(torch.nn)
    with pytest.raises(type(native.value), match=str(native.value)[:30]):
        make(rnnbench.nn)


def test_dropout_with_one_layer_warns_as_torch():
    with pytest.warns(UserWarning, match="dropout option adds dropout"):
        LSTM(3, 4, dropout=0.5)


# (name, module kind, call given (module, x)); torch raises as well, ours the same type
BAD_CALLS = [
    ("4-D input", "gru", lambda m, x: m(x.unsqueeze(-1))),
    ("input size", "gru", lambda m, x: m(x[..., :2])),
    ("input dtype", "lstm", lambda m, x: m(x.float())),
    ("state shape", "gru", lambda m, x: m(x, torch.zeros(1, B + 1, H, dtype=x.dtype))),
    (
        "c shape",
        "lstm",
        lambda m, x: m(x, (torch.zeros(1, B, H).double(), torch.zeros(1, 1, H).double())),
    ),
    ("unbatched 3-D hx", "tanh", lambda m, x: m(x[:, 0], torch.zeros(1, 1, H).double())),
    ("batched 2-D hx", "lstm", lambda m, x: m(x, (torch.zeros(1, H).double(),) * 2)),
    ("no steps", "gru", lambda m, x: m(x[:0])),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "kind", "call"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_calls_raise_as_torch(name, kind, call, backend):
    ours, native = pair(FORMS[FORM_IDS.index(kind)], backend)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with pytest.raises(Exception) as expected:
        call(native, x)
    with pytest.raises(type(expected.value)):
        call(ours, x)


# calls torch accepts silently or fails on with an unrelated error: ours say what is wrong
REFUSED = [
    ("single tensor as LSTM hx", "lstm", lambda m, x: m(x, torch.zeros(1, B, H).double()),
     TypeError, "tuple"),
    ("tuple as GRU hx", "gru", lambda m, x: m(x, (torch.zeros(1, B, H).double(),) * 2),
     TypeError, "one tensor"),
    ("float32 hx, float64 module", "tanh", lambda m, x: m(x, torch.zeros(1, B, H)),
     RuntimeError, "dtype"),
]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("name", "kind", "call", "error", "match"), REFUSED, ids=[r[0] for r in REFUSED]
)
def test_wrong_state_kinds_are_refused_in_one_sentence(name, kind, call, error, match, backend):
    ours, native = pair(FORMS[FORM_IDS.index(kind)], backend)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with pytest.raises((IndexError, AttributeError, RuntimeError)):  # torch's, unrelated
        call(native, x)
    with pytest.raises(error, match=match):
        call(ours, x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_as_a_list_and_empty_batch_as_torch(backend):
    ours, native = pair(FORMS[2], backend, num_layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64)
    state = [torch.randn(2, B, H, dtype=torch.float64) for _ in range(2)]
    assert torch.allclose(ours(x, state)[0], native(x, state)[0], atol=1e-12)
    for form in FORMS:
        ours, native = pair(form, backend, num_layers=2, bidirectional=True, batch_first=True)
        empty = torch.randn(0, T, I, dtype=torch.float64)
        (out, finals), (ref_out, ref_finals) = ours(empty), native(empty)
        assert out.shape == ref_out.shape
        finals = finals if isinstance(finals, tuple) else (finals,)
        ref_finals = ref_finals if isinstance(ref_finals, tuple) else (ref_finals,)
        assert [f.shape for f in finals] == [f.shape for f in ref_finals]


def test_unsupported_features_say_so_in_one_sentence():
    for bad in (4, -1):  # proj_size must be in [0, hidden_size): torch's refusals, word for word
        with pytest.raises(ValueError) as native:
            torch.nn.LSTM(3, 4, proj_size=bad)
        with pytest.raises(ValueError, match=str(native.value)):
            LSTM(3, 4, proj_size=bad)
    with pytest.raises(TypeError, match="proj_size should be of type int"):
        LSTM(3, 4, proj_size=1.5)
    with pytest.raises(TypeError):
        GRU(3, 4, proj_size=2)  # not in torch.nn.GRU's signature either
    with pytest.raises(RnnbenchError, match="torch.jit.script"):
        torch.jit.script(GRU(3, 4))
    unit = RNN(3, 4, backend="numba").double()
    (grad,) = torch.autograd.grad(
        unit(torch.randn(T, B, I, dtype=torch.float64))[0].pow(2).sum(),
        unit.weight_hh_l0,
        create_graph=True,
    )
    with pytest.raises(RuntimeError, match='backend="torch"'):
        grad.sum().backward()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
def test_nan_and_inf_propagate_as_in_torch_float32(form, backend):
    ours, native = pair(form, backend, torch.float32, num_layers=2)
    x = torch.randn(T, B, I)
    x[1, 0, 0] = float("nan")
    x[2, 1, 1] = float("inf")
    x[3, 2, 2] = -float("inf")
    (out, _), (ref, _) = ours(x), native(x)
    assert torch.equal(out.isnan(), ref.isnan()) and out.isnan().any()
    assert torch.allclose(out.nan_to_num(), ref.nan_to_num(), atol=1e-5)
    with torch.no_grad():
        ours.weight_hh_l1[0, 0] = float("nan")
    out, finals = ours(torch.randn(T, B, I))
    loss = out.sum()
    assert loss.isnan()
    loss.backward()
    assert ours.weight_ih_l0.grad.isnan().any()


PARAMETRIZATIONS = {
    "weight_norm": lambda m: torch.nn.utils.parametrizations.weight_norm(m, "weight_hh_l0"),
    "orthogonal": lambda m: torch.nn.utils.parametrizations.orthogonal(m, "weight_hh_l1"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form", FORMS[2:], ids=FORM_IDS[2:])
@pytest.mark.parametrize("name", list(PARAMETRIZATIONS))
def test_parametrizations_match_torch(name, form, backend):
    ours, native = pair(form, backend, num_layers=2)
    PARAMETRIZATIONS[name](native)
    PARAMETRIZATIONS[name](ours)
    ours.load_state_dict(native.state_dict())
    gen = torch.Generator().manual_seed(3)
    make, _, leaves = make_input("batched", torch.float64, gen)
    assert_close(
        run_and_grads(ours, make, None, leaves), run_and_grads(native, make, None, leaves), 1e-10
    )


def _state_dict_without_form(module):
    state = module.state_dict()
    state.pop("_extra_state", None)
    return state


def make(cls, *args, **kwargs):
    return lambda: cls(I, H, *args, **kwargs)


TORCH_GRU, TORCH_LSTM, TORCH_RNN = torch.nn.GRU, torch.nn.LSTM, torch.nn.RNN
# (name, source module, target module, None if it loads strictly else a regex of the refusal)
ROUND_TRIPS = [
    ("torch GRU -> cuDNN GRU", make(TORCH_GRU, 2), make(GRU, 2, reset="after"), None),
    ("cuDNN GRU -> torch GRU", make(GRU, 2, reset="after"), make(TORCH_GRU, 2), None),
    ("torch LSTM -> cuDNN LSTM", make(TORCH_LSTM, bidirectional=True),
     make(LSTM, bidirectional=True, peephole=False), None),
    ("cuDNN LSTM -> torch LSTM", make(LSTM, peephole=False), make(TORCH_LSTM), None),
    ("torch RNN -> RNN", make(TORCH_RNN, 2), make(RNN, 2), None),
    ("RNN -> torch RNN", make(RNN, 2), make(TORCH_RNN, 2), None),
    ("torch GRU -> paper GRU", make(TORCH_GRU), make(GRU), "reset='after'"),
    ("torch LSTM -> paper LSTM", make(TORCH_LSTM), make(LSTM), "peephole=False"),
    ("paper GRU -> cuDNN GRU", make(GRU), make(GRU, reset="after"), "reset='before'"),
    ("paper GRU -> torch GRU", make(GRU), make(TORCH_GRU), "_extra_state"),
    ("paper LSTM -> cuDNN LSTM", make(LSTM), make(LSTM, peephole=False), "peephole=True"),
    ("paper GRU -> paper GRU", make(GRU, 2), make(GRU, 2), None),
    ("paper LSTM -> paper LSTM", make(LSTM, 2), make(LSTM, 2), None),
    ("old paper LSTM -> paper LSTM", make(LSTM), make(LSTM), None),
    ("old paper GRU -> paper GRU", make(GRU), make(GRU), "strict=False"),
    # variants (issue 13): the variant is part of the form; nig/nfg and nug/mgu share shapes
    ("variant LSTM -> same variant", make(LSTM, 2, variant="cifg"),
     make(LSTM, 2, variant="cifg"), None),
    ("variant GRU -> same variant", make(GRU, bidirectional=True, variant="mgu"),
     make(GRU, bidirectional=True, variant="mgu"), None),
    ("variant LSTM -> other variant", make(LSTM, variant="nig"), make(LSTM, variant="nfg"),
     "variant='nig'"),
    ("variant GRU -> other variant", make(GRU, variant="nug"), make(GRU, variant="mgu"),
     "variant='nug'"),
    ("variant LSTM -> paper LSTM", make(LSTM, variant="niaf"), make(LSTM), "variant='niaf'"),
    ("paper LSTM -> variant LSTM", make(LSTM), make(LSTM, variant="noaf"), "variant=''"),
    ("torch LSTM -> cuDNN-form variant", make(TORCH_LSTM),
     make(LSTM, peephole=False, variant="noaf"), "variant=''"),
    ("old variant LSTM -> variant LSTM", make(LSTM, variant="nog"), make(LSTM, variant="nog"),
     "strict=False"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "source", "target", "refusal"), ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS]
)
def test_state_dicts_load_both_ways_or_are_refused_by_name(name, source, target, refusal, tmp_path):
    src, dst = source(), target()
    state = _state_dict_without_form(src) if name.startswith("old") else src.state_dict()
    torch.save(state, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    if refusal is None:
        result = dst.load_state_dict(state)
        assert not result.missing_keys and not result.unexpected_keys
        x = torch.randn(T, B, I)
        assert torch.allclose(src(x)[0], dst(x)[0], atol=1e-5)
        return
    with pytest.raises(RuntimeError, match=refusal), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dst.load_state_dict(state)
    if isinstance(dst, (GRU, LSTM)):
        with pytest.warns(UserWarning, match=refusal):
            result = dst.load_state_dict(state, strict=False)
        assert any(refusal in key for key in result.missing_keys)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "make",
    [
        lambda b: LSTM(2, 2, 2, bidirectional=True, backend=b),
        lambda b: GRU(2, 2, 2, bidirectional=True, backend=b),
    ],
    ids=["peephole-lstm", "reset-before-gru"],
)
def test_gradcheck_stacked_bidirectional_paper_forms(make, backend):
    torch.manual_seed(0)
    unit = make(backend).double()
    names = [n for n, _ in unit.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in unit.parameters()]
    seqs = [torch.randn(n, 2, dtype=torch.float64, requires_grad=True) for n in (3, 2)]

    def run(*tensors):
        state = dict(zip(names, tensors[2:], strict=True))
        out, _ = torch.func.functional_call(unit, state, (pack_sequence(list(tensors[:2])),))
        return out.data

    assert torch.autograd.gradcheck(run, (*seqs, *params))


COLD_SCRIPT = """
import sys
import torch
from rnnbench.nn import GRU, LSTM
torch.manual_seed(0)
unit = LSTM(3, 4, 2, bidirectional=True, backend="numba")
x = torch.randn(5, 2, 3)
compiled = torch.compile(unit, fullgraph=True, backend="aot_eager")
out, (h, c) = compiled(x)  # the first call in this process: numba has never run
ref, (rh, rc) = unit(x)
assert torch.allclose(out, ref, atol=1e-6) and torch.allclose(c, rc, atol=1e-6)
out.sum().backward()
gru = GRU(3, 4, backend="numba")
program = torch.export.export(gru, (x,))
assert "rnnbench.fused_rnn" in str(program.graph)
assert torch.allclose(program.module()(x)[0], gru(x)[0], atol=1e-6)
traced = torch.jit.trace(gru, (x,))
assert "rnnbench::fused_rnn" in str(traced.graph)
traced.save(sys.argv[1])
loaded = torch.jit.load(sys.argv[1])
assert torch.allclose(loaded(x)[0], gru(x)[0], atol=1e-6)
print("cold ok")
"""


def test_compile_export_and_trace_on_a_cold_process(tmp_path):
    """A fresh interpreter: compile (fullgraph), export, trace and a saved trace, first call."""
    done = subprocess.run(
        [sys.executable, "-c", COLD_SCRIPT, str(tmp_path / "traced.pt")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "cold ok" in done.stdout, done.stderr[-3000:]


def test_paper_forms_warn_nothing_on_their_own_state_dicts():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GRU(I, H).load_state_dict(GRU(I, H).state_dict(), strict=False)


@pytest.mark.parametrize("unit", ["tanh", "lstm", "gru"])
def test_nan_reaches_the_trainers_loss_through_the_float32_kernels(unit):
    """The population model (what the trainer's divergence check reads) on the fused kernels."""
    from rnnbench.models import SequenceModel

    model = SequenceModel(unit, 4, 4, 3, head="bernoulli", population=2, backend="numba")
    with torch.no_grad():
        model.weight_hh_l0[1, 0, 0] = float("nan")  # member 1 only
    params, _ = model(torch.randn(5, 2, 4))
    assert params[1].isnan().any() and not params[0].isnan().any()


# ---- the variants of issue 13 in the drop-in modules ------------------------------------------

VARIANT_STACKS = [("lstm", "cifg"), ("lstm", "nog"), ("gru", "mgu"), ("gru", "nrg")]


@pytest.mark.parametrize(("unit", "variant"), VARIANT_STACKS, ids=[v for _, v in VARIANT_STACKS])
def test_stacked_bidirectional_variants_agree_between_backends(unit, variant):
    """Two bidirectional layers of a variant, packed unsorted input: the custom op (numba)
    against the torch loop, outputs, states and every gradient."""
    cls = LSTM if unit == "lstm" else GRU
    torch.manual_seed(0)
    ref = cls(I, H, 2, bidirectional=True, variant=variant, backend="torch").double()
    fused = cls(I, H, 2, bidirectional=True, variant=variant, backend="numba").double()
    fused.load_state_dict(ref.state_dict())
    gen = torch.Generator().manual_seed(1)
    make_x, batch, leaves = make_input("packed_unsorted", torch.float64, gen)
    hx = initial_state(unit == "lstm", 4, batch, torch.float64, gen)
    leaves = [*leaves, *(hx if isinstance(hx, tuple) else (hx,))]
    assert_close(
        run_and_grads(fused, make_x, hx, leaves), run_and_grads(ref, make_x, hx, leaves), 1e-10
    )


def _op_arguments(unit, variant, peephole=True):
    """Arguments of ``rnnbench::fused_rnn`` for one variant, with random float64 tensors."""
    variant, peephole, reset = variants.resolve(unit, variant, peephole, "before")
    G, P = variants.gate_count(unit, variant), len(variants.peephole_rows(unit, variant))
    K, steps, batch = 2, 3, 2
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(shape, dtype=torch.float64, generator=gen).requires_grad_()

    w_ch = rand(K, P, H) if peephole else None
    c0 = rand(K, batch, H) if unit == "lstm" else None
    mask = torch.ones(steps, batch, dtype=torch.float64)
    mask[2, 1] = 0
    xw, w_hh, b_hh, h0 = (
        rand(K, steps, batch, G * H),
        rand(K, G * H, H),
        rand(K, G * H),
        rand(K, batch, H),
    )
    return (unit, reset, peephole, variant, xw, w_hh, b_hh, w_ch, mask, h0, c0)


OP_CASES = [
    (unit, name, peephole)
    for unit in ("lstm", "gru")
    for name in ("", *variants.NAMES[unit])
    for peephole in ((True, False) if unit == "lstm" else (False,))
]


@pytest.mark.parametrize(
    ("unit", "variant", "peephole"),
    OP_CASES,
    ids=[f"{u}-{v or 'full'}-{p}" for u, v, p in OP_CASES],
)
def test_custom_ops_fake_shapes_and_autograd_for_every_variant(unit, variant, peephole):
    """torch.library.opcheck of both ops: the fake (meta) outputs match the real ones in shape,
    dtype and strides (removed gates remove rows of G), and autograd is registered."""
    from rnnbench.nn import ops

    args = _op_arguments(unit, variant, peephole)
    checks = ("test_schema", "test_faketensor", "test_autograd_registration")
    torch.library.opcheck(ops.fused_rnn, args, test_utils=checks)
    cell, reset, peep, name, xw, w_hh, b_hh, w_ch, mask, h0, c0 = args
    with torch.no_grad():
        out, h_n, c_n, hs, cs, acts, aux = ops.fused_rnn(*args)
    d_cn = torch.randn_like(h_n) if cell == "lstm" else None
    backward_args = (cell, reset, peep, name, torch.randn_like(out), torch.randn_like(h_n), d_cn,
                     w_hh.detach(), w_ch.detach() if w_ch is not None else None, mask, out, hs,
                     cs, acts, aux)  # fmt: skip
    torch.library.opcheck(ops.fused_rnn_backward, backward_args, test_utils=checks[:2])
    d_w_ch = ops.fused_rnn_backward(*backward_args)[3]
    assert d_w_ch.shape == (w_ch.shape if w_ch is not None else (0,))


# ---- proj_size (issue 26) -----------------------------------------------------------------------


def _projected_peephole_reference(m, x):
    """One layer of the peephole LSTM with a projection, step by step from its equations:
    gates read ``h`` (R features) and the peepholes ``c`` (H); ``h_t = W_hr (o_t * tanh c_t)``."""
    h = x.new_zeros(m.proj_size)
    c = x.new_zeros(m.hidden_size)
    v_i, v_f, v_o = m.weight_ch_l0
    outs = []
    for x_t in x:
        a = m.weight_ih_l0 @ x_t + m.bias_ih_l0 + m.weight_hh_l0 @ h + m.bias_hh_l0
        i, f, g, o = a.chunk(4)
        i, f = torch.sigmoid(i + v_i * c), torch.sigmoid(f + v_f * c)
        c = f * c + i * torch.tanh(g)
        h = m.weight_hr_l0 @ (torch.sigmoid(o + v_o * c) * torch.tanh(c))
        outs.append(h)
    return torch.stack(outs), h, c


@pytest.mark.parametrize("backend", ["auto", "numba", "torch"])
def test_projection_in_the_paper_form_follows_its_equations(backend):
    m = LSTM(I, H, proj_size=2, backend=backend).double()  # peephole=True
    x = torch.randn(T, I, dtype=torch.float64)
    out, (h_n, c_n) = m(x)
    ref_out, ref_h, ref_c = _projected_peephole_reference(m, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_n[0], ref_h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c_n[0], ref_c, rtol=1e-12, atol=1e-12)
    assert [n for n, _ in m.named_parameters()][-2:] == ["weight_hr_l0", "weight_ch_l0"]


@pytest.mark.parametrize("variant", ["nig", "cifg", "noaf"])
def test_projection_with_variants_runs_on_both_backends_alike(variant):
    torch.manual_seed(0)
    ref = LSTM(I, H, 2, proj_size=3, bidirectional=True, variant=variant, backend="torch")
    other = LSTM(I, H, 2, proj_size=3, bidirectional=True, variant=variant, backend="numba")
    other.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)
    (out, (h, c)), (ref_out, (ref_h, ref_c)) = other(x), ref(x)
    assert out.shape == (T, B, 6) and h.shape == (4, B, 3) and c.shape == (4, B, H)
    assert torch.equal(out, ref_out) and torch.equal(h, ref_h) and torch.equal(c, ref_c)


def test_projection_state_checks_are_torchs():
    ours, native = pair(FORMS[FORM_IDS.index("lstm_proj")], "auto", num_layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64)
    wrong = (torch.zeros(2, B, H, dtype=torch.float64), torch.zeros(2, B, H, dtype=torch.float64))
    with pytest.raises(RuntimeError) as native_error:
        native(x, wrong)
    with pytest.raises(RuntimeError, match=re.escape(str(native_error.value))):
        ours(x, wrong)
    assert list(ours.state_dict()) == list(native.state_dict())
    assert repr(native).split("(", 1)[1].rstrip(")") in repr(ours)


# ---- torch.func, contiguous gradients, safe reloading, dir (issues 25, 26) ----------------------


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
def test_torch_func_grad_and_vmap_on_the_default_backend(form):
    """``backend="auto"`` runs the torch loop under a transform: torch.func.grad over
    functional_call equals backward(), and vmap equals a loop; ``"numba"`` says to use torch."""
    ours, _ = pair(form, "auto", num_layers=2, bidirectional=True)
    params = dict(ours.named_parameters())
    x = torch.randn(T, B, I, dtype=torch.float64)

    def loss(p, x):
        return torch.func.functional_call(ours, p, (x,))[0].pow(2).sum()

    grads = torch.func.grad(loss)(params, x)
    loss(params, x).backward()
    for name, p in params.items():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-10, atol=1e-12)
    xs = torch.randn(3, T, B, I, dtype=torch.float64)
    batched = torch.func.vmap(lambda x: torch.func.functional_call(ours, params, (x,))[0])(xs)
    torch.testing.assert_close(batched[2], ours(xs[2])[0], rtol=1e-10, atol=1e-12)
    fused, _ = pair(form, "numba")
    if form[0] in ("relu", "lstm_proj"):
        return  # no fused kernel: the torch loop on every backend
    with pytest.raises(RnnbenchError, match='backend="torch"'):
        torch.func.grad(lambda p: torch.func.functional_call(fused, p, (x,))[0].sum())(
            dict(fused.named_parameters())
        )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "make",
    [
        lambda b: LSTM(I, H, 2, bidirectional=True, backend=b),
        lambda b: LSTM(I, H, 2, proj_size=2, backend=b),
        lambda b: GRU(I, H, 2, bidirectional=True, backend=b),
        lambda b: LSTM(I, H, 2, variant="cifg", backend=b),
        lambda b: GRU(I, H, 2, variant="mgu", backend=b),
    ],
    ids=["peephole", "peephole_proj", "gru_before", "cifg", "mgu"],
)
def test_autograd_grad_returns_contiguous_gradients_in_every_form(make, backend):
    module = make(backend)
    x = torch.randn(T, B, I, requires_grad=True)
    names, params = zip(*module.named_parameters(), strict=True)
    grads = torch.autograd.grad(module(x)[0].sum(), [x, *params])
    assert [n for n, g in zip(("x", *names), grads, strict=True) if not g.is_contiguous()] == []


RELOAD_SCRIPT = """
import sys
import rnnbench.nn
assert "torch" not in sys.modules, "import rnnbench.nn loaded torch"  # the CLI's light path
del sys.modules["rnnbench.nn"]
import torch
import rnnbench.nn  # after torch: the classes are registered now, unused
path, outputs = sys.argv[1:]
modules = torch.load(path, weights_only=True)
x = torch.load(outputs, weights_only=True)
assert all(torch.equal(m(x[0])[0], want) for m, want in zip(modules, x[1:], strict=True))
print("reload ok", *[type(m).__name__ for m in modules])
"""


def test_whole_modules_reload_with_weights_only_in_a_fresh_process(tmp_path):
    """Whole modules (paper forms, a projection) saved by torch.save reload with
    ``weights_only=True`` in a process that imported torch and rnnbench.nn, nothing else."""
    torch.manual_seed(0)
    modules = [LSTM(I, H, 2, proj_size=2), GRU(I, H, bidirectional=True), RNN(I, H)]
    x = torch.randn(T, B, I)
    torch.save(modules, tmp_path / "modules.pt")
    torch.save([x, *[m(x)[0] for m in modules]], tmp_path / "outputs.pt")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            RELOAD_SCRIPT,
            *(str(tmp_path / f) for f in ("modules.pt", "outputs.pt")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "reload ok LSTM GRU RNN" in done.stdout, done.stderr[-3000:]


def test_dir_lists_each_name_once():
    import rnnbench.nn

    rnnbench.nn.LSTM  # noqa: B018  (loaded: a global now, and in __all__)
    names = dir(rnnbench.nn)
    assert len(names) == len(set(names))
    assert {"GRU", "LSTM", "RNN", "init_unit", "run_unit"} <= set(names)


def test_forward_mode_ad_through_a_weight_on_the_torch_backend():
    """A dual weight (it requires grad, so the contiguous-gradient identity is in the graph)
    gives the directional derivative of the output."""
    import torch.autograd.forward_ad as fwAD

    m = LSTM(I, H, 2, peephole=False, backend="torch").double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    w = m.weight_hh_l1.detach().clone()
    t = torch.randn_like(w)

    def output(weight):
        del m.weight_hh_l1
        m.weight_hh_l1 = weight
        return m(x)[0]

    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(output(fwAD.make_dual(w.clone().requires_grad_(), t))).tangent
    eps = 1e-6
    numeric = (output(w + eps * t) - output(w - eps * t)) / (2 * eps)
    torch.testing.assert_close(tangent, numeric, rtol=1e-6, atol=1e-8)
