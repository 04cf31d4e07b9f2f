r"""The weight noise's draws in numba, bit for bit torch's ``Tensor.normal_(generator=g)``.

:class:`~rnnbench.train.protocol.WeightNoise` fills each member's noise row with
``part.normal_(generator=g_k)`` calls (one per run of :func:`rnnbench.train.fused_noise.runs`).
On the paper's small models these draws were 11-25% of a population's epoch, about 3.5 ns
per number, most of it torch drawing its uniforms one function call at a time. :func:`draw`
computes the very same numbers (and leaves every generator in the very same state) in one
numba call for all members, about three times faster.

What torch 2.13 computes on CPU for a contiguous float32 tensor of :math:`n \ge 16` numbers
(``aten/src/ATen/native/cpu/DistributionTemplates.h``, ``normal_fill``; on a CPU with AVX2
or AVX-512 the kernel is the AVX2 one, since ``DistributionKernels.cpp`` registers no AVX-512
``normal_stub``):

1. :math:`n` uniforms :math:`u_i = (r_i \mathbin{\&} (2^{24}-1))\,2^{-24}`, :math:`r_i` the
   generator's mt19937 32-bit outputs (``at::mt19937``, ``MT19937RNGEngine.h``);
2. for each block of 16, :math:`a_j = 1 - u_j`, :math:`b_j = u_{j+8}` (:math:`j < 8`),
   :math:`\rho_j = \sqrt{-2 \log a_j}`, :math:`\theta_j = \mathrm{fl}(2\pi)\, b_j` and
   :math:`z_j = \mathrm{fma}(\rho_j \cos\theta_j, \sigma, \mu)`,
   :math:`z_{j+8} = \mathrm{fma}(\rho_j \sin\theta_j, \sigma, \mu)` (here :math:`\mu = 0,
   \sigma = 1`), with float32 ``log256_ps`` and ``sincos256_ps`` of ``avx_mathfun.h``
   (Cephes polynomials, not libm), whose multiply-adds gcc contracted into fused ones;
3. when 16 does not divide :math:`n`, 16 fresh uniforms for the last 16 places, step 2 on them.

:func:`_pair` is that arithmetic, operation for operation (an ``fma`` where gcc fused a
multiply into the add that reads it: the first multiply in program order where both operands
of the add are products). The generator's state travels through ``get_state``/``set_state``
(``CPUGeneratorImplState``: the Mersenne state as 624 uint64 at byte 24, ``left`` an int32 at
byte 8, ``next`` a uint64 at byte 16), so checkpoints, resume and the torch path see the
generators exactly as the torch draws leave them.

:func:`usable` checks all of it against torch on the running machine once (numbers and states,
on sizes with and without a tail, consecutive draws); where anything differs, or the runs
cannot take this path (a run under 16 numbers takes torch's other, double-precision path),
:func:`draw` makes torch's own calls.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numba
import numpy as np
import torch
from numba import types
from numba.extending import intrinsic

from rnnbench.train.fused_noise import _fma, runs

__all__ = ["draw", "usable", "warm_up"]

_ENABLED = True  # private switch: tests turn it off to compare with torch's own calls

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_inline = numba.njit(inline="always", error_model="numpy")

STATE_BYTES = 5056  # sizeof(CPUGeneratorImplState)
N, M = 624, 397  # mt19937's state size and shift
_U = np.uint32
_I = np.int32
_F = np.float32


@intrinsic
def _bits(typingctx, x):
    """The bits of a float32 as a uint32."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.uint32))

    return types.uint32(x), codegen


@intrinsic
def _float(typingctx, x):
    """The float32 with the low 32 bits of the integer ``x``."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if signature.args[0].bitwidth > 32:
            v = builder.trunc(v, context.get_value_type(types.uint32))
        return builder.bitcast(v, context.get_value_type(types.float32))

    return types.float32(x), codegen


# -- mt19937 (at::mt19937_engine)


@_inline
def _twist_one(u, v, w):
    y = (u & _U(0x80000000)) | (v & _U(0x7FFFFFFF))
    return _U(w ^ _U(y >> _U(1)) ^ (_U(0x9908B0DF) * _U(v & _U(1))))


@_jit
def _twist(mt):
    """mt19937's ``next_state``: the next 624 state words, in place."""
    for j in range(N - M):
        mt[j] = _twist_one(mt[j], mt[j + 1], mt[j + M])
    for j in range(N - M, N - 1):
        mt[j] = _twist_one(mt[j], mt[j + 1], mt[j + M - N])
    mt[N - 1] = _twist_one(mt[N - 1], mt[0], mt[M - 1])


@_jit
def _temper(src, dst):
    """``dst ← (temper(src) & (2^24 - 1)) · 2^-24``: the uniforms of those state words."""
    scale = _F(1.0 / (1 << 24))
    for j in range(src.shape[0]):
        y = src[j]
        y = _U(y ^ _U(y >> _U(11)))
        y = _U(y ^ _U(_U(y << _U(7)) & _U(0x9D2C5680)))
        y = _U(y ^ _U(_U(y << _U(15)) & _U(0xEFC60000)))
        y = _U(y ^ _U(y >> _U(18)))
        dst[j] = _F(np.int32(y & _U(0xFFFFFF))) * scale


@_jit
def _uniforms(mt, pos, out):
    """``out`` ← the next uniforms of the generator ``(mt, pos = [left, next])``, as
    ``at::uniform_real_distribution<float>(0, 1)`` draws them one ``random()`` at a time (a
    ``random()`` that takes ``left`` to 0 twists first)."""
    left, nxt = pos[0], pos[1]
    n = out.shape[0]
    i = 0
    while i < n:
        avail = left - 1
        if avail == 0:
            _twist(mt)
            left, nxt, avail = N + 1, 0, N
        m = min(avail, n - i)
        _temper(mt[nxt : nxt + m], out[i : i + m])
        nxt += m
        left -= m
        i += m
    pos[0], pos[1] = left, nxt


# -- Box-Muller (NormalFill16<float> with avx_mathfun.h's log256_ps and sincos256_ps)

_ONE, _HALF, _ZERO = _F(1), _F(0.5), _F(0)
_SQRTHF = _F(0.707106781186547524)
_LOG_P = tuple(
    _F(c)
    for c in (
        7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
        -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1,
    )
)  # fmt: skip
_LP0, _LP1, _LP2, _LP3, _LP4, _LP5, _LP6, _LP7, _LP8 = _LOG_P
_Q1, _Q2 = _F(-2.12194440e-4), _F(0.693359375)
_DP1, _DP2, _DP3 = _F(-0.78515625), _F(-2.4187564849853515625e-4), _F(-3.77489497744594108e-8)
_SP0, _SP1, _SP2 = _F(-1.9515295891e-4), _F(8.3321608736e-3), _F(-1.6666654611e-1)
_CP0, _CP1, _CP2 = _F(2.443315711809948e-5), _F(-1.388731625493765e-3), _F(4.166664568298827e-2)
_FOPI = _F(1.27323954473516)  # 4 / pi
_TWO_PI = _F(2.0 * np.pi)
_MINUS_TWO = _F(-2)


@_inline
def _log(x):
    """``log256_ps`` for one lane (x > 0)."""
    least = _float(_U(0x00800000))  # the smallest normal float
    x = x if x > least else least
    xi = _bits(x)
    e = _F(_I(_I(_U(xi >> _U(23))) - _I(0x7F))) + _ONE
    x = _float(_U(_U(xi & _U(0x807FFFFF)) | _bits(_HALF)))
    small = x < _SQRTHF
    tmp = x if small else _ZERO
    x = x - _ONE
    e = e - (_ONE if small else _ZERO)
    x = x + tmp
    z = x * x
    y = _fma(_LP0, x, _LP1)
    y = _fma(y, x, _LP2)
    y = _fma(y, x, _LP3)
    y = _fma(y, x, _LP4)
    y = _fma(y, x, _LP5)
    y = _fma(y, x, _LP6)
    y = _fma(y, x, _LP7)
    y = _fma(y, x, _LP8)
    y = y * x
    y = _fma(y, z, e * _Q1)
    y = y - z * _HALF  # z / 2 is exact: fused or not, the same
    x = x + y
    return _fma(e, _Q2, x)


@_inline
def _sincos(x):
    """``sincos256_ps`` for one lane: ``(sin x, cos x)``."""
    sign_sin = _U(_bits(x) & _U(0x80000000))
    x = _float(_U(_bits(x) & _U(0x7FFFFFFF)))
    j = _I(x * _FOPI)
    j = _I(_I(j + _I(1)) & _I(-2))
    y = _F(j)
    swap = _U(_U(_I(j & _I(4))) << _U(29))
    first = _I(j & _I(2)) == _I(0)  # the sine's polynomial is the second one
    x = _fma(y, _DP1, x)
    x = _fma(y, _DP2, x)
    x = _fma(y, _DP3, x)
    sign_cos = _U(_U(_I(_I(~_I(j - _I(2))) & _I(4))) << _U(29))
    sign_sin = _U(sign_sin ^ swap)
    z = x * x
    y = _fma(_CP0, z, _CP1)
    y = _fma(y, z, _CP2)
    y = y * z
    y = _fma(y, z, -(z * _HALF))
    y = y + _ONE
    y2 = _fma(_SP0, z, _SP1)
    y2 = _fma(y2, z, _SP2)
    y2 = y2 * z
    y2 = _fma(y2, x, x)
    ysin2 = y2 if first else _float(_U(0))
    ysin1 = _float(_U(0)) if first else y
    y2 = y2 - ysin2
    y = y - ysin1
    s = _float(_U(_bits(ysin1 + ysin2) ^ sign_sin))
    c = _float(_U(_bits(y + y2) ^ sign_cos))
    return s, c


@_inline
def _pair(a, b):
    """The standard normals ``(z_j, z_{j+8})`` of the uniforms ``(u_j, u_{j+8})``."""
    radius = np.sqrt(_MINUS_TWO * _log(_ONE - a))
    s, c = _sincos(_TWO_PI * b)
    return _fma(radius * c, _ONE, _ZERO), _fma(radius * s, _ONE, _ZERO)


@_jit
def _box_muller(a, b):
    """``(a_i, b_i) ← _pair(a_i, b_i)`` in place (``a``, ``b`` apart in memory)."""
    for i in range(a.shape[0]):
        z1, z2 = _pair(a[i], b[i])
        a[i] = z1
        b[i] = z2


@_jit
def _fill(mt, pos, out, scratch):
    """``out.normal_(generator=g)`` with ``g``'s state ``(mt, pos)``, advanced in place
    (``out`` at least 16 numbers; ``scratch (2, ≥ len(out) / 2)``)."""
    _uniforms(mt, pos, out)
    n = out.shape[0]
    blocks = n // 16
    m = 8 * blocks
    a, b = scratch[0, :m], scratch[1, :m]
    # the blocks' halves apart (pairs of floats as uint64: vectorised copies), then back
    o = out[: 2 * m].view(np.uint64)
    a_, b_ = a.view(np.uint64), b.view(np.uint64)
    for k in range(blocks):
        for j in range(4):
            a_[4 * k + j] = o[8 * k + j]
            b_[4 * k + j] = o[8 * k + 4 + j]
    _box_muller(a, b)
    for k in range(blocks):
        for j in range(4):
            o[8 * k + j] = a_[4 * k + j]
            o[8 * k + 4 + j] = b_[4 * k + j]
    if n % 16:
        tail = out[n - 16 :]
        _uniforms(mt, pos, tail)
        for j in range(8):
            tail[j], tail[j + 8] = _pair(tail[j], tail[j + 8])


@_jit
def _draw(states, noise, spans, members, mt, pos, scratch):
    """Member ``k`` with ``members[k]``: its row's ``spans`` drawn from its state (``states[k]``,
    a ``CPUGeneratorImplState`` as 632 uint64 words), the state advanced; the others' rows 0."""
    for k in range(noise.shape[0]):
        if not members[k]:
            noise[k, :] = 0
            continue
        st = states[k]
        for i in range(N):
            mt[i] = _U(st[3 + i])
        pos[0] = st[1] & np.uint64(0xFFFFFFFF)  # left: bytes 8-11 (seeded: 12-15)
        pos[1] = st[2]  # next
        for r in range(spans.shape[0]):
            _fill(mt, pos, noise[k, spans[r, 0] : spans[r, 1]], scratch)
        for i in range(N):
            st[3 + i] = np.uint64(mt[i])
        st[1] = (st[1] & np.uint64(0xFFFFFFFF00000000)) | np.uint64(pos[0])
        st[2] = np.uint64(pos[1])


# -- the torch side


class _Plan:
    """Per noise buffer: the spans, the generators' states' buffer and scratch."""

    def __init__(self, noise: np.ndarray, spans: list[tuple[int, int]]):
        k = noise.shape[0]
        self.noise = noise
        self.spans = np.asarray(spans, np.int64).reshape(-1, 2)
        self.states = np.zeros((k, STATE_BYTES), np.uint8)
        self.words = self.states.view(np.uint64)
        self.stacked = torch.from_numpy(self.states)
        # one tensor per row, each at storage offset 0: torch 2.13's set_state on a view at
        # an offset (a row of ``stacked``) crashes the process
        self.tensors = [torch.from_numpy(row) for row in self.states]
        longest = max(b - a for a, b in spans)
        self.scratch = np.empty((2, longest // 2 + 8), np.float32)
        self.mt = np.empty(N, np.uint32)
        self.pos = np.zeros(2, np.int64)
        self.members = np.ones(k, np.bool_)


def _spans(fast: dict) -> list[tuple[int, int]] | None:
    """The row ranges of member 0's ``normal_`` calls in ``fast`` (the same for every member),
    or None where they are not the runs of the row's tensors."""
    noise = fast["noise"]
    sizes = np.diff([*fast["offsets"].tolist(), noise.shape[1]]).tolist()
    spans = runs(sizes)
    for row, parts in zip(fast["rows"], fast["draws"], strict=True):
        got = [
            ((p.data_ptr() - row.data_ptr()) // 4, (p.data_ptr() - row.data_ptr()) // 4 + p.numel())
            for p in parts
        ]
        if got != spans:
            return None
    return spans


def _plan(fast: dict) -> _Plan | None:
    kept = fast.get("_stream")
    if kept is not None:
        return kept[0]
    plan = None
    noise = fast["noise"]
    spans = _spans(fast)
    if (
        usable()
        and noise.dtype == np.float32
        and noise.flags.c_contiguous
        and spans
        and min(b - a for a, b in spans) >= 16
    ):
        plan = _Plan(noise, spans)
    fast["_stream"] = (plan,)
    return plan


def _torch_draws(generators, fast: dict, members: Sequence[bool] | None) -> None:
    with torch.no_grad():
        for k, g in enumerate(generators):
            if members is None or members[k]:
                for part in fast["draws"][k]:
                    part.normal_(generator=g)
            else:
                fast["rows"][k].zero_()


def draw(generators: Sequence[torch.Generator], fast: dict, members=None) -> None:
    """Member ``k``'s noise row of ``fast`` (:meth:`WeightNoise._fused`) ← its draws from
    ``generators[k]`` when ``members`` (one bool per member, None: all) says so, else 0: the
    numbers and generator states of ``part.normal_(generator=g_k)`` for its parts in order."""
    plan = _plan(fast) if _ENABLED else None
    if plan is None:
        _torch_draws(generators, fast, members)
        return
    drawn = plan.members
    drawn[:] = True if members is None else members
    torch.stack([g.get_state() for g in generators], out=plan.stacked)  # read, not drawn from
    _draw(plan.words, plan.noise, plan.spans, drawn, plan.mt, plan.pos, plan.scratch)
    for g, state, d in zip(generators, plan.tensors, drawn.tolist(), strict=True):
        if d:
            g.set_state(state)


_CHECKED: bool | None = None


def _matches_torch() -> bool:
    """Whether :func:`_draw` gives torch's numbers and generator states here, on sizes with
    and without a tail, over a twist and across consecutive calls (one generator)."""
    g = torch.Generator().manual_seed(20261208)
    if g.get_state().numel() != STATE_BYTES:
        return False
    sizes = [16, 17, 31, 100, 623, 625, 1248, 5184, 12672, 20000]
    total = sum(sizes)
    spans = np.cumsum([0, *sizes])
    spans = list(zip(spans[:-1].tolist(), spans[1:].tolist(), strict=True))
    want = torch.empty(2, total)
    got = np.zeros((1, total), np.float32)
    plan = _Plan(got, spans)
    plan.states[0] = g.get_state().numpy()
    twin = torch.Generator()
    twin.set_state(g.get_state())
    for _ in range(2):
        for a, b in spans:
            want[0, a:b].normal_(generator=g)
        _draw(plan.words, got, plan.spans, plan.members, plan.mt, plan.pos, plan.scratch)
        twin.set_state(plan.tensors[0])
        if not (
            np.array_equal(got[0].view(np.uint32), want[0].numpy().view(np.uint32))
            and torch.equal(twin.get_state(), g.get_state())
        ):
            return False
    want[1].normal_(generator=twin)  # the generator goes on from the state written back
    want[0].normal_(generator=g)
    return torch.equal(want[0], want[1])


def usable() -> bool:
    """Whether :func:`draw` may compute the draws here: a little-endian CPU where torch's CPU
    kernel is the AVX2 one and everything matches torch (checked once per process)."""
    global _CHECKED
    if _CHECKED is None:
        _CHECKED = (
            sys.byteorder == "little"
            and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
            and _matches_torch()
        )
    return _CHECKED


def warm_up() -> None:
    """Compile (or load) the kernels and run the check, drawing nothing from any run's
    generator (:mod:`rnnbench.train.warmup`)."""
    usable()
