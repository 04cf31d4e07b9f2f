r"""One-kernel versions of the protocol's per-update steps, for population-stacked CPU tensors.

:mod:`rnnbench.train.protocol` and :mod:`rnnbench.train.authors` run a minibatch update as
about ten torch operations per parameter tensor (clipping, RMSProp, the ``torch.where`` that
freezes stopped members): on the small models of the paper that Python and dispatch overhead
cost more than the recurrent kernels themselves. The kernels here do the same arithmetic in
one numba call over all parameter tensors of all members:

- :func:`member_grad_norms`: each member's gradient norm over all its parameters (float64),
  and the rescaling of that member's gradient to ``max_norm`` when larger;
- :func:`rmsprop_step`: :class:`~rnnbench.train.protocol.PopulationRMSProp`'s update,
  :math:`v \leftarrow \rho v + (1-\rho) g^2`, :math:`b \leftarrow \mu b + g/(\sqrt v+\epsilon)`,
  :math:`\theta \leftarrow \theta - \eta_k b`, on active members only;
- :func:`authors_step`: :class:`~rnnbench.train.authors.AuthorsRMSProp`'s update (the floor
  :math:`\max(\sqrt v, \epsilon)`, the velocity holding the rate, the update rescaled to norm
  at most ``clip`` per member).

Every element follows the same float operations, in the same order and precision, as the torch
code (no fused multiply-add, the scalars rounded to the tensor's dtype as torch rounds them).
Two differences remain, both within float rounding: the square root here is correctly rounded
while torch's vectorised one is sometimes one ulp off, and the float64 norms are summed in
another order (about 1e-16, relative). NaN and inf propagate as in torch. The torch code stays
the path for other devices, dtypes and layouts (:func:`usable`).
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Sequence

import numba
import numpy as np
import torch
from torch import Tensor

__all__ = ["usable", "member_grad_norms", "rmsprop_step", "authors_step"]

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
# The norms' float64 sums may be reassociated (vectorised): they are compared, not stored.
_jit_sum = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})


def usable(tensors: Sequence[Tensor]) -> bool:
    """Whether the fused kernels can run on ``tensors``: CPU, one float dtype (float32 or
    float64), contiguous, with a leading member dimension."""
    if not tensors:
        return False
    first = tensors[0]
    if first.device.type != "cpu" or first.dtype not in (torch.float32, torch.float64):
        return False
    dtype = first.dtype
    for t in tensors:
        if t.dtype != dtype or t.device.type != "cpu" or not t.dim() or not t.is_contiguous():
            return False
    return True


# Numpy views of the tensors that live across updates (parameters, optimiser state), made once
# per list of tensors: ids -> (weak references, data pointers, views). A hit costs a weak
# reference call and a data pointer per tensor. Gradients are new every update.
_Kept = tuple[tuple[weakref.ref, ...], list[int], tuple[np.ndarray, ...]]
_KEPT: dict[tuple[int, ...], _Kept] = {}


def _view(t: Tensor) -> np.ndarray:
    a = (t.detach() if t.requires_grad else t).numpy()
    return a.reshape(a.shape[0], -1)


def _views(tensors: Sequence[Tensor], keep: bool = False) -> tuple[np.ndarray, ...]:
    """``(K, n)`` numpy views sharing memory with ``tensors`` (which must be contiguous);
    ``keep``: remember them for the next update (the tensors persist)."""
    if not keep:
        return tuple(_view(t) for t in tensors)
    key = tuple(map(id, tensors))
    entry = _KEPT.get(key)
    if entry is not None:
        refs, ptrs, views = entry
        if all(r() is t for r, t in zip(refs, tensors, strict=True)) and ptrs == [
            t.data_ptr() for t in tensors
        ]:
            return views
    refs = tuple(weakref.ref(t, lambda _, key=key: _KEPT.pop(key, None)) for t in tensors)
    views = tuple(_view(t) for t in tensors)
    _KEPT[key] = (refs, [t.data_ptr() for t in tensors], views)
    return views


# This update's gradients, read by the clipping and then by the step: (tensors, their data
# pointers, their views or None where the kernels cannot run on them). It holds the tensors, so
# a match by identity is the same tensors; PopulationRMSProp.zero_grad forgets it.
_GRADS: list = [(), [], None]


def grad_views(grads: Sequence[Tensor]) -> tuple[np.ndarray, ...] | None:
    """:func:`_views` of an update's gradients, or None where :func:`usable` says no; the last
    list asked for is remembered (clipping and the step ask for the same one)."""
    last, ptrs, views = _GRADS
    if (
        len(last) == len(grads)
        and all(map(operator.is_, last, grads))
        and ptrs == [g.data_ptr() for g in grads]
    ):
        return views
    views = _views(grads) if usable(grads) else None
    _GRADS[:] = [tuple(grads), [g.data_ptr() for g in grads], views]
    return views


def forget_grads() -> None:
    """Drop the remembered gradients (their update is over)."""
    _GRADS[:] = [(), [], None]


@_jit_sum
def _sq_norms(grads, K):
    sq = np.zeros(K, np.float64)
    for i in range(len(grads)):
        g = grads[i]
        n = g.shape[1]
        for k in range(K):
            s = 0.0
            for j in range(n):
                x = np.float64(g[k, j])
                s += x * x
            sq[k] += s
    return sq


@_jit
def _scale(grads, scale):
    for i in range(len(grads)):
        g = grads[i]
        n = g.shape[1]
        for k in range(g.shape[0]):
            s = scale[k]
            if s != 1:
                for j in range(n):
                    g[k, j] = g[k, j] * s


def member_grad_norms(grads: Sequence[Tensor], max_norm: float) -> Tensor:
    """:func:`~rnnbench.train.protocol.clip_member_grad_norms` on the gradients themselves:
    ``(K,)`` float64 norms before clipping; members whose norm is finite and above
    ``max_norm`` (when not 0) get their gradients rescaled to it, in place."""
    views = grad_views(grads) or _views(grads)
    norms = np.sqrt(_sq_norms(views, views[0].shape[0]))
    if max_norm:
        with np.errstate(divide="ignore", invalid="ignore"):
            clip = np.isfinite(norms) & (norms > max_norm)
            scale = np.where(clip, max_norm / norms, 1.0).astype(views[0].dtype)
        _scale(views, scale)
    return torch.from_numpy(norms)


@_jit
def _rmsprop(params, grads, square_avg, momentum_buffer, lr, active, decay, rest, mu, eps, use_mu):
    for i in range(len(params)):
        p, g, v, b = params[i], grads[i], square_avg[i], momentum_buffer[i]
        n = p.shape[1]
        for k in range(p.shape[0]):
            if not active[k]:
                continue
            rate = lr[k]
            for j in range(n):
                gj = g[k, j]
                new_v = v[k, j] * decay + rest * gj * gj
                avg = np.sqrt(new_v) + eps
                new_b = b[k, j] * mu + gj / avg if use_mu else gj / avg
                v[k, j] = new_v
                b[k, j] = new_b
                p[k, j] = p[k, j] - rate * new_b


def _scalar(x: float, dtype) -> np.generic:
    """A Python float rounded to the tensors' dtype, as torch rounds a scalar operand."""
    return dtype.type(x)


def rmsprop_step(params, grads, square_avg, momentum_buffer, lr: Tensor, active: Tensor, *,
                 decay: float, momentum: float, eps: float) -> None:  # fmt: skip
    """PopulationRMSProp's step in one kernel (see the module docstring); in place."""
    n = len(params)
    kept = _views([*params, *square_avg, *momentum_buffer], keep=True)
    dt = kept[0].dtype
    _rmsprop(
        kept[:n],
        grad_views(grads) or _views(grads),
        kept[n : 2 * n],
        kept[2 * n :],
        lr.detach().numpy().astype(dt, copy=False),
        active.detach().numpy().astype(np.bool_, copy=False),
        _scalar(decay, dt),
        _scalar(1.0 - decay, dt),
        _scalar(momentum, dt),
        _scalar(eps, dt),
        bool(momentum),
    )


@_jit
def _authors_velocity(grads, square_avg, momentum_buffer, lr, decay, rest, mu, eps, new_v, new_u):
    """The new ``v`` and ``u`` of every member into ``new_v``, ``new_u``."""
    for i in range(len(grads)):
        g, v, u, nv, nu = grads[i], square_avg[i], momentum_buffer[i], new_v[i], new_u[i]
        n = g.shape[1]
        for k in range(g.shape[0]):
            rate = lr[k]
            for j in range(n):
                gj = g[k, j]
                x = v[k, j] * decay + rest * gj * gj
                r = np.sqrt(x)
                r = eps if r < eps else r  # torch.clamp(min=eps): NaN stays NaN
                nv[k, j] = x
                nu[k, j] = u[k, j] * mu - rate * (gj / r)


@_jit
def _authors_apply(params, square_avg, momentum_buffer, new_v, new_u, scale, active):
    for i in range(len(params)):
        p, v, u, nv, nu = params[i], square_avg[i], momentum_buffer[i], new_v[i], new_u[i]
        n = p.shape[1]
        for k in range(p.shape[0]):
            if not active[k]:
                continue
            s = scale[k]
            for j in range(n):
                v[k, j] = nv[k, j]
                u[k, j] = nu[k, j]
                p[k, j] = p[k, j] + s * nu[k, j]


@_jit
def _authors(params, grads, square_avg, momentum_buffer, new_v, new_u, lr, active, decay, rest,
             mu, eps, clip):  # fmt: skip
    """The whole step in one call: the velocity, the updates' float64 norms (returned), the
    scale ``clip / max(clip, norm)`` (1 without ``clip``; NaN stays NaN) rounded to the
    tensors' dtype, and the update of the active members."""
    _authors_velocity(grads, square_avg, momentum_buffer, lr, decay, rest, mu, eps, new_v, new_u)
    K = params[0].shape[0]
    norms = np.sqrt(_sq_norms(new_u, K))
    scale = np.empty(K, params[0].dtype)
    for k in range(K):
        if clip:
            n = norms[k]
            scale[k] = clip / (clip if n < clip else n)  # clamp(min=clip), as torch
        else:
            scale[k] = 1
    _authors_apply(params, square_avg, momentum_buffer, new_v, new_u, scale, active)
    return norms


# Scratch for the new v and u of every member, kept per list of parameters (as _KEPT).
_SCRATCH: dict[tuple[int, ...], tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]] = {}


def authors_step(params, grads, square_avg, momentum_buffer, lr: Tensor, active: Tensor, *,
                 decay: float, momentum: float, eps: float, clip: float) -> Tensor:  # fmt: skip
    """AuthorsRMSProp's step in one kernel call (the update's norm is taken before it is
    applied); in place. Returns the ``(K,)`` float64 norms of the updates before rescaling."""
    n = len(params)
    kept = _views([*params, *square_avg, *momentum_buffer], keep=True)
    ps, vs, us = kept[:n], kept[n : 2 * n], kept[2 * n :]
    dt = ps[0].dtype
    key = tuple(map(id, params))
    scratch = _SCRATCH.get(key)
    if scratch is None or any(a.shape != p.shape for a, p in zip(scratch[0], ps, strict=True)):
        scratch = (tuple(np.empty_like(v) for v in vs), tuple(np.empty_like(u) for u in us))
        _SCRATCH.clear()  # one population trains at a time
        _SCRATCH[key] = scratch
    norms = _authors(
        ps,
        grad_views(grads) or _views(grads),
        vs,
        us,
        *scratch,
        lr.detach().numpy().astype(dt, copy=False),
        active.detach().numpy().astype(np.bool_, copy=False),
        _scalar(decay, dt),
        _scalar(1.0 - decay, dt),
        _scalar(momentum, dt),
        _scalar(eps, dt),
        np.float64(clip),
    )
    return torch.from_numpy(norms)
