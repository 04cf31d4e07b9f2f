"""Protocol presets: the RunConfig field values ``--protocol`` stands for (no torch import).

``with_preset(fields)`` puts a run's own fields on top of its protocol's preset, so
``--protocol authors --max-epochs 200`` is the authors' recipe capped at 200 epochs. The
mechanics that are not field values (summed cost, ε as a floor, the update clipped) live in
:mod:`rnnbench.train.authors`; what each value comes from is in ``docs/training.md``.

Example::

    >>> with_preset({"protocol": "authors", "max_epochs": 200})["batch_size"]
    1
    >>> with_preset({"max_epochs": 200})
    {'max_epochs': 200}
"""

from __future__ import annotations

__all__ = ["AUTHORS", "preset", "with_preset"]

# The RunConfig field values of the authors' JSB configs (exp/music/jsb/gru.yaml, lstm.yaml):
# batch_size 1, init_momentum 0.9, RMSPropMomentum's averaging_coeff 0.95 and stabilizer 1e-2
# (defaults), momentum_clipping 1, LinearDecayOverEpoch decay_factor 0.01, EpochCounter 500,
# weight_noise on the recurrent layer (its noise_std_dev default .075), irange 0.1.
AUTHORS = {
    "batch_size": 1,
    "max_epochs": 500,
    "weight_noise": 0.075,
    "clip": 1.0,
    "init": "paper",
    "rms_decay": 0.95,
    "rms_momentum": 0.9,
    "rms_eps": 0.01,
    "lr_decay": 0.01,
    "noise_output": False,
}


def preset(protocol: str) -> dict:
    """The RunConfig fields ``protocol`` sets: ``{}`` for ``"paper"`` (the defaults), else
    ``{"protocol": "authors", **AUTHORS}``."""
    return {"protocol": "authors", **AUTHORS} if protocol == "authors" else {}


def with_preset(fields: dict) -> dict:
    """``fields`` (RunConfig keyword arguments) on top of their protocol's preset: what a user
    gives wins, what they leave out comes from the preset."""
    return {**preset(fields.get("protocol", "paper")), **fields}


AUTHORS_TEXT = (
    "the authors' protocol (--protocol authors, jych/librnn: batch 1, cost summed over steps "
    "and notes, RMSProp ε 0.01 as a floor, the update rather than the gradient clipped to "
    "norm 1, learning rate decayed linearly to 1%, no early stopping, weight noise on the "
    "recurrent layer only)"
)


def preset_departures(runs: list[dict]) -> list[str]:
    """The report's departure item for stored runs (dicts with a ``config``) trained with a
    preset other than the paper's: ``[]`` when none was."""
    n = sum(1 for r in runs if (r.get("config") or {}).get("protocol") == "authors")
    if not n:
        return []
    share = "every run" if n == len(runs) else f"{n} of {len(runs)} runs"
    return [f"{AUTHORS_TEXT} in {share}"]
