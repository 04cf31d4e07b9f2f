"""Downloads against a local HTTP server: good, corrupted, missing; safe FSDD extraction."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import shutil
import tarfile
import threading

import pytest

from rnnbench.data.checksums import FSDD_MANIFEST_SHA256, MUSIC_SHA256
from rnnbench.data.fetch import fetch, fetch_fsdd, manifest_digest
from rnnbench.errors import RnnbenchError


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve tmp_path/served on 127.0.0.1 (random port) and point RNNBENCH_MIRROR at it."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_Quiet, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setenv("RNNBENCH_MIRROR", url)
    yield served, url
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder):
    return [p.name for p in folder.rglob("*") if p.name.endswith(".part")]


def test_good_download_then_present(server, tmp_path, data_root):
    served, _ = server
    shutil.copy(data_root / "music" / "JSB_Chorales.mat", served / "JSB_Chorales.mat")
    out = tmp_path / "data"
    [(path, status)] = fetch("jsb", out, progress=False)
    assert path == out / "music" / "JSB_Chorales.mat" and "downloaded" in status
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MUSIC_SHA256["JSB_Chorales.mat"]
    assert fetch("jsb", out, progress=False)[0][1] == "present, checksum verified"
    assert not _leftovers(out)


def test_corrupted_download_leaves_no_file(server, tmp_path, data_root):
    served, _ = server
    data = bytearray((data_root / "music" / "JSB_Chorales.mat").read_bytes())
    data[1000] ^= 0xFF
    (served / "JSB_Chorales.mat").write_bytes(bytes(data))
    out = tmp_path / "data"
    with pytest.raises(RnnbenchError, match="Checksum mismatch for JSB_Chorales.mat"):
        fetch("jsb", out, progress=False)
    assert not (out / "music" / "JSB_Chorales.mat").exists()
    assert not _leftovers(out)


def test_wrong_local_file_is_replaced(server, tmp_path, data_root):
    served, _ = server
    shutil.copy(data_root / "music" / "JSB_Chorales.mat", served / "JSB_Chorales.mat")
    out = tmp_path / "data"
    (out / "music").mkdir(parents=True)
    (out / "music" / "JSB_Chorales.mat").write_bytes(b"half a file")
    assert "wrong checksum" in fetch("jsb", out, progress=False)[0][1]


def test_404_and_unknown_name(server, tmp_path):
    out = tmp_path / "data"
    with pytest.raises(RnnbenchError, match="HTTP 404"):
        fetch("nottingham", out, progress=False)
    assert not (out / "music" / "Nottingham.mat").exists() and not _leftovers(out)
    with pytest.raises(RnnbenchError, match="fetchable names: jsb"):
        fetch("timit", out)


def test_unreachable_host(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNBENCH_MIRROR", "http://127.0.0.1:9")
    with pytest.raises(RnnbenchError, match="Cannot reach"):
        fetch("jsb", tmp_path, progress=False)


def _tar(served, members, name="fsdd.tar.gz"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for arcname, data in members:
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        readme = tarfile.TarInfo("top/README.md")
        readme.size = 2
        tar.addfile(readme, io.BytesIO(b"hi"))
    (served / name).write_bytes(buf.getvalue())
    return name


def _recordings(data_root, n=4):
    names = sorted(p.name for p in (data_root / "fsdd" / "recordings").glob("*.wav"))[:n]
    return [(name, (data_root / "fsdd" / "recordings" / name).read_bytes()) for name in names]


def test_fsdd_archive_extracted_and_verified(server, tmp_path, data_root):
    served, url = server
    recs = _recordings(data_root)
    name = _tar(served, [(f"top/recordings/{n}", b) for n, b in recs])
    src = tmp_path / "src"
    src.mkdir()
    for n, b in recs:
        (src / n).write_bytes(b)
    expected, _ = manifest_digest(src)
    out = tmp_path / "data"
    path, status = fetch_fsdd(out, url=f"{url}/{name}", expected=expected, progress=False)
    assert sorted(p.name for p in path.iterdir()) == [n for n, _ in recs]
    assert "4 recordings" in status
    assert sorted(p.name for p in (out / "fsdd").iterdir()) == ["recordings"]
    # a mismatching manifest leaves the installed recordings as they were
    with pytest.raises(RnnbenchError, match="manifest digest"):
        fetch_fsdd(out, url=f"{url}/{name}", expected="0" * 64, force=True, progress=False)
    assert len(list(path.iterdir())) == 4
    assert sorted(p.name for p in (out / "fsdd").iterdir()) == ["recordings"]


@pytest.mark.parametrize(
    "evil", ["top/../../escape.wav", "/abs/recordings/0_a_1.wav", "top/recordings/../../0_a_1.wav"]
)
def test_fsdd_archive_path_traversal_refused(server, tmp_path, evil):
    served, url = server
    name = _tar(served, [(evil, b"RIFF")])
    out = tmp_path / "deep" / "data"
    with pytest.raises(RnnbenchError, match="unsafe path"):
        fetch_fsdd(out, url=f"{url}/{name}", expected=None, progress=False)
    assert not list(tmp_path.rglob("escape.wav")) and not list(tmp_path.rglob("0_a_1.wav"))
    assert not (out / "fsdd" / "recordings").exists()


def test_fsdd_corrupt_archive(server, tmp_path):
    served, url = server
    (served / "bad.tar.gz").write_bytes(b"\x1f\x8b\x08\x00garbage" * 50)
    with pytest.raises(RnnbenchError, match="truncated or corrupt"):
        fetch_fsdd(tmp_path / "d", url=f"{url}/bad.tar.gz", expected=None, progress=False)


def test_shipped_data_matches_known_checksums(data_root):
    digest, count = manifest_digest(data_root / "fsdd" / "recordings")
    assert (digest, count) == (FSDD_MANIFEST_SHA256, 3000)
    for file, sha in MUSIC_SHA256.items():
        assert hashlib.sha256((data_root / "music" / file).read_bytes()).hexdigest() == sha


def test_read_only_data_folder(tmp_path):
    import os

    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        root = blocker / "data"  # cannot create a folder under a file, even as root
    else:
        root = tmp_path / "ro"
        root.mkdir(mode=0o500)
    with pytest.raises(RnnbenchError, match="Cannot write the data under"):
        fetch("jsb", root, progress=False)


def test_a_fetched_file_is_readable_by_everyone(server, tmp_path, data_root):
    import os

    served, _ = server
    shutil.copy(data_root / "music" / "JSB_Chorales.mat", served / "JSB_Chorales.mat")
    mask = os.umask(0o022)
    try:
        [(path, _)] = fetch("jsb", tmp_path / "data", progress=False)
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_data_list_does_not_call_a_truncated_file_present(tmp_path, data_root, capsys):
    from tests.data.helpers import run_data_command

    music = tmp_path / "d" / "music"
    music.mkdir(parents=True)
    shutil.copy(data_root / "music" / "Nottingham.mat", music / "Nottingham.mat")
    (music / "JSB_Chorales.mat").write_bytes(
        (data_root / "music" / "JSB_Chorales.mat").read_bytes()[:5000]
    )
    assert run_data_command(["data", "list", "--data-dir", str(tmp_path / "d")]) == 0
    lines = capsys.readouterr().out.splitlines()
    jsb = next(i for i, line in enumerate(lines) if line.split()[:1] == ["jsb"])
    assert lines[jsb].split()[1] == "changed" and "checksum differs" in lines[jsb + 1]
    nottingham = next(line for line in lines if line.split()[:1] == ["nottingham"])
    assert nottingham.split()[1] == "present"
    assert any("checksum verified" in line for line in lines)


def test_a_wrong_file_shadowing_the_shipped_one_is_named(tmp_path, data_root, capsys):
    """A valid .mat of another corpus under the JSB name, in a folder looked in first."""
    from rnnbench.data.registry import load_dataset

    music = tmp_path / "cache" / "music"
    music.mkdir(parents=True)
    shutil.copy(data_root / "music" / "Piano_midi.mat", music / "JSB_Chorales.mat")
    load_dataset("jsb", tmp_path / "cache")
    err = capsys.readouterr().err
    assert f"jsb was read from {music / 'JSB_Chorales.mat'} (from --data-dir)" in err
    assert "SHA-256 differs from the published file's" in err
    load_dataset("jsb", data_root)  # the published file: nothing to say
    assert capsys.readouterr().err == ""
