"""The GRU unit, with the reset gate applied before (the paper) or after (cuDNN) the product."""

from __future__ import annotations

from rnnbench.nn.base import RecurrentUnit


class GRU(RecurrentUnit):
    r"""One-layer gated recurrent unit, reset gate before the recurrent product by default.

    For each element of the input sequence, each step computes:

    .. math::
        \begin{array}{ll}
        r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t = \tanh(W_{in} x_t + b_{in} + W_{hn} (r_t \odot h_{t-1}) + b_{hn})
            & \text{reset="before" (the paper)} \\
        n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))
            & \text{reset="after" (torch, cuDNN)} \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{array}

    where :math:`x_t` is the input and :math:`h_t` the hidden state at time `t`
    (:math:`h_0` given by ``hx``, zeros by default), :math:`r_t, z_t` the reset and update
    gates, :math:`n_t` the candidate state, :math:`W_{i\ast}` the input weights,
    :math:`W_{h\ast}` the recurrent weights, :math:`b_{i\ast}, b_{h\ast}` the biases,
    :math:`\sigma` the logistic sigmoid and :math:`\odot` the elementwise product.
    The update follows PyTorch's convention; the paper writes
    :math:`h_t = (1 - z_t) h_{t-1} + z_t \tilde h_t`, the same family with :math:`z \mapsto 1-z`.
    With ``reset="after"`` the unit is exactly :class:`torch.nn.GRU` (its state dict loads
    into this module and back). Both forms have the same parameters but compute different
    functions of them.

    Args:
        input_size: :math:`H_{in}`, the number of features of :math:`x_t`.
        hidden_size: :math:`H_{out}`, the number of units (features of :math:`h_t`).
        bias: if False, no :math:`b_{i\ast}, b_{h\ast}`. Default True.
        batch_first: if True, ``input`` and ``output`` are :math:`(N, L, \ast)` instead of
            :math:`(L, N, \ast)`; ``h_n`` is not affected. Default False.
        reset: ``"before"`` (default, the paper's form) or ``"after"`` (torch's form).
        init: ``"torch"`` (default) or ``"paper"``; see *Initialisation*.
        backend: ``"auto"`` (default: the fused numba kernels on CPU, the torch loop
            elsewhere), ``"numba"`` or ``"torch"``; see :func:`rnnbench.nn.functional.run_unit`.
        variant: ``""`` (default, the unit above) or a variant of :mod:`rnnbench.nn.variants`,
            keyword-only; a removed gate removes its rows of every weight and bias:

            - ``"after"``: the same as ``reset="after"``.
            - ``"nrg"``: :math:`r_t = 1`, :math:`n_t = \tanh(W_{in} x_t + b_{in} + W_{hn}
              h_{t-1} + b_{hn})` (gates z, n; ``reset`` no longer matters).
            - ``"nug"``: no update gate, :math:`h_t = n_t` (gates r, n).
            - ``"mgu"``: the minimal gated unit (Zhou et al. 2016), gates f, n (f in the r
              rows): :math:`f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf})`,
              :math:`n_t = \tanh(W_{in} x_t + b_{in} + W_{hn} (f_t \odot h_{t-1}) + b_{hn})`,
              :math:`h_t = (1 - f_t) \odot h_{t-1} + f_t \odot n_t` (``reset="after"``
              moves :math:`f_t` after the product, as for r).

    Shapes, with :math:`N` the batch size, :math:`L` the sequence length,
    :math:`H_{in}` = ``input_size`` and :math:`H_{out}` = ``hidden_size``:

    - ``input``: :math:`(L, N, H_{in})`, :math:`(N, L, H_{in})` when ``batch_first``,
      :math:`(L, H_{in})` unbatched, or a :class:`~torch.nn.utils.rnn.PackedSequence`
      (padded steps never change the state).
    - ``hx``: optional :math:`h_0`, :math:`(1, N, H_{out})` or :math:`(1, H_{out})` unbatched.
    - ``output``: :math:`(L, N, H_{out})` (:math:`(N, L, H_{out})` when ``batch_first``),
      :math:`h_t` for every step; a ``PackedSequence`` when the input was one.
    - ``h_n``: :math:`(1, N, H_{out})`, the state after the last real step.

    Parameters, named, shaped and ordered as in :class:`torch.nn.GRU` (gate order r, z, n):

    - ``weight_ih_l0``: :math:`(3 H_{out}, H_{in})`, :math:`[W_{ir}; W_{iz}; W_{in}]`.
    - ``weight_hh_l0``: :math:`(3 H_{out}, H_{out})`, :math:`[W_{hr}; W_{hz}; W_{hn}]`.
    - ``bias_ih_l0``, ``bias_hh_l0``: :math:`(3 H_{out})`, in the same order.

    Initialisation, with :math:`k = 1/H_{out}`:

    - ``init="torch"``: every parameter from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`, as torch.
    - ``init="paper"`` (the authors' code): ``weight_ih_l0`` from :math:`\mathcal{U}(-0.1, 0.1)`,
      each gate's :math:`H_{out} \times H_{out}` block of ``weight_hh_l0`` a random orthogonal
      matrix, biases zero.

    The draws use torch's global generator; call ``reset_parameters(generator)`` to use your own.

    .. note::
        The numba backend computes gradients with a hand-written backward pass, so it
        supports first derivatives only; use ``backend="torch"`` for double backward.
        On CPU both backends are deterministic for a given thread count.

    Examples::

        >>> import torch
        >>> from rnnbench.nn import GRU
        >>> rnn = GRU(10, 20)                       # reset before, the paper's form
        >>> input = torch.randn(5, 3, 10)           # (L, N, H_in)
        >>> output, hn = rnn(input, torch.zeros(1, 3, 20))
        >>> output.shape, hn.shape
        (torch.Size([5, 3, 20]), torch.Size([1, 3, 20]))
        >>> GRU(10, 20, reset="after").load_state_dict(torch.nn.GRU(10, 20).state_dict())
        <All keys matched successfully>
    """

    cell = "gru"
    form = ("reset",)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        batch_first: bool = False,
        reset: str = "before",
        *,
        init: str = "torch",
        backend: str = "auto",
        device=None,
        dtype=None,
        variant: str = "",
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            bias,
            batch_first,
            init,
            backend,
            device,
            dtype,
            reset=reset,
            variant=variant,
        )
