"""Recurrent units: drop-in ``torch.nn`` modules in the paper's and cuDNN's forms.

- :class:`RNN` (tanh or relu), :class:`LSTM` (``peephole=True`` by default), :class:`GRU`
  (``reset="before"`` by default): torch's constructors (stacked, bidirectional, dropout),
  parameters, state dicts and return values; ``LSTM(peephole=False)`` and
  ``GRU(reset="after")`` compute exactly ``torch.nn.LSTM`` and ``torch.nn.GRU`` (``proj_size``
  included), and ``init="torch"`` draws exactly their weights. ``torch.jit.script`` is refused
  in one sentence. Importing the classes adds them to torch's safe globals
  (``torch.load(..., weights_only=True)`` of a whole saved module).
- :func:`rnnbench.nn.functional.run_unit`: the functional form over a population of K models.
- :func:`rnnbench.nn.init.init_unit`: the "torch" and "paper" initialisation schemes.
- :mod:`rnnbench.nn.variants`: named variants of the LSTM and GRU for ablations
  (``LSTM(..., variant="nig")``, ``run_unit(..., variant="mgu")``; ``docs/variants.md``).
"""

import sys
from importlib import import_module

__all__ = ["GRU", "LSTM", "RNN", "init_unit", "run_unit"]

# The names load torch on first use, not on import, so that light submodules
# (``rnnbench.nn.variants``, read while the CLI parses its arguments) stay light (PEP 562).
_HOME = {
    "GRU": "rnnbench.nn.gru",
    "LSTM": "rnnbench.nn.lstm",
    "RNN": "rnnbench.nn.rnn",
    "init_unit": "rnnbench.nn.init",
    "run_unit": "rnnbench.nn.functional",
}


def __getattr__(name: str):
    if name in _HOME:
        value = getattr(import_module(_HOME[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rnnbench.nn' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})


# torch.load(..., weights_only=True) of a whole saved module needs its class among torch's safe
# globals, which each class module adds when imported; when torch is already loaded, import
# them now (cheap then), so that "import torch, rnnbench.nn; torch.load(...)" works too.
if "torch" in sys.modules:
    for _name in ("GRU", "LSTM", "RNN"):
        __getattr__(_name)
    del _name
