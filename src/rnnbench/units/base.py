r"""The unit interface: what a recurrent unit declares, for one model, in plain PyTorch.

A unit is a small class. rnnbench makes it a population of K members
(:mod:`rnnbench.units.runner`), matches its hidden size to a parameter budget
(:mod:`rnnbench.models`), and runs it through every command. Subclass :class:`Unit` (or write
a class with the same attributes)::

    class LayerNormTanh(Unit):
        name = "lntanh"
        state = ("h",)
        def shapes(self, I, H):
            return {"weight_ih": (H, I), "weight_hh": (H, H), "bias": (H,)}
        def step(self, p, x, state):
            (h,) = state
            a = x @ p["weight_ih"].T + h @ p["weight_hh"].T + p["bias"]
            return (torch.tanh(torch.nn.functional.layer_norm(a, a.shape[-1:])),)

``step`` sees ONE model's parameters (no K dimension), ``x (B, I)`` and the state tuple of
``(B, H)`` tensors, and returns the next state tuple. A unit may define ``sequence(p, x
(T, B, I), state)`` instead of, or besides, ``step``: it returns, for each state tensor, its
value after every step ``(T, B, H)``. With both, ``sequence`` trains (gradients on) and
``step`` evaluates and samples. Details and the checks: ``docs/units.md``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Unit", "default_init", "linear"]


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` for one model (``weight (H, I)``, ``x (..., B, I)``) and for a
    population with a leading K on everything (``weight (K, H, I)``, ``bias (K, H)``,
    ``x (K, ..., B, I)``): the helper that lets a unit declare ``batched = True`` (no vmap;
    see :class:`Unit`). An input shared by the members (expanded over K) is one matrix
    product with the K weights side by side."""
    if weight.dim() == 2:
        out = x @ weight.transpose(0, 1)
        return out if bias is None else out + bias
    k, h, i = weight.shape
    if x.stride(0) == 0:  # the same input for every member
        flat = x[0].reshape(-1, i) @ weight.permute(2, 0, 1).reshape(i, k * h)
        out = flat.reshape(*x.shape[1:-1], k, h).movedim(-2, 0)
    else:
        out = torch.bmm(x.reshape(k, -1, i), weight.transpose(1, 2)).reshape(*x.shape[:-1], h)
    if bias is not None:
        out = out + bias.reshape(k, *([1] * (x.dim() - 2)), h)
    return out


def default_init(shapes: dict, generator: torch.Generator) -> dict[str, Tensor]:
    """Tensors of 2 or more dimensions ~ U(-0.1, 0.1) (the paper's scale for the
    non-recurrent weights), drawn in float64 in the order of ``shapes``; 1-D tensors zero."""
    out = {}
    for name, shape in shapes.items():
        if len(shape) >= 2:
            u = torch.rand(tuple(shape), generator=generator, dtype=torch.float64)
            out[name] = ((2 * u - 1) * 0.1).to(torch.float32)
        else:
            out[name] = torch.zeros(tuple(shape))
    return out


class Unit:
    """Base class of a recurrent unit (see the module docstring).

    Attributes:
        name: the unit's name in configs, the store and the report (an identifier).
        state: the names of the state tensors, each ``(B, H)``; ``("h",)`` or ``("h", "c")``.
            The first is the unit's output.
        noise: the parameters that get weight noise (None: every tensor of 2 or more
            dimensions, i.e. the weight matrices and not the biases).
        budget_of: the paper's unit whose recurrent parameter count at the paper's size
            (Table 1) this unit is matched to by default (``"gru"``, ``"lstm"`` or ``"tanh"``).
        equation: one line for the report and ``rnnbench params``.
        batched: False (default): rnnbench runs K members with ``torch.func.vmap`` over the
            one-model code. True: ``step`` and ``sequence`` also accept a leading K on the
            parameters, ``x (K, T, B, I)`` and the state ``(K, B, H)`` (time is dimension -3;
            :func:`linear` does the matrix products), and run without vmap (faster).
    """

    name: str = ""
    state: tuple[str, ...] = ("h",)
    noise: tuple[str, ...] | None = None
    budget_of: str = "gru"
    equation: str = ""
    batched: bool = False

    def shapes(self, I: int, H: int) -> dict[str, tuple[int, ...]]:  # noqa: N803 - the docs' I, H
        """The parameters of one model: ``{name: shape}``."""
        raise NotImplementedError

    def init(self, I: int, H: int, generator: torch.Generator) -> dict[str, Tensor]:  # noqa: N803
        """One model's initial parameters (default: :func:`default_init`)."""
        return default_init(self.shapes(I, H), generator)
