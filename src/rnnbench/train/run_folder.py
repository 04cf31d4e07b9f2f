"""A population's run folders: creating them, refusing another run's, and finding what to
resume from (:func:`rnnbench.train.population.train_population`'s bookkeeping).

Each member's folder holds its ``config.json`` and its checkpoints ``last.pt`` and
``prev.pt`` (:mod:`rnnbench.train.checkpoint`). A population resumes from the latest epoch
every member has; members without a common epoch resume in groups by their own latest epoch.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rnnbench.errors import RnnbenchError
from rnnbench.train import checkpoint as ckpt
from rnnbench.train.config import RunConfig, with_defaults

__all__ = [
    "FORMAT",
    "resolve_device",
    "make_folder",
    "prepare_folder",
    "resume_groups",
    "checkpoint_at",
]

# The checkpoint format: a checkpoint of another format belongs to another rnnbench version.
FORMAT = 1


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` → a usable device, or a clear error."""
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise RnnbenchError(f"Unknown device {device!r}; use cpu or cuda.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RnnbenchError(
            "Device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu or install "
            "a CUDA build of PyTorch."
        )
    if dev.type not in ("cpu", "cuda"):
        raise RnnbenchError(f"Device {device!r} is not supported; use cpu or cuda.")
    return dev


def make_folder(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RnnbenchError(
            f"Cannot create the run folder {run_dir} ({exc.strerror}); choose a writable --out."
        ) from exc


def prepare_folder(cfg: RunConfig, run_dir: Path) -> list[dict]:
    """Write the folder's config.json; return its resume checkpoints (newest first).

    Temporary files a killed writer left there are deleted (the caller holds the lock)."""
    ckpt.remove_leftovers(run_dir)
    path = run_dir / ckpt.CONFIG
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError:
            stored = None
        if stored is not None and with_defaults(stored) != cfg.to_dict():
            raise RnnbenchError(
                f"{run_dir} holds a different run (its config.json differs); choose another "
                "folder or delete it."
            )
    ckpt.atomic_write_bytes(path, (json.dumps(cfg.to_dict(), indent=2) + "\n").encode())
    found = ckpt.checkpoints(run_dir)
    for c in found:
        if with_defaults(c.get("config") or {}) != cfg.to_dict() or c.get("format") != FORMAT:
            raise RnnbenchError(
                f"The checkpoint in {run_dir} belongs to a different run or rnnbench version; "
                "delete the folder's last.pt and prev.pt to start afresh."
            )
    return found


def resume_groups(resumable: dict[int, list[dict]]) -> list[tuple[int, list[int]]]:
    """Which members resume together from which epoch.

    All members resume from the latest epoch every one of them has (in last.pt or prev.pt).
    Members without a common epoch (folders filled by different populations) resume in groups
    by their own latest epoch.
    """
    epochs = {i: {c["epoch"] for c in found} or {0} for i, found in resumable.items()}
    common = set.intersection(*epochs.values())
    if common:
        return [(max(common), sorted(resumable))]
    by_epoch: dict[int, list[int]] = {}
    for i, es in epochs.items():
        by_epoch.setdefault(max(es), []).append(i)
    return sorted((e, sorted(m)) for e, m in by_epoch.items())


def checkpoint_at(found: list[dict], epoch: int) -> dict | None:
    for c in found:
        if c["epoch"] == epoch:
            return c
    return None
