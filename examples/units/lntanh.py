r"""A layer-normalised tanh RNN as a user unit of rnnbench (docs/units.md).

.. math::
    h_t = \tanh\big(\mathrm{LN}(W x_t + U h_{t-1} + b)\big), \qquad
    \mathrm{LN}(a) = \gamma \odot \frac{a - \mu(a)}{\sigma(a)} + \beta.

Train it under the paper's protocol, beside the LSTM and GRU, at the GRU's parameter budget:

    rnnbench ablate --quick --unit examples/units/lntanh.py:LayerNormTanh
"""

import torch

from rnnbench.units import Unit


class LayerNormTanh(Unit):
    name = "lntanh"
    state = ("h",)
    budget_of = "gru"  # matched to the GRU's recurrent parameters at the paper's size
    equation = "h = tanh(LN(W x + U h₋₁ + b))"

    def shapes(self, I, H):  # noqa: N803
        return {"weight": (H, I), "recurrent": (H, H), "bias": (H,), "gain": (H,)}

    def init(self, I, H, generator):  # noqa: N803
        p = super().init(I, H, generator)  # U(-0.1, 0.1) matrices, zero vectors
        p["recurrent"] = torch.linalg.qr(torch.randn(H, H, generator=generator))[0]
        p["gain"] = torch.ones(H)
        return p

    def step(self, p, x, state):
        (h,) = state
        a = x @ p["weight"].T + h @ p["recurrent"].T
        a = torch.nn.functional.layer_norm(a, a.shape[-1:]) * p["gain"] + p["bias"]
        return (torch.tanh(a),)
