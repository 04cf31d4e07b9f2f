r"""The paper's training protocol on population-stacked parameters.

Every tensor here has a leading ``K`` dimension: slice ``k`` belongs to population member
``k``, and nothing mixes members, so a member trained in a population follows the same path
as the same member trained alone. One minibatch step of :func:`rnnbench.train.population`:

1. :class:`WeightNoise` adds fresh Gaussian noise (σ = 0.075) to the weight matrices, drawn
   per member from the member's own generator (Graves 2011; ``normal_``'s numbers, computed
   in numba by :mod:`rnnbench.train.noise_stream` where they match torch's);
2. forward and backward at the noisy weights; the noise-free weights are then put back
   exactly (a saved copy, not a subtraction; for float32 CPU weights the parameters point
   at separate noisy tensors meanwhile, :mod:`rnnbench.train.fused_noise`), so the update
   applies to them and no noise is ever stored or evaluated;
3. :func:`clip_member_grad_norms` rescales each member's gradient to norm 1 when larger,
   the norm taken over that member's slices of all parameters;
4. :func:`finite_members` flags members whose loss or gradient is NaN/inf (they are frozen
   and marked diverged);
5. :class:`PopulationRMSProp` steps the members still training, each with its own learning
   rate; frozen members' parameters and optimiser state do not change.

After each epoch :class:`EarlyStopping` compares each member's validation NLL with its best.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from rnnbench.errors import RnnbenchError

__all__ = [
    "EarlyStopping",
    "PopulationRMSProp",
    "WeightNoise",
    "clip_member_grad_norms",
    "finite_members",
    "lr_factor",
    "noise_seed",
]


def _per_member(mask: Tensor, like: Tensor) -> Tensor:
    """``(K,)`` → ``(K, 1, ..., 1)`` broadcastable against ``like``."""
    return mask.view((-1,) + (1,) * (like.dim() - 1))


class PopulationRMSProp:
    r"""RMSProp with momentum, one learning rate per member.

    Per member and element, with gradient :math:`g` (the same update as
    ``torch.optim.RMSprop(lr, alpha=decay, eps=eps, momentum=momentum)``):

    .. math::
        v \leftarrow \rho v + (1-\rho) g^2, \quad
        b \leftarrow \mu b + g / (\sqrt{v} + \epsilon), \quad
        \theta \leftarrow \theta - \eta_k b.

    Args:
        params: the population's parameters, each ``(K, ...)``.
        lrs: ``K`` learning rates :math:`\eta_k`.
        decay: :math:`\rho`; momentum: :math:`\mu` (0: plain RMSProp); eps: :math:`\epsilon`.
    """

    def __init__(
        self,
        params: Sequence[Tensor],
        lrs: Sequence[float],
        *,
        decay: float,
        momentum: float,
        eps: float,
    ) -> None:
        self.params = list(params)
        self.decay, self.momentum, self.eps = float(decay), float(momentum), float(eps)
        first = self.params[0]
        if len(lrs) != first.shape[0]:
            raise ValueError(f"{len(lrs)} learning rates for a population of {first.shape[0]}")
        self.base_lr = torch.tensor(list(lrs), dtype=first.dtype, device=first.device)
        self.lr = self.base_lr.clone()
        self.square_avg = [torch.zeros_like(p) for p in self.params]
        self.momentum_buffer = [torch.zeros_like(p) for p in self.params]

    def scale_lr(self, factor: float) -> None:
        """Set every member's learning rate to its own rate times ``factor`` (a schedule)."""
        self.lr = self.base_lr * float(factor)

    def zero_grad(self) -> None:
        from rnnbench.train import fused

        for p in self.params:
            p.grad = None
        fused.forget_grads()

    def _live(self) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]] | None:
        """``(params, grads, square_avg, momentum_buffer)`` of the parameters with a gradient
        when the fused kernels (:mod:`rnnbench.train.fused`) can update them, else None."""
        from rnnbench.train import fused

        grads = [p.grad for p in self.params]
        if all(g is not None for g in grads):
            if getattr(self, "_fusable", None) is None:  # the persistent tensors, checked once
                self._fusable = fused.usable(self.params + self.square_avg + self.momentum_buffer)
            if self._fusable and fused.grad_views(grads) is not None:
                return self.params, grads, self.square_avg, self.momentum_buffer
            return None
        live = [
            (p, p.grad, v, b)
            for p, v, b in zip(self.params, self.square_avg, self.momentum_buffer, strict=True)
            if p.grad is not None
        ]
        if not live:
            return None
        columns = tuple(list(c) for c in zip(*live, strict=True))
        return columns if fused.usable([t for c in columns for t in c]) else None

    @torch.no_grad()
    def step(self, active: Tensor) -> None:
        """Update the members where ``active (K,)`` is True from ``p.grad``; others stay."""
        live = self._live()
        if live is not None:
            from rnnbench.train import fused

            fused.rmsprop_step(
                *live, self.lr, active, decay=self.decay, momentum=self.momentum, eps=self.eps
            )
            return
        for p, v, b in zip(self.params, self.square_avg, self.momentum_buffer, strict=True):
            if p.grad is None:
                continue
            g = p.grad
            keep = _per_member(active, p)
            new_v = v * self.decay + (1.0 - self.decay) * g * g
            avg = new_v.sqrt() + self.eps
            new_b = b * self.momentum + g / avg if self.momentum else g / avg
            new_p = p - _per_member(self.lr, p) * new_b
            v.copy_(torch.where(keep, new_v, v))
            b.copy_(torch.where(keep, new_b, b))
            p.copy_(torch.where(keep, new_p, p))

    def member_state(self, k: int) -> dict:
        """Member ``k``'s slices: ``{"square_avg": [...], "momentum_buffer": [...]}`` on CPU."""
        return {
            "square_avg": [v[k].detach().cpu().clone() for v in self.square_avg],
            "momentum_buffer": [b[k].detach().cpu().clone() for b in self.momentum_buffer],
        }

    @torch.no_grad()
    def load_member_state(self, k: int, state: dict) -> None:
        for name in ("square_avg", "momentum_buffer"):
            for dst, src in zip(getattr(self, name), state[name], strict=True):
                dst[k].copy_(src)


@torch.no_grad()
def lr_factor(epoch: int, max_epochs: int, final: float | None) -> float:
    r"""The learning-rate multiplier of ``epoch`` (1-based) under a linear decay.

    .. math:: f(e) = 1 - (1 - f_{\mathrm{end}}) \frac{\min(e, E) - 1}{E - 1}

    with :math:`E` = ``max_epochs``: 1 at the first epoch, ``final`` at the last; 1 throughout
    when ``final`` is None. The authors' code (pylearn2's ``LinearDecayOverEpoch``, saturating
    at 500 epochs with factor 0.01) decayed this way.
    """
    if final is None or max_epochs <= 1:
        return 1.0
    t = (min(max(epoch, 1), max_epochs) - 1) / (max_epochs - 1)
    return 1.0 - (1.0 - final) * t


def clip_member_grad_norms(params: Sequence[Tensor], max_norm: float) -> Tensor:
    """Rescale each member's gradient to ``max_norm`` when its norm is larger.

    The norm of member ``k`` is the L2 norm over its slices ``p.grad[k]`` of every parameter.
    Call it after ``backward()`` and before the optimiser step. ``max_norm`` 0 or None only
    measures. Members with a non-finite norm are left alone (they will be frozen).

    Returns:
        ``(K,)`` float64 norms before clipping.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(params[0].shape[0], dtype=torch.float64)
    from rnnbench.train import fused

    if fused.grad_views(grads) is not None:
        return fused.member_grad_norms(grads, max_norm)
    k = grads[0].shape[0]
    sq = sum(g.reshape(k, -1).double().pow(2).sum(1) for g in grads)
    norms = sq.sqrt()
    if max_norm:
        clip = torch.isfinite(norms) & (norms > max_norm)
        scale = torch.where(clip, max_norm / norms, torch.ones_like(norms))
        for g in grads:
            g.mul_(_per_member(scale.to(g.dtype), g))
    return norms


def finite_members(loss: Tensor, grad_norms: Tensor) -> Tensor:
    """``(K,)`` bool: True where the member's loss and gradient norm are both finite."""
    if loss.device.type == "cpu" and grad_norms.device.type == "cpu":  # numpy: fewer calls
        return torch.from_numpy(
            np.isfinite(loss.detach().numpy()) & np.isfinite(grad_norms.numpy())
        )
    return torch.isfinite(loss.detach()).to(grad_norms.device) & torch.isfinite(grad_norms)


def noise_seed(seed: int) -> int:
    """The weight-noise seed of a member with run seed ``seed`` (a stream apart from init)."""
    return int(np.random.SeedSequence([int(seed), 0x7E16]).generate_state(1, np.uint64)[0] >> 1)


class WeightNoise:
    """Gaussian weight noise, one generator per member, seeded by :func:`noise_seed`.

    Args:
        seeds: the members' run seeds.
        sigma: the noise standard deviation (0: no noise and no random draws).
        device: where the generators and the noise live.
    """

    def __init__(self, seeds: Sequence[int], sigma: float, device: str | torch.device = "cpu"):
        self.sigma = float(sigma)
        self.device = torch.device(device)
        self.generators = []
        for seed in seeds:
            g = torch.Generator(device=self.device)
            g.manual_seed(noise_seed(seed))
            self.generators.append(g)

    @contextlib.contextmanager
    def applied(
        self, weights: Sequence[Tensor], members: Sequence[bool] | None = None
    ) -> Iterator[None]:
        """Inside the block the weights carry fresh noise; on exit they are exactly restored.

        Run both the forward and the backward pass inside the block, the optimiser step after.
        ``members`` (one bool per member, None: all) says which members draw noise; the others
        keep their weights and their generators (a member with no minibatch at this update,
        :mod:`rnnbench.train.minibatches`, must not advance its noise stream).
        """
        if not self.sigma:
            yield
            return
        fast = self._fused(weights)
        if fast is not None:
            with self._fused_applied(fast, members):
                yield
            return
        clean, noise = self._buffers(weights)
        with torch.no_grad():
            for w, c in zip(weights, clean, strict=True):
                c.copy_(w)
        try:
            with torch.no_grad():
                for w, n, slices in zip(weights, noise, self._slices, strict=True):
                    # Member k's slice is filled as torch.randn(w.shape[1:], generator=g_k)
                    # would fill it (randn is normal_ on a new tensor), without the stack.
                    for k, g in enumerate(self.generators):
                        if members is None or members[k]:
                            slices[k].normal_(generator=g)
                        else:
                            slices[k].zero_()
                    w.add_(n, alpha=self.sigma)
            yield
        finally:
            with torch.no_grad():
                for w, c in zip(weights, clean, strict=True):
                    w.copy_(c)

    def _fused(self, weights: Sequence[Tensor]):
        """The fused path's buffers for ``weights`` (:mod:`rnnbench.train.fused_noise`), made
        once per list of weights; None where it cannot run (then the torch loop)."""
        from rnnbench.train import fused_noise

        key = [(id(w), w.data_ptr(), tuple(w.shape)) for w in weights]
        kept = getattr(self, "_fast", None)
        if kept is not None and kept[0] == key:
            return kept[1]
        if not fused_noise.usable(weights):
            self._fast = (key, None)
            return None
        sizes = [w[0].numel() for w in weights]
        offsets = np.cumsum([0, *sizes])
        k = weights[0].shape[0]
        noise = torch.empty(k, int(offsets[-1]), dtype=weights[0].dtype)
        rows = noise.unbind(0)
        clean = [w.data for w in weights]  # the parameters' own tensors, never written here
        noisy = [torch.empty_like(c) for c in clean]
        fast = {
            "weights": fused_noise.views(clean),
            "noisy": fused_noise.views(noisy),
            "noise": noise.numpy(),
            "offsets": offsets[:-1].astype(np.int64),
            "rows": rows,
            # member k's draws: its row's ranges, each one normal_ call (fused_noise.runs)
            "draws": [[row[a:b] for a, b in fused_noise.runs(sizes)] for row in rows],
            "swap": list(zip(weights, clean, noisy, strict=True)),
        }
        self._fast = (key, fast)
        return fast

    @contextlib.contextmanager
    def _fused_applied(self, fast: dict, members: Sequence[bool] | None) -> Iterator[None]:
        """:meth:`applied` on the fused path: the same draws, one kernel for the noisy weights,
        which the parameters point at until the block ends (then at their clean tensors)."""
        from rnnbench.train import fused_noise, noise_stream

        noise_stream.draw(self.generators, fast, members)  # torch's normal_ numbers
        fused_noise.noisy(
            fast["weights"], fast["noise"], fast["offsets"], self.sigma, fast["noisy"]
        )
        swap = fast["swap"]
        try:
            for w, _, noisy in swap:
                w.data = noisy
            yield
        finally:
            for w, clean, _ in swap:
                w.data = clean

    def _buffers(self, weights: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Reused ``(clean copies, noise)`` tensors shaped like ``weights`` (and the noise
        buffers' member slices, ``_slices``, made once with them)."""
        like = [(tuple(w.shape), w.dtype, w.device) for w in weights]
        if getattr(self, "_like", None) != like:
            self._like = like
            self._clean = [torch.empty(s, dtype=d, device=v) for s, d, v in like]
            self._noise = [torch.empty(s, dtype=d, device=v) for s, d, v in like]
            self._slices = [n.unbind(0) for n in self._noise]
        return self._clean, self._noise

    def member_state(self, k: int) -> Tensor:
        return self.generators[k].get_state()

    def load_member_state(self, k: int, state: Tensor) -> None:
        # A CPU generator's state (Mersenne Twister) and a CUDA one's (Philox) do not fit
        # each other, so a run continues only on the kind of device it began on.
        try:
            self.generators[k].set_state(state)
        except (RuntimeError, ValueError) as exc:
            raise RnnbenchError(
                f"This run was checkpointed on another kind of device than {self.device.type} "
                "(its weight-noise generator cannot move): resume it with the --device it began "
                "on, or delete its last.pt and prev.pt to start it afresh."
            ) from exc


class EarlyStopping:
    """Patience on validation NLL, per member.

    A member improves when its validation NLL is strictly lower than its best so far; it stops
    after ``patience`` epochs in a row without improving.
    """

    def __init__(self, k: int, patience: int) -> None:
        self.patience = int(patience)
        self.best = [float("inf")] * k
        self.best_epoch = [0] * k
        self.bad_epochs = [0] * k

    def update(self, k: int, epoch: int, valid_nll: float) -> tuple[bool, bool]:
        """Record member ``k``'s validation NLL; returns ``(improved, stop)``."""
        if valid_nll < self.best[k]:
            self.best[k], self.best_epoch[k], self.bad_epochs[k] = float(valid_nll), epoch, 0
            return True, False
        self.bad_epochs[k] += 1
        return False, self.bad_epochs[k] >= self.patience

    def member_state(self, k: int) -> dict:
        return {
            "best": self.best[k],
            "best_epoch": self.best_epoch[k],
            "bad_epochs": self.bad_epochs[k],
        }

    def load_member_state(self, k: int, state: dict) -> None:
        self.best[k] = float(state["best"])
        self.best_epoch[k] = int(state["best_epoch"])
        self.bad_epochs[k] = int(state["bad_epochs"])
