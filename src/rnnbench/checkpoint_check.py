"""A best checkpoint is untrusted input: checked before any model is built from it.

``sample`` and the report's Samples section build a model from a run's ``best.pt``
(:func:`rnnbench.samples.load_checkpoint`, :func:`rnnbench.samples.build_population`). The file
may come from anywhere (a copied run folder, a committed export naming a run folder), and the
model is sized by what the file *says* (``hidden``), so a 115 KB file claiming ``hidden = 20000``
once made rnnbench allocate 10 GB for minutes. So:

- :func:`check_file`: a regular file of at most :data:`MAX_CHECKPOINT_BYTES`, checked before it
  is read (``torch.load(..., weights_only=True)`` reads tensors no larger than the file);
- :func:`check_best`: the loaded dict holds ``config`` (a JSON-like object making a valid
  :class:`rnnbench.train.config.RunConfig`), ``hidden`` (a whole number in 1..
  :data:`rnnbench.exports_schema.MAX_HIDDEN` that agrees with the config's own ``hidden``)
  and ``member_state`` (named floating-point tensors, every value finite: a model with NaN or
  infinite weights samples nothing meaningful, and ``torch.bernoulli`` fails on it);
- :func:`check_shapes`: the model the checkpoint describes is built on PyTorch's ``meta``
  device (shapes only, no memory) and every tensor's shape is compared with the checkpoint's,
  so the real model is allocated only when it is exactly as large as the weights in the file.
"""

from __future__ import annotations

import math
import numbers
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from rnnbench.errors import RnnbenchError
from rnnbench.exports_schema import MAX_HIDDEN

MAX_CHECKPOINT_BYTES = 2 * 2**30  # a 4,096-unit LSTM's best.pt is about 0.3 GB


def check_file(path: Path) -> None:
    """Refuse, in one sentence, a checkpoint that is not a regular file or is too large."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise RnnbenchError(f"Cannot read checkpoint {path} ({exc.strerror}).") from exc
    if not stat.S_ISREG(info.st_mode):
        raise RnnbenchError(f"Checkpoint {path} is not a regular file; give a run folder.")
    if info.st_size > MAX_CHECKPOINT_BYTES:
        raise RnnbenchError(
            f"Checkpoint {path} is {info.st_size:,} bytes, more than the "
            f"{MAX_CHECKPOINT_BYTES:,} rnnbench reads; it is not a checkpoint rnnbench wrote."
        )


def read(path: Path):
    """``torch.load(path, weights_only=True)`` of a checked file (:func:`check_file`), with one
    sentence for sampling when it cannot be read (never "start the run afresh": sampling
    only reads)."""
    check_file(path)
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # a damaged or foreign file
        raise RnnbenchError(
            f"Cannot read checkpoint {path} ({exc.__class__.__name__}): it is damaged or not "
            "an rnnbench checkpoint; sample from another run, or train this one again."
        ) from None


def check_best(data, path: Path) -> tuple[dict, int, dict]:
    """The (config, hidden, member_state) of a loaded ``best.pt``, each checked (see the
    module docstring); one sentence naming the file and the problem otherwise."""
    from rnnbench.train.config import RunConfig, with_defaults

    def refuse(problem: str):
        raise RnnbenchError(
            f"{path} is not a usable rnnbench best checkpoint: {problem}; give a run folder "
            "that rnnbench trained."
        )

    if not isinstance(data, dict) or not {"config", "hidden", "member_state"} <= set(data):
        refuse("it needs config, hidden and member_state")
    config = data["config"]
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        refuse(f"its config is a {type(config).__name__}, not a table of settings")
    try:
        run_config = RunConfig.from_dict(with_defaults(dict(config)))
    except RnnbenchError as exc:
        refuse(f"its config is invalid ({str(exc).rstrip('.')})")
    except (TypeError, ValueError, OverflowError) as exc:
        refuse(f"its config is invalid ({exc})")
    hidden = data["hidden"]
    whole = isinstance(hidden, numbers.Real) and not isinstance(hidden, bool)
    whole = whole and math.isfinite(hidden) and int(hidden) == hidden
    if not whole or not 1 <= int(hidden) <= MAX_HIDDEN:
        refuse(f"hidden={hidden!r} is not a size in 1..{MAX_HIDDEN}")
    hidden = int(hidden)
    if run_config.hidden is not None and run_config.hidden != hidden:
        refuse(f"hidden={hidden} disagrees with its config's hidden={run_config.hidden}")
    state = data["member_state"]
    if not isinstance(state, dict) or not state:
        refuse("its member_state is not a table of tensors")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            refuse(f"its member_state entry {str(name)[:40]!r} is not a named tensor")
        if not value.is_floating_point():
            refuse(f"its weights {name} are {value.dtype}, not floating point")
        if not bool(torch.isfinite(value).all()):
            raise RnnbenchError(
                f"{path} holds non-finite weights (NaN or infinity in {name}), so the run "
                "cannot be sampled: its training broke down; sample from another run or "
                "train it again."
            )
    return dict(config), hidden, state


def check_shapes(make_model: Callable[[], torch.nn.Module], checkpoints: Sequence) -> None:
    """Build ``make_model()`` on the ``meta`` device (no memory) and refuse, in one sentence,
    a checkpoint whose tensors do not have the shapes of that model's member parameters (the
    first dimension of each parameter is the population)."""
    with torch.device("meta"):
        probe = make_model()
    expected = {name: tuple(p.shape[1:]) for name, p in probe.named_parameters()}
    for c in checkpoints:
        missing = sorted(set(expected) - set(c.state))
        extra = sorted(set(c.state) - set(expected))
        if missing or extra:
            raise RnnbenchError(
                f"The weights in {c.run_dir} do not fit a {c.config.get('unit')} model "
                f"(missing {missing[:5]}, unexpected {extra[:5]}): its best.pt was not saved "
                "by that model; give a run folder that rnnbench trained."
            )
        for name, shape in expected.items():
            have = tuple(c.state[name].shape)
            if have != shape:
                raise RnnbenchError(
                    f"The weights {name} in {c.run_dir}/best.pt have shape {have}, but hidden="
                    f"{c.hidden} and the data set's sizes need {shape}: the checkpoint's sizes "
                    "disagree with its weights; give a run folder that rnnbench trained."
                )


def inside(path: Path, base: Path) -> bool:
    """Whether ``path`` (symlinks resolved) lies inside the folder ``base``."""
    try:
        return Path(path).resolve().is_relative_to(Path(base).resolve())
    except (OSError, RuntimeError, ValueError):
        return False
