"""The protocol marking of every CSV of a report, row by row: :func:`protocol_labels`.

``table2.csv``, ``runs.csv`` and ``curves.csv`` travel alone (a spreadsheet, a plot made
elsewhere), so each carries two columns: ``protocol`` and ``provenance`` (the command, stores,
run count, rnnbench version and date; the same on every row). ``protocol`` is the protocol of
the row's own runs, not of the whole report: a report may join cells trained under the paper's
protocol with cells trained under the authors' preset, and each row says which it is:

- ``"quick: not the paper's protocol"`` for a quick report (and its search, when it halved);
- ``"not the paper's protocol: as stored: <settings> (departures: <each departure>)"`` where
  the row's runs depart from it (:func:`rnnbench.report.departures.departures` names each);
- ``"as stored: <settings>"`` (:func:`protocol_summary`) where they follow it;
- :data:`PAPER_ONLY` on ``table2.csv``'s rows of the paper's numbers that no run here
  reproduces.

A ``table2.csv`` row is labelled from its cell's runs; a ``runs.csv`` or ``curves.csv`` row
(one run, or one epoch of one run) from the cell its run belongs to, or from the run alone when
no cell holds it.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

from rnnbench.report.departures import departures
from rnnbench.report.halving import protocol_note
from rnnbench.report.results import Cell
from rnnbench.train.config import LATER_FIELDS

COLUMNS = ("protocol", "provenance")
MARKED = ("runs.csv", "curves.csv")
QUICK = "quick: not the paper's protocol"
PAPER_ONLY = "the paper's published number (not run here)"


def protocol_summary(runs: list[dict]) -> str:
    """The protocol constants ``runs`` used, e.g. "as stored: max_epochs 500; batch_size 4; ..."
    (several values joined by "/")."""
    parts = []
    for field in ("max_epochs", "patience", "batch_size", "weight_noise", "clip", "init"):
        values = sorted({str(r["config"].get(field)) for r in runs})
        parts.append(f"{field} {'/'.join(values)}")
    for field, default in LATER_FIELDS.items():  # named only where a run left the default
        if field == "variant":  # a unit form, named in the cells (docs/variants.md)
            continue
        values = sorted({str(r["config"].get(field, default)) for r in runs})
        if values != [str(default)]:
            parts.append(f"{field} {'/'.join(values)}")
    return "as stored: " + "; ".join(parts)


def protocol_label(runs: list[dict], cells: list[Cell], quick: bool = False) -> str:
    """The ``protocol`` column for rows made from ``runs`` (of ``cells``): see the module."""
    if quick:
        return QUICK + protocol_note(runs)
    if not runs:
        return ""
    label = protocol_summary(runs) + protocol_note(runs)  # successive halving says so
    items = departures(runs, cells)
    if items:
        label = f"not the paper's protocol: {label} (departures: {'; '.join(items)})"
    return label


def protocol_labels(cells: list[Cell], runs: list[dict], quick: bool = False) -> dict:
    """``{run key: label}`` for every run, and ``{(data set, unit, form): label}`` for every
    cell, each from the runs of the run's cell (:func:`protocol_label`)."""
    labels: dict = {}
    for cell in cells:
        label = protocol_label(cell.runs, [cell], quick)
        labels[(cell.dataset, cell.unit, cell.form)] = label
        for run in cell.runs:
            labels.setdefault(run["key"], label)
    for run in runs:  # runs that no cell holds
        if run["key"] not in labels:
            labels[run["key"]] = protocol_label([run], [], quick)
    return labels


def add_marking(
    out: Path, labels: Mapping[str, str], provenance: str, default: str = "", names=MARKED
) -> None:
    """Append the ``protocol`` (``labels`` by the row's ``key``, else ``default``) and
    ``provenance`` columns to each CSV ``names`` under ``out``."""
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
                label = labels.get(row.get("key", ""), default)
                writer.writerow({**row, "protocol": label, "provenance": provenance})
        os.replace(tmp, path)
