"""The LSTM unit, with or without the paper's diagonal peepholes."""

from __future__ import annotations

from torch.serialization import add_safe_globals

from rnnbench.nn.base import RecurrentUnit


class LSTM(RecurrentUnit):
    r"""Long short-term memory, with diagonal peepholes by default (the paper's form).

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
    With ``proj_size`` :math:`= R > 0`, :math:`h_t = W_{hr} (o_t \odot \tanh(c_t))`
    (torch's projection): :math:`h_t` has :math:`R` features, the gates read it through
    :math:`W_{h\ast}` of :math:`R` columns, :math:`c_t` keeps :math:`H_{out}`. It runs the
    torch loop whatever ``backend`` says (no fused kernel), in every form and variant.
    With ``peephole=False`` the :math:`v` terms vanish and the module is a drop-in
    :class:`torch.nn.LSTM`: same constructor (positional order included), parameters, state
    dict, inputs and outputs, ``proj_size`` included. The state dict of a
    ``peephole=True`` module or a ``variant`` records its form, and a state dict of another
    form is refused with a sentence naming the argument (a warning with ``strict=False``).

    Args:
        input_size: :math:`H_{in}`, the number of features of :math:`x_t`.
        hidden_size: :math:`H_{out}`, the number of units (features of :math:`h_t, c_t`).
        num_layers: stacked layers; layer :math:`l > 0` reads the output :math:`h_t` of
            layer :math:`l - 1` (both directions concatenated when bidirectional). Default 1.
        bias: if False, no :math:`b_{i\ast}, b_{h\ast}`. Default True.
        batch_first: if True, ``input`` and ``output`` are :math:`(N, L, \ast)` instead of
            :math:`(L, N, \ast)`; ``h_n`` and ``c_n`` are not affected. Default False.
        dropout: if non-zero, dropout with this probability on the output of every layer but
            the last, in training mode only (as torch). Default 0.
        bidirectional: if True, each layer also runs over the reversed sequence (parameters
            ``..._reverse``) and outputs both directions concatenated. Default False.
        proj_size: if > 0, the projection above, of this size (``0 <= proj_size <
            hidden_size``, as torch). Default 0.
        device, dtype: of the parameters, as torch's factory arguments.
        peephole: (keyword only) if True (the default, the paper's form), add
            :math:`v_i, v_f, v_o`; ``peephole=False`` is :class:`torch.nn.LSTM`.
        init: (keyword only) ``"torch"`` (default) or ``"paper"``; see *Initialisation*.
        backend: (keyword only) ``"auto"`` (default: the fused numba kernels on CPU, the torch
            loop elsewhere), ``"numba"`` or ``"torch"``; see
            :func:`rnnbench.nn.functional.run_unit`.
        variant: (keyword only) ``""`` (default, the unit above) or one of Greff et al.'s
            (2017) variants (:mod:`rnnbench.nn.variants`); a removed gate removes its rows of
            every weight and bias (of every layer and direction) and its peephole; the others
            keep theirs:

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
    :math:`D` = 2 if ``bidirectional`` else 1, :math:`H_{in}` = ``input_size`` and
    :math:`H_{out}` = ``hidden_size``:

    - ``input``: :math:`(L, N, H_{in})`, :math:`(N, L, H_{in})` when ``batch_first``,
      :math:`(L, H_{in})` unbatched, or a :class:`~torch.nn.utils.rnn.PackedSequence`
      (padded steps never change the state). Its dtype must be the parameters'.
    - ``hx``: optional tuple (or list) ``(h_0, c_0)``, each :math:`(D \cdot
      \text{num\_layers}, N, H_{out})`, or :math:`(D \cdot \text{num\_layers}, H_{out})`
      unbatched (:math:`R` features for ``h_0`` with a projection); zeros by default. Same
      dtype as ``input``.
    - ``output``: :math:`(L, N, D \cdot H_{out})` (:math:`(N, L, D \cdot H_{out})` when
      ``batch_first``, :math:`(L, D \cdot H_{out})` unbatched): :math:`h_t` of the last layer
      for every step, forward and reverse directions concatenated; a ``PackedSequence`` when
      the input was one (:math:`R` features in place of :math:`H_{out}` with a projection,
      for ``h_n`` too).
    - ``h_n``, ``c_n``: :math:`(D \cdot \text{num\_layers}, N, H_{out})`, the states after
      the last real step of each layer and direction (row :math:`l D + d`; the reverse
      direction's last step is the sequence's first).

    Parameters, named, shaped and ordered as in :class:`torch.nn.LSTM` (gate order i, f, g, o),
    for layer ``k`` (and with the suffix ``_reverse`` for the reverse direction):

    - ``weight_ih_lk``: :math:`(4 H_{out}, H_{in})` for ``k = 0``, else
      :math:`(4 H_{out}, D \cdot R)`: :math:`[W_{ii}; W_{if}; W_{ig}; W_{io}]`
      (:math:`R` = ``proj_size`` if > 0, else :math:`H_{out}`).
    - ``weight_hh_lk``: :math:`(4 H_{out}, R)`, :math:`[W_{hi}; W_{hf}; W_{hg}; W_{ho}]`.
    - ``bias_ih_lk``, ``bias_hh_lk``: :math:`(4 H_{out})`, in the same order.
    - ``weight_hr_lk`` (``proj_size > 0`` only): :math:`(R, H_{out})`, :math:`W_{hr}`.
    - ``weight_ch_lk`` (``peephole=True`` only): :math:`(3, H_{out})`, rows
      :math:`v_i, v_f, v_o`.

    Attributes as torch's: ``input_size``, ``hidden_size``, ``num_layers``, ``bias``,
    ``batch_first``, ``dropout``, ``bidirectional``, ``proj_size``, ``mode``
    (``"LSTM"``) and ``all_weights`` (the parameters of each layer and direction).

    Initialisation, with :math:`k = 1/H_{out}`:

    - ``init="torch"``: every parameter from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`, drawn
      as torch draws (``Tensor.uniform_`` in the parameter's dtype, in registration order):
      ``torch.manual_seed(s)`` then ``LSTM(..., peephole=False)`` gives
      ``torch.nn.LSTM(...)``'s tensors and leaves the generator where torch leaves it. The
      peephole form draws each layer and direction's ``weight_ch_lk`` after its other
      tensors; a variant draws each tensor at the full unit's shape and keeps its rows.
    - ``init="paper"`` (the authors' code): ``weight_ih_lk``, ``weight_hr_lk`` and
      ``weight_ch_lk`` from :math:`\mathcal{U}(-0.1, 0.1)`, each gate's :math:`H_{out} \times
      R` block of ``weight_hh_lk`` a random orthogonal matrix (orthonormal columns), biases
      zero.

    The draws use torch's global generator; call ``reset_parameters(generator)`` to use your own.

    .. note::
        The numba backend computes gradients with a hand-written backward pass (the custom
        operator ``rnnbench::fused_rnn``), so it supports first derivatives only: double
        backward raises and names ``backend="torch"``; under ``torch.func`` transforms
        (``grad``, ``vmap`` over ``functional_call``) ``backend="auto"`` runs the torch loop
        and ``"numba"`` raises the same way. Gradients that ``torch.autograd.grad`` returns
        are contiguous, as torch's. The module reads its weights through
        its attributes, so parametrizations (``torch.nn.utils.parametrizations.weight_norm``,
        ``orthogonal``) work. ``torch.compile`` (``fullgraph=True`` on padded input),
        ``torch.export`` and ``torch.jit.trace`` see one operator per layer on the numba
        backend (a trace of the torch backend unrolls, so fixes, the sequence length).
        ``torch.jit.script`` is not supported and raises one sentence saying so.
        On CPU both backends are deterministic for a given thread count; they agree with
        each other and with torch to rounding, not bit for bit.

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
        >>> stacked = LSTM(10, 20, 2, bidirectional=True, peephole=False)  # torch's order
        >>> output, (hn, cn) = stacked(input)
        >>> output.shape, hn.shape
        (torch.Size([5, 3, 40]), torch.Size([4, 3, 20]))
    """

    cell = "lstm"
    form = ("peephole",)
    paper_form = {"peephole": True}

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        peephole: bool = True,
        init: str = "torch",
        backend: str = "auto",
        variant: str = "",
    ) -> None:
        super().__init__(
            "LSTM",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device,
            dtype,
            init=init,
            backend=backend,
            peephole=peephole,
            variant=variant,
        )


# A whole module saved with torch.save(module) holds only tensors and plain attributes, so it
# may reload with torch.load(..., weights_only=True): importing the class allows it.
add_safe_globals([LSTM])
