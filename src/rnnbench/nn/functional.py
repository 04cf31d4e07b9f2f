"""One recurrent layer over a whole sequence, for a population of K models at once.

:func:`run_unit` is the single entry point the modules (:mod:`rnnbench.nn.rnn`, ``lstm``,
``gru``) and the population models share. Every weight carries a leading population
dimension ``K``; ``K = 1`` is the ordinary single model.

The input projection ``W x + b_ih`` of every step is hoisted out of the time loop as one
batched matmul; the loop then only adds the recurrent part. Two backends run the loop:

- ``"torch"``: a per-step autograd loop; any device, any dtype, double backward. The reference.
- ``"numba"``: a fused CPU loop compiled with numba that saves what backward needs, and a
  hand-written backward through time (see :mod:`rnnbench.nn.kernels`).

``"auto"`` picks numba for float32/float64 CPU tensors when numba is installed, torch otherwise.
The numba backward is first-order only (it raises on double backward): ask for ``"torch"``
when you need gradients of gradients.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

from rnnbench.errors import RnnbenchError
from rnnbench.nn import sparse_input
from rnnbench.nn import variants as _variants

GATES = {"tanh": 1, "relu": 1, "gru": 3, "lstm": 4}
RESETS = ("before", "after")
BACKENDS = ("auto", "torch", "numba")


def run_unit(
    cell: str,
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    *,
    w_ch: Tensor | None = None,
    w_hr: Tensor | None = None,
    reset: str = "before",
    mask: Tensor | None = None,
    h0: Tensor | None = None,
    c0: Tensor | None = None,
    backend: str = "auto",
    variant: str = "",
    trace: list | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Run ``cell`` over the sequence ``x`` for K population members.

    Args:
        cell: ``"tanh"``, ``"lstm"`` or ``"gru"``; or ``"relu"`` (``h = relu(W x + b + U h)``,
            torch's ``nonlinearity="relu"``), which has no fused kernel and runs the torch
            loop whatever ``backend`` says.
        x: ``(T, B, I)`` shared by all members, or ``(K, T, B, I)``.
        w_ih: ``(K, G*H, I)``; ``w_hh``: ``(K, G*H, H)``; ``b_ih``, ``b_hh``: ``(K, G*H)`` or
            None. Gate blocks in torch's order: LSTM i, f, g, o; GRU r, z, n.
        w_ch: LSTM peepholes ``(K, 3, H)``: diagonals for i and f (reading c_{t-1}) and for o
            (reading the new c_t); None for no peepholes.
        w_hr: LSTM projection ``(K, R, H)`` (torch's ``proj_size`` = R < H):
            ``h_t = W_hr (o_t * tanh(c_t))``, so ``h`` has R features and ``w_hh`` is
            ``(K, G*H, R)``; None for none. It has no fused kernel: the torch loop runs it
            whatever ``backend`` says.
        reset: GRU only: ``"before"`` (the paper, ``n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)``)
            or ``"after"`` (torch/cuDNN, ``n = tanh(W_in x + b_in + r*(W_hn h + b_hn))``).
        mask: ``(T, B)`` shared by all members, or ``(K, T, B)``, each member's own (members
            reading their own minibatches, issue 22); 1 on real steps and 0 on padding (padding
            only at the end of a sequence). Padded steps leave the state unchanged and output 0.
        h0, c0: ``(K, B, H)`` initial states, or None for zeros (``c0`` for LSTM only;
            ``h0`` is ``(K, B, R)`` with ``w_hr``).
        backend: ``"auto"``, ``"torch"`` or ``"numba"``. Under a ``torch.func`` transform
            (``grad``, ``vmap``, ...) ``"auto"`` runs the torch loop and ``"numba"`` raises
            (the custom operator has no functorch rules).
        variant: ``""`` (the full unit) or a variant name of :mod:`rnnbench.nn.variants`
            (LSTM ``np nig nfg nog niaf noaf cifg fb1``, GRU ``after nrg nug mgu``). A variant
            that removes gates has ``G`` = the gates it keeps (rows of ``w_ih``, ``w_hh``,
            ``b_*``: its blocks in the order i, f, g, o or r, z, n, MGU's f in the r block),
            and ``w_ch`` has one row per peephole it keeps. ``np`` asks for ``w_ch=None``;
            ``after`` is ``reset="after"``; ``fb1`` computes the full LSTM.
        trace: None, or a list that receives one dict per step of the sigmoid gates'
            activations, detached, ``(K, B, H)`` each (LSTM ``i f o``, GRU ``r z``, a variant
            the gates it keeps, e.g. MGU ``f``; padded steps included: mask them). Recorded
            by the torch loops, which then run.

    Returns:
        ``out (K, T, B, H)``, ``h_n (K, B, H)`` and ``c_n (K, B, H)`` for LSTM, else None
        (``out`` and ``h_n`` have R features with ``w_hr``).
    """
    variant, reset = _check(cell, x, w_ih, w_hh, w_ch, w_hr, reset, backend, variant, mask)
    xw = project_input(x, w_ih, b_ih)
    K, T, B, GH = xw.shape
    R = w_hh.shape[-1]
    H = w_hr.shape[-1] if w_hr is not None else R
    if h0 is None:
        h0 = xw.new_zeros(K, B, R)
    if cell == "lstm" and c0 is None:
        c0 = xw.new_zeros(K, B, H)
    fused = trace is None and cell != "relu" and w_hr is None
    if _use_numba(backend, xw, fused):
        from rnnbench.nn import ops

        return ops.run(cell, xw, w_hh, b_hh, w_ch, reset, mask, h0, c0, variant)
    if variant and variant != "fb1":
        return _torch_variant_loop(
            cell, variant, xw, w_hh, b_hh, w_ch, reset, mask, h0, c0, trace, w_hr
        )
    return _torch_loop(cell, xw, w_hh, b_hh, w_ch, reset, mask, h0, c0, trace, w_hr)


def project_input(x: Tensor, w_ih: Tensor, b_ih: Tensor | None) -> Tensor:
    """``W x + b_ih`` for every step and member in one batched matmul: ``(K, T, B, G*H)``
    (a gather of columns of ``W`` for binary sparse inputs where
    :func:`rnnbench.nn.sparse_input.enabled` allows it)."""
    gathered = sparse_input.project(x, w_ih, b_ih)
    if gathered is not None:
        return gathered
    K = w_ih.shape[0]
    T, B, I = x.shape[-3:]
    flat = x.reshape(1 if x.dim() == 3 else K, T * B, I).expand(K, T * B, I)
    if b_ih is None:
        xw = torch.bmm(flat, w_ih.transpose(1, 2))
    else:  # the bias in the product (one pass less; the same values as a product and an add)
        xw = torch.baddbmm(b_ih.unsqueeze(1), flat, w_ih.transpose(1, 2))
    return xw.reshape(K, T, B, -1)


_NUMBA = importlib.util.find_spec("numba") is not None


def numba_available() -> bool:
    """Whether numba is installed (looked up once, so compiled graphs do not trace imports)."""
    return _NUMBA


def _in_functorch_transform() -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, jacrev, ...) is running."""
    return not torch.compiler.is_compiling() and torch._C._are_functorch_transforms_active()


def _use_numba(backend: str, xw: Tensor, fused: bool = True) -> bool:
    """Whether the fused kernels run: never for ``fused=False`` (a trace, relu, a projection:
    the torch loop whatever ``backend``), nor for ``"auto"`` under a ``torch.func`` transform."""
    if backend == "torch" or not fused:
        return False
    if _in_functorch_transform():
        if backend == "numba":
            raise RnnbenchError(
                "torch.func transforms (grad, vmap, jacrev, ...) cannot run the numba "
                "backend's custom operator; build the module (or call run_unit) with "
                'backend="torch" (or "auto", which runs the torch loop under a transform).'
            )
        return False
    if backend == "numba":
        if xw.device.type != "cpu" or not numba_available():
            raise RnnbenchError(
                "backend='numba' needs numba installed and CPU tensors; use backend='auto'."
            )
        if xw.dtype not in (torch.float32, torch.float64):
            raise RnnbenchError("backend='numba' runs float32 and float64 only; use 'torch'.")
        return True
    return (
        xw.device.type == "cpu" and xw.dtype in (torch.float32, torch.float64) and numba_available()
    )


def _check(cell, x, w_ih, w_hh, w_ch, w_hr, reset, backend, variant, mask=None) -> tuple[str, str]:
    """Validate the arguments; returns the canonical ``(variant, reset)``."""
    if cell not in GATES:
        raise RnnbenchError(f"unknown cell {cell!r}; choose one of {sorted(GATES)}.")
    if reset not in RESETS:
        raise RnnbenchError(f"reset must be 'before' or 'after', not {reset!r}.")
    if variant == "np" and w_ch is not None:
        raise RnnbenchError("variant 'np' has no peepholes; pass w_ch=None.")
    variant, _, reset = _variants.resolve(cell, variant, w_ch is not None, reset)
    if backend not in BACKENDS:
        raise RnnbenchError(f"backend must be one of {BACKENDS}, not {backend!r}.")
    if x.dim() not in (3, 4):
        raise RnnbenchError(f"x must be (T, B, I) or (K, T, B, I), got shape {tuple(x.shape)}.")
    if mask is not None:
        _check_mask(mask, x, w_ih.shape[0])
    if w_ih.dim() != 3 or w_hh.dim() != 3:
        raise RnnbenchError("w_ih and w_hh need a leading population dimension K.")
    if w_hr is not None and cell != "lstm":
        raise RnnbenchError("projections (w_hr) exist for the LSTM only.")
    if w_hr is not None and (w_hr.dim() != 3 or w_hr.shape[1] != w_hh.shape[-1]):
        raise RnnbenchError(
            f"w_hr must be (K, R, H) with R = w_hh's last dimension {w_hh.shape[-1]}, got "
            f"shape {tuple(w_hr.shape)}."
        )
    H = w_hr.shape[-1] if w_hr is not None else w_hh.shape[-1]
    G = _variants.gate_count(cell, variant)
    name = f"{cell} {variant}".strip()
    if w_hh.shape[1] != G * H:
        raise RnnbenchError(
            f"w_hh has {w_hh.shape[1]} rows; a {name} unit of {H} units needs {G * H}."
        )
    if w_ch is not None and cell != "lstm":
        raise RnnbenchError("peepholes (w_ch) exist for the LSTM only.")
    if w_ch is not None and w_ch.shape[-2] != len(_variants.peephole_rows(cell, variant)):
        rows = len(_variants.peephole_rows(cell, variant))
        raise RnnbenchError(
            f"w_ch has {w_ch.shape[-2]} rows; a peephole {name} unit has {rows} (one per gate "
            "it keeps of i, f, o)."
        )
    return variant, reset


def _check_mask(mask: Tensor, x: Tensor, K: int) -> None:
    """A mask of ``x``'s steps and rows: ``(T, B)``, or ``(K, T, B)`` per member."""
    T, B = x.shape[-3:-1]
    if tuple(mask.shape) not in ((T, B), (K, T, B)):
        raise RnnbenchError(
            f"mask has shape {tuple(mask.shape)} but x has {T} steps of {B} rows and there are "
            f"{K} members; pass a ({T}, {B}) mask, or ({K}, {T}, {B}) with one per member."
        )


def _torch_loop(cell, xw, w_hh, b_hh, w_ch, reset, mask, h, c, trace=None, w_hr=None):
    """The reference: one autograd step per time step."""
    w_hh_t = w_hh.transpose(1, 2)
    w_hr_t = w_hr.transpose(1, 2) if w_hr is not None else None
    b_rec = b_hh.unsqueeze(1) if b_hh is not None else None
    if cell == "gru" and reset == "before":
        H = w_hh.shape[-1]
        w_rz_t, w_n_t = w_hh_t[:, :, : 2 * H], w_hh_t[:, :, 2 * H :]
        b_rz = b_rec[..., : 2 * H] if b_rec is not None else None
        b_n = b_rec[..., 2 * H :] if b_rec is not None else None
    steps = _step_masks(mask, xw)
    outs = []
    for xw_t, m in zip(xw.unbind(1), steps, strict=True):
        if cell == "gru" and reset == "before":
            h_new = _gru_before_step(xw_t, h, w_rz_t, w_n_t, b_rz, b_n, trace)
        else:
            gh = _affine(h, w_hh_t, b_rec)
            if cell == "tanh":
                h_new = torch.tanh(xw_t + gh)
            elif cell == "relu":
                h_new = torch.relu(xw_t + gh)
            elif cell == "gru":
                h_new = _gru_after_step(xw_t, gh, h, trace)
            else:
                h_new, c_new = _lstm_step(xw_t + gh, c, w_ch, trace)
                if w_hr_t is not None:
                    h_new = torch.bmm(h_new, w_hr_t)
        if m is None:
            h = h_new
            outs.append(h_new)
            if cell == "lstm":
                c = c_new
        else:
            h = m * h_new + (1 - m) * h
            outs.append(m * h_new)
            if cell == "lstm":
                c = m * c_new + (1 - m) * c
    return torch.stack(outs, 1), h, (c if cell == "lstm" else None)


def _step_masks(mask, xw) -> list:
    """Per step, the mask as ``(1 or K, B, 1)`` in ``xw``'s dtype (a ``(T, B)`` mask is shared
    by the members, a ``(K, T, B)`` one is each member's own); ``None`` per step without one."""
    if mask is None:
        return [None] * xw.shape[1]
    mask = mask.to(xw.dtype)
    return list((mask if mask.dim() == 3 else mask.unsqueeze(0)).unsqueeze(-1).unbind(1))


def _affine(h, w_t, b):
    return torch.bmm(h, w_t) if b is None else torch.baddbmm(b, h, w_t)


def _record(trace, **gates) -> None:
    """Append one step's gate activations to ``trace`` (nothing when it is None)."""
    if trace is not None:
        trace.append({name: g.detach() for name, g in gates.items()})


def _lstm_step(gates, c, w_ch, trace=None):
    i, f, g, o = gates.chunk(4, -1)
    if w_ch is not None:
        v_i, v_f, v_o = w_ch.unsqueeze(2).unbind(1)
        i = i + v_i * c
        f = f + v_f * c
    i, f = torch.sigmoid(i), torch.sigmoid(f)
    c_new = f * c + i * torch.tanh(g)
    if w_ch is not None:
        o = o + v_o * c_new
    o = torch.sigmoid(o)
    _record(trace, i=i, f=f, o=o)
    return o * torch.tanh(c_new), c_new


def _gru_after_step(xw_t, gh, h, trace=None):
    x_r, x_z, x_n = xw_t.chunk(3, -1)
    h_r, h_z, h_n = gh.chunk(3, -1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    _record(trace, r=r, z=z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def _gru_before_step(xw_t, h, w_rz_t, w_n_t, b_rz, b_n, trace=None):
    x_r, x_z, x_n = xw_t.chunk(3, -1)
    h_r, h_z = _affine(h, w_rz_t, b_rz).chunk(2, -1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    _record(trace, r=r, z=z)
    n = torch.tanh(x_n + _affine(r * h, w_n_t, b_n))
    return (1 - z) * n + z * h


def _torch_variant_loop(
    cell, variant, xw, w_hh, b_hh, w_ch, reset, mask, h, c, trace=None, w_hr=None
):
    """The reference of the variants (:mod:`rnnbench.nn.variants`): one autograd step per time
    step, each gate block by name."""
    H = w_hh.shape[-1]
    w_hr_t = w_hr.transpose(1, 2) if w_hr is not None else None
    names = _variants.gates(cell, variant)
    w_hh_t = w_hh.transpose(1, 2)
    b_rec = b_hh.unsqueeze(1) if b_hh is not None else None
    if cell == "lstm":
        rows = _variants.peephole_rows(cell, variant)
        peep = dict(zip(rows, w_ch.unsqueeze(2).unbind(1), strict=True)) if w_ch is not None else {}
    else:  # the gate block (all rows but n) and the n block
        w_s_t, w_n_t = w_hh_t[:, :, :H], w_hh_t[:, :, H:]
        b_s = b_rec[..., :H] if b_rec is not None else None
        b_n = b_rec[..., H:] if b_rec is not None else None
    steps = _step_masks(mask, xw)
    outs = []
    for xw_t, m in zip(xw.unbind(1), steps, strict=True):
        if cell == "lstm":
            blocks = (xw_t + _affine(h, w_hh_t, b_rec)).chunk(len(names), -1)
            gates = dict(zip(names, blocks, strict=True))
            h_new, c_new = _lstm_variant_step(variant, gates, c, peep, trace)
            if w_hr_t is not None:
                h_new = torch.bmm(h_new, w_hr_t)
        else:
            h_new = _gru_variant_step(variant, xw_t, h, w_s_t, w_n_t, b_s, b_n, reset, trace)
        if m is None:
            h = h_new
            outs.append(h_new)
            if cell == "lstm":
                c = c_new
        else:
            h = m * h_new + (1 - m) * h
            outs.append(m * h_new)
            if cell == "lstm":
                c = m * c_new + (1 - m) * c
    return torch.stack(outs, 1), h, (c if cell == "lstm" else None)


def _lstm_variant_step(variant, a, c, peep, trace=None):
    def gate(name, cell_state):
        if name not in a:
            return None
        if name in peep:
            return torch.sigmoid(a[name] + peep[name] * cell_state)
        return torch.sigmoid(a[name])

    i = gate("i", c)
    f = 1 - i if variant == "cifg" else gate("f", c)
    g = a["g"] if variant == "niaf" else torch.tanh(a["g"])
    c_new = (c if f is None else f * c) + (g if i is None else i * g)
    o = gate("o", c_new)
    _record(trace, **{k: v for k, v in (("i", i), ("f", f), ("o", o)) if v is not None})
    act = c_new if variant == "noaf" else torch.tanh(c_new)
    return (act if o is None else o * act), c_new


def _gru_variant_step(variant, xw_t, h, w_s_t, w_n_t, b_s, b_n, reset, trace=None):
    H = h.shape[-1]
    x_s, x_n = xw_t[..., :H], xw_t[..., H:]
    s = torch.sigmoid(x_s + _affine(h, w_s_t, b_s))
    _record(trace, **{_variants.gates("gru", variant)[0]: s})  # nrg: z, nug: r, mgu: f
    r = None if variant == "nrg" else s
    if reset == "before":
        n = torch.tanh(x_n + _affine(h if r is None else r * h, w_n_t, b_n))
    else:
        rec = _affine(h, w_n_t, b_n)
        n = torch.tanh(x_n + (rec if r is None else r * rec))
    if variant == "nug":
        return n
    if variant == "mgu":
        return (1 - s) * h + s * n
    return (1 - s) * n + s * h
