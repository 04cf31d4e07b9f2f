"""Recurrent units: drop-in one-layer ``torch.nn`` modules in the paper's and cuDNN's forms.

- :class:`RNN` (tanh), :class:`LSTM` (``peephole=True`` by default), :class:`GRU`
  (``reset="before"`` by default): same arguments, parameters and return values as their
  ``torch.nn`` namesakes with ``num_layers=1``.
- :func:`rnnbench.nn.functional.run_unit`: the functional form over a population of K models.
- :func:`rnnbench.nn.init.init_unit`: the "torch" and "paper" initialisation schemes.
- :mod:`rnnbench.nn.variants`: named variants of the LSTM and GRU for ablations
  (``LSTM(..., variant="nig")``, ``run_unit(..., variant="mgu")``; ``docs/variants.md``).
"""

from rnnbench.nn.functional import run_unit
from rnnbench.nn.gru import GRU
from rnnbench.nn.init import init_unit
from rnnbench.nn.lstm import LSTM
from rnnbench.nn.rnn import RNN

__all__ = ["GRU", "LSTM", "RNN", "init_unit", "run_unit"]
