r"""A whole training update of a music population in one numba call: :func:`select`.

The population trainer (:mod:`rnnbench.train.population`) runs an update as the weight noise
(:class:`~rnnbench.train.protocol.WeightNoise`), the pass without autograd
(:class:`~rnnbench.train.manual_step.ManualPass`), the per-member clipping, the finite check
and the optimiser's step: about ten numba kernels with Python and torch between them, which
on the paper's small models cost about as much as the kernels. For the models where all of
it is numba already, :class:`CompiledUpdate` runs the same kernels, on the same numbers, from
one ``@njit`` driver per cell (:mod:`rnnbench.train.compiled_driver`):

1. the weight noise's draws, the numbers of ``normal_(generator=g_k)`` per member as
   :meth:`WeightNoise._fused_applied` draws them (no draw for an idle member), into the same
   buffer, by :func:`rnnbench.train.noise_stream.draw`; the driver writes :math:`\tilde W =
   \mathrm{fma}(n, \sigma, W)` (:func:`rnnbench.train.fused_noise.noisy`);
2. :math:`\xi = \tilde W_{ih} x + b_{ih}` by the sparse gather, the recurrent forward kernel,
   the Bernoulli head's NLL and gradient (:func:`rnnbench.nn.kernels.bernoulli.head_pass`,
   with :math:`s_k = 1/N_k` or 1), the recurrent backward kernel and the gather's transpose,
   as :class:`ManualPass` runs them, at the noisy weights, member by member (a member's
   arrays stay in cache from its forward to its backward);
3. the member's gradient norm :math:`\lVert g_k \rVert` (float64), its rescaling to the
   clip, the finite check of :math:`S_k = \sum_r \mathrm{nll}_r` and of the norm, and the
   optimiser's step (:func:`rnnbench.train.fused.rmsprop_step` or ``authors_step``) on the
   clean parameters of the members that are active, have a window and are finite, in place
   through numpy views of the parameters and of the optimiser's state made once.

Every float operation is the old path's, so the parameters, the optimiser state and the
per-update :math:`S_k` (summed by torch from the driver's per-step NLLs, as before) are bit
for bit those of the old path. The finite check reads the driver's float64 sum of the
per-step NLLs (never negative) where it settles whether torch's float32 sum is finite; in the
narrow band near float32's largest value where the order of the sum decides, the driver stops
before the step and torch's sum decides, as before (:func:`compiled_driver._sums`).

Where the gather cannot run (inputs not binary or dense, a small product:
:func:`rnnbench.nn.sparse_input.plan`'s conditions) the update takes the old path, drawing
nothing here. Where the weights the gather reads are not finite (the noisy :math:`\tilde
W_{ih}`, or the clean one without noise) the driver stops after writing the noisy weights,
and the rest of the update runs the old pass on those very weights (its dense product spreads
the NaN as before). ``plan``'s own check of the clean :math:`W_{ih}` is left to the driver: a
clean :math:`W_{ih}` that is not finite gives a noisy one that is not finite (finite noise
times a finite :math:`\sigma` added to it), and the old path there drew the same noise
(``WeightNoise.applied``) and ran the same pass on the same noisy weights, clipping, finite
check and step; so the update is the old path's either way
(``tests/train/test_compiled_update.py``, a NaN in the input weights).

:func:`select` chooses: float32 CPU, the numba backend, a built-in ``tanh``, ``lstm`` (with
or without peepholes) or ``gru`` :class:`~rnnbench.models.SequenceModel` without a variant,
the Bernoulli head, the paper's or the authors' optimiser with the fused kernels usable.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from rnnbench.nn import sparse_input
from rnnbench.nn.kernels import glue
from rnnbench.train import fused, manual_step, noise_stream
from rnnbench.train.authors import AuthorsRMSProp, gradient_clip, is_authors
from rnnbench.train.protocol import PopulationRMSProp, clip_member_grad_norms, finite_members

__all__ = ["CompiledUpdate", "select"]

_ENABLED = True  # private switch: tests turn it off to compare with the old path

CELLS = ("lstm", "gru", "tanh")


def select(model, cfg, optimizer, noise, forward_backward, train=None) -> CompiledUpdate | None:
    """The compiled update of ``model`` under ``cfg``, or None where the old path runs (see
    the module docstring; ``train``, the training sequences: None too where even their
    longest window is too small a product for the gather, so that no driver is compiled)."""
    from rnnbench.heads import BernoulliHead

    if not _ENABLED or not isinstance(forward_backward, manual_step.ManualPass):
        return None
    if train is not None:
        longest = max((len(s) for s in train), default=0)
        if cfg.bptt:
            longest = min(longest, cfg.bptt)
        K, GH, I = model.weight_ih_l0.shape
        if K * longest * cfg.batch_size * GH * I < sparse_input.MIN_WORK:
            return None
    if model.unit not in CELLS or model.variant or type(model.head) is not BernoulliHead:
        return None
    if type(optimizer) not in (PopulationRMSProp, AuthorsRMSProp):
        return None
    if is_authors(cfg) != (type(optimizer) is AuthorsRMSProp):
        return None
    tensors = [p for _, p in model.named_parameters()]
    if not fused.usable(tensors + optimizer.square_avg + optimizer.momentum_buffer):
        return None
    if tensors[0].dtype != torch.float32:
        return None
    weights = model.weight_matrices(output=cfg.noise_output)
    if noise.sigma and noise._fused(weights) is None:
        return None
    update = CompiledUpdate(model, cfg, optimizer, noise, forward_backward)
    if isinstance(train, list):  # the batches' keys from the sequences' (found here, once)
        update._table(train)
    return update


def _keys(x: torch.Tensor, w_ih: np.ndarray, window=None, table=None):
    """:func:`rnnbench.nn.sparse_input.plan`'s keys as numpy arrays (its conditions but the
    finite check of the weights, the driver's: module docstring; ``w_ih`` the clean weights'
    numpy view, for their shape), or None: :func:`~rnnbench.nn.sparse_input.plan_arrays` after
    ``plan``'s checks of the tensor (the model's are :func:`select`'s: float32 on CPU); for a
    shared batch's ``window`` (``PopulationBatch.window``) from the sequences' keys in
    ``table`` (:func:`~rnnbench.nn.sparse_input.plan_window`, the same keys)."""
    if not sparse_input.is_enabled() or x.dim() not in (3, 4) or x.device.type != "cpu":
        return None
    if x.requires_grad or x.dtype != torch.float32:
        return None
    x = np.ascontiguousarray(x.numpy())
    if window is not None and table is not None and x.ndim == 3:
        return sparse_input.plan_window(table, window, x, w_ih, finite=False)
    return sparse_input.plan_arrays(x, w_ih, finite=False)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _masks(m, K, shared, authors):
    """From the mask ``m (M, T, B)`` (``shared``: ``M`` = 1, one ``(T, B)`` mask for all
    members; else ``M`` = ``K``): the real steps' count (of member 0), each member's count as
    float32 at least 1 (an idle member's loss is 0 over no steps), the loss's scale
    :math:`1/N_k` (1 for the authors'; ``N`` the shared count when ``shared``), the driver's
    ``(K, T, B)`` mask and the real steps ``(M, T*B)``."""
    M, T, B = m.shape
    kmask = np.empty((K, T, B), np.float32)
    real = np.empty((M, T * B), np.bool_)
    counts = np.zeros(M, np.int64)
    for i in range(M):
        for t in range(T):
            for b in range(B):
                on = m[i, t, b] > 0
                real[i, t * B + b] = on
                counts[i] += on
    n = np.empty(M, np.float32)
    for i in range(M):
        n[i] = max(np.float32(counts[i]), np.float32(1))
    scale = np.empty(K, np.float32)
    for k in range(K):
        for t in range(T):
            for b in range(B):
                kmask[k, t, b] = m[0 if M == 1 else k, t, b]
        if authors:
            scale[k] = np.float32(1)
        else:
            scale[k] = np.float32(1) / (np.float32(counts[0]) if shared else n[k])
    return counts[0], n, scale, kmask, real


class CompiledUpdate:
    """One update of the population in one driver call (module docstring)."""

    def __init__(self, model, cfg, optimizer, noise, forward_backward) -> None:
        from rnnbench.train import compiled_driver

        self.model, self.cfg, self.optimizer, self.noise = model, cfg, optimizer, noise
        self.forward_backward = forward_backward
        self.authors = is_authors(cfg)
        self.clip = float(gradient_clip(cfg))  # the gradient's clip (0 for the authors')
        self.update_clip = float(getattr(optimizer, "clip", 0.0))  # the authors' update cap
        self.cell = model.unit
        self.driver = compiled_driver.DRIVERS[self.cell]
        self.before = model.reset == "before"
        self.peephole = bool(model.peephole)
        self.params = [p for _, p in model.named_parameters()]
        self.names = [n for n, _ in model.named_parameters()]
        self.weights = model.weight_matrices(output=cfg.noise_output)
        dt = np.float32
        self.scalars = (
            dt(optimizer.decay), dt(1.0 - optimizer.decay), dt(optimizer.momentum),
            dt(optimizer.eps),
        )  # fmt: skip
        self._bundle = None
        self._keys_of, self._seqs = None, None  # _table's

    # -- the arrays the driver reads and writes, made once (checked per update)

    def _arrays(self):
        fast = self.noise._fused(self.weights) if self.noise.sigma else None
        opt = self.optimizer
        ptr = torch.Tensor.data_ptr
        key = (
            id(fast),
            *map(ptr, self.params),
            *map(ptr, opt.square_avg),
            *map(ptr, opt.momentum_buffer),
        )  # fmt: skip
        if self._bundle is not None and self._bundle[0] == key:
            return self._bundle[1]
        m = self.model
        K = self.params[0].shape[0]
        H = m.weight_hh_l0.shape[-1]
        named = dict(zip(self.names, self.params, strict=True))
        clean = {n: p.detach().numpy() for n, p in named.items()}
        # the weights the passes read: the noisy buffers of the noisy tensors, else the clean
        used = dict(clean)
        if fast is not None:
            for w, _, noisy in fast["swap"]:
                used[self.names[[id(p) for p in self.params].index(id(w))]] = noisy.numpy()
        # no peepholes: an empty slot, so that the LSTM's tuples keep one layout
        none = np.zeros((K, 0), np.float32)
        v_none = np.zeros((K, 3, 1), np.float32)

        def flat(a):
            return a.reshape(a.shape[0], -1)

        order = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
        if self.cell == "lstm":
            order.append("weight_ch_l0")
        order += ["weight_out", "bias_out"]
        if list(named) != [n for n in order if n in named]:
            raise AssertionError("unexpected parameter order")  # select() excludes it

        def slots(arrays):
            return tuple(flat(arrays[n]) if n in arrays else none for n in order)

        squares = dict(zip(self.names, (v.numpy() for v in opt.square_avg), strict=True))
        moms = dict(zip(self.names, (b.numpy() for b in opt.momentum_buffer), strict=True))
        if fast is not None:
            noise = (fast["weights"], fast["noise"], fast["offsets"], fast["noisy"])
        else:  # no noise: nothing is written (a tuple of the same types, never read)
            views = tuple(flat(clean[n]) for n in ("weight_ih_l0", "weight_hh_l0"))
            noise = (views, np.zeros((K, 0), np.float32), np.zeros(2, np.int64), views)
        w_ch = used.get("weight_ch_l0", v_none)
        bundle = {
            "noise": noise,
            "weights": (
                used["weight_ih_l0"],
                used["bias_ih_l0"],
                used["weight_hh_l0"],
                used["bias_hh_l0"],
                w_ch,
                used["weight_out"],
                used["bias_out"],
            ),  # fmt: skip
            "params": slots(clean),
            "square_avg": slots(squares),
            "momentum_buffer": slots(moms),
            "scratch": tuple(np.empty_like(a) for a in slots(clean)),
            "scratch2": tuple(np.empty_like(a) for a in slots(clean)),
            "H": H,
            "K": K,
            "fast": fast,
            "w_ih": clean["weight_ih_l0"],  # the clean weights (the plan reads their shape)
            "ones": np.ones(K, np.float32),
            "sigma": np.float32(self.noise.sigma),
            "work": m.weight_ih_l0.shape[1] * H,  # per batch row
        }
        self._bundle = (key, bundle)
        return bundle

    def _table(self, seqs) -> sparse_input.KeyTable:
        """The keys of ``seqs`` (the training sequences), found once per list (the table
        checks each window's sequence objects: a list changed in place is scanned)."""
        if self._seqs is not seqs:
            self._keys_of, self._seqs = sparse_input.KeyTable(seqs), seqs
        return self._keys_of

    # -- one update

    def __call__(self, batch, x, y, mask, state, may_step: np.ndarray):
        """Run the update of ``batch`` (``x``, ``y``, ``mask`` its tensors, ``state`` the
        carried state or None; ``may_step (K,)`` numpy bool: the members active and with a
        window). Returns ``(nll_sum, n, loss, state, ok)`` as the old path has them after its
        step, ``nll_sum``, ``loss`` and ``ok`` as numpy arrays (``n`` an int or a float32
        array), or None, before drawing anything, where the old path must run the whole
        update."""
        model = self.model
        if x.shape[-1] != model.in_dim or y.shape[-1] != model.head.out_dim:
            return None  # the old pass says which, in one sentence
        a = self._arrays()
        window = getattr(batch, "window", None)
        keys = _keys(x, a["w_ih"], window, window and self._table(window[0]))
        if keys is None:
            return None
        K = a["K"]
        T, B = x.shape[-3:-1]
        R = T * B
        live = batch.live.tolist()
        idle = not all(live)
        fast = a["fast"]
        if fast is not None:  # the draws of WeightNoise._fused_applied, in its order
            noise_stream.draw(self.noise.generators, fast, live if idle else None)
        m = mask.numpy()
        # the steps counted, the loss's scale 1/N_k, the driver's (K, T, B) mask (a writable
        # copy: one driver signature) and the real steps, in one call
        count, n_np, scale, kmask, real = _masks(m.reshape(-1, T, B), K, m.ndim == 2, self.authors)
        if m.ndim == 2:  # one count for all members; an idle member's loss is 0 over no steps
            n_np = int(count)
        yy = np.ascontiguousarray(y.numpy().reshape(-1, R, y.shape[-1]), np.float32)
        H = a["H"]
        h0, c0 = (None, None) if state is None else state
        h0 = np.zeros((K, B, H), np.float32) if h0 is None else np.ascontiguousarray(h0.numpy())
        c0 = np.zeros((K, B, H), np.float32) if c0 is None else np.ascontiguousarray(c0.numpy())
        lr = self.optimizer.lr.numpy()
        steps = np.asarray(may_step, np.bool_)
        # numba's BLAS on the threads the kernels' glue picks for these per-step products
        out = glue._call(
            B * a["work"],
            self.driver,
            fast is not None, a["sigma"], *a["noise"], *a["weights"], keys[0], keys[1], kmask,
            self.before, self.peephole, h0, c0, yy, real, scale, a["params"],
            a["square_avg"], a["momentum_buffer"], a["scratch"], a["scratch2"], lr, steps,
            *self.scalars, self.authors, self.clip, self.update_clip,
        )  # fmt: skip
        ok_w, rows, h_n, c_n, norms, total, stepped, grads = out
        if not ok_w:  # a noisy W_ih that is not finite: the old pass on these noisy weights
            n = torch.from_numpy(n_np) if isinstance(n_np, np.ndarray) else n_np
            return self._old_pass(fast, x, y, mask, state, batch.shared, steps, n)
        nll_sum = torch.from_numpy(rows).sum(1).numpy()  # torch's float32 sum, as before
        loss = nll_sum if self.authors else nll_sum / n_np
        if stepped:
            ok = np.isfinite(total) & np.isfinite(norms)
        else:  # a sum near float32's largest value: torch's own sum decides, as before
            ok = finite_members(torch.from_numpy(loss), torch.from_numpy(norms)).numpy()
            self._step(grads, a, lr, steps & ok)
        new_state = (torch.from_numpy(h_n), torch.from_numpy(c_n) if self.cell == "lstm" else None)
        return nll_sum, n_np, loss, new_state, ok

    def _step(self, grads, a, lr, active) -> None:
        from rnnbench.train import compiled_driver

        glue._call(
            0,
            compiled_driver.step,
            grads, a["params"], a["square_avg"], a["momentum_buffer"], a["scratch"],
            a["scratch2"], lr, active, *self.scalars, self.authors, self.update_clip,
        )  # fmt: skip

    def _old_pass(self, fast, x, y, mask, state, shared, may_step, n_steps):
        """The rest of the old update after the noise's draws and sum (the driver wrote the
        noisy weights): the pass at those weights, clipping, the finite check, the step;
        returned as :meth:`__call__` returns its results (``n_steps``, the driver's count,
        unused: the pass counts them)."""
        self.optimizer.zero_grad()
        swap = fast["swap"] if fast is not None else []
        try:
            for w, _, noisy in swap:
                w.data = noisy
            nll_sum, n, loss, state = self.forward_backward(x, y, mask, state, shared)
        finally:
            for w, clean, _ in swap:
                w.data = clean
        norms = clip_member_grad_norms(self.params, self.clip)
        ok = finite_members(loss, norms).numpy()
        self.optimizer.step(torch.from_numpy(may_step & ok))
        n = n.detach().numpy() if torch.is_tensor(n) else n
        state = self.model.detach_state(state)
        return nll_sum.detach().numpy(), n, loss.detach().numpy(), state, ok

    def warm_up(self) -> None:
        """Compile (or load) the driver with this population's argument types, on copies of
        everything it writes, with no member stepping: the run does not change
        (:mod:`rnnbench.train.warmup`)."""
        a = self._arrays()
        K, H = self.params[0].shape[0], a["H"]
        D = self.model.weight_out.shape[1]
        T, B = 2, 1

        def copies(arrays):
            return tuple(np.array(v) for v in arrays)

        clean, noise, offsets, noisy = a["noise"]
        # the gather's plan and, for the validation pass, the gather itself (the warm-up's
        # tiny batches are below sparse_input.MIN_WORK, so nothing else calls them there)
        w_ih, b_ih = a["weights"][0], a["weights"][1]
        I = w_ih.shape[2]
        sparse_input._keys(np.zeros((T * B, I), np.float32), sparse_input.MAX_DENSITY)
        sparse_input._finite(np.array(w_ih))
        sparse_input._window_keys(*(np.zeros(1, np.int64),) * 5, 0, T, B)
        _masks(np.ones((1, T, B), np.float32), K, True, self.authors)
        sparse_input._gather_bias(
            np.array(w_ih), np.zeros(1, np.int64), np.ones((1, T * B), np.int64), np.array(b_ih)
        )
        self.driver(
            False, np.float32(0.0), clean, noise, offsets, copies(noisy), *a["weights"],
            np.zeros(1, np.int64), np.ones((1, T * B), np.int64), np.ones((K, T, B), np.float32),
            self.before, self.peephole, np.zeros((K, B, H), np.float32),
            np.zeros((K, B, H), np.float32), np.zeros((1, T * B, D), np.float32),
            np.ones((1, T * B), np.bool_), np.ones(K, np.float32), copies(a["params"]),
            copies(a["square_avg"]), copies(a["momentum_buffer"]), a["scratch"], a["scratch2"],
            np.zeros(K, np.float32), np.zeros(K, np.bool_), *self.scalars, self.authors,
            self.clip, self.update_clip,
        )  # fmt: skip
