r"""The authors' training protocol as a preset: ``--protocol authors``.

The paper's authors published their JSB setup in ``jych/librnn`` (pylearn2 on Theano; read
line by line in ``docs/training.md``, "The authors' protocol preset"). Where it differs from
the paper's wording, :class:`~rnnbench.train.config.RunConfig` ``protocol="authors"`` follows
the code:

- **the cost** is the negative log-likelihood *summed* over the sequence's steps and notes (and
  the minibatch), not divided by the number of steps (``librnn/pylearn2/models/mlp.py``
  ``Sigmoid.cost``: ``total.sum()``, over ``expr/nnet.py`` ``kl``, which sums every axis but
  the batch's): :func:`training_loss`;
- **RMSProp with momentum, ε as a floor, the update clipped** (``training_algorithms/
  learning_rule.py`` ``RMSPropMomentum``): :class:`AuthorsRMSProp`;
- **no gradient clipping** (``costs/rnn.py`` ``RNNCost(gradient_clipping=False)``, the yaml's
  default): :func:`gradient_clip` is 0, the norm is only measured;
- **the learning rate** falls linearly to 1% of itself over the 500 epochs (pylearn2's
  ``LinearDecayOverEpoch(start=1, saturate=500, decay_factor=0.01)``): :func:`lr_factor`;
- **no early stopping** (``MonitorBasedSaveBest`` keeps the best validation state; only
  ``EpochCounter(500)`` ends training): ``RunConfig`` sets ``patience`` to ``max_epochs``.

The rest of the preset is plain field values, :data:`rnnbench.train.presets.AUTHORS`: batch
1, RMSProp decay 0.95, momentum 0.9, ε 0.01, update-norm cap 1, weight noise 0.075 on the
recurrent layer only, the authors' initialisation (``init="paper"``), 500 epochs. A flag
given beside ``--protocol authors`` overrides its field (e.g. ``--max-epochs 200`` for a
pilot).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rnnbench.train import protocol as paper
from rnnbench.train.presets import AUTHORS, preset, with_preset
from rnnbench.train.protocol import PopulationRMSProp, _per_member

__all__ = [
    "AUTHORS",
    "AuthorsRMSProp",
    "gradient_clip",
    "lr_factor",
    "make_optimizer",
    "preset",
    "schedule",
    "training_loss",
    "with_preset",
]


def is_authors(cfg) -> bool:
    return getattr(cfg, "protocol", "paper") == "authors"


def training_loss(cfg, nll_sum: Tensor, n_steps: int) -> Tensor:
    r"""The loss a member backpropagates: per step for the paper's protocol,
    :math:`L = \frac{1}{N}\sum_{s,t} \mathrm{nll}(s,t)` over the batch's :math:`N` real steps;
    summed for the authors', :math:`L = \sum_{s,t} \mathrm{nll}(s,t)` (``Sigmoid.cost`` sums
    the binary cross-entropy over notes, steps and the batch)."""
    return nll_sum if is_authors(cfg) else nll_sum / n_steps


def gradient_clip(cfg) -> float:
    """The gradient-norm threshold: ``cfg.clip`` for the paper's protocol; 0 (measure only)
    for the authors', where ``cfg.clip`` bounds the update instead (:class:`AuthorsRMSProp`)."""
    return 0.0 if is_authors(cfg) else cfg.clip


def lr_factor(epoch: int, saturate: int, final: float | None) -> float:
    r"""pylearn2's ``LinearDecayOverEpoch(start=1, saturate=S, decay_factor=f)``: the factor of
    the rate epoch ``epoch`` (1-based) trains with,

    .. math:: \phi(e) = 1 - (1 - f) \frac{\min(e, S)}{S}.

    Its ``on_monitor`` runs once before the first epoch (``Train.main_loop`` monitors before
    training), so epoch 1 already trains at :math:`1 - (1-f)/S` and epoch :math:`S` at
    :math:`f`. 1 throughout when ``final`` is None.
    """
    if final is None:
        return 1.0
    return 1.0 - (1.0 - final) * min(max(int(epoch), 0), saturate) / saturate


def schedule(cfg, epoch: int) -> float:
    """The learning-rate factor of ``epoch`` under ``cfg``'s protocol."""
    if is_authors(cfg):
        return lr_factor(epoch, cfg.max_epochs, cfg.lr_decay)
    return paper.lr_factor(epoch, cfg.max_epochs, cfg.lr_decay)


class AuthorsRMSProp(PopulationRMSProp):
    r"""librnn's ``RMSPropMomentum`` (with ``momentum_clipping``, ``bound_inc=False``), one
    learning rate per member.

    Per member, element-wise with gradient :math:`g`, then over all of the member's
    parameters:

    .. math::
        v \leftarrow \rho v + (1-\rho) g^2, \quad
        u \leftarrow \mu u - \eta \, g / \max(\sqrt{v}, \epsilon), \quad
        \theta \leftarrow \theta + u \, \frac{c}{\max(c, \lVert u \rVert)}.

    :math:`\epsilon` is a floor on the root-mean-square gradient, not added to it; the
    velocity :math:`u` holds the learning rate; the *update* is rescaled to norm at most
    :math:`c` (``clip``) while :math:`u` itself is stored unscaled (``bound_inc=False``). No
    clipping when ``clip`` is 0. ``momentum_buffer`` holds :math:`u`.
    """

    def __init__(
        self,
        params: Sequence[Tensor],
        lrs: Sequence[float],
        *,
        decay: float,
        momentum: float,
        eps: float,
        clip: float,
    ) -> None:
        super().__init__(params, lrs, decay=decay, momentum=momentum, eps=eps)
        self.clip = float(clip)

    @torch.no_grad()
    def step(self, active: Tensor) -> Tensor:
        """Update the members where ``active (K,)`` is True; returns the ``(K,)`` float64 norms
        of their updates before rescaling."""
        fusable = self._live()
        if fusable is not None:
            from rnnbench.train import fused

            return fused.authors_step(
                *fusable, self.lr, active, decay=self.decay, momentum=self.momentum,
                eps=self.eps, clip=self.clip,
            )  # fmt: skip
        live = [
            (p, v, u)
            for p, v, u in zip(self.params, self.square_avg, self.momentum_buffer, strict=True)
            if p.grad is not None
        ]
        k = self.params[0].shape[0]
        new = []
        sq = torch.zeros(k, dtype=torch.float64, device=self.params[0].device)
        for p, v, u in live:
            g = p.grad
            new_v = v * self.decay + (1.0 - self.decay) * g * g
            rms = torch.clamp(new_v.sqrt(), min=self.eps)
            new_u = u * self.momentum - _per_member(self.lr, p) * (g / rms)
            sq += new_u.reshape(k, -1).double().pow(2).sum(1)
            new.append((new_v, new_u))
        norms = sq.sqrt()
        if self.clip:
            scale = self.clip / torch.clamp(norms, min=self.clip)
        else:
            scale = torch.ones_like(norms)
        for (p, v, u), (new_v, new_u) in zip(live, new, strict=True):
            keep = _per_member(active, p)
            new_p = p + _per_member(scale.to(p.dtype), p) * new_u
            v.copy_(torch.where(keep, new_v, v))
            u.copy_(torch.where(keep, new_u, u))
            p.copy_(torch.where(keep, new_p, p))
        return norms


def make_optimizer(cfg, params: Sequence[Tensor], lrs: Sequence[float]) -> PopulationRMSProp:
    """The optimiser of ``cfg``'s protocol over a population's ``params``."""
    common = {"decay": cfg.rms_decay, "momentum": cfg.rms_momentum, "eps": cfg.rms_eps}
    if is_authors(cfg):
        return AuthorsRMSProp(params, lrs, clip=cfg.clip, **common)
    return PopulationRMSProp(params, lrs, **common)
