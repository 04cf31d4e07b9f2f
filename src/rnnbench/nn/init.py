"""Initial weights of one recurrent layer, named and shaped as torch names them.

Two schemes:

- ``"torch"``: every tensor drawn from U(-1/sqrt(H), 1/sqrt(H)), as ``torch.nn.LSTM`` does
  (the peephole diagonals too). :func:`init_unit` draws in float64 and rounds (the population
  models' draws, kept as they were); the modules draw with :func:`reset_like_torch`, which
  makes exactly ``torch.nn.RNNBase.reset_parameters``'s draws.
- ``"paper"``: the authors' code (jych/librnn): input weights and peephole diagonals from
  U(-0.1, 0.1), each gate's H x H block of the recurrent matrix a random orthogonal matrix,
  biases zero.

A variant (:mod:`rnnbench.nn.variants`) draws the full unit's tensors first, in the same
order, then drops the rows of the gates it removes (and their peepholes), so a variant and
the full unit drawn from one seed share the weights of every gate they both have (both
functions). ``fb1``
then sets the forget block of ``bias_ih_l0`` to 1 and of ``bias_hh_l0`` to 0 (the gate's
bias, their sum, is 1).

The draws depend only on ``generator`` (torch's global generator when None), so a population
member seeded on its own gets the same weights whatever the population size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rnnbench.errors import RnnbenchError
from rnnbench.nn import variants as _variants
from rnnbench.nn.functional import GATES

SCHEMES = ("torch", "paper")
PAPER_SCALE = 0.1


def init_unit(
    cell: str,
    input_size: int,
    hidden_size: int,
    *,
    bias: bool = True,
    peephole: bool = False,
    scheme: str = "torch",
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    variant: str = "",
    proj_size: int = 0,
) -> dict[str, Tensor]:
    """One model's parameters: ``weight_ih_l0 (G*H, I)``, ``weight_hh_l0 (G*H, R)``, and
    ``bias_ih_l0``, ``bias_hh_l0 (G*H,)`` when ``bias``, ``weight_hr_l0 (R, H)`` when
    ``proj_size`` (LSTM only, ``R`` = ``proj_size``, else ``R = H``), ``weight_ch_l0 (P, H)``
    when ``peephole`` (LSTM only; ``P`` = 3, or the peepholes a variant keeps), in that order.
    ``variant``: a name of :mod:`rnnbench.nn.variants` (``G`` = the gates it keeps).
    With ``proj_size`` the paper scheme's recurrent blocks are ``H x R`` with orthonormal
    columns and ``weight_hr_l0`` is drawn as the input weights."""
    if cell not in GATES:
        raise RnnbenchError(f"unknown cell {cell!r}; choose one of {sorted(GATES)}.")
    if scheme not in SCHEMES:
        raise RnnbenchError(f"init scheme must be 'torch' or 'paper', not {scheme!r}.")
    if peephole and cell != "lstm":
        raise RnnbenchError("peepholes exist for the LSTM only.")
    if variant == "np" and peephole:
        raise RnnbenchError("variant 'np' has no peepholes; pass peephole=False.")
    if variant == "fb1" and not bias:
        raise RnnbenchError("variant 'fb1' sets the forget-gate bias; it needs bias=True.")
    variant, peephole, _ = _variants.resolve(cell, variant, peephole, "before")
    if proj_size and cell != "lstm":
        raise RnnbenchError("projections (proj_size) exist for the LSTM only.")
    G, H = GATES[cell], hidden_size
    R = proj_size or H
    shapes = {"weight_ih_l0": (G * H, input_size), "weight_hh_l0": (G * H, R)}
    if bias:
        shapes["bias_ih_l0"] = (G * H,)
        shapes["bias_hh_l0"] = (G * H,)
    if proj_size:
        shapes["weight_hr_l0"] = (R, H)
    if peephole:
        shapes["weight_ch_l0"] = (3, H)

    params = {}
    for name, shape in shapes.items():
        if scheme == "torch":
            params[name] = _uniform(shape, 1.0 / math.sqrt(H), generator, dtype)
        elif name == "weight_hh_l0":
            params[name] = torch.cat([_orthogonal(H, generator, dtype, R) for _ in range(G)])
        elif name.startswith("bias"):
            params[name] = torch.zeros(shape, dtype=dtype)
        else:
            params[name] = _uniform(shape, PAPER_SCALE, generator, dtype)
    return _variant_params(params, cell, variant, H) if variant else params


def _variant_params(params: dict[str, Tensor], cell: str, variant: str, H: int):
    """The full unit's ``params`` with the removed gates' rows and peepholes dropped."""
    full = _variants.FULL_GATES[cell]
    kept = _variants.gates(cell, variant)
    if variant == "mgu":  # f takes the reset gate's rows
        kept = ("r", "n")
    rows = torch.cat([torch.arange(full.index(g) * H, (full.index(g) + 1) * H) for g in kept])
    out = {}
    for name, value in params.items():
        if name == "weight_hr_l0":
            out[name] = value.clone()
        elif name == "weight_ch_l0":
            keep = [
                _variants.FULL_PEEPHOLES.index(p) for p in _variants.peephole_rows(cell, variant)
            ]
            out[name] = value[keep].clone()
        else:
            out[name] = value[rows].clone()
    if variant == "fb1":
        out["bias_ih_l0"][H : 2 * H] = 1
        out["bias_hh_l0"][H : 2 * H] = 0
    return out


def reset_like_torch(
    tensors: dict[str, Tensor],
    cell: str,
    hidden_size: int,
    *,
    variant: str = "",
    generator: torch.Generator | None = None,
) -> None:
    """Fill one layer and direction's tensors in place, in their order, as
    ``torch.nn.RNNBase.reset_parameters`` fills a module's parameters: each from
    ``Tensor.uniform_(-1/sqrt(H), 1/sqrt(H))`` in its own dtype and device. ``tensors`` are
    named as :func:`init_unit` names them (``weight_ih_l0``, ...); the caller passes every
    layer and direction in registration order, so a cuDNN-form module draws exactly what
    torch's draws and leaves the generator where torch leaves it. A variant draws each tensor at
    the full unit's shape (as its own full unit would), then keeps its rows (and sets ``fb1``'s
    forget bias)."""
    if variant == "fb1" and "bias_ih_l0" not in tensors:
        raise RnnbenchError("variant 'fb1' sets the forget-gate bias; it needs bias=True.")
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    with torch.no_grad():
        if not variant:
            for value in tensors.values():
                value.uniform_(-bound, bound, generator=generator)
            return
        H = hidden_size
        full = _variants.gate_count(cell, "") * H
        drawn = {}
        for name, value in tensors.items():
            if name == "weight_ch_l0":
                shape = (len(_variants.FULL_PEEPHOLES), H)
            elif name == "weight_hr_l0":
                shape = tuple(value.shape)
            else:
                shape = (full, *value.shape[1:])
            drawn[name] = value.new_empty(shape).uniform_(-bound, bound, generator=generator)
        for name, value in _variant_params(drawn, cell, variant, H).items():
            tensors[name].copy_(value)


def _uniform(shape, bound, generator, dtype) -> Tensor:
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return ((2 * u - 1) * bound).to(dtype)


def _orthogonal(n: int, generator, dtype, cols: int | None = None) -> Tensor:
    """A random n x n orthogonal matrix (QR of a Gaussian, signs fixed so it is Haar); with
    ``cols`` < n, n x cols with orthonormal columns."""
    a = torch.randn(n, cols or n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return (q * torch.sign(torch.diagonal(r))).to(dtype)
