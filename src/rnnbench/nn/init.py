"""Initial weights of one recurrent layer, named and shaped as torch names them.

Two schemes:

- ``"torch"``: every tensor drawn from U(-1/sqrt(H), 1/sqrt(H)), as ``torch.nn.LSTM`` does
  (the peephole diagonals too).
- ``"paper"``: the authors' code (jych/librnn): input weights and peephole diagonals from
  U(-0.1, 0.1), each gate's H x H block of the recurrent matrix a random orthogonal matrix,
  biases zero.

A variant (:mod:`rnnbench.nn.variants`) draws the full unit's tensors first, in the same
order, then drops the rows of the gates it removes (and their peepholes), so a variant and
the full unit drawn from one seed share the weights of every gate they both have. ``fb1``
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
) -> dict[str, Tensor]:
    """One model's parameters: ``weight_ih_l0 (G*H, I)``, ``weight_hh_l0 (G*H, H)``, and
    ``bias_ih_l0``, ``bias_hh_l0 (G*H,)`` when ``bias``, ``weight_ch_l0 (P, H)`` when
    ``peephole`` (LSTM only; ``P`` = 3, or the peepholes a variant keeps), in that order.
    ``variant``: a name of :mod:`rnnbench.nn.variants` (``G`` = the gates it keeps)."""
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
    G, H = GATES[cell], hidden_size
    shapes = {"weight_ih_l0": (G * H, input_size), "weight_hh_l0": (G * H, H)}
    if bias:
        shapes["bias_ih_l0"] = (G * H,)
        shapes["bias_hh_l0"] = (G * H,)
    if peephole:
        shapes["weight_ch_l0"] = (3, H)

    params = {}
    for name, shape in shapes.items():
        if scheme == "torch":
            params[name] = _uniform(shape, 1.0 / math.sqrt(H), generator, dtype)
        elif name == "weight_hh_l0":
            params[name] = torch.cat([_orthogonal(H, generator, dtype) for _ in range(G)])
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
        if name == "weight_ch_l0":
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


def _uniform(shape, bound, generator, dtype) -> Tensor:
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return ((2 * u - 1) * bound).to(dtype)


def _orthogonal(n: int, generator, dtype) -> Tensor:
    """A random n x n orthogonal matrix (QR of a Gaussian, signs fixed so it is Haar)."""
    a = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return (q * torch.sign(torch.diagonal(r))).to(dtype)
