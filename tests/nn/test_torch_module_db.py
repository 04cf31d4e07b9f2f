"""PyTorch's generic module tests, on rnnbench's classes: every sample that torch ships for
``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` in ``torch.testing._internal.common_modules.module_db``
(the wheel's own, so the version that constraints.txt pins), CPU, float32 and float64, train
and eval.

PyTorch's ``test/test_modules.py`` is not in the wheel, so each test below performs the checks
of the test of the same name there, against the same samples, with rnnbench's cuDNN forms
(``RNN``, ``LSTM(peephole=False)``, ``GRU(reset="after")``) as ``module_cls``: the default
backend (``"auto"``: the numba kernels on CPU) throughout, and ``backend="torch"`` where the
two differ in what they support (double backward) or in how they compute gradients. The only
skips are the documented refusals, each with its reason: double backward on the numba backend.

Parametrized to stay fast (about 45 s of CPU): module_db's samples have ``dropout=0``, so a
module computes the same function in train and eval mode; the gradient checks (gradcheck,
gradgradcheck: ``fast_mode`` and batched gradients, as torch's wrappers) run in training mode,
each parameter's partial derivative on the default backend's custom backward, and
gradgradcheck on the samples that pass a state.
"""

import functools
import io
import sys
import types
import unittest
from copy import deepcopy
from itertools import product

import pytest
import torch
from torch._subclasses.meta_utils import assert_metadata_eq
from torch.utils._pytree import tree_flatten, tree_unflatten

from rnnbench.nn import GRU, LSTM, RNN

try:
    import expecttest  # noqa: F401  (PyTorch's own test dependency; not one of ours)
except ImportError:  # common_utils only subclasses its TestCase: a stand-in lets module_db load
    _stub = types.ModuleType("expecttest")
    _stub.TestCase, _stub.ACCEPT = unittest.TestCase, False
    sys.modules["expecttest"] = _stub

from torch.testing._internal.common_modules import ModuleErrorEnum, module_db  # noqa: E402
from torch.testing._internal.common_utils import (  # noqa: E402
    freeze_rng_state,
    gradcheck,
    gradgradcheck,
)

OURS = {
    torch.nn.RNN: (RNN, {}),
    torch.nn.LSTM: (LSTM, {"peephole": False}),
    torch.nn.GRU: (GRU, {"reset": "after"}),
}
INFOS = {info.module_cls: info for info in module_db if info.module_cls in OURS}
UNITS = [pytest.param(cls, id=cls.__name__) for cls in OURS]
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]
MODES = [pytest.param(True, id="train"), pytest.param(False, id="eval")]
BACKENDS = ["auto", "torch"]
# (dtype, training, backend) for the checks with gradients: every dtype and mode on the default
# backend; the torch loop in float64 training (module_db's samples have dropout=0, so eval
# computes the same function, and float32 only rounds it).
SETTINGS = [
    pytest.param(dtype, training, "auto", id=f"{d}-{m}-auto")
    for dtype, d in ((torch.float32, "float32"), (torch.float64, "float64"))
    for training, m in ((True, "train"), (False, "eval"))
] + [pytest.param(torch.float64, True, "torch", id="float64-train-torch")]


def test_module_db_has_the_three_units():
    assert set(INFOS) == set(OURS)
    assert all(info.train_and_eval_differ for info in INFOS.values())


def module_cls(native, backend="auto"):
    """rnnbench's class in the cuDNN form, called as torch's ``module_cls`` is."""
    cls, form = OURS[native]
    return functools.partial(cls, **form, backend=backend)


def samples(native, dtype, training, requires_grad=False):
    info = INFOS[native]
    return info.module_inputs_func(
        info, device="cpu", dtype=dtype, requires_grad=requires_grad, training=training
    )


def build(cls, sample, dtype, training):
    args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
    m = cls(*args, **kwargs)
    m.to("cpu").to(dtype)
    m.train(training)
    return m


def assert_on(m, dtype):
    for name, t in [*m.named_parameters(), *m.named_buffers()]:
        assert t.device == torch.device("cpu"), name
        assert t.dtype == dtype, name


def tensors(obj):
    return [t for t in tree_flatten(obj)[0] if isinstance(t, torch.Tensor)]


def test_every_sample_is_run():
    """The LSTM's samples include torch's proj_size=2 ones: none is left out here."""
    counts = {n.__name__: len(samples(n, torch.float64, True)) for n in OURS}
    assert counts == {"RNN": 32, "LSTM": 32, "GRU": 16}
    projected = [s for s in samples(torch.nn.LSTM, torch.float64, True)]
    assert sum(s.constructor_input.kwargs["proj_size"] == 2 for s in projected) == 16


@pytest.mark.parametrize("training", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("native", UNITS)
def test_forward(native, dtype, training):
    cls = module_cls(native)
    for sample in samples(native, dtype, training):
        with freeze_rng_state():
            m = build(cls, sample, dtype, training)
            args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
            outputs = m(*args, **kwargs)
            torch.testing.assert_close(outputs, sample.reference_fn(m, *args, **kwargs))
            m.float() if dtype == torch.float32 else m.double()
            m(*args, **kwargs)
            assert_on(m, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("native", UNITS)
def test_factory_kwargs_repr_and_pickle(native, dtype):
    """test_factory_kwargs, test_repr and test_pickle (``torch.load``'s default,
    ``weights_only=True``: the classes are safe globals)."""
    cls = module_cls(native)
    for training, sample in product((True, False), samples(native, dtype, True)):
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        m = cls(*args, **kwargs, device="cpu", dtype=dtype)
        m.train(training)
        assert_on(m, dtype)
        assert repr(m) and str(m)
        with freeze_rng_state():
            m = build(cls, sample, dtype, training)
            args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
            output = m(*args, **kwargs)
            buffer = io.BytesIO()
            torch.save(m, buffer)
            buffer.seek(0)
            copy = torch.load(buffer)
            assert type(copy) is type(m)
            torch.testing.assert_close(copy(*args, **kwargs), output)


def backward(outputs, grads):
    for o, g in zip(tensors(outputs), tensors(grads), strict=True):
        if o.requires_grad:
            o.backward(g, retain_graph=True)


def non_contiguous(obj):
    def make(t):
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            return t
        out = torch.repeat_interleave(t, 2, dim=-1)[..., ::2].detach()
        return out.requires_grad_(t.requires_grad)

    flat, spec = tree_flatten(obj)
    return tree_unflatten([make(t) for t in flat], spec)


@pytest.mark.parametrize(("dtype", "training", "backend"), SETTINGS)
@pytest.mark.parametrize("native", UNITS)
def test_non_contiguous_tensors(native, dtype, training, backend):
    cls = module_cls(native, backend)
    for sample in samples(native, dtype, training, requires_grad=True):
        m = build(cls, sample, dtype, training)
        args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
        leaves = tensors((args, kwargs))
        with freeze_rng_state():
            default_output = m(*args, **kwargs)
            grad_output = tree_unflatten(
                [torch.randn_like(o) for o in tree_flatten(default_output)[0]],
                tree_flatten(default_output)[1],
            )
            backward(default_output, grad_output)
        default_input_grads = deepcopy([t.grad for t in leaves])
        default_param_grads = deepcopy([p.grad for p in m.parameters()])
        nc_inputs = non_contiguous((args, kwargs))
        for (in_args, in_kwargs), g_out in product(
            [(args, kwargs), nc_inputs], [grad_output, non_contiguous(grad_output)]
        ):
            ins = tensors((in_args, in_kwargs))
            for t in [*ins, *m.parameters()]:
                t.grad = None
            with freeze_rng_state():
                out = m(*in_args, **in_kwargs)
                backward(out, deepcopy(g_out))
            torch.testing.assert_close(out, default_output)
            for got, want in zip([t.grad for t in ins], default_input_grads, strict=True):
                torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
            torch.testing.assert_close([p.grad for p in m.parameters()], default_param_grads)


def gradient_checks(
    native, backend, check, partials=True, batch_first=(False, True), with_state=False
):
    """test_grad's and test_gradgrad's helper: the total derivative on every sample; then
    (``partials``), on the bidirectional samples with bias and a given state, each parameter's
    alone (the samples pass no keyword tensors). In training mode only: module_db's samples have
    ``dropout=0``, so eval computes the same function (the eval forward is checked above)."""
    cls = module_cls(native, backend)
    for sample in samples(native, torch.float64, True, requires_grad=True):
        if sample.constructor_input.kwargs["batch_first"] not in batch_first:
            continue
        if with_state and len(sample.forward_input.args) < 2:
            continue
        m = build(cls, sample, torch.float64, True)
        params = tuple(m.parameters())
        input_args = sample.forward_input.args
        assert not sample.forward_input.kwargs

        flat, spec = tree_flatten(input_args + params)
        fn = flat_forward(m, len(input_args), spec)
        assert check(fn, flat)
        settings = sample.constructor_input.kwargs
        chosen = settings["bidirectional"] and settings["bias"] and len(input_args) == 2
        chosen = chosen and not settings["batch_first"] and settings.get("nonlinearity") != "relu"
        if not (partials and chosen):
            continue
        for p in params:
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
            assert check(fn, tree_flatten(input_args + params)[0])
            p.requires_grad_(False)


def flat_forward(m, n_args, spec):
    """test_modules.py's ``fn_to_gradcheck``: the module's outputs, flat, of flat inputs."""

    def fn(*flat):
        args = tree_unflatten(list(flat), spec)[:n_args]
        with freeze_rng_state():
            return tree_flatten(m(*args))[0]

    return fn


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("native", UNITS)
def test_grad(native, backend):
    # each parameter's partial derivative on the custom backward (the default backend) only
    gradient_checks(native, backend, gradcheck, partials=backend == "auto")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("native", UNITS)
def test_gradgrad(native, backend):
    if backend == "auto":
        pytest.skip(
            'documented refusal: the numba backend (backend="auto" on CPU) computes first '
            'derivatives only; double backward needs backend="torch" (checked below).'
        )
    # The total derivative of the samples that pass a state (the others are the same modules
    # without it); not the batch_first=True twins: every module_db sample is unbatched, where
    # batch_first changes nothing (test_grad runs them all).
    gradient_checks(
        native, backend, gradgradcheck, partials=False, batch_first=(False,), with_state=True
    )


def test_gradgrad_on_the_numba_backend_is_the_documented_refusal():
    """What the skip above stands for: double backward raises one sentence naming the fix."""
    m = LSTM(2, 3, 2, peephole=False).double()
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(m(x)[0].sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match='backend="torch"'):
        g.sum().backward()


@pytest.mark.parametrize(("dtype", "training", "backend"), SETTINGS)
@pytest.mark.parametrize("native", UNITS)
def test_memory_format(native, dtype, training, backend):
    """Outputs, and in training the gradients ``torch.autograd.grad`` returns (for the inputs
    and every weight), are contiguous; a contiguous_format copy gives the same results."""
    cls = module_cls(native, backend)
    for sample in samples(native, dtype, training, requires_grad=True):
        with freeze_rng_state():
            m = build(cls, sample, dtype, training)
            args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
            desired = m(*args, **kwargs)
            wanted = [t for t in tensors(desired) if t.requires_grad]
            if training:
                inputs = [t for t in tensors((args, kwargs, tuple(m.parameters())))]
                ref_grad_outputs = [torch.rand_like(t) for t in wanted]
                ref_grads = torch.autograd.grad(wanted, inputs, ref_grad_outputs)
            copied = tree_unflatten(
                [t.clone().detach().requires_grad_(t.requires_grad) for t in tensors(args)],
                tree_flatten(args)[1],
            )
            for module_format in (torch.preserve_format, torch.contiguous_format):
                m.to(memory_format=module_format)
                outputs = m(*copied)
                torch.testing.assert_close(outputs, desired)
                assert all(t.is_contiguous() for t in tensors(outputs))
                if not training:
                    continue
                diff = [t for t in tensors(outputs) if t.requires_grad]
                inputs = [t for t in tensors((copied, tuple(m.parameters())))]
                grads = torch.autograd.grad(diff, inputs, ref_grad_outputs)
                torch.testing.assert_close(grads, ref_grads)
                names = [f"input {i}" for i in range(len(tensors(copied)))]
                names += [n for n, _ in m.named_parameters()]
                assert [n for n, g in zip(names, grads, strict=True) if not g.is_contiguous()] == []


@pytest.mark.parametrize("native", UNITS)
def test_if_train_and_eval_modes_differ(native):
    """module_db says they differ (dropout): without ``training`` the forward raises an
    AttributeError naming it, or runs."""
    cls = module_cls(native)
    for dtype in (torch.float32, torch.float64):
        for sample in samples(native, dtype, True):
            m = build(cls, sample, dtype, True)
            delattr(m, "training")
            try:
                m(*sample.forward_input.args, **sample.forward_input.kwargs)
            except AttributeError as e:
                assert "'training'" in str(e)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("native", UNITS)
def test_device_ctx_init(native, dtype):
    cls = module_cls(native)
    for sample in samples(native, dtype, True):
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        m_cpu = cls(*args, **kwargs)
        with torch.device("meta"):
            m = cls(*args, **kwargs)
        for p_meta, p_cpu in zip(m.parameters(), m_cpu.parameters(), strict=True):
            assert p_meta.is_meta
            assert_metadata_eq(lambda a, b, msg=None: a == b or pytest.fail(msg), p_meta, p_cpu)


@pytest.mark.parametrize("training", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("native", UNITS)
def test_errors(native, dtype, training):
    cls = module_cls(native)
    info = INFOS[native]
    errors = info.module_error_inputs_func(
        info, device="cpu", dtype=dtype, requires_grad=False, training=training
    )
    assert errors
    for error in errors:
        sample = error.module_error_input
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        if error.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR:
            with pytest.raises(error.error_type, match=error.error_regex):
                cls(*args, **kwargs)
        else:
            m = cls(*args, **kwargs)
            with pytest.raises(error.error_type, match=error.error_regex):
                m(*sample.forward_input.args, **sample.forward_input.kwargs)
