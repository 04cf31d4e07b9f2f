"""Where data lives on disk.

Order of precedence: an explicit ``data_dir`` (the ``--data-dir`` option), else the
``RNNBENCH_DATA`` environment variable, else the user cache folder
(``platformdirs.user_cache_dir("rnnbench")``, e.g. ``~/.cache/rnnbench`` on Linux).

Layout under the root, the same as the project's shared data folder::

    music/JSB_Chorales.mat  music/Nottingham.mat  music/MuseData.mat  music/Piano_midi.mat
    fsdd/recordings/{digit}_{speaker}_{take}.wav
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from rnnbench.errors import RnnbenchError

ENV_VAR = "RNNBENCH_DATA"


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder that holds ``music/`` and ``fsdd/`` (it need not exist yet)."""
    return _root_and_origin(data_dir)[0]


def root_origin(data_dir: str | os.PathLike | None = None) -> str:
    """Words saying why :func:`data_root` chose its folder, for error messages."""
    return _root_and_origin(data_dir)[1]


def _root_and_origin(data_dir) -> tuple[Path, str]:
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser(), "from --data-dir"
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser(), f"from {ENV_VAR}"
    return Path(platformdirs.user_cache_dir("rnnbench")), "the user cache folder"


def missing(what: str, path: Path, fetch_name: str, data_dir=None) -> RnnbenchError:
    """The error for data that is not on disk: where we looked and how to get it."""
    root, origin = _root_and_origin(data_dir)
    return RnnbenchError(
        f"{what} not found at {path} (data folder {root}, {origin}); download it with "
        f"`rnnbench data fetch {fetch_name}` or point --data-dir / {ENV_VAR} at a folder "
        f"that holds it."
    )
