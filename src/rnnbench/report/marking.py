"""The protocol marking of every CSV of a report, not only ``table2.csv``.

``runs.csv`` and ``curves.csv`` travel alone (a spreadsheet, a plot made elsewhere), so each
carries the two columns ``table2.csv`` has, the same on every row: ``protocol`` (``"quick: not
the paper's protocol"``, ``"not the paper's protocol: ..."`` naming the departures' settings,
or the protocol constants as stored) and ``provenance`` (the command, stores, run count,
rnnbench version and date).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

COLUMNS = ("protocol", "provenance")
MARKED = ("runs.csv", "curves.csv")


def add_marking(out: Path, protocol: str, provenance: str, names=MARKED) -> None:
    """Append the ``protocol`` and ``provenance`` columns to each CSV ``names`` under ``out``."""
    for name in names:
        path = Path(out) / name
        if not path.is_file():
            continue
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = [c for c in (reader.fieldnames or []) if c not in COLUMNS]
            rows = list(reader)
        tmp = path.with_name(f".{name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=[*fields, *COLUMNS], restval="")
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "protocol": protocol, "provenance": provenance})
        os.replace(tmp, path)
