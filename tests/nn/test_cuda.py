"""The GPU path: the units, the sequence model and the trainer on cuda agree with the CPU.

Skipped without a CUDA GPU (``benchmarks/device/run.sh`` runs this file on the GPU machine).
``RNNBENCH_TEST_DEVICE=cpu`` runs the same checks with "cpu" as the device under test (its
default kernel, numba, against the torch loop), to check this file itself where no GPU is.
The CPU reference is the per-step torch loop (``backend="torch"``), the algorithm that runs on
cuda too (``backend="auto"`` picks it there), so outputs and gradients must agree to float
rounding: float64 1e-10 and float32 1e-4, as numba against torch in ``test_backends.py``.

Training: without weight noise, a population trained on cuda gives the CPU's NLLs to a
relative 1e-4. The only differences are float32 rounding (GPU reductions sum in another
order) carried through a few RMSProp updates; on CPU the two kernels (numba, torch loop) of
the same tiny runs differ by at most 4e-5 nats on NLLs of 12-54 (relative 1.4e-6), so 1e-4
leaves ~70x margin while a wrong gradient, mask or state carry moves NLLs by 1e-2 or more.
With weight noise the numbers differ by design: :class:`~rnnbench.train.protocol.WeightNoise`
draws on the model's device, from per-member ``torch.Generator(device="cuda")`` streams
(Philox), not the CPU's Mersenne Twister. What must still hold there: finite results that
beat the untrained model, members independent of their population, a resume on cuda that
continues the same run, and checkpoints that load on a CPU-only machine (``weights_only=True``).
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

from rnnbench.errors import RnnbenchError
from rnnbench.models import SequenceModel
from rnnbench.nn import GRU, LSTM, RNN
from rnnbench.nn.functional import run_unit
from rnnbench.train.config import RunConfig
from rnnbench.train.metrics import split_nll
from rnnbench.train.population import train_population
from tests.nn.test_backends import FORMS, random_inputs
from tests.train.conftest import tiny_dataset

CUDA = torch.device(os.environ.get("RNNBENCH_TEST_DEVICE", "cuda"))  # the device under test
pytestmark = pytest.mark.skipif(
    CUDA.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU"
)
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}
DTYPES = [torch.float64, torch.float32]
TRAIN_RTOL = 1e-4  # see the module docstring
MEMBERS = [(1e-3, 0), (3e-3, 1), (1e-2, 2)]

# (label, constructor given (input_size, hidden, **kwargs))
MODULES = [
    ("tanh", lambda i, h, **k: RNN(i, h, **k)),
    ("lstm peephole", lambda i, h, **k: LSTM(i, h, peephole=True, **k)),
    ("lstm", lambda i, h, **k: LSTM(i, h, peephole=False, **k)),
    ("gru reset-before", lambda i, h, **k: GRU(i, h, reset="before", **k)),
    ("gru reset-after", lambda i, h, **k: GRU(i, h, reset="after", **k)),
]
NATIVE = [
    ("tanh", lambda i, h: RNN(i, h), torch.nn.RNN),
    ("lstm", lambda i, h: LSTM(i, h, peephole=False), torch.nn.LSTM),
    ("gru", lambda i, h: GRU(i, h, reset="after"), torch.nn.GRU),
]


def to_device(inputs: dict, device) -> dict:
    """Leaf copies of the ``run_unit`` inputs on ``device``, gradients required."""
    return {
        name: None if t is None else t.detach().to(device).requires_grad_()
        for name, t in inputs.items()
    }


def unit_outputs_and_grads(cell, reset, inputs, mask, backend):
    """Outputs and every input's gradient of a fixed loss (as ``test_backends.py``), on CPU."""
    out, h_n, c_n = run_unit(cell, **inputs, reset=reset, mask=mask, backend=backend)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device)
    loss = (out * weights.reshape(out.shape)).sum() + (h_n**2).sum()
    if c_n is not None:
        loss = loss + c_n.sin().sum()
    loss.backward()
    finals = [out, h_n] + ([c_n] if c_n is not None else [])
    grads = {name: t.grad for name, t in inputs.items() if t is not None}
    return [f.detach().cpu() for f in finals], {n: g.cpu() for n, g in grads.items()}


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float, what: str = "") -> None:
    assert a.shape == b.shape, what
    err = (a.detach().cpu() - b.detach().cpu()).abs().max().item() if a.numel() else 0.0
    assert err <= tol, f"{what}: max difference {err:.3g} > {tol:g}"


# ------------------------------------------------------------------ units


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize(
    ("K", "shared_x", "bias"), [(1, True, True), (3, False, True), (2, True, False)]
)
@pytest.mark.parametrize(("cell", "gates", "peephole", "reset"), FORMS)
def test_run_unit_on_cuda_equals_cpu(cell, gates, peephole, reset, K, shared_x, bias, dtype):
    inputs, mask = random_inputs(
        cell, gates, peephole, K=K, shared_x=shared_x, bias=bias, dtype=dtype, seed=K
    )
    ref_finals, ref_grads = unit_outputs_and_grads(cell, reset, inputs, mask, "torch")
    gpu = to_device(inputs, CUDA)
    finals, grads = unit_outputs_and_grads(cell, reset, gpu, mask.to(CUDA), "auto")
    tol = TOLERANCE[dtype]
    for a, b in zip(finals, ref_finals, strict=True):
        assert_close(a, b, tol, "output")
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert_close(grads[name], ref_grads[name], tol, name)


@pytest.mark.skipif(CUDA.type == "cpu", reason="the device under test is the CPU")
def test_numba_backend_refuses_cuda_tensors_with_one_clear_error():
    inputs, mask = random_inputs(
        "gru", 3, False, K=1, shared_x=True, bias=True, dtype=torch.float32, seed=0
    )
    with pytest.raises(RnnbenchError, match="CPU tensors"):
        run_unit("gru", **to_device(inputs, CUDA), mask=mask.to(CUDA), backend="numba")


def module_outputs_and_grads(module, x, hx):
    module.zero_grad()
    out, h_n = module(x, hx)
    data = out.data if isinstance(out, torch.nn.utils.rnn.PackedSequence) else out
    finals = list(h_n) if isinstance(h_n, tuple) else [h_n]
    weights = torch.linspace(-1, 1, data.numel(), dtype=data.dtype, device=data.device)
    loss = (data.reshape(-1) * weights).sum() + sum((f**2).sum() for f in finals)
    loss.backward()
    return [data.detach(), *[f.detach() for f in finals]] + [
        p.grad.detach() for p in module.parameters()
    ]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize(("label", "make"), MODULES)
def test_modules_on_cuda_equal_cpu(label, make, packed, dtype):
    torch.manual_seed(0)
    cpu = make(3, 5, batch_first=not packed, init="paper").to(dtype)
    gpu = make(3, 5, batch_first=not packed, init="paper").to(dtype)
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.to(CUDA)
    cpu.backend = "torch"
    assert all(p.device.type == CUDA.type for p in gpu.parameters())
    if packed:  # unsorted lengths: exercises the mask and the sorted indices on the device
        seqs = [torch.randn(n, 3, dtype=dtype) for n in (4, 7, 2)]
        x_cpu = pack_sequence(seqs, enforce_sorted=False)
        x_gpu = pack_sequence([s.to(CUDA) for s in seqs], enforce_sorted=False)
        hx = None
    else:
        x_cpu = torch.randn(4, 6, 3, dtype=dtype)
        x_gpu = x_cpu.to(CUDA)
        h0 = torch.randn(1, 4, 5, dtype=dtype)
        hx = (h0, torch.randn(1, 4, 5, dtype=dtype)) if isinstance(cpu, LSTM) else h0
    if isinstance(hx, tuple):
        hx_gpu = tuple(t.to(CUDA) for t in hx)
    else:
        hx_gpu = None if hx is None else hx.to(CUDA)
    ref = module_outputs_and_grads(cpu, x_cpu, hx)
    got = module_outputs_and_grads(gpu, x_gpu, hx_gpu)
    assert all(t.device.type == CUDA.type for t in got)
    for a, b in zip(got, ref, strict=True):
        assert_close(a, b, TOLERANCE[dtype], label)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize(("cell", "make_ours", "native_cls"), NATIVE)
def test_native_forms_on_cuda_equal_cudnn(cell, make_ours, native_cls, dtype, monkeypatch):
    # cuDNN may run float32 RNNs on TF32 tensor cores (cudnn.allow_tf32 is on by default),
    # which rounds to ~1e-3: compare against exact float32.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(1)
    native = native_cls(4, 6).to(device=CUDA, dtype=dtype)
    ours = make_ours(4, 6).to(device=CUDA, dtype=dtype)
    ours.load_state_dict(native.state_dict())
    x = torch.randn(9, 3, 4, dtype=dtype, device=CUDA)
    ref = module_outputs_and_grads(native, x, None)
    got = module_outputs_and_grads(ours, x, None)
    for a, b in zip(got, ref, strict=True):
        assert_close(a, b, TOLERANCE[dtype], cell)


# ------------------------------------------------------------------ the sequence model


def model_pair(unit, head, in_dim, out_dim, dtype, **kw):
    cpu = SequenceModel(unit, in_dim, out_dim, 7, head=head, population=3, backend="torch", **kw)
    gpu = SequenceModel(unit, in_dim, out_dim, 7, head=head, population=3, **kw)
    return cpu.to(dtype), gpu.to(device=CUDA, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize(
    ("unit", "kw"),
    [
        ("lstm", {"peephole": True}),
        ("gru", {"reset": "before"}),
        ("tanh", {}),
        ("gru", {"reset": "after"}),
    ],
)
@pytest.mark.parametrize(("head", "in_dim", "out_dim"), [("bernoulli", 6, 6), ("gmm", 5, 2)])
def test_sequence_model_forward_and_nll_on_cuda_equal_cpu(head, in_dim, out_dim, unit, kw, dtype):
    cpu, gpu = model_pair(unit, head, in_dim, out_dim, dtype, **kw)
    gen = torch.Generator().manual_seed(3)
    T, B = 8, 4
    x = torch.randn(T, B, in_dim, generator=gen, dtype=dtype)
    y = torch.randn(T, B, out_dim, generator=gen, dtype=dtype)
    if head == "bernoulli":
        y = (y > 0.5).to(dtype)
    mask = torch.ones(T, B, dtype=dtype)
    mask[5:, 1] = 0
    mask[2:, 3] = 0
    y[6:, 1] = float("nan")  # garbage on padding must not leak
    results = []
    for model, dev in ((cpu, "cpu"), (gpu, CUDA)):
        model.zero_grad()
        params, (h, c) = model(x.to(dev), mask.to(dev))
        nll_sum, n, _ = model.nll(x.to(dev), y.to(dev), mask.to(dev))
        nll_sum.sum().backward()
        grads = [p.grad for p in model.parameters()]
        results.append((params, h, nll_sum, n, grads))
    (p0, h0, s0, n0, g0), (p1, h1, s1, n1, g1) = results
    assert n0 == n1 and s1.device.type == CUDA.type and torch.isfinite(s1).all()
    tol = TOLERANCE[dtype]
    assert_close(p1, p0, tol, "head params")
    assert_close(h1, h0, tol, "state")
    assert_close(s1, s0, tol * max(1.0, s0.abs().max().item()), "nll")
    for a, b in zip(g1, g0, strict=True):
        assert_close(a, b, tol * max(1.0, b.abs().max().item()), "grad")


@pytest.mark.parametrize(("head", "in_dim", "out_dim"), [("bernoulli", 6, 6), ("gmm", 20, 10)])
def test_sampling_on_cuda(head, in_dim, out_dim):
    model = SequenceModel("lstm", in_dim, out_dim, 5, head=head, population=2).to(CUDA)
    gen = torch.Generator(device=CUDA).manual_seed(0)
    frames = model.sample(6, prime=torch.zeros(3, in_dim), generator=gen)
    assert frames.shape == (2, 6, out_dim) and frames.device.type == CUDA.type
    assert torch.isfinite(frames).all()
    if head == "bernoulli":
        assert set(frames.unique().tolist()) <= {0.0, 1.0}
    again = model.sample(
        6, prime=torch.zeros(3, in_dim), generator=torch.Generator(device=CUDA).manual_seed(0)
    )
    assert torch.equal(frames, again)


# ------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def tiny(data_root):
    return tiny_dataset(data_root)


def cfg(**kw) -> RunConfig:
    base = dict(dataset="jsb", unit="lstm", hidden=8, batch_size=2, max_epochs=2, patience=5)
    base.update(kw)
    return RunConfig(**base)


def run(configs, root, tiny, **kw):
    dirs = [Path(root) / c.key() for c in configs]
    return train_population(configs, out_dirs=dirs, dataset=tiny, **kw), dirs


def cpu_model(config: RunConfig, tiny) -> SequenceModel:
    """A one-member CPU model of ``config``'s shape, with its initial weights."""
    return SequenceModel(
        config.unit,
        tiny.in_dim,
        tiny.out_dim,
        config.hidden,
        head=tiny.head,
        peephole=config.peephole,
        reset=config.reset,
        init=config.init,
        seeds=[config.seed],
        backend="torch",
    )


def untrained_nll(config: RunConfig, tiny) -> float:
    return float(split_nll(cpu_model(config, tiny), tiny.split("valid"))[0])


@pytest.mark.parametrize(("unit", "bptt"), [("lstm", None), ("gru", None), ("tanh", 5)])
def test_population_without_noise_trains_on_cuda_as_on_cpu(unit, bptt, tiny, tmp_path):
    configs = [cfg(unit=unit, bptt=bptt, lr=lr, seed=s, weight_noise=0.0) for lr, s in MEMBERS]
    on_cpu, _ = run(configs, tmp_path / "cpu", tiny, backend="torch")
    on_gpu, gpu_dirs = run(configs, tmp_path / "gpu", tiny, device=CUDA)
    for a, b in zip(on_gpu, on_cpu, strict=True):
        for name in ("status", "best_epoch", "epochs", "updates", "params", "hidden"):
            assert a[name] == b[name], name
        for name in ("train_nll", "valid_nll", "test_nll"):
            assert a[name] == pytest.approx(b[name], rel=TRAIN_RTOL, abs=TRAIN_RTOL), name
    for run_dir in gpu_dirs:  # written from cuda, read on a CPU-only machine
        best = torch.load(run_dir / "best.pt", weights_only=True)
        assert all(t.device.type == "cpu" for t in best["member_state"].values())


def test_population_with_weight_noise_on_cuda(tiny, tmp_path):
    configs = [cfg(lr=lr, seed=s, max_epochs=3) for lr, s in MEMBERS]
    results, dirs = run(configs, tmp_path / "pop", tiny, device=CUDA)
    for c, r, run_dir in zip(configs, results, dirs, strict=True):
        assert r["status"] == "done"
        assert all(math.isfinite(r[n]) for n in ("train_nll", "valid_nll", "test_nll"))
        assert r["valid_nll"] < untrained_nll(c, tiny)
        # The checkpoints hold CPU tensors only: they load without a GPU, weights_only.
        for name in ("best.pt", "last.pt"):
            state = torch.load(run_dir / name, weights_only=True)
            tensors = list(_tensors(state))
            assert tensors and all(t.device.type == "cpu" for t in tensors), name
        # The best member state, scored on CPU, gives the valid NLL the cuda run reported.
        best = torch.load(run_dir / "best.pt", weights_only=True)
        model = cpu_model(c, tiny)
        model.load_member_state(0, best["member_state"])
        valid = float(split_nll(model, tiny.split("valid"))[0])
        assert valid == pytest.approx(r["valid_nll"], rel=TRAIN_RTOL, abs=TRAIN_RTOL)

    # A member's noise stream is its own: alone on cuda, it trains as in the population.
    (alone,), _ = run([configs[1]], tmp_path / "alone", tiny, device=CUDA)
    for name in ("train_nll", "valid_nll", "test_nll"):
        assert alone[name] == pytest.approx(results[1][name], rel=TRAIN_RTOL, abs=TRAIN_RTOL)


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _tensors(v)


class Interrupt(Exception):
    pass


def stop_at_epoch(n):
    def on_epoch(k, record):
        if record["epoch"] == n:
            raise Interrupt

    return on_epoch


def test_resume_on_cuda_continues_the_same_run(tiny, tmp_path):
    # The cuda noise generators' states go through last.pt (as CPU byte tensors) and back.
    configs = [cfg(lr=lr, seed=s, max_epochs=3, weight_noise=0.3) for lr, s in MEMBERS]
    straight, _ = run(configs, tmp_path / "straight", tiny, device=CUDA)
    with pytest.raises(Interrupt):
        run(configs, tmp_path / "resumed", tiny, device=CUDA, on_epoch=stop_at_epoch(2))
    resumed, _ = run(configs, tmp_path / "resumed", tiny, device=CUDA)
    for a, b in zip(straight, resumed, strict=True):
        for name in ("status", "best_epoch", "epochs", "updates"):
            assert a[name] == b[name], name
        for name in ("train_nll", "valid_nll", "test_nll"):  # bitwise where cuda is deterministic
            assert a[name] == pytest.approx(b[name], rel=1e-6, abs=1e-6), name


def test_a_run_begun_on_cpu_resumes_only_on_cpu(tiny, tmp_path):
    # A CPU noise-generator state (Mersenne Twister) does not fit a cuda generator (Philox).
    configs = [cfg(lr=1e-3, seed=0, max_epochs=2)]
    with pytest.raises(Interrupt):
        run(configs, tmp_path, tiny, backend="torch", on_epoch=stop_at_epoch(1))
    if CUDA.type != "cpu":
        with pytest.raises(RnnbenchError, match="resume it with the --device it began on"):
            run(configs, tmp_path, tiny, device=CUDA)
    (result,), _ = run(configs, tmp_path, tiny, backend="torch")
    assert result["status"] == "done" and result["epochs"] == 2


# ------------------------------------------------------------------ commands and sweeps


@pytest.fixture(scope="module")
def music_file(tiny, tmp_path_factory):
    """The tiny JSB slice as a Boulanger-Lewandowski pickle, loadable by name (music:FILE)."""
    data = {}
    for split in ("train", "valid", "test"):
        data[split] = []
        for s in tiny.split(split):
            roll = np.concatenate([s.inputs[:1], s.targets])
            data[split].append([[21 + int(j) for j in np.flatnonzero(f)] for f in roll])
    path = tmp_path_factory.mktemp("music") / "jsb-tiny.pickle"
    path.write_bytes(pickle.dumps(data))
    return path


def test_train_command_on_cuda(music_file, tmp_path, capsys):
    from rnnbench.commands import train
    from rnnbench.store import Store

    parser = argparse.ArgumentParser(prog="rnnbench")
    train.register(parser.add_subparsers(dest="command", required=True))
    dataset = f"music:{music_file}"
    args = parser.parse_args(
        [
            "train",
            "--dataset",
            dataset,
            "--unit",
            "gru",
            "--hidden",
            "6",
            "--max-epochs",
            "2",
            "--batch-size",
            "2",
            "--lr",
            "1e-3,1e-2",
            "--device",
            str(CUDA),
            "--out",
            str(tmp_path),
            "--no-progress",
            "--json",
        ]
    )
    assert int(args.func(args) or 0) == 0
    capsys.readouterr()
    with Store(tmp_path / "results.db") as store:
        runs = store.runs()
        assert len(runs) == 2 and {r["status"] for r in runs} == {"done"}
        assert all(math.isfinite(r["test_nll"]) for r in runs)


def test_local_sweep_on_cuda_with_two_worker_processes(music_file, tmp_path):
    from rnnbench.store import Store
    from rnnbench.sweeps import run_sweep
    from rnnbench.sweeps.grid import Population

    dataset = f"music:{music_file}"
    pops = [
        Population(
            [
                RunConfig(
                    dataset=dataset, unit=unit, hidden=6, batch_size=2, max_epochs=2, lr=lr, seed=0
                )
                for lr in (1e-3, 1e-2)
            ]
        )
        for unit in ("lstm", "tanh")
    ]
    with Store(tmp_path / "results.db") as store:
        summary = run_sweep(
            pops, store=store, out=tmp_path, workers=2, device=str(CUDA), progress=False
        )
        assert summary["done"] == 4 and summary["failed"] == 0, summary
        assert all(math.isfinite(r["test_nll"]) for r in store.runs())
