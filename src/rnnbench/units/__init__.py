"""Any recurrent unit under the paper's protocol (issue 24): the unit plug-in interface.

- :class:`Unit` (:mod:`rnnbench.units.base`): what a unit declares, for one model.
- :mod:`rnnbench.units.registry`: :func:`load` (``--unit SPEC``), :func:`get`, the built-ins.
- :mod:`rnnbench.units.runner`: a unit as a population of K (``torch.func.vmap``), the checks.
- :mod:`rnnbench.units.builtin`: minGRU and minLSTM (Feng et al. 2024), log-space scan.
- :mod:`rnnbench.units.names`: the built-in names, without torch.

How to write one: ``docs/units.md``. Imports are lazy, so ``RunConfig`` stays torch-free.
"""

from __future__ import annotations

__all__ = ["Unit", "default_init", "get", "load", "loaded", "names"]


def __getattr__(name: str):
    if name in ("Unit", "default_init"):
        from rnnbench.units import base

        return getattr(base, name)
    if name in ("get", "load", "loaded", "names"):
        from rnnbench.units import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'rnnbench.units' has no attribute {name!r}")
