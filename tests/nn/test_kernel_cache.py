"""The kernels' numba cache is dropped when any kernel module changes (rnnbench.nn.kernels.cache):
numba alone would keep an LSTM kernel compiled against an old common.py."""

from pathlib import Path

import rnnbench.nn.kernels.common as common
from rnnbench.nn.kernels.cache import STAMP, drop_stale, drop_stale_module, source_digest


def _cached(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "__pycache__").glob("*.nb[ic]"))


def _fake_cache(folder: Path) -> None:
    for name in ("lstm._forward-10.py311.nbi", "lstm._forward-10.py311.1.nbc"):
        (folder / "__pycache__" / name).write_bytes(b"compiled")


def test_cache_is_dropped_when_any_module_changes_and_kept_otherwise(tmp_path):
    (tmp_path / "common.py").write_text("def helper(): return 1\n")
    (tmp_path / "lstm.py").write_text("from common import helper\n")
    (tmp_path / "__pycache__").mkdir()
    _fake_cache(tmp_path)
    assert drop_stale(tmp_path)  # no stamp yet: whatever is cached may be stale
    assert _cached(tmp_path) == []
    assert (tmp_path / "__pycache__" / STAMP).read_text().strip() == source_digest(tmp_path)
    _fake_cache(tmp_path)
    assert not drop_stale(tmp_path)  # same sources: numba's cache stays
    assert len(_cached(tmp_path)) == 2
    (tmp_path / "common.py").write_text("def helper(): return 2\n")  # only the helper's file
    assert drop_stale(tmp_path)
    assert _cached(tmp_path) == []
    _fake_cache(tmp_path)
    (tmp_path / "variants.py").write_text("")  # a new module counts too
    assert drop_stale(tmp_path) and _cached(tmp_path) == []


def test_a_folder_that_cannot_be_written_is_left_to_numba(tmp_path):
    (tmp_path / "common.py").write_text("x = 1\n")
    (tmp_path / "__pycache__").write_text("not a folder")  # mkdir and writes fail
    assert drop_stale(tmp_path) is False


def test_the_installed_kernels_are_stamped_with_their_sources():
    folder = Path(common.__file__).parent
    stamp = folder / "__pycache__" / STAMP
    assert stamp.read_text().strip() == source_digest(folder)


def test_a_driver_module_drops_only_its_own_cache_when_a_source_it_inlines_changes(tmp_path):
    """``drop_stale_module`` (the training drivers): a change in any listed source, another
    folder's included, drops that module's cached functions and no other module's."""
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    (kernels / "lstm.py").write_text("def forward(): return 1\n")
    (tmp_path / "driver.py").write_text("from kernels.lstm import forward\n")
    cache_dir = tmp_path / "__pycache__"
    cache_dir.mkdir()
    sources = [kernels / "lstm.py", tmp_path / "driver.py"]

    def fake():
        for name in ("driver.update-10.py311.nbi", "driver.update-10.py311.1.nbc"):
            (cache_dir / name).write_bytes(b"compiled")
        (cache_dir / "other.step-3.py311.nbi").write_bytes(b"compiled")

    fake()
    drop_stale_module("driver", tmp_path, sources, "driver.sha256")  # no stamp yet
    assert _cached(tmp_path) == ["other.step-3.py311.nbi"]
    fake()
    drop_stale_module("driver", tmp_path, sources, "driver.sha256")  # same sources
    assert len(_cached(tmp_path)) == 3
    (kernels / "lstm.py").write_text("def forward(): return 2\n")  # an inlined kernel
    drop_stale_module("driver", tmp_path, sources, "driver.sha256")
    assert _cached(tmp_path) == ["other.step-3.py311.nbi"]
    cache_dir.rename(tmp_path / "moved")
    (tmp_path / "__pycache__").write_text("not a folder")  # cannot be written: no error
    drop_stale_module("driver", tmp_path, sources, "driver.sha256")


def test_the_installed_drivers_are_stamped_with_their_sources():
    import hashlib

    from rnnbench.train import compiled_driver, compiled_eval

    for module in (compiled_driver, compiled_eval):
        h = hashlib.sha256()
        for path in module._SOURCES:
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        stamp = Path(module.__file__).parent / "__pycache__" / module.STAMP
        assert stamp.read_text().strip() == h.hexdigest()
