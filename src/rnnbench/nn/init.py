"""Initial weights of one recurrent layer, named and shaped as torch names them.

Two schemes:

- ``"torch"``: every tensor drawn from U(-1/sqrt(H), 1/sqrt(H)), as ``torch.nn.LSTM`` does
  (the peephole diagonals too).
- ``"paper"``: the authors' code (jych/librnn): input weights and peephole diagonals from
  U(-0.1, 0.1), each gate's H x H block of the recurrent matrix a random orthogonal matrix,
  biases zero.

The draws depend only on ``generator`` (torch's global generator when None), so a population
member seeded on its own gets the same weights whatever the population size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rnnbench.errors import RnnbenchError
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
) -> dict[str, Tensor]:
    """One model's parameters: ``weight_ih_l0 (G*H, I)``, ``weight_hh_l0 (G*H, H)``, and
    ``bias_ih_l0``, ``bias_hh_l0 (G*H,)`` when ``bias``, ``weight_ch_l0 (3, H)`` when
    ``peephole`` (LSTM only), in that order."""
    if cell not in GATES:
        raise RnnbenchError(f"unknown cell {cell!r}; choose one of {sorted(GATES)}.")
    if scheme not in SCHEMES:
        raise RnnbenchError(f"init scheme must be 'torch' or 'paper', not {scheme!r}.")
    if peephole and cell != "lstm":
        raise RnnbenchError("peepholes exist for the LSTM only.")
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
    return params


def _uniform(shape, bound, generator, dtype) -> Tensor:
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return ((2 * u - 1) * bound).to(dtype)


def _orthogonal(n: int, generator, dtype) -> Tensor:
    """A random n x n orthogonal matrix (QR of a Gaussian, signs fixed so it is Haar)."""
    a = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return (q * torch.sign(torch.diagonal(r))).to(dtype)
