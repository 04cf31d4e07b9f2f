"""How stored runs depart from the paper's protocol: the banner of every report output.

:func:`departures` lists each departure that moves the numbers (fewer epochs or candidates,
other noise, clipping, sizes or patience, truncated backpropagation, rates from another draw,
reported seeds that chose the rate, the authors' preset, successive halving);
:func:`reduced_banner` makes the banner from them.
"""

from __future__ import annotations

import math

from rnnbench.report import paper
from rnnbench.report.halving import departures as search_departures
from rnnbench.report.results import Cell
from rnnbench.sweeps.grid import LOG_LR_HIGH, LOG_LR_LOW, lr_candidates, stable_seed
from rnnbench.train.config import RunConfig
from rnnbench.train.presets import preset_departures

PATIENCE = RunConfig.__dataclass_fields__["patience"].default


def departures(runs: list[dict], cells: list[Cell]) -> list[str]:
    """How the stored runs depart from the paper's protocol in ways that move the numbers:
    fewer epochs, fewer learning-rate candidates, other weight noise or clipping, models of
    another size, truncated backpropagation. Empty when the runs follow it (batch size and the
    like, which the paper does not publish, are in "How our setup differs" instead)."""
    ref = paper.PROTOCOL_VALUES
    done = [r for r in runs if r["status"] == "done"] or runs
    out = []

    def values(field: str) -> list:
        return sorted({r["config"][field] for r in done if r["config"].get(field) is not None})

    caps = [int(v) for v in values("max_epochs")]
    if caps and caps[0] < ref["max_epochs"]:
        out.append(
            f"at most {'/'.join(map(str, caps))} epochs per run (protocol: {ref['max_epochs']})"
        )
    n_lrs = [len({r["config"]["lr"] for r in c.runs}) for c in cells if c.runs]
    if n_lrs and min(n_lrs) < ref["lr_candidates"]:
        counts = "/".join(map(str, sorted(set(n_lrs))))
        noun = "candidate" if counts == "1" else "candidates"
        out.append(f"{counts} learning-rate {noun} per cell (protocol: {ref['lr_candidates']})")
    drawn_elsewhere = [c for c in cells if c.runs and not _protocol_rates(c)]
    if drawn_elsewhere:
        out.append(
            f"learning rates other than the protocol's draw in {len(drawn_elsewhere)} of "
            f"{len(n_lrs)} cells (protocol: {ref['lr_candidates']} per cell, ln lr ~ "
            f"U({LOG_LR_LOW:g}, {LOG_LR_HIGH:g}) from a generator seeded per data set)"
        )
    for field, name in (("weight_noise", "weight noise σ"), ("clip", "gradient-norm clip")):
        other = [v for v in values(field) if float(v) != ref[field]]
        if other:
            out.append(f"{name} {'/'.join(map(str, other))} (protocol: {ref[field]})")
    if values("hidden"):
        out.append("hidden sizes other than the paper's (Table 1)")
    biased = [c for c in cells if c.chosen_lr is not None and not c.fresh]
    if biased:
        out.append(
            f"in {len(biased)} {'cell' if len(biased) == 1 else 'cells'} the reported seeds "
            "include the runs that chose the "
            "learning rate (no fresh seeds; their means are biased low and they are not tested)"
        )
    # early stopping's patience: the paper does not publish it; rnnbench's protocol is 20 (the
    # authors' preset stops no run early, and names that itself)
    patience = sorted(
        {
            int(r["config"]["patience"])
            for r in done
            if r["config"].get("protocol", "paper") == "paper"
            and r["config"].get("patience") not in (None, PATIENCE)
        }
    )
    if patience:
        out.append(
            f"early-stopping patience {'/'.join(map(str, patience))} epochs (rnnbench's "
            f"protocol: {PATIENCE}; the paper's is not published)"
        )
    windows = values("bptt")
    if windows:
        steps = "/".join(map(str, windows))
        out.append(f"backpropagation truncated to {steps} steps (protocol: whole sequences)")
    return out + preset_departures(done) + search_departures(runs)


def _protocol_rates(cell: Cell) -> bool:
    """True when every learning rate of ``cell`` is one of the protocol's candidates for its
    data set and unit (the draws ``reproduce`` makes without --log-lr)."""
    count = paper.PROTOCOL_VALUES["lr_candidates"]
    # One draw per data set (since the selection fix); the first grids drew per unit.
    draw = lr_candidates(count, seed=stable_seed(cell.dataset)) + lr_candidates(
        count, seed=stable_seed(cell.dataset, cell.unit)
    )
    return all(
        any(math.isclose(float(r["config"]["lr"]), d, rel_tol=1e-9) for d in draw)
        for r in cell.runs
    )


def reduced_banner(items: list[str]) -> str:
    """The banner of a report whose runs depart from the protocol (``items`` from
    :func:`departures`); empty when there are none."""
    if not items:
        return ""
    return (
        f"NOT THE PAPER'S PROTOCOL: {'; '.join(items)}. These numbers come from a study "
        "shortened or changed as listed; compare them with the paper's only with that in mind."
    )
