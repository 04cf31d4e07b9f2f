r"""Gradient flow: how far back the error of one step reaches through a recurrent unit.

On one batch of :math:`T` steps (every row real), let :math:`L = \sum_b \ell_T^{(b)}` be the
summed NLL of the *last* step of each row. For every step :math:`t` the measurement is

.. math::
    g_h(d) = \frac{1}{B} \sum_b \left\lVert \frac{\partial L}{\partial h_t^{(b)}} \right\rVert_2,
    \qquad d = T - t,

(the mean over rows of the Euclidean norm over units), and likewise :math:`g_c(d)` for the
LSTM's cell state: the gradient reaching the state :math:`d` steps before the loss. Rows are
independent, so row :math:`b`'s gradient is that of its own loss only.

Method (exact, one backward pass, the kernels unchanged): the model is run one step at a time
(``SequenceModel.forward`` on ``x[t:t+1]`` with the previous state), so every state
:math:`h_t` (and :math:`c_t`) is a tensor of the autograd graph, and one
``torch.autograd.grad(L, [h_1..h_T, c_1..c_T])`` returns every :math:`\partial L/\partial h_t`.
These are BPTT's state gradients: :math:`\partial L/\partial h_t` is the partial derivative
with :math:`c_t` held fixed (what rerunning the unit from :math:`t` to :math:`T` with
:math:`h_t, c_t` as leaves, ``run_unit(..., h0=h_t, c0=c_t)``, gives, at :math:`O(T)` cost
instead of :math:`O(T^2)`), and :math:`\partial L/\partial c_t` also takes the path through
:math:`h_t = o_t \odot \tanh(c_t)` (the cell-state gradient of the LSTM's backward pass).
Any unit or variant that ``SequenceModel`` runs is measured the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gradient_flow(model, x: Tensor, y: Tensor) -> list[dict]:
    """``[{"distance", "grad_h", "grad_c"}]`` for ``d = 0 .. T-1`` (``grad_c`` None except for
    the LSTM) of ``model`` (a :class:`rnnbench.models.SequenceModel`; every member's rows
    averaged) on ``x (T, B, I)``, ``y (T, B, D)`` with every step real."""
    T = x.shape[0]
    if T < 1:
        return []
    state = None
    hs: list[Tensor] = []
    cs: list[Tensor] = []
    params = None
    with torch.enable_grad():
        for t in range(T):
            params, state = model.forward(x[t : t + 1], None, state)
            hs.append(state[0])
            if state[1] is not None:
                cs.append(state[1])
        loss = model.head.nll(params, y[T - 1 : T]).sum()
        grads = torch.autograd.grad(loss, hs + cs, allow_unused=True)
    gh, gc = grads[:T], grads[T:]

    def norm(g: Tensor | None, like: Tensor) -> float:
        g = torch.zeros_like(like) if g is None else g
        return float(g.detach().double().norm(dim=-1).mean())

    return [
        {
            "distance": T - 1 - t,
            "grad_h": norm(gh[t], hs[t]),
            "grad_c": norm(gc[t], cs[t]) if cs else None,
        }
        for t in range(T)
    ]


def flow_batch(seqs, *, batch_size: int = 8, max_steps: int | None = 400) -> tuple[Tensor, Tensor]:
    """One real batch for :func:`gradient_flow`: the ``batch_size`` longest sequences of
    ``seqs`` (ties in the data set's order), cut to the length of the shortest of them (so every
    step is real) and to ``max_steps`` (None: no cap). Returns ``x (T, B, I)``, ``y (T, B, D)``."""
    import numpy as np

    chosen = sorted(seqs, key=len, reverse=True)[: int(batch_size)]
    if not chosen:
        raise ValueError("no sequences to take a batch from")
    steps = min(len(s) for s in chosen)
    if max_steps is not None:
        steps = min(steps, int(max_steps))
    x = np.stack([s.inputs[:steps] for s in chosen], axis=1)
    y = np.stack([s.targets[:steps] for s in chosen], axis=1)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
