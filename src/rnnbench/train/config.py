"""One training run's full configuration: :class:`RunConfig`.

A run is fully described by its config: the data set, the unit and its form, the model size,
the learning rate and seed, and every constant of the training protocol. The config is saved
with the run (``config.json``, every checkpoint) and hashed into the run's key, so two runs
with the same key are the same experiment. The defaults and why we chose them are in
``docs/training.md``.

Example::

    >>> cfg = RunConfig(dataset="jsb", unit="gru", lr=1e-3, seed=1)
    >>> cfg.key() != cfg.group_key()
    True
    >>> RunConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from dataclasses import dataclass

from rnnbench.data.names import absolute_name, task_of
from rnnbench.errors import RnnbenchError

__all__ = ["UNITS", "RunConfig", "DEFAULT_BATCH_SIZE", "DEFAULT_NOISE_OUTPUT"]

UNITS = ("tanh", "lstm", "gru")
INITS = ("paper", "torch")
RESETS = ("before", "after")
# "paper": the paper's wording (docs/training.md); "authors": the authors' code, a preset
# (rnnbench.train.authors).
PROTOCOLS = ("paper", "authors")
# batch_size=None means the task's default (docs/training.md, "Batch size"): music 4, where
# an epoch on CPU costs no more than at 16 but makes 4x the updates; speech 16.
DEFAULT_BATCH_SIZE = {"music": 4, "speech": 16}
# noise_output=None means the task's default (docs/training.md, "What weight noise costs"):
# music True (noise on the output layer regularises: 0.07-0.19 nats better on Nottingham);
# speech False, the authors' code (noise on the mixture head's weights moves its means and
# scales directly: about 9 nats worse after one epoch of FSDD-A).
DEFAULT_NOISE_OUTPUT = {"music": True, "speech": False}
# Fields that may differ between the members of one population. ``data_seed`` (the batch
# order) joined them with issue 22: members read their own minibatches
# (rnnbench.train.minibatches), so a cell's fresh seeds train as one population.
MEMBER_FIELDS = ("lr", "seed", "data_seed")


@dataclass(frozen=True)
class RunConfig:
    """One member's configuration (a frozen, hashable dataclass).

    Fields:
        dataset: a data set name of :func:`rnnbench.data.registry.load_dataset`.
        unit: ``"tanh"``, ``"lstm"`` or ``"gru"``.
        peephole: LSTM with diagonal peepholes (the paper's form); forced False for other units.
        reset: GRU reset gate ``"before"`` (the paper's form) or ``"after"`` the recurrent
            product (cuDNN); forced ``"before"`` for other units.
        hidden: hidden units; None means the paper's size for the task and unit (Table 1).
        lr: RMSProp learning rate (the paper's "scalar multiplier").
        seed: sets the member's initial weights and its weight-noise stream.
        batch_size: sequences per minibatch; None means the task's default,
            :data:`DEFAULT_BATCH_SIZE` (music 4, speech 16), and is stored resolved.
        max_epochs: the most passes over the training set.
        patience: stop after this many epochs without a lower validation NLL.
        weight_noise: standard deviation of the Gaussian weight noise (0 turns it off).
        clip: rescale a member's gradient to this norm when larger (0 turns it off).
        init: ``"paper"`` (uniform ±0.1, orthogonal recurrent matrices) or ``"torch"``.
        bptt: truncated-BPTT window in steps, or None for full sequences.
        data_seed: sets the order of the training batches (each member of a population reads
            its own, :mod:`rnnbench.train.minibatches`).
        rms_decay, rms_momentum, rms_eps: RMSProp constants (see :mod:`rnnbench.train.protocol`).
        lr_decay: None (a constant learning rate), or the factor the learning rate reaches at
            ``max_epochs``, falling linearly from 1 at epoch 1 (the authors' code used 0.01;
            :func:`rnnbench.train.protocol.lr_factor`).
        variant: ``""`` (the unit in its form above) or a variant of
            :mod:`rnnbench.nn.variants` (issue 13). Stored canonical: ``"np"`` becomes
            ``peephole=False`` and ``"after"`` ``reset="after"`` (with ``variant=""``), so one
            model has one key; ``"nrg"`` stores ``reset="before"`` (no reset gate).
        noise_output: whether weight noise also perturbs the output layer's weights; the
            authors' code put it on the recurrent layer only. None means the task's default,
            :data:`DEFAULT_NOISE_OUTPUT` (music True, speech False), and is stored resolved.
        protocol: ``"paper"`` or ``"authors"``, the authors' code's mechanics (summed cost,
            ε as a floor, the update clipped instead of the gradient, their learning-rate
            schedule, no early stopping: ``patience`` is set to ``max_epochs``); see
            :mod:`rnnbench.train.authors`, whose ``with_preset`` fills the preset's values.

        search: ``"full"`` (the paper's search: every member runs to its own stopping rule) or
            ``"halving"`` (successive halving among the population's learning rates at epochs
            ``search_min_epochs * search_eta**i``; :mod:`rnnbench.train.halving`). At
            ``"full"`` the other two are reset to their defaults, so they never split keys.
        search_eta: the halving factor η (an integer >= 2): a rung keeps ceil(n / η) rates.
        search_min_epochs: the first rung r (an integer >= 1).
        unit_source: ``""`` for the built-in units (``tanh lstm gru mingru minlstm``); for a
            user unit (issue 24), what ``--unit`` loaded: ``KIND:WHERE:Class@HASH`` with the
            SHA-256 of its file, so a changed cell is a different run.

    ``lr_decay``, ``noise_output``, ``variant``, ``protocol`` and the ``search`` fields came
    after the first grids: at their defaults they are left out of :meth:`key`, so the runs
    stored before them keep their keys.
    """

    dataset: str
    unit: str
    peephole: bool = True
    reset: str = "before"
    hidden: int | None = None
    lr: float = 1e-3
    seed: int = 0
    batch_size: int | None = None
    max_epochs: int = 500
    patience: int = 20
    weight_noise: float = 0.075
    clip: float = 1.0
    init: str = "paper"
    bptt: int | None = None
    data_seed: int = 0
    rms_decay: float = 0.95
    rms_momentum: float = 0.9
    rms_eps: float = 1e-6
    lr_decay: float | None = None
    noise_output: bool | None = None
    variant: str = ""
    protocol: str = "paper"
    # issue 14: how the learning-rate search that this run belongs to stops its candidates
    search: str = "full"
    search_eta: int = 3
    search_min_epochs: int = 27
    # issue 24: a user unit's source, KIND:WHERE:Class@HASH (rnnbench.units.registry); "" for
    # the built-in units
    unit_source: str = ""

    def __post_init__(self) -> None:
        def fail(field: str, value, fix: str):
            raise RnnbenchError(f"RunConfig {field}={value!r} is invalid; {fix}.")

        if not isinstance(self.dataset, str) or not self.dataset:
            fail("dataset", self.dataset, "name a data set (see `rnnbench data list`)")
        if not isinstance(self.unit_source, str):
            fail("unit_source", self.unit_source, "use the source --unit records, or ''")
        from rnnbench.units.names import check_source

        check_source(self.unit, self.unit_source)  # issue 24: a built-in or a user unit's file
        if self.unit not in UNITS and self.variant:
            fail("variant", self.variant, f"unit {self.unit!r} has no variants; use ''")
        if self.reset not in RESETS:
            fail("reset", self.reset, "use 'before' or 'after'")
        if self.init not in INITS:
            fail("init", self.init, f"use one of {', '.join(INITS)}")
        if self.protocol not in PROTOCOLS:
            fail("protocol", self.protocol, f"use one of {', '.join(PROTOCOLS)}")
        # Forms that do not apply to a unit are normalised, so equal runs get equal keys.
        set_ = object.__setattr__
        set_(self, "dataset", absolute_name(self.dataset))
        if self.batch_size is None:
            set_(self, "batch_size", DEFAULT_BATCH_SIZE[task_of(self.dataset)])
        if self.noise_output is None:
            set_(self, "noise_output", DEFAULT_NOISE_OUTPUT[task_of(self.dataset)])
        set_(self, "peephole", bool(self.peephole) and self.unit == "lstm")
        if self.unit != "gru":
            set_(self, "reset", "before")
        if not isinstance(self.variant, str):
            fail("variant", self.variant, "use a variant name or ''")
        from rnnbench.nn.variants import resolve

        try:
            variant, peephole, reset = resolve(
                self.unit, self.variant, self.peephole and self.variant != "np", self.reset
            )
        except RnnbenchError as exc:
            fail("variant", self.variant, str(exc).split("; ", 1)[-1].rstrip("."))
        set_(self, "variant", variant)
        set_(self, "peephole", peephole)
        set_(self, "reset", reset)
        for name in ("hidden", "bptt"):
            value = getattr(self, name)
            if value is not None:
                if not _is_whole(value) or int(value) < 1:
                    fail(name, value, "use a positive integer or None")
                set_(self, name, int(value))
        for name in ("seed", "batch_size", "max_epochs", "patience", "data_seed"):
            value = getattr(self, name)
            if not _is_whole(value):
                fail(name, value, "use an integer")
            set_(self, name, int(value))
        for name in ("seed", "data_seed"):
            if getattr(self, name) < 0:
                fail(name, getattr(self, name), "use an integer >= 0")
        for name in ("batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                fail(name, getattr(self, name), "use a positive integer")
        for name in ("lr", "weight_noise", "clip", "rms_decay", "rms_momentum", "rms_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                fail(name, value, "use a number")
            value = float(value)
            if name == "lr" and not (math.isfinite(value) and value > 0):
                fail("lr", getattr(self, name), "use a finite learning rate > 0")
            if not math.isfinite(value) or value < 0:
                fail(name, getattr(self, name), "use a finite number >= 0")
            set_(self, name, value)
        if self.lr_decay is not None:
            value = self.lr_decay
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                fail("lr_decay", value, "use a factor in (0, 1] or None")
            if not (math.isfinite(value) and 0 < value <= 1):
                fail("lr_decay", value, "use a factor in (0, 1] or None")
            set_(self, "lr_decay", float(value))
        if self.protocol == "authors":  # no early stopping: the best state of every epoch
            set_(self, "patience", self.max_epochs)
        if not isinstance(self.noise_output, bool):
            fail("noise_output", self.noise_output, "use true or false")
        from rnnbench.train import halving

        halving.check_config(self, fail)
        if self.rms_eps <= 0:
            fail("rms_eps", self.rms_eps, "use an epsilon > 0")
        if not self.rms_decay < 1 or not self.rms_momentum < 1:
            fail(
                "rms_decay/rms_momentum",
                (self.rms_decay, self.rms_momentum),
                "use values in [0, 1)",
            )

    def to_dict(self) -> dict:
        """A plain JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """The inverse of :meth:`to_dict`; missing fields take their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise RnnbenchError(
                f"Unknown run config field(s) {', '.join(unknown)}; remove them or upgrade "
                "rnnbench."
            )
        return cls(**d)

    def key(self) -> str:
        """16 hex characters of the SHA-256 of the canonical JSON of :meth:`to_dict` (fields of
        :data:`LATER_FIELDS` at their defaults left out)."""
        return _hash(_keyed(self.to_dict()))

    def group_key(self) -> str:
        """:meth:`key` without ``lr`` and ``seed``, and with ``data_seed`` hashed at 0: the
        members of one population share it. ``data_seed`` left the population with issue 22;
        hashing it at 0, not dropping it, keeps the group key stored for every run of batch
        order 0 (every learning-rate search), so a search resumed across versions stays one
        population in the store."""
        d = _keyed(self.to_dict())
        d.pop("lr")
        d.pop("seed")
        d["data_seed"] = 0
        return _hash(d)


# Fields added after runs were stored, with their defaults: left out of the key at the default.
LATER_FIELDS = {
    "lr_decay": None,
    "noise_output": True,
    "variant": "",
    "protocol": "paper",
    "search": "full",
    "search_eta": 3,
    "search_min_epochs": 27,
    "unit_source": "",
}


def _keyed(d: dict) -> dict:
    return {k: v for k, v in d.items() if not (k in LATER_FIELDS and v == LATER_FIELDS[k])}


def with_defaults(config: dict) -> dict:
    """A stored config dict with :data:`LATER_FIELDS` filled in where it predates them."""
    return {**LATER_FIELDS, **config}


def _is_whole(value) -> bool:
    """True for an integer, or a float with an integral value (not a bool, string or NaN)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value) and int(value) == value


def _hash(d: dict) -> str:
    text = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
