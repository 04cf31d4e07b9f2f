"""The plain tanh recurrent unit."""

from __future__ import annotations

from torch.serialization import add_safe_globals

from rnnbench.nn.base import RecurrentUnit


class RNN(RecurrentUnit):
    r"""Elman network with the tanh non-linearity (the paper's "tanh" unit), or relu.

    For each element of the input sequence, each step computes:

    .. math::
        h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    where :math:`x_t` is the input and :math:`h_t` the hidden state at time `t`
    (:math:`h_0` given by ``hx``, zeros by default), :math:`W_{ih}` the input weights,
    :math:`W_{hh}` the recurrent weights and :math:`b_{ih}, b_{hh}` the biases (the paper's
    single bias :math:`b` is their sum); with ``nonlinearity="relu"``, :math:`\tanh` becomes
    :math:`\max(0, \cdot)`. The module is a drop-in :class:`torch.nn.RNN`: same constructor
    (positional order included), parameters, state dict, inputs and outputs.

    Args:
        input_size: :math:`H_{in}`, the number of features of :math:`x_t`.
        hidden_size: :math:`H_{out}`, the number of units (features of :math:`h_t`).
        num_layers: stacked layers; layer :math:`l > 0` reads the output :math:`h_t` of
            layer :math:`l - 1` (both directions concatenated when bidirectional). Default 1.
        nonlinearity: ``"tanh"`` (default, the paper's unit) or ``"relu"`` (:math:`\max(0,
            \cdot)` in place of :math:`\tanh`; it has no fused kernel and runs the torch loop
            whatever ``backend`` says).
        bias: if False, no :math:`b_{ih}, b_{hh}`. Default True.
        batch_first: if True, ``input`` and ``output`` are :math:`(N, L, \ast)` instead of
            :math:`(L, N, \ast)`; ``h_n`` is not affected. Default False.
        dropout: if non-zero, dropout with this probability on the output of every layer but
            the last, in training mode only (as torch). Default 0.
        bidirectional: if True, each layer also runs over the reversed sequence (parameters
            ``..._reverse``) and outputs both directions concatenated. Default False.
        device, dtype: of the parameters, as torch's factory arguments.
        init: (keyword only) ``"torch"`` (default) or ``"paper"``; see *Initialisation*.
        backend: (keyword only) ``"auto"`` (default: the fused numba kernels on CPU, the torch
            loop elsewhere), ``"numba"`` or ``"torch"``; see
            :func:`rnnbench.nn.functional.run_unit`.

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

    Parameters, named, shaped and ordered as in :class:`torch.nn.RNN`, for layer ``k`` (and
    with the suffix ``_reverse`` for the reverse direction):

    - ``weight_ih_lk``: :math:`(H_{out}, H_{in})` for ``k = 0``, else
      :math:`(H_{out}, D \cdot H_{out})`: :math:`W_{ih}`.
    - ``weight_hh_lk``: :math:`(H_{out}, H_{out})`, :math:`W_{hh}`.
    - ``bias_ih_lk``, ``bias_hh_lk``: :math:`(H_{out})`.

    Attributes as torch's: ``input_size``, ``hidden_size``, ``num_layers``, ``nonlinearity``,
    ``bias``, ``batch_first``, ``dropout``, ``bidirectional``, ``proj_size`` (0), ``mode``
    (``"RNN_TANH"`` or ``"RNN_RELU"``) and ``all_weights``.

    Initialisation, with :math:`k = 1/H_{out}`:

    - ``init="torch"``: every parameter from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`, drawn
      as torch draws (``Tensor.uniform_`` in the parameter's dtype, in registration order), so
      a seeded construction gives ``torch.nn.RNN``'s tensors and leaves the generator where
      torch leaves it.
    - ``init="paper"`` (the authors' code): ``weight_ih_lk`` from :math:`\mathcal{U}(-0.1, 0.1)`,
      ``weight_hh_lk`` a random orthogonal matrix, biases zero.

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
        >>> from rnnbench.nn import RNN
        >>> rnn = RNN(10, 20)
        >>> input = torch.randn(5, 3, 10)           # (L, N, H_in)
        >>> output, hn = rnn(input, torch.zeros(1, 3, 20))
        >>> output.shape, hn.shape
        (torch.Size([5, 3, 20]), torch.Size([1, 3, 20]))
        >>> rnn.load_state_dict(torch.nn.RNN(10, 20).state_dict())
        <All keys matched successfully>
    """

    cell = "tanh"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        init: str = "torch",
        backend: str = "auto",
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        self.cell = nonlinearity  # before the parameters: "tanh" or "relu" for run_unit
        super().__init__(
            "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU",
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
        )
        self.nonlinearity = nonlinearity


# A whole module saved with torch.save(module) holds only tensors and plain attributes, so it
# may reload with torch.load(..., weights_only=True): importing the class allows it.
add_safe_globals([RNN])
