"""The GRU unit, with the reset gate applied before (the paper) or after (cuDNN) the product."""

from __future__ import annotations

from torch.serialization import add_safe_globals

from rnnbench.nn.base import RecurrentUnit


class GRU(RecurrentUnit):
    r"""Gated recurrent unit, reset gate before the recurrent product by default (the paper).

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
    With ``reset="after"`` the module is a drop-in :class:`torch.nn.GRU`: same constructor
    (positional order included), parameters, state dict, inputs and outputs. Both forms have
    the same parameters but compute different functions of them, so the state dict of a
    ``reset="before"`` module records its form (``_extra_state``), and a ``reset="before"``
    module refuses a state dict that does not say it is one (a ``torch.nn.GRU``'s), with a
    sentence naming ``reset="after"`` (a warning with ``strict=False``). A ``variant``'s state
    dict records the variant too, and any other form's is refused the same way.

    Args:
        input_size: :math:`H_{in}`, the number of features of :math:`x_t`.
        hidden_size: :math:`H_{out}`, the number of units (features of :math:`h_t`).
        num_layers: stacked layers; layer :math:`l > 0` reads the output :math:`h_t` of
            layer :math:`l - 1` (both directions concatenated when bidirectional). Default 1.
        bias: if False, no :math:`b_{i\ast}, b_{h\ast}`. Default True.
        batch_first: if True, ``input`` and ``output`` are :math:`(N, L, \ast)` instead of
            :math:`(L, N, \ast)`; ``h_n`` is not affected. Default False.
        dropout: if non-zero, dropout with this probability on the output of every layer but
            the last, in training mode only (as torch). Default 0.
        bidirectional: if True, each layer also runs over the reversed sequence (parameters
            ``..._reverse``) and outputs both directions concatenated. Default False.
        device, dtype: of the parameters, as torch's factory arguments.
        reset: (keyword only) ``"before"`` (default, the paper's form) or ``"after"``
            (:class:`torch.nn.GRU`'s form).
        init: (keyword only) ``"torch"`` (default) or ``"paper"``; see *Initialisation*.
        backend: (keyword only) ``"auto"`` (default: the fused numba kernels on CPU, the torch
            loop elsewhere), ``"numba"`` or ``"torch"``; see
            :func:`rnnbench.nn.functional.run_unit`.
        variant: (keyword only) ``""`` (default, the unit above) or a variant of
            :mod:`rnnbench.nn.variants`; a removed gate removes its rows of every weight and
            bias (of every layer and direction):

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
    :math:`D` = 2 if ``bidirectional`` else 1, :math:`H_{in}` = ``input_size`` and
    :math:`H_{out}` = ``hidden_size``:

    - ``input``: :math:`(L, N, H_{in})`, :math:`(N, L, H_{in})` when ``batch_first``,
      :math:`(L, H_{in})` unbatched, or a :class:`~torch.nn.utils.rnn.PackedSequence`
      (padded steps never change the state). Its dtype must be the parameters'.
    - ``hx``: optional :math:`h_0`, :math:`(D \cdot \text{num\_layers}, N, H_{out})`, or
      :math:`(D \cdot \text{num\_layers}, H_{out})` unbatched; zeros by default. Same dtype
      as ``input``.
    - ``output``: :math:`(L, N, D \cdot H_{out})` (:math:`(N, L, D \cdot H_{out})` when
      ``batch_first``, :math:`(L, D \cdot H_{out})` unbatched): :math:`h_t` of the last layer
      for every step, forward and reverse directions concatenated; a ``PackedSequence`` when
      the input was one.
    - ``h_n``: :math:`(D \cdot \text{num\_layers}, N, H_{out})`, the state after the last
      real step of each layer and direction (row :math:`l D + d`; the reverse direction's
      last step is the sequence's first).

    Parameters, named, shaped and ordered as in :class:`torch.nn.GRU` (gate order r, z, n),
    for layer ``k`` (and with the suffix ``_reverse`` for the reverse direction):

    - ``weight_ih_lk``: :math:`(3 H_{out}, H_{in})` for ``k = 0``, else
      :math:`(3 H_{out}, D \cdot H_{out})`: :math:`[W_{ir}; W_{iz}; W_{in}]`.
    - ``weight_hh_lk``: :math:`(3 H_{out}, H_{out})`, :math:`[W_{hr}; W_{hz}; W_{hn}]`.
    - ``bias_ih_lk``, ``bias_hh_lk``: :math:`(3 H_{out})`, in the same order.

    Attributes as torch's: ``input_size``, ``hidden_size``, ``num_layers``, ``bias``,
    ``batch_first``, ``dropout``, ``bidirectional``, ``proj_size`` (0), ``mode``
    (``"GRU"``) and ``all_weights`` (the parameters of each layer and direction).

    Initialisation, with :math:`k = 1/H_{out}`:

    - ``init="torch"``: every parameter from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`, drawn
      as torch draws (``Tensor.uniform_`` in the parameter's dtype, in registration order), so
      a seeded construction gives ``torch.nn.GRU``'s tensors (both forms; a variant draws the full
      unit's tensors and keeps its rows) and leaves the generator where
      torch leaves it.
    - ``init="paper"`` (the authors' code): ``weight_ih_lk`` from :math:`\mathcal{U}(-0.1, 0.1)`,
      each gate's :math:`H_{out} \times H_{out}` block of ``weight_hh_lk`` a random orthogonal
      matrix, biases zero.

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
        >>> from rnnbench.nn import GRU
        >>> rnn = GRU(10, 20)                       # reset before, the paper's form
        >>> input = torch.randn(5, 3, 10)           # (L, N, H_in)
        >>> output, hn = rnn(input, torch.zeros(1, 3, 20))
        >>> output.shape, hn.shape
        (torch.Size([5, 3, 20]), torch.Size([1, 3, 20]))
        >>> GRU(10, 20, reset="after").load_state_dict(torch.nn.GRU(10, 20).state_dict())
        <All keys matched successfully>
        >>> GRU(10, 20).load_state_dict(torch.nn.GRU(10, 20).state_dict())
        Traceback (most recent call last):
        ...
        RuntimeError: Error(s) in loading state_dict for GRU:...this state dict does not say...
    """

    cell = "gru"
    form = ("reset",)
    paper_form = {"reset": "before"}

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        reset: str = "before",
        init: str = "torch",
        backend: str = "auto",
        variant: str = "",
    ) -> None:
        super().__init__(
            "GRU",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            device,
            dtype,
            init=init,
            backend=backend,
            reset=reset,
            variant=variant,
        )


# A whole module saved with torch.save(module) holds only tensors and plain attributes, so it
# may reload with torch.load(..., weights_only=True): importing the class allows it.
add_safe_globals([GRU])
