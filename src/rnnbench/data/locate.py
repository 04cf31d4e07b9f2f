"""Where data lives on disk.

Order of precedence, per data set: an explicit ``data_dir`` (the ``--data-dir`` option), else
the ``RNNBENCH_DATA`` environment variable; when neither is given, the user cache folder
(``platformdirs.user_cache_dir("rnnbench")``, e.g. ``~/.cache/rnnbench`` on Linux) if it holds
the set, else the ``data/`` folder shipped with the checkout (present when rnnbench runs from a
clone; a wheel has none). A folder named explicitly is the only one looked in: a set missing
there is an error, never silently read from elsewhere. Only when no folder holds a set does
``rnnbench data fetch`` download it (SHA-256 checked) into the first of these folders.

Layout under each root, the same as the checkout's ``data/``::

    music/JSB_Chorales.mat  music/Nottingham.mat  music/MuseData.mat  music/Piano_midi.mat
    fsdd/recordings/{digit}_{speaker}_{take}.wav
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from rnnbench.data.names import DATA_DIR_HELP  # noqa: F401 - re-exported
from rnnbench.errors import RnnbenchError

ENV_VAR = "RNNBENCH_DATA"

CHECKOUT = "the data shipped with the checkout"


def checkout_data() -> Path | None:
    """The checkout's ``data/`` folder (``<clone>/data``), or None for an installed wheel."""
    repo = Path(__file__).resolve().parents[3]
    folder = repo / "data"
    if (repo / "pyproject.toml").is_file() and folder.is_dir():
        return folder
    return None


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder written to (downloads) and looked in first: ``--data-dir``, else
    ``RNNBENCH_DATA``, else the user cache folder (it need not exist yet)."""
    return _root_and_origin(data_dir)[0]


def root_origin(data_dir: str | os.PathLike | None = None) -> str:
    """Words saying why :func:`data_root` chose its folder, for error messages."""
    return _root_and_origin(data_dir)[1]


def explicit(data_dir=None) -> bool:
    """Whether the user named the data folder (``--data-dir`` or ``RNNBENCH_DATA``)."""
    return (data_dir is not None and str(data_dir) != "") or bool(os.environ.get(ENV_VAR, ""))


def candidates(data_dir=None) -> list[tuple[Path, str]]:
    """The folders to look in, in order, each with words saying where it comes from."""
    first = _root_and_origin(data_dir)
    if explicit(data_dir):
        return [first]
    shipped = checkout_data()
    return [first] + ([(shipped, CHECKOUT)] if shipped is not None else [])


def locate(holds, data_dir=None) -> tuple[Path, str] | None:
    """The first candidate folder ``root`` for which ``holds(root)`` is true, with its origin."""
    for root, origin in candidates(data_dir):
        if holds(root):
            return root, origin
    return None


def _root_and_origin(data_dir) -> tuple[Path, str]:
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser(), "from --data-dir"
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser(), f"from {ENV_VAR}"
    return Path(platformdirs.user_cache_dir("rnnbench")), "the user cache folder"


def missing(what: str, path: Path, fetch_name: str, data_dir=None) -> RnnbenchError:
    """The error for data that is not on disk: where we looked and how to get it."""
    looked = ", ".join(f"{root} ({origin})" for root, origin in candidates(data_dir))
    return RnnbenchError(
        f"{what} not found at {path} (looked in {looked}); download it with "
        f"`rnnbench data fetch {fetch_name}` or point --data-dir / {ENV_VAR} at a folder "
        f"that holds it."
    )
