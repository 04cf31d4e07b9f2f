r"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201) as
built-in units of the plug-in interface (:class:`rnnbench.units.Unit`).

Both compute their gates from the input alone, so the recurrence is linear in
:math:`h_{t-1}` and trains with the log-space parallel scan (:func:`rnnbench.units.scan.scan_log`);
``step`` is the same recurrence one step at a time (evaluation and sampling). The candidate
goes through Feng et al.'s :math:`g` (:func:`rnnbench.units.scan.g`), which keeps the state
positive so the scan can work with logarithms. Single layer, no output projection: the
model's output layer reads :math:`h_t` as it reads the paper's units'. The equations were
checked against the authors' code (``BorealisAI/minRNNs``, ``models/minRNNs.py``, commit
ff52e9de; ``docs/units.md`` says what could not be checked).

``mingru2`` and ``minlstm2`` stack two such layers at the same budget (the second layer reads the
first layer's states, so its gates depend on the past through them): Feng et al.'s models
stack layers (their code, ``BorealisAI/minRNNs`` ``models/model.py``, builds ``depth`` blocks).
Their blocks also add normalisation, a residual connection, an output projection and optional
convolution and feed-forward layers; these stacks have none of them (named departures).
"""

from __future__ import annotations

import torch
from torch.nn.functional import softplus

from rnnbench.units.base import Unit, linear
from rnnbench.units.scan import g, log_g, scan_log

__all__ = ["MinGRU", "MinGRU2", "MinLSTM", "MinLSTM2"]


def _lin(p, x, w: str, b: str):
    return linear(x, p[w], p[b])


def _gru_layer_step(p, x, h, s: str = ""):
    z = torch.sigmoid(_lin(p, x, "weight_z" + s, "bias_z" + s))
    return (1 - z) * h + z * g(_lin(p, x, "weight_h" + s, "bias_h" + s))


def _gru_layer_sequence(p, x, h0, s: str = ""):
    k = _lin(p, x, "weight_z" + s, "bias_z" + s)
    log_b = -softplus(-k) + log_g(_lin(p, x, "weight_h" + s, "bias_h" + s))
    return scan_log(-softplus(k), log_b, h0, dim=-3)


def _lstm_layer_step(p, x, h, s: str = ""):
    f = torch.sigmoid(_lin(p, x, "weight_f" + s, "bias_f" + s))
    i = torch.sigmoid(_lin(p, x, "weight_i" + s, "bias_i" + s))
    return (f * h + i * g(_lin(p, x, "weight_h" + s, "bias_h" + s))) / (f + i)


def _lstm_layer_sequence(p, x, h0, s: str = ""):
    d = softplus(-_lin(p, x, "weight_f" + s, "bias_f" + s)) - softplus(
        -_lin(p, x, "weight_i" + s, "bias_i" + s)
    )
    log_b = -softplus(-d) + log_g(_lin(p, x, "weight_h" + s, "bias_h" + s))
    return scan_log(-softplus(d), log_b, h0, dim=-3)


def _gru_layer_gates(p, x, s: str = ""):
    return {"z": torch.sigmoid(_lin(p, x, "weight_z" + s, "bias_z" + s))}


def _lstm_layer_gates(p, x, s: str = ""):
    f = torch.sigmoid(_lin(p, x, "weight_f" + s, "bias_f" + s))
    i = torch.sigmoid(_lin(p, x, "weight_i" + s, "bias_i" + s))
    return {"f": f / (f + i), "i": i / (f + i)}


def _layer_shapes(gates: str, n_in: int, H: int, s: str) -> dict:  # noqa: N803
    out = {}
    for gate in gates:
        out[f"weight_{gate}{s}"] = (H, n_in)
        out[f"bias_{gate}{s}"] = (H,)
    return out


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
        return _gru_layer_gates(p, x)

    def step(self, p, x, state):
        return (_gru_layer_step(p, x, state[0]),)

    def sequence(self, p, x, state):
        return (_gru_layer_sequence(p, x, state[0]),)


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
        return _lstm_layer_gates(p, x)

    def step(self, p, x, state):
        return (_lstm_layer_step(p, x, state[0]),)

    def sequence(self, p, x, state):
        return (_lstm_layer_sequence(p, x, state[0]),)


class _TwoLayers(Unit):
    """Two layers of one minimal unit, the second reading the first's states; the subclasses
    name the layer's functions, its gate letters and the gate reported for each layer."""

    state = ("h", "h1")
    batched = True
    letters = ""  # the layer's parameters: weight_<letter>, bias_<letter> per letter
    reported = ""  # the gate whose use the report shows, per layer
    layer_step = layer_sequence = layer_gates = None

    def shapes(self, I, H):  # noqa: N803
        return {**_layer_shapes(self.letters, I, H, "1"), **_layer_shapes(self.letters, H, H, "")}

    def gates(self, p, x, state):
        """Each layer's reported gate, ``<gate>1`` (first layer) and ``<gate>2`` (second)."""
        h1 = self.layer_step(p, x, state[1], "1")
        lower, upper = self.layer_gates(p, x, "1"), self.layer_gates(p, h1)
        return {
            f"{self.reported}1": lower[self.reported],
            f"{self.reported}2": upper[self.reported],
        }

    def step(self, p, x, state):
        h, h1 = state
        h1 = self.layer_step(p, x, h1, "1")
        return (self.layer_step(p, h1, h), h1)

    def sequence(self, p, x, state):
        h, h1 = state
        seq1 = self.layer_sequence(p, x, h1, "1")
        return (self.layer_sequence(p, seq1, h), seq1)


class MinGRU2(_TwoLayers):
    r"""Two stacked minGRU layers (Feng et al.'s models stack layers; see the module docstring).

    .. math::
        h^{(1)}_t = \mathrm{minGRU}_1(x_t, h^{(1)}_{t-1}), \qquad
        h_t = \mathrm{minGRU}_2(h^{(1)}_t, h_{t-1}),

    each layer :math:`z = \sigma(W_z u + b_z)`, :math:`h = (1 - z) \odot h_{-1} + z \odot
    g(W_h u + b_h)` on its input :math:`u`. The second layer's gates read :math:`h^{(1)}_t`,
    which depends on every earlier input. Both layers train with the log-space scan, one after
    the other. Parameters: :math:`2H(I + 1) + 2H(H + 1)`, matched to the GRU's budget as a
    whole. State: ``("h", "h1")``, the top layer first (the output). Gate use: ``z1``, ``z2``.
    """

    name = "mingru2"
    noise = ("weight_z1", "weight_h1", "weight_z", "weight_h")
    budget_of = "gru"
    equation = "two minGRU layers: h¹ = minGRU(x, h¹₋₁), h = minGRU(h¹, h₋₁)"
    letters, reported = "zh", "z"
    layer_step = staticmethod(_gru_layer_step)
    layer_sequence = staticmethod(_gru_layer_sequence)
    layer_gates = staticmethod(_gru_layer_gates)


class MinLSTM2(_TwoLayers):
    r"""Two stacked minLSTM layers (Feng et al.'s models stack layers; see the module docstring).

    .. math::
        h^{(1)}_t = \mathrm{minLSTM}_1(x_t, h^{(1)}_{t-1}), \qquad
        h_t = \mathrm{minLSTM}_2(h^{(1)}_t, h_{t-1}),

    each layer as :class:`MinLSTM` on its input. Parameters: :math:`3H(I + 1) + 3H(H + 1)`,
    matched to the LSTM's budget as a whole. State: ``("h", "h1")``, the top layer first. Gate
    use: the normalised forget gates ``f1``, ``f2`` (each layer's :math:`i' = 1 - f'`).
    """

    name = "minlstm2"
    noise = ("weight_f1", "weight_i1", "weight_h1", "weight_f", "weight_i", "weight_h")
    budget_of = "lstm"
    equation = "two minLSTM layers: h¹ = minLSTM(x, h¹₋₁), h = minLSTM(h¹, h₋₁)"
    letters, reported = "fih", "f"
    layer_step = staticmethod(_lstm_layer_step)
    layer_sequence = staticmethod(_lstm_layer_sequence)
    layer_gates = staticmethod(_lstm_layer_gates)
