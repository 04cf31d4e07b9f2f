"""The LSTM unit, with or without the paper's diagonal peepholes."""

from __future__ import annotations

from rnnbench.nn.base import RecurrentUnit


class LSTM(RecurrentUnit):
    r"""One-layer long short-term memory, with diagonal peepholes by default (the paper's form).

    For each element of the input sequence, each step computes:

    .. math::
        \begin{array}{ll}
        i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi} + v_i \odot c_{t-1}) \\
        f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf} + v_f \odot c_{t-1}) \\
        g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho} + v_o \odot c_t) \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    where :math:`x_t` is the input at time `t`, :math:`h_t` the hidden state and :math:`c_t`
    the cell state at time `t` (:math:`h_0, c_0` given by ``hx``, zeros by default),
    :math:`i_t, f_t, g_t, o_t` the input gate, forget gate, cell candidate and output gate,
    :math:`W_{i\ast}` the input weights, :math:`W_{h\ast}` the recurrent weights,
    :math:`b_{i\ast}, b_{h\ast}` the biases, :math:`v_i, v_f, v_o` the peephole diagonals,
    :math:`\sigma` the logistic sigmoid and :math:`\odot` the elementwise product.
    The input and forget gates peek at the previous cell :math:`c_{t-1}`; the output gate
    peeks at the new cell :math:`c_t` (Graves 2013, as in Chung et al. 2014).
    With ``peephole=False`` the :math:`v` terms vanish and the unit is exactly
    :class:`torch.nn.LSTM` (its state dict loads into this module and back).

    Args:
        input_size: :math:`H_{in}`, the number of features of :math:`x_t`.
        hidden_size: :math:`H_{out}`, the number of units (features of :math:`h_t, c_t`).
        bias: if False, no :math:`b_{i\ast}, b_{h\ast}`. Default True.
        batch_first: if True, ``input`` and ``output`` are :math:`(N, L, \ast)` instead of
            :math:`(L, N, \ast)`; ``h_n`` and ``c_n`` are not affected. Default False.
        peephole: if True (the default, the paper's form), add :math:`v_i, v_f, v_o`.
        init: ``"torch"`` (default) or ``"paper"``; see *Initialisation*.
        backend: ``"auto"`` (default: the fused numba kernels on CPU, the torch loop
            elsewhere), ``"numba"`` or ``"torch"``; see :func:`rnnbench.nn.functional.run_unit`.
        variant: ``""`` (default, the unit above) or one of Greff et al.'s (2017) variants
            (:mod:`rnnbench.nn.variants`), keyword-only; a removed gate removes its rows of
            every weight and bias and its peephole; the others keep theirs:

            - ``"np"``: no peepholes, the same as ``peephole=False``.
            - ``"nig"``: :math:`i_t = 1`, :math:`c_t = f_t \odot c_{t-1} + g_t` (gates f, g, o).
            - ``"nfg"``: :math:`f_t = 1`, :math:`c_t = c_{t-1} + i_t \odot g_t` (gates i, g, o).
            - ``"nog"``: :math:`o_t = 1`, :math:`h_t = \tanh(c_t)` (gates i, f, g).
            - ``"niaf"``: :math:`g_t = W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}` (linear).
            - ``"noaf"``: :math:`h_t = o_t \odot c_t`.
            - ``"cifg"``: :math:`f_t = 1 - i_t` (gates i, g, o; peepholes i, o).
            - ``"fb1"``: the unit above, with the forget-gate bias 1 at init
              (:math:`b_{if} = 1, b_{hf} = 0`; Jozefowicz et al. 2015).

    Shapes, with :math:`N` the batch size, :math:`L` the sequence length,
    :math:`H_{in}` = ``input_size`` and :math:`H_{out}` = ``hidden_size``:

    - ``input``: :math:`(L, N, H_{in})`, :math:`(N, L, H_{in})` when ``batch_first``,
      :math:`(L, H_{in})` unbatched, or a :class:`~torch.nn.utils.rnn.PackedSequence`
      (padded steps never change the state).
    - ``hx``: optional tuple ``(h_0, c_0)``, each :math:`(1, N, H_{out})` or
      :math:`(1, H_{out})` unbatched.
    - ``output``: :math:`(L, N, H_{out})` (:math:`(N, L, H_{out})` when ``batch_first``),
      :math:`h_t` for every step; a ``PackedSequence`` when the input was one.
    - ``h_n``, ``c_n``: :math:`(1, N, H_{out})`, the states after the last real step.

    Parameters, named, shaped and ordered as in :class:`torch.nn.LSTM` (gate order i, f, g, o):

    - ``weight_ih_l0``: :math:`(4 H_{out}, H_{in})`, :math:`[W_{ii}; W_{if}; W_{ig}; W_{io}]`.
    - ``weight_hh_l0``: :math:`(4 H_{out}, H_{out})`, :math:`[W_{hi}; W_{hf}; W_{hg}; W_{ho}]`.
    - ``bias_ih_l0``, ``bias_hh_l0``: :math:`(4 H_{out})`, in the same order.
    - ``weight_ch_l0`` (``peephole=True`` only): :math:`(3, H_{out})`, rows
      :math:`v_i, v_f, v_o`.

    Initialisation, with :math:`k = 1/H_{out}`:

    - ``init="torch"``: every parameter from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`, as torch.
    - ``init="paper"`` (the authors' code): ``weight_ih_l0`` and ``weight_ch_l0`` from
      :math:`\mathcal{U}(-0.1, 0.1)`, each gate's :math:`H_{out} \times H_{out}` block of
      ``weight_hh_l0`` a random orthogonal matrix, biases zero.

    The draws use torch's global generator; call ``reset_parameters(generator)`` to use your own.

    .. note::
        The numba backend computes gradients with a hand-written backward pass, so it
        supports first derivatives only; use ``backend="torch"`` for double backward.
        On CPU both backends are deterministic for a given thread count.
        Results agree with the torch backend to rounding, not bit for bit.

    Examples::

        >>> import torch
        >>> from rnnbench.nn import LSTM
        >>> rnn = LSTM(10, 20)                      # peephole LSTM, the paper's form
        >>> input = torch.randn(5, 3, 10)           # (L, N, H_in)
        >>> h0, c0 = torch.zeros(1, 3, 20), torch.zeros(1, 3, 20)
        >>> output, (hn, cn) = rnn(input, (h0, c0))
        >>> output.shape, hn.shape
        (torch.Size([5, 3, 20]), torch.Size([1, 3, 20]))
        >>> native = torch.nn.LSTM(10, 20)
        >>> LSTM(10, 20, peephole=False).load_state_dict(native.state_dict())
        <All keys matched successfully>
    """

    cell = "lstm"
    form = ("peephole",)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        batch_first: bool = False,
        peephole: bool = True,
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
            peephole=peephole,
            variant=variant,
        )
