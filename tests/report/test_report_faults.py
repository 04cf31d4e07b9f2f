"""`rnnbench report --out` on a full disk: one sentence, exit 2, no traceback (issue 12 §3)."""

from __future__ import annotations

import errno

import matplotlib.figure

from rnnbench.cli import main


def test_report_on_a_full_disk_is_one_sentence(store_path, tmp_path, monkeypatch, capsys):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    status = main(["report", "--store", str(store_path), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("rnnbench: error: Cannot write the report to ")
    assert "No space left on device" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
