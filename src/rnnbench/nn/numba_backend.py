"""The fused CPU kernels' former single module, kept for the names it exported: the kernels
now live in :mod:`rnnbench.nn.kernels`, one module per unit family."""

from rnnbench.nn.kernels.glue import backward, forward
from rnnbench.nn.kernels.gru import (
    gru_backward,
    gru_forward,
    gru_variant_backward,
    gru_variant_forward,
)
from rnnbench.nn.kernels.lstm import (
    lstm_backward,
    lstm_forward,
    lstm_variant_backward,
    lstm_variant_forward,
)
from rnnbench.nn.kernels.tanh import tanh_backward, tanh_forward

__all__ = [
    "backward",
    "forward",
    "gru_backward",
    "gru_forward",
    "gru_variant_backward",
    "gru_variant_forward",
    "lstm_backward",
    "lstm_forward",
    "lstm_variant_backward",
    "lstm_variant_forward",
    "tanh_backward",
    "tanh_forward",
]
