r"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201) as
built-in units of the plug-in interface (:class:`rnnbench.units.Unit`).

Both compute their gates from the input alone, so the recurrence is linear in
:math:`h_{t-1}` and trains with the log-space parallel scan (:func:`rnnbench.units.scan.scan_log`);
``step`` is the same recurrence one step at a time (evaluation and sampling). The candidate
goes through Feng et al.'s :math:`g` (:func:`rnnbench.units.scan.g`), which keeps the state
positive so the scan can work with logarithms. Single layer, no output projection: the
model's output layer reads :math:`h_t` as it reads the paper's units'.
"""

from __future__ import annotations

import torch
from torch.nn.functional import softplus

from rnnbench.units.base import Unit, linear
from rnnbench.units.scan import g, log_g, scan_log

__all__ = ["MinGRU", "MinLSTM"]


def _lin(p, x, w: str, b: str):
    return linear(x, p[w], p[b])


class MinGRU(Unit):
    r"""minGRU: the GRU without the reset gate and without :math:`h_{t-1}` in its gates.

    .. math::
        z_t = \sigma(W_z x_t + b_z), \qquad \tilde h_t = g(W_h x_t + b_h), \qquad
        h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t.

    Log space (training): :math:`\log(1 - z_t) = -\mathrm{softplus}(k_t)`,
    :math:`\log z_t = -\mathrm{softplus}(-k_t)` with :math:`k_t = W_z x_t + b_z`, and
    :math:`\log b_t = \log z_t + \log g(W_h x_t + b_h)`. Parameters: :math:`2H(I + 1)`.
    """

    name = "mingru"
    state = ("h",)
    batched = True  # linear() and the scan along dimension -3 take a leading K
    noise = ("weight_z", "weight_h")
    budget_of = "gru"
    equation = "z = σ(W_z x + b_z), h̃ = g(W_h x + b_h), h = (1 − z) ⊙ h₋₁ + z ⊙ h̃"

    def shapes(self, I, H):  # noqa: N803
        return {"weight_z": (H, I), "bias_z": (H,), "weight_h": (H, I), "bias_h": (H,)}

    def gates(self, p, x, state):
        """The update gate :math:`z_t` (gate use in the ablation report)."""
        return {"z": torch.sigmoid(_lin(p, x, "weight_z", "bias_z"))}

    def step(self, p, x, state):
        (h,) = state
        z = torch.sigmoid(_lin(p, x, "weight_z", "bias_z"))
        return ((1 - z) * h + z * g(_lin(p, x, "weight_h", "bias_h")),)

    def sequence(self, p, x, state):
        (h0,) = state
        k = _lin(p, x, "weight_z", "bias_z")
        log_b = -softplus(-k) + log_g(_lin(p, x, "weight_h", "bias_h"))
        return (scan_log(-softplus(k), log_b, h0, dim=-3),)


class MinLSTM(Unit):
    r"""minLSTM: the LSTM without the output gate and the cell's tanh, gates from the input
    alone, forget and input gates normalised to sum to one.

    .. math::
        f_t = \sigma(W_f x_t + b_f), \quad i_t = \sigma(W_i x_t + b_i), \quad
        \tilde h_t = g(W_h x_t + b_h),

        f'_t = \frac{f_t}{f_t + i_t}, \quad i'_t = \frac{i_t}{f_t + i_t}, \quad
        h_t = f'_t \odot h_{t-1} + i'_t \odot \tilde h_t.

    Log space (training): with :math:`d_t = \mathrm{softplus}(-k^f_t) -
    \mathrm{softplus}(-k^i_t)`, :math:`\log f'_t = -\mathrm{softplus}(d_t)` and
    :math:`\log i'_t = -\mathrm{softplus}(-d_t)`. Parameters: :math:`3H(I + 1)`.
    """

    name = "minlstm"
    state = ("h",)
    batched = True
    noise = ("weight_f", "weight_i", "weight_h")
    budget_of = "lstm"
    equation = "f' = σ_f/(σ_f + σ_i), i' = σ_i/(σ_f + σ_i), h = f' ⊙ h₋₁ + i' ⊙ g(W_h x + b_h)"

    def shapes(self, I, H):  # noqa: N803
        return {
            "weight_f": (H, I),
            "bias_f": (H,),
            "weight_i": (H, I),
            "bias_i": (H,),
            "weight_h": (H, I),
            "bias_h": (H,),
        }

    def gates(self, p, x, state):
        """The normalised gates :math:`f'_t` and :math:`i'_t = 1 - f'_t` (gate use)."""
        f = torch.sigmoid(_lin(p, x, "weight_f", "bias_f"))
        i = torch.sigmoid(_lin(p, x, "weight_i", "bias_i"))
        return {"f": f / (f + i), "i": i / (f + i)}

    def step(self, p, x, state):
        (h,) = state
        f = torch.sigmoid(_lin(p, x, "weight_f", "bias_f"))
        i = torch.sigmoid(_lin(p, x, "weight_i", "bias_i"))
        return ((f * h + i * g(_lin(p, x, "weight_h", "bias_h"))) / (f + i),)

    def sequence(self, p, x, state):
        (h0,) = state
        d = softplus(-_lin(p, x, "weight_f", "bias_f")) - softplus(
            -_lin(p, x, "weight_i", "bias_i")
        )
        log_b = -softplus(-d) + log_g(_lin(p, x, "weight_h", "bias_h"))
        return (scan_log(-softplus(d), log_b, h0, dim=-3),)
