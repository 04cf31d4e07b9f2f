r"""Parameter counting and matching: the paper's Table 1 and the budgets of the ablations.

Parameter counts (:func:`recurrent_params`, :func:`total_params`, :func:`count_params`,
:func:`match_hidden`) come in two conventions, because the paper and PyTorch differ:

- ``"paper"``: one bias vector per gate. This reproduces the paper's speech counts exactly
  (20 inputs; LSTM 195 units with 3 peephole vectors 169,065; GRU 227 units 168,888; tanh 400
  units 168,400): :math:`G H (I + H) + G H` (+ :math:`3H` peepholes).
- ``"torch"``: what our modules (and ``torch.nn``) actually hold, two bias vectors per gate
  (``bias_ih_l0`` and ``bias_hh_l0``): :math:`G H (I + H) + 2 G H` (+ :math:`3H`).

The paper's music counts (19.8k / 20.2k / 20.1k at 36 / 46 / 100 units) are not reproduced by
any of these conventions with 88 inputs (paper convention: 18,108 / 18,630 / 18,900; adding the
Linear(H, 88) output layer: 21,364 / 22,766 / 27,788). The recurrent layer alone in the paper
convention with a 100-dimensional input gives 19,836 / 20,286 / 20,100, which matches all
three when truncated to 0.1k (GRU rounds to 20.3k): possibly the authors counted their
93-108-dimensional rolls, near 100 inputs.

Variants (:mod:`rnnbench.nn.variants`) count their own ``G`` (the gates they keep) and
peepholes (one vector per gate they keep of i, f, o); every function takes ``variant``.
"""

from __future__ import annotations

from rnnbench.errors import RnnbenchError
from rnnbench.heads import BernoulliHead, GaussianMixtureHead, make_head
from rnnbench.nn import variants as _variants
from rnnbench.units import registry as _units  # plug-in units (issue 24); imports no user code

UNITS = ("lstm", "gru", "tanh")
GATES = {"tanh": 1, "gru": 3, "lstm": 4}
CONVENTIONS = ("paper", "torch")

#: The paper's two tasks (Table 1): sizes, heads and the parameter counts it reports.
#: ``paper_params`` are exact for speech and rounded to 0.1k for music (``paper_exact``).
TASKS: dict[str, dict] = {
    "music": {
        "in_dim": 88,
        "out_dim": 88,
        "head": "bernoulli",
        "hidden": {"lstm": 36, "gru": 46, "tanh": 100},
        "paper_params": {"lstm": 19_800, "gru": 20_200, "tanh": 20_100},
        "paper_exact": False,
    },
    "speech": {
        "in_dim": 20,
        "out_dim": 10,
        "head": "gmm",
        "components": 20,
        "hidden": {"lstm": 195, "gru": 227, "tanh": 400},
        "paper_params": {"lstm": 169_065, "gru": 168_888, "tanh": 168_400},
        "paper_exact": True,
    },
}


def _check_unit(unit: str) -> None:
    if unit not in GATES:
        _units.get(unit)  # a plug-in unit (rnnbench.units), or one sentence


def _check_task(task: str) -> dict:
    if task not in TASKS:
        raise RnnbenchError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    return TASKS[task]


# --------------------------------------------------------------------------- counting


def paper_hidden(task: str, unit: str, *, variant: str = "", peephole: bool = True) -> int:
    """The paper's hidden size (Table 1): music 36 / 46 / 100, speech 195 / 227 / 400 for
    lstm / gru / tanh, for both forms (``np``, ``after`` included). A ``variant`` that
    removes gates gets the size that matches the paper's model (the peephole LSTM, the GRU)
    at the paper's size, counted as :func:`match_hidden` counts by default: the recurrent
    layer, one bias per gate (``nig`` on music: 45 units, 18,180 against 18,108)."""
    _check_unit(unit)
    if unit not in GATES:  # a plug-in unit: matched to its budget_of unit at the paper's size
        return match_hidden(
            task, unit, count_params(task, _units.get(unit).budget_of)["recurrent_params"]
        )
    size = _check_task(task)["hidden"][unit]
    resolved, peephole, _ = _variants.resolve(unit, variant, peephole, "before")
    if resolved in ("", "fb1", "niaf", "noaf"):  # the full unit's parameters
        return size
    budget = count_params(task, unit, size)["recurrent_params"]
    return match_hidden(task, unit, budget, peephole=peephole, variant=variant)


def task_head(task: str) -> BernoulliHead | GaussianMixtureHead:
    """The paper's head for a task: Bernoulli over 88 notes (music), or a 20-component
    Gaussian mixture over 10 samples (speech)."""
    spec = _check_task(task)
    if spec["head"] == "gmm":
        return GaussianMixtureHead(spec["out_dim"], components=spec["components"])
    return BernoulliHead(spec["out_dim"])


def recurrent_params(
    unit: str,
    in_dim: int,
    hidden: int,
    peephole: bool = True,
    bias: bool = True,
    *,
    convention: str = "torch",
    variant: str = "",
) -> int:
    """Parameters of one recurrent layer.

    ``G H (I + H)`` weights, plus ``G H`` biases per bias vector (``convention="torch"``: two,
    ``bias_ih`` and ``bias_hh``, as our modules hold them; ``"paper"``: one, as the paper
    counts), plus ``P H`` peephole diagonals for an LSTM with ``peephole`` (ignored for the
    other units). ``G`` = 4 (LSTM), 3 (GRU), 1 (tanh), ``P`` = 3, or the gates and peepholes
    a ``variant`` keeps (``np``: no peepholes).
    """
    _check_unit(unit)
    if convention not in CONVENTIONS:
        raise RnnbenchError(f"unknown counting convention {convention!r}; use 'paper' or 'torch'.")
    if unit not in GATES:  # a plug-in unit: its declared tensors, in both conventions
        return _units.count(unit, int(in_dim), int(hidden))
    variant, peephole, _ = _variants.resolve(unit, variant, peephole, "before")
    g, h = _variants.gate_count(unit, variant), int(hidden)
    n = g * h * (int(in_dim) + h)
    if bias:
        n += (2 if convention == "torch" else 1) * g * h
    if peephole and unit == "lstm":
        n += len(_variants.peephole_rows(unit, variant)) * h
    return n


def output_params(hidden: int, n_outputs: int) -> int:
    """The output layer ``Linear(hidden, n_outputs)``: weights and bias."""
    return int(hidden) * int(n_outputs) + int(n_outputs)


def _resolve_head(head, out_dim: int):
    if isinstance(head, str):
        return make_head(head, out_dim)
    if not hasattr(head, "n_outputs") or not hasattr(head, "nll"):
        raise RnnbenchError(
            f"head must be 'bernoulli', 'gmm' or a head object, got {head!r}; see rnnbench.heads."
        )
    if head.out_dim != out_dim:
        raise RnnbenchError(
            f"the head models {head.out_dim}-dimensional frames but out_dim is {out_dim}; "
            "build the head with the same out_dim."
        )
    return head


def total_params(
    unit: str,
    in_dim: int,
    out_dim: int,
    hidden: int,
    *,
    head,
    peephole: bool = True,
    bias: bool = True,
    variant: str = "",
) -> int:
    """Parameters of one whole :class:`SequenceModel` member, as our modules hold them: the
    recurrent layer (``"torch"`` convention) plus ``Linear(hidden, head.n_outputs)``
    (music: ``Linear(H, 88)``; speech: ``Linear(H, 20 * (1 + 2 * 10))``)."""
    head = _resolve_head(head, out_dim)
    rec = recurrent_params(
        unit, in_dim, hidden, peephole, bias, convention="torch", variant=variant
    )
    return rec + output_params(hidden, head.n_outputs)


def count_params(
    task: str, unit: str, hidden: int | None = None, *, peephole: bool = True, variant: str = ""
) -> dict:
    """All counts for one unit on one of the paper's tasks (``hidden`` None: the paper's size).
    ``variant``: a name of :mod:`rnnbench.nn.variants` (``np`` is ``peephole=False``).

    Returns ``{"hidden", "recurrent_params"`` (the paper's convention, one bias per gate),
    ``"recurrent_params_torch"`` (our modules, two bias vectors), ``"total_params"`` (the whole
    model as our modules hold it), ``"paper_params"`` (Table 1's number for the paper's size,
    else None) and ``"paper_exact"`` (False: Table 1 rounds it)}.
    """
    spec = _check_task(task)
    _check_unit(unit)
    if hidden is None:  # the paper's size; a plug-in unit's matched size
        hidden = spec["hidden"][unit] if unit in GATES else paper_hidden(task, unit)
    h = int(hidden)
    if h < 1:
        raise RnnbenchError(f"hidden size must be at least 1, got {h}; pass a positive size.")
    in_dim = spec["in_dim"]
    variant, peephole, _ = _variants.resolve(unit, variant, peephole, "before")
    full = variant in ("", "fb1") and unit in GATES  # the paper's parameters
    paper_size = full and h == spec["hidden"][unit] and (peephole or unit != "lstm")
    v = {"variant": variant}
    return {
        "hidden": h,
        "recurrent_params": recurrent_params(unit, in_dim, h, peephole, convention="paper", **v),
        "recurrent_params_torch": recurrent_params(
            unit, in_dim, h, peephole, convention="torch", **v
        ),
        "total_params": total_params(
            unit, in_dim, spec["out_dim"], h, head=task_head(task), peephole=peephole, **v
        ),
        "paper_params": spec["paper_params"][unit] if paper_size else None,
        "paper_exact": spec["paper_exact"],
    }


def match_hidden(
    task: str,
    unit: str,
    budget: int,
    *,
    peephole: bool = True,
    count: str = "paper",
    variant: str = "",
) -> int:
    """The hidden size whose parameter count is closest to ``budget`` (ties: the smaller).

    ``count`` picks what is matched: ``"paper"`` (the recurrent layer, one bias per gate: the
    paper's convention, so the paper's budgets give back its sizes), ``"torch"`` (the recurrent
    layer as our modules hold it) or ``"total"`` (the whole model). A ``variant`` is matched
    by its own count: one that removes a gate gets more units at the same budget.
    """
    keys = {"paper": "recurrent_params", "torch": "recurrent_params_torch", "total": "total_params"}
    if count not in keys:
        raise RnnbenchError(f"unknown count {count!r}; use one of {', '.join(keys)}.")
    budget = int(budget)
    if budget < 1:
        raise RnnbenchError(f"the parameter budget must be positive, got {budget}.")
    _check_task(task)
    _check_unit(unit)

    def n(h: int) -> int:
        return count_params(task, unit, h, peephole=peephole, variant=variant)[keys[count]]

    # Counts grow strictly with h (quadratically): bracket the budget, then bisect.
    lo, hi = 1, 2
    while n(hi) < budget:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if n(mid) < budget:
            lo = mid
        else:
            hi = mid
    # Now n(lo) < budget <= n(hi), or budget <= n(1) with lo = 1.
    if n(lo) >= budget:
        return lo
    return lo if budget - n(lo) <= n(hi) - budget else hi


# --------------------------------------------------------------------------- the model
