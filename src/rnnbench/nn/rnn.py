"""The plain tanh recurrent unit."""

from __future__ import annotations

from rnnbench.nn.base import RecurrentUnit


class RNN(RecurrentUnit):
    r"""One-layer Elman network with the tanh non-linearity (the paper's "tanh" unit).

    For each element of the input sequence, each step computes:

    .. math::
        h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    where :math:`x_t` is the input and :math:`h_t` the hidden state at time `t`
    (:math:`h_0` given by ``hx``, zeros by default), :math:`W_{ih}` the input weights,
    :math:`W_{hh}` the recurrent weights and :math:`b_{ih}, b_{hh}` the biases (the paper's
    single bias :math:`b` is their sum). The unit is exactly :class:`torch.nn.RNN` with
    ``nonlinearity="tanh"``: its state dict loads into this module and back.

    Args:
        input_size: :math:`H_{in}`, the number of features of :math:`x_t`.
        hidden_size: :math:`H_{out}`, the number of units (features of :math:`h_t`).
        bias: if False, no :math:`b_{ih}, b_{hh}`. Default True.
        batch_first: if True, ``input`` and ``output`` are :math:`(N, L, \ast)` instead of
            :math:`(L, N, \ast)`; ``h_n`` is not affected. Default False.
        init: ``"torch"`` (default) or ``"paper"``; see *Initialisation*.
        backend: ``"auto"`` (default: the fused numba kernels on CPU, the torch loop
            elsewhere), ``"numba"`` or ``"torch"``; see :func:`rnnbench.nn.functional.run_unit`.

    Shapes, with :math:`N` the batch size, :math:`L` the sequence length,
    :math:`H_{in}` = ``input_size`` and :math:`H_{out}` = ``hidden_size``:

    - ``input``: :math:`(L, N, H_{in})`, :math:`(N, L, H_{in})` when ``batch_first``,
      :math:`(L, H_{in})` unbatched, or a :class:`~torch.nn.utils.rnn.PackedSequence`
      (padded steps never change the state).
    - ``hx``: optional :math:`h_0`, :math:`(1, N, H_{out})` or :math:`(1, H_{out})` unbatched.
    - ``output``: :math:`(L, N, H_{out})` (:math:`(N, L, H_{out})` when ``batch_first``),
      :math:`h_t` for every step; a ``PackedSequence`` when the input was one.
    - ``h_n``: :math:`(1, N, H_{out})`, the state after the last real step.

    Parameters, named, shaped and ordered as in :class:`torch.nn.RNN`:

    - ``weight_ih_l0``: :math:`(H_{out}, H_{in})`, :math:`W_{ih}`.
    - ``weight_hh_l0``: :math:`(H_{out}, H_{out})`, :math:`W_{hh}`.
    - ``bias_ih_l0``, ``bias_hh_l0``: :math:`(H_{out})`.

    Initialisation, with :math:`k = 1/H_{out}`:

    - ``init="torch"``: every parameter from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`, as torch.
    - ``init="paper"`` (the authors' code): ``weight_ih_l0`` from :math:`\mathcal{U}(-0.1, 0.1)`,
      ``weight_hh_l0`` a random orthogonal matrix, biases zero.

    The draws use torch's global generator; call ``reset_parameters(generator)`` to use your own.

    .. note::
        The numba backend computes gradients with a hand-written backward pass, so it
        supports first derivatives only; use ``backend="torch"`` for double backward.
        On CPU both backends are deterministic for a given thread count.

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
        bias: bool = True,
        batch_first: bool = False,
        *,
        init: str = "torch",
        backend: str = "auto",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, batch_first, init, backend, device, dtype)
