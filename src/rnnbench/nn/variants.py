r"""Unit variants: named forms of the LSTM and the GRU with one part removed or changed (issue 13).

Each :class:`Variant` names a unit, what it changes, its equation, the gate blocks it keeps
(in the order their rows sit in ``w_ih``, ``w_hh``, ``b_ih``, ``b_hh``) and the peephole rows
it keeps. A removed gate removes its rows of every weight and bias, and its peephole: the unit
is smaller, and parameter matching gives it more units at the same budget.

The LSTM variants follow Greff et al. (2017), "LSTM: A Search Space Odyssey", which defines
them relative to the peephole LSTM: they keep the peepholes of the gates they keep (the
``peephole`` form still switches all of them off). The GRU variants are relative to the
paper's GRU (reset before the product; ``reset="after"`` still applies where a reset exists).

Two names are aliases of forms that existed before the variants, so that one model has one run
key: ``np`` is the LSTM's ``peephole=False`` and ``after`` is the GRU's ``reset="after"``.
:func:`resolve` maps them onto those forms and returns the empty variant ``""`` (the full
unit); everywhere a configuration is stored, only the canonical form is written.

================  =====================================================================
LSTM (full)       i = σ(a_i + v_i⊙c'), f = σ(a_f + v_f⊙c'), g = tanh(a_g),
                  c = f⊙c' + i⊙g, o = σ(a_o + v_o⊙c), h = o⊙tanh(c)
GRU (full)        r = σ(a_r), z = σ(a_z), n = tanh(W_n x + U_n(r⊙h') + b_n),
                  h = (1−z)⊙n + z⊙h'
================  =====================================================================

where ``a_* = W_* x + b_i* + U_* h' + b_h*``, ``h', c'`` the previous state.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnnbench.errors import RnnbenchError

#: Gate blocks of the full units, in torch's order.
FULL_GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "tanh": ("h",)}
#: Peephole rows of the full peephole LSTM.
FULL_PEEPHOLES = ("i", "f", "o")


@dataclass(frozen=True)
class Variant:
    """One named variant: ``unit``, ``name``, a one-line ``description``, its ``equation``, the
    gate blocks it keeps (``gates``, so ``G = len(gates)``), the peephole rows it keeps
    (``peepholes``, LSTM with ``peephole=True``), what it ``removes`` (words), the existing
    form it is an alias of (``alias``: a dict of form arguments), and ``source``."""

    unit: str
    name: str
    description: str
    equation: str
    gates: tuple[str, ...]
    peepholes: tuple[str, ...] = ()
    removes: str = "nothing"
    alias: dict | None = None
    source: str = ""

    @property
    def G(self) -> int:
        """Gate blocks of the variant's weights (rows of ``w_hh`` are ``G * H``)."""
        return len(self.gates)


_LSTM = "lstm"
_GRU = "gru"
_GREFF = "Greff et al. 2017"

VARIANTS: dict[tuple[str, str], Variant] = {
    (v.unit, v.name): v
    for v in (
        Variant(
            _LSTM,
            "np",
            "no peepholes (the cuDNN / torch.nn LSTM); an alias of peephole=False",
            "the full LSTM with v_i = v_f = v_o = 0",
            ("i", "f", "g", "o"),
            (),
            "the 3 peephole vectors",
            {"peephole": False},
            _GREFF,
        ),
        Variant(
            _LSTM,
            "nig",
            "no input gate (i = 1)",
            "c = f⊙c' + g",
            ("f", "g", "o"),
            ("f", "o"),
            "the input gate's rows and peephole",
            source=_GREFF,
        ),
        Variant(
            _LSTM,
            "nfg",
            "no forget gate (f = 1)",
            "c = c' + i⊙g",
            ("i", "g", "o"),
            ("i", "o"),
            "the forget gate's rows and peephole",
            source=_GREFF,
        ),
        Variant(
            _LSTM,
            "nog",
            "no output gate (o = 1)",
            "h = tanh(c)",
            ("i", "f", "g"),
            ("i", "f"),
            "the output gate's rows and peephole",
            source=_GREFF,
        ),
        Variant(
            _LSTM,
            "niaf",
            "no input activation function (g linear)",
            "g = a_g (no tanh)",
            ("i", "f", "g", "o"),
            ("i", "f", "o"),
            source=_GREFF,
        ),
        Variant(
            _LSTM,
            "noaf",
            "no output activation function (h = o ⊙ c)",
            "h = o⊙c (no tanh)",
            ("i", "f", "g", "o"),
            ("i", "f", "o"),
            source=_GREFF,
        ),
        Variant(
            _LSTM,
            "cifg",
            "coupled input and forget gate (f = 1 − i)",
            "c = (1−i)⊙c' + i⊙g",
            ("i", "g", "o"),
            ("i", "o"),
            "the forget gate's rows and peephole",
            source=_GREFF,
        ),
        Variant(
            _LSTM,
            "fb1",
            "forget-gate bias initialised to 1 (the function is the full LSTM's)",
            "the full LSTM; at init b_if = 1, b_hf = 0 (their sum, the gate's bias, is 1)",
            ("i", "f", "g", "o"),
            ("i", "f", "o"),
            source="Jozefowicz et al. 2015",
        ),
        Variant(
            _GRU,
            "after",
            "reset after the recurrent product (torch.nn / cuDNN); an alias of reset='after'",
            "n = tanh(W_n x + b_in + r⊙(U_n h' + b_hn))",
            ("r", "z", "n"),
            alias={"reset": "after"},
            source="cuDNN",
        ),
        Variant(
            _GRU,
            "nrg",
            "no reset gate (r = 1; reset before and after coincide)",
            "n = tanh(W_n x + U_n h' + b_n)",
            ("z", "n"),
            removes="the reset gate's rows",
        ),
        Variant(
            _GRU,
            "nug",
            "no update gate (the new state is the candidate)",
            "h = n",
            ("r", "n"),
            removes="the update gate's rows",
        ),
        Variant(
            _GRU,
            "mgu",
            "minimal gated unit: one gate f acts as reset and update",
            "f = σ(a_f), n = tanh(W_n x + U_n(f⊙h') + b_n), h = (1−f)⊙h' + f⊙n",
            ("f", "n"),
            removes="one of the two gates (f takes the reset gate's rows)",
            source="Zhou et al. 2016",
        ),
    )
}

#: Variant names per unit, in the issue's order.
NAMES: dict[str, tuple[str, ...]] = {
    unit: tuple(name for (u, name) in VARIANTS if u == unit) for unit in ("lstm", "gru", "tanh")
}


def get(unit: str, variant: str) -> Variant | None:
    """The :class:`Variant` named ``variant`` of ``unit`` (None for ``""``, the full unit);
    an :class:`RnnbenchError` naming the choices when there is no such variant."""
    if variant in ("", None):
        return None
    key = (unit, variant)
    if key not in VARIANTS:
        choices = ", ".join(NAMES.get(unit, ())) or "none"
        raise RnnbenchError(
            f"{unit} has no variant {variant!r}; use one of: {choices} (or '' for the full unit)."
        )
    return VARIANTS[key]


def resolve(unit: str, variant: str, peephole: bool, reset: str) -> tuple[str, bool, str]:
    """The canonical ``(variant, peephole, reset)`` of a form: aliases become the existing
    form (``np``: ``("", False, reset)``; ``after``: ``("", peephole, "after")``), ``nrg``
    drops ``reset`` (no reset gate: ``"before"``), and forms that do not apply to a unit are
    normalised as :class:`~rnnbench.train.config.RunConfig` does (peephole LSTM only, reset GRU
    only). Unknown names raise :class:`RnnbenchError`."""
    v = get(unit, variant)
    peephole = bool(peephole) and unit == "lstm"
    reset = reset if unit == "gru" else "before"
    if v is None:
        return "", peephole, reset
    if v.alias is not None:
        return "", bool(v.alias.get("peephole", peephole)), v.alias.get("reset", reset)
    if v.name == "nrg":
        reset = "before"
    return v.name, peephole, reset


def gates(unit: str, variant: str = "") -> tuple[str, ...]:
    """The gate blocks of a unit's variant, in row order."""
    v = get(unit, variant)
    return v.gates if v is not None else FULL_GATES[unit]


def gate_count(unit: str, variant: str = "") -> int:
    """``G``: gate blocks of the weights (tanh 1, GRU 3, LSTM 4 for the full units)."""
    return len(gates(unit, variant))


def peephole_rows(unit: str, variant: str = "") -> tuple[str, ...]:
    """The peephole rows a peephole LSTM variant keeps (``()`` for other units)."""
    if unit != "lstm":
        return ()
    v = get(unit, variant)
    return v.peepholes if v is not None else FULL_PEEPHOLES


def label(unit_label: str, variant: str) -> str:
    """``"LSTM nig"``: a unit's label with its variant (the label alone for the full unit)."""
    return f"{unit_label} {variant}" if variant else unit_label
