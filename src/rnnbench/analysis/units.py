"""The one place where the ablations meet the unit variants (issue 13 §1): names, configs, sizes.

A *variant spec* names a unit and one of its variants: ``lstm`` (the paper's peephole LSTM),
``lstm:nig``, ``gru`` (the paper's reset-before GRU), ``gru:mgu``. The variants are those of
:mod:`rnnbench.nn.variants` (``RunConfig.variant``, ``SequenceModel(..., variant=...)``,
``match_hidden(..., variant=...)``); ``np`` and ``after`` are the older forms
``peephole=False`` and ``reset="after"``. Everything the ablation command and analyses need
from that interface goes through the functions here, so a renamed argument is fixed once.

Parameter matching: by default each variant gets the hidden size whose recurrent-layer count
(the paper's convention: weights, one bias per gate, the peepholes it keeps) is closest to its
full unit's at the paper's size (Table 1: LSTM 36 / GRU 46 units on music, 195 / 227 on
speech), so the full units keep the paper's sizes and a variant without a gate gets more units.
``budget`` matches every variant to that one count instead.

Plug-in units (:mod:`rnnbench.units`: ``mingru``, ``minlstm``, and any unit ``--unit`` loaded)
are specs of their own (``mingru``, ``indrnn``), matched to the paper-size count of their
``budget_of`` unit, and compared with both full units. The report names them from the store
alone: nothing here imports a user's unit (:func:`is_plugin`, :func:`label` need only names).
"""

from __future__ import annotations

from rnnbench.errors import RnnbenchError

UNITS = ("lstm", "gru")
# The names, used when rnnbench.nn.variants is not in this build (only the two forms
# that predate the variants, np and after, can then be trained).
KNOWN = {
    "lstm": ("np", "nig", "nfg", "nog", "niaf", "noaf", "cifg", "fb1"),
    "gru": ("after", "nrg", "nug", "mgu"),
}
FORMS = {"np": {"peephole": False}, "after": {"reset": "after"}}  # variants that are forms


def has_variants() -> bool:
    """Whether this build has the variants of :mod:`rnnbench.nn.variants`."""
    from rnnbench.train.config import RunConfig

    return "variant" in RunConfig.__dataclass_fields__


def names(unit: str) -> tuple[str, ...]:
    """The variant names of ``unit`` (issue 13's table order)."""
    try:
        from rnnbench.nn.variants import NAMES

        return tuple(NAMES.get(unit, ()))
    except ImportError:
        return KNOWN.get(unit, ())


def available(unit: str) -> tuple[str, ...]:
    """The variants of ``unit`` this build can train."""
    return names(unit) if has_variants() else tuple(v for v in names(unit) if v in FORMS)


def all_specs() -> list[str]:
    """Every trainable spec: each full unit followed by its variants."""
    return [s for u in UNITS for s in (u, *(f"{u}:{v}" for v in available(u)))]


def is_plugin(unit: str) -> bool:
    """A unit of the plug-in interface (not tanh, the LSTM or the GRU); names only."""
    return unit not in ("tanh", *UNITS)


def can_build(unit: str) -> bool:
    """Whether this process can build the unit's model: a built-in, or a user unit that
    ``--unit`` loaded (a report never imports one)."""
    from rnnbench.units import registry

    return not is_plugin(unit) or registry.known(unit)


def parse(spec: str) -> tuple[str, str]:
    """``"lstm:nig"`` -> ``("lstm", "nig")``; ``"gru"`` -> ``("gru", "")``; a plug-in unit
    (``mingru``, or one ``--unit`` loaded) -> ``(name, "")``. One sentence when the unit or
    variant does not exist or this build cannot train it."""
    from rnnbench.units import registry

    unit, _, variant = spec.strip().partition(":")
    if is_plugin(unit) and registry.known(unit) and not variant:
        return unit, ""
    if unit not in UNITS:
        raise RnnbenchError(
            f"--variants {spec}: the ablations cover lstm and gru, their variants and the "
            "plug-in units (mingru, minlstm, or yours with --unit path/to/cell.py:Class); name "
            "one as UNIT or UNIT:VARIANT (e.g. lstm, lstm:nig, gru:mgu, mingru)."
        )
    if variant and variant not in names(unit):
        raise RnnbenchError(
            f"--variants {spec}: {unit} has no variant {variant!r}; use one of "
            f"{', '.join(names(unit))}."
        )
    if variant and variant not in available(unit):
        raise RnnbenchError(
            f"--variants {spec}: this rnnbench has no unit variants yet (issue 13 §1); only "
            f"{', '.join(all_specs())} can be trained."
        )
    return unit, variant


def label(unit: str, variant: str) -> str:
    """``"LSTM"``, ``"LSTM nig"``, ``"GRU mgu"``."""
    name = {
        "lstm": "LSTM",
        "gru": "GRU",
        "mingru": "minGRU",
        "minlstm": "minLSTM",
        "mingru2": "minGRU2",
        "minlstm2": "minLSTM2",
    }.get(unit, unit)
    return f"{name} {variant}" if variant else name


def spec_of(unit: str, variant: str) -> str:
    return f"{unit}:{variant}" if variant else unit


def config_fields(unit: str, variant: str) -> dict:
    """The RunConfig fields (besides ``unit``) that select the variant (a plug-in unit: its
    source)."""
    if is_plugin(unit):
        from rnnbench.units.registry import source_of

        return {"unit_source": source_of(unit)} if source_of(unit) else {}
    if not variant:
        return {}
    if variant in FORMS:
        return dict(FORMS[variant])
    return {"variant": variant}


def variant_of(config: dict) -> str:
    """A stored config's variant name (``""`` for the paper's full unit), ``np`` and ``after``
    included."""
    if config.get("variant"):
        return str(config["variant"])
    if config.get("unit") == "lstm" and not config.get("peephole", True):
        return "np"
    if config.get("unit") == "gru" and config.get("reset", "before") == "after":
        return "after"
    return ""


def _count_kwargs(unit: str, variant: str) -> dict:
    kwargs: dict = {"peephole": unit == "lstm" and variant != "np"}
    if variant and variant not in FORMS:
        kwargs["variant"] = variant
    return kwargs


def paper_budget(task: str, unit: str) -> int:
    """The recurrent parameters of ``unit`` at the paper's size (Table 1), counted as the paper
    counts (one bias per gate; the LSTM's peepholes)."""
    from rnnbench.models import count_params

    return int(count_params(task, unit)["recurrent_params"])


def hidden_size(task: str, unit: str, variant: str, budget: int | None = None) -> int:
    """The hidden size of a variant: its recurrent count matched to ``budget`` (None: its full
    unit's count at the paper's size, :func:`paper_budget`)."""
    from rnnbench.models import match_hidden

    if is_plugin(unit):
        from rnnbench.units.registry import get

        of = get(unit).budget_of
        return int(match_hidden(task, unit, paper_budget(task, of) if budget is None else budget))
    target = paper_budget(task, unit) if budget is None else int(budget)
    return int(match_hidden(task, unit, target, **_count_kwargs(unit, variant)))


def recurrent_count(task: str, unit: str, variant: str, hidden: int) -> int | None:
    """The recurrent parameters (paper convention) of a variant with ``hidden`` units (None
    for a user unit this process did not load: the report never imports one)."""
    from rnnbench.models import count_params
    from rnnbench.units import registry

    if is_plugin(unit) and not registry.known(unit):
        return None

    return int(count_params(task, unit, hidden, **_count_kwargs(unit, variant))["recurrent_params"])


def build_model(config: dict, dataset, hidden: int, *, backend: str = "torch", population=1):
    """A :class:`rnnbench.models.SequenceModel` of a stored config (any unit, form, variant;
    a user unit only if ``--unit`` loaded that very file), each member with the initial
    weights the run started from (seeded by ``config["seed"]``)."""
    from rnnbench.models import SequenceModel

    kwargs = {}
    if config.get("variant"):
        kwargs["variant"] = config["variant"]
    return SequenceModel(
        config["unit"],
        dataset.in_dim,
        dataset.out_dim,
        int(hidden),
        head=dataset.head,
        population=population,
        peephole=bool(config.get("peephole", True)),
        reset=config.get("reset", "before"),
        init=config.get("init", "paper"),
        seeds=[int(config.get("seed", 0))] * population,
        backend=backend,
        unit_source=config.get("unit_source", ""),
        **kwargs,
    )


def unit_arguments(model) -> dict:
    """The keyword arguments of :func:`rnnbench.nn.functional.run_unit` that reproduce
    ``model``'s recurrent layer (weights, peepholes, reset, variant)."""
    kwargs = {
        "w_ih": model.weight_ih_l0,
        "w_hh": model.weight_hh_l0,
        "b_ih": model.bias_ih_l0,
        "b_hh": model.bias_hh_l0,
        "w_ch": getattr(model, "weight_ch_l0", None) if model.peephole else None,
        "reset": model.reset,
    }
    if getattr(model, "variant", ""):
        kwargs["variant"] = model.variant
    return kwargs
