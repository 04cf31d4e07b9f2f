r"""Output distributions ("heads") of a sequence model, functional on stacked parameters.

A head owns no weights. The model's output layer maps the hidden state to ``P = head.n_outputs``
numbers per step and member; the head turns those numbers into a distribution over the next
frame: it scores a target (:meth:`nll`) and draws one (:meth:`sample`).

Shapes: ``K`` population members, ``T`` steps, ``B`` sequences, ``P`` head parameters, ``D``
values per frame (88 notes for music, 10 samples for speech). All log-likelihoods are in nats.

- :class:`BernoulliHead`: one logit per note, notes independent given the past (the paper's
  logistic-sigmoid output for polyphonic music).
- :class:`GaussianMixtureHead`: a mixture of ``C`` diagonal Gaussians over a ``D``-dimensional
  frame (the paper's 20-component output for raw speech, ``D = 10``).

:func:`make_head` builds either by name (``"bernoulli"``, ``"gmm"``), the names data sets use.

Example::

    >>> head = GaussianMixtureHead(out_dim=10, components=20)
    >>> params = torch.randn(2, 5, 3, head.n_outputs)         # (K, T, B, P)
    >>> head.nll(params, torch.randn(5, 3, 10)).shape          # (K, T, B)
    torch.Size([2, 5, 3])
    >>> head.sample(params[:, -1], torch.Generator().manual_seed(0)).shape
    torch.Size([2, 3, 10])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rnnbench.errors import RnnbenchError

__all__ = ["HEADS", "BernoulliHead", "GaussianMixtureHead", "make_head"]

_LOG_2PI = math.log(2.0 * math.pi)


def _check_params(params: torch.Tensor, n_outputs: int, name: str) -> None:
    if params.shape[-1] != n_outputs:
        raise RnnbenchError(
            f"{name} expects {n_outputs} parameters per step but got {params.shape[-1]}; "
            "build the model's output layer with head.n_outputs outputs."
        )


def _check_target(target: torch.Tensor, out_dim: int, name: str) -> None:
    if target.shape[-1] != out_dim:
        raise RnnbenchError(
            f"{name} models {out_dim}-dimensional frames but the target has {target.shape[-1]}; "
            "use a head with the data set's out_dim."
        )


class BernoulliHead:
    r"""Independent Bernoulli distributions, one per note: the paper's music output.

    Parameters ``a = params[..., :D]`` are logits. Given the past, note ``d`` sounds with
    probability :math:`p_d = \sigma(a_d)`, independently of the other notes, so the negative
    log-likelihood of a binary frame :math:`y \in \{0, 1\}^D` is the summed binary cross-entropy

    .. math::
        \mathrm{nll}(a, y) = -\sum_{d=1}^{D} \big[ y_d \log \sigma(a_d)
                                                 + (1 - y_d) \log (1 - \sigma(a_d)) \big],

    computed stably from the logits (``binary_cross_entropy_with_logits``). Targets between 0
    and 1 are accepted (the same formula, a cross-entropy against soft labels).

    Args:
        out_dim: ``D``, the number of notes per frame (88 for the piano roll).

    Attributes:
        out_dim: ``D``.
        n_outputs: ``P = D`` logits per step.
    """

    name = "bernoulli"

    def __init__(self, out_dim: int) -> None:
        if int(out_dim) < 1:
            raise RnnbenchError(
                f"BernoulliHead needs out_dim >= 1, got {out_dim}; pass the "
                "number of notes per frame."
            )
        self.out_dim = int(out_dim)
        self.n_outputs = self.out_dim

    def __repr__(self) -> str:
        return f"BernoulliHead(out_dim={self.out_dim})"

    def nll(self, params: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-step negative log-likelihood in nats.

        Args:
            params: logits ``(K, T, B, P)``.
            target: frames ``(T, B, D)`` (shared by all members) or ``(K, T, B, D)``.

        Returns:
            ``(K, T, B)``: the summed binary cross-entropy of each step.
        """
        _check_params(params, self.n_outputs, "BernoulliHead")
        _check_target(target, self.out_dim, "BernoulliHead")
        target = target.to(params.dtype).expand_as(params)
        bce = F.binary_cross_entropy_with_logits(params, target, reduction="none")
        return bce.sum(-1)

    def probs(self, params: torch.Tensor) -> torch.Tensor:
        """The probability that each note sounds, ``sigmoid(params)``, same shape."""
        return torch.sigmoid(params)

    def sample(
        self, params: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw one binary frame per member and sequence.

        Args:
            params: logits ``(K, B, P)`` (any leading shape works).
            generator: the random stream (None: PyTorch's global one).

        Returns:
            ``(K, B, D)`` frames of 0.0 and 1.0 in ``params``' dtype.
        """
        _check_params(params, self.n_outputs, "BernoulliHead")
        return torch.bernoulli(torch.sigmoid(params), generator=generator)


class GaussianMixtureHead:
    r"""A mixture of ``C`` diagonal Gaussians over a ``D``-dimensional frame: the speech output.

    Parameter layout along the last axis (``P = C (1 + 2D)``), in this order:

    - ``params[..., :C]``: mixture logits :math:`\ell_c`, weights
      :math:`\pi = \mathrm{softmax}(\ell)`;
    - the next ``C*D``: means :math:`\mu_{c,d}`, component-major (``(C, D)`` row-major);
    - the last ``C*D``: scale pre-activations :math:`s_{c,d}`, component-major.

    Standard deviations use a softplus with a floor, the documented variance floor:

    .. math::
        \sigma_{c,d} = \sigma_{\min} + \log(1 + e^{s_{c,d}}).

    The floor keeps the density bounded (a collapsing component cannot drive the NLL to
    :math:`-\infty`: it is at least :math:`-D(\log(1/\sigma_{\min}) - \tfrac12\log 2\pi)`),
    and softplus, unlike a clamp of :math:`e^{s}`, keeps a gradient everywhere and grows only
    linearly for large :math:`s`. At :math:`s = 0`, :math:`\sigma = \sigma_{\min} + \log 2`.

    The negative log-likelihood of a frame :math:`y` is computed with log-sum-exp:

    .. math::
        \mathrm{nll}(y) = -\log \sum_{c=1}^{C} \exp\Big( \log \pi_c - \sum_{d=1}^{D}
            \Big[ \frac{(y_d - \mu_{c,d})^2}{2 \sigma_{c,d}^2} + \log \sigma_{c,d}
                  + \tfrac12 \log 2\pi \Big] \Big).

    Args:
        out_dim: ``D`` (10 samples per step for the paper's speech task).
        components: ``C`` (20 in the paper).
        min_std: :math:`\sigma_{\min} > 0`, in the units of the (normalised) data.

    Attributes:
        out_dim, components, min_std: as given.
        n_outputs: ``P = C (1 + 2D)``.
    """

    name = "gmm"

    def __init__(self, out_dim: int = 10, components: int = 20, min_std: float = 1e-3) -> None:
        if int(out_dim) < 1 or int(components) < 1:
            raise RnnbenchError(
                f"GaussianMixtureHead needs out_dim >= 1 and components >= 1, got {out_dim} and "
                f"{components}; pass positive sizes."
            )
        if not min_std > 0:
            raise RnnbenchError(
                f"GaussianMixtureHead needs min_std > 0, got {min_std}; pass a "
                "small positive floor such as 1e-3."
            )
        self.out_dim = int(out_dim)
        self.components = int(components)
        self.min_std = float(min_std)
        self.n_outputs = self.components * (1 + 2 * self.out_dim)

    def __repr__(self) -> str:
        return (
            f"GaussianMixtureHead(out_dim={self.out_dim}, components={self.components}, "
            f"min_std={self.min_std})"
        )

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unpack ``params (..., P)`` into ``(log_weights (..., C), means (..., C, D),
        stds (..., C, D))``, with the log-weights normalised (log-softmax)."""
        _check_params(params, self.n_outputs, "GaussianMixtureHead")
        c, d = self.components, self.out_dim
        lead = params.shape[:-1]
        logits, mu, s = params.split([c, c * d, c * d], dim=-1)
        log_w = torch.log_softmax(logits, dim=-1)
        mu = mu.reshape(*lead, c, d)
        std = F.softplus(s.reshape(*lead, c, d)) + self.min_std
        return log_w, mu, std

    def log_prob(self, params: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Log-density of ``target (T, B, D)`` or ``(K, T, B, D)`` under ``params (K, T, B, P)``;
        returns ``(K, T, B)``."""
        _check_target(target, self.out_dim, "GaussianMixtureHead")
        log_w, mu, std = self.split(params)
        y = target.to(params.dtype).unsqueeze(-2)  # (..., 1, D) against (..., C, D)
        z = (y - mu) / std
        comp = -(0.5 * z.square() + std.log() + 0.5 * _LOG_2PI).sum(-1)  # (..., C)
        return torch.logsumexp(log_w + comp, dim=-1)

    def nll(self, params: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-step negative log-likelihood in nats.

        Args:
            params: ``(K, T, B, P)`` in the layout above.
            target: frames ``(T, B, D)`` (shared by all members) or ``(K, T, B, D)``.

        Returns:
            ``(K, T, B)``.
        """
        return -self.log_prob(params, target)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The mixture mean :math:`\\sum_c \\pi_c \\mu_c`, ``(..., D)``."""
        log_w, mu, _ = self.split(params)
        return (log_w.exp().unsqueeze(-1) * mu).sum(-2)

    def sample(
        self, params: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw one frame per member and sequence: pick a component, then add Gaussian noise.

        Args:
            params: ``(K, B, P)`` (any leading shape works).
            generator: the random stream (None: PyTorch's global one).

        Returns:
            ``(K, B, D)`` in ``params``' dtype.
        """
        log_w, mu, std = self.split(params)
        lead = log_w.shape[:-1]
        flat_w = log_w.reshape(-1, self.components).exp()
        idx = torch.multinomial(flat_w, 1, generator=generator).reshape(*lead, 1, 1)
        idx = idx.expand(*lead, 1, self.out_dim)
        mu_c = mu.gather(-2, idx).squeeze(-2)
        std_c = std.gather(-2, idx).squeeze(-2)
        noise = torch.randn(mu_c.shape, generator=generator, dtype=mu_c.dtype, device=mu_c.device)
        return mu_c + std_c * noise


HEADS = {"bernoulli": BernoulliHead, "gmm": GaussianMixtureHead}


def make_head(name: str, out_dim: int, **kwargs) -> BernoulliHead | GaussianMixtureHead:
    """Build a head by name: ``"bernoulli"`` or ``"gmm"`` (extra keywords go to the class)."""
    if name not in HEADS:
        raise RnnbenchError(f"unknown head {name!r}; choose one of {', '.join(sorted(HEADS))}.")
    return HEADS[name](out_dim, **kwargs)
