"""Figures 2 and 3: learning curves of the best run of each unit, as in the paper.

One column per data set; top row against epochs, bottom row against wall-clock seconds per
model (:func:`per_model_seconds`); train NLL dashed, validation NLL solid, one colour per unit,
log-scale NLL. Figure 2 holds the music
sets, Figure 3 the speech sets. Drawn with matplotlib's Agg canvas (no display, no pyplot state).
"""

from __future__ import annotations

import csv
import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    FormatStrFormatter,
    LogFormatter,
    LogLocator,
    MaxNLocator,
    NullLocator,
)

from rnnbench.report import paper
from rnnbench.report.results import Cell

COLORS = {"tanh": "#7f7f7f", "gru": "#d62728", "lstm": "#1f77b4"}


def wall_clock(epochs: list[dict], total: float | None) -> np.ndarray:
    """Cumulative seconds at the end of each epoch.

    The store's per-epoch ``seconds`` may be the time of that epoch or the time so far; the
    reading whose end is closer to the run's total ``seconds`` wins (time so far when the
    values never decrease and no total is known).
    """
    secs = np.array([e.get("seconds") or 0.0 for e in epochs], dtype=float)
    cumsum = np.cumsum(secs)
    if secs.size == 0:
        return secs
    monotone = bool(np.all(np.diff(secs) >= 0))
    if total is not None and math.isfinite(total) and total > 0:
        if abs(cumsum[-1] - total) < abs(secs[-1] - total) or not monotone:
            return cumsum
        return secs
    return secs if monotone else cumsum


def per_model_seconds(
    epochs: list[dict], total: float | None, sharing: dict[int, int] | None
) -> np.ndarray:
    """Cumulative wall-clock seconds of one model: each epoch's time divided by the members
    its population trained in that epoch.

    A run's stored seconds are its population's wall clock, so a run trained among 10 members
    would look 5 times slower than one trained among 2 (a learning-rate search against its
    seeds). Sharing each epoch's time among the members that trained in it estimates what the
    model would have cost alone (a stacked member costs about what a single run does:
    benchmarks/README.md). ``sharing`` maps an epoch to its member count; None leaves the
    population's seconds as they are.
    """
    cum = wall_clock(epochs, total)
    if not sharing or cum.size == 0:
        return cum
    members = np.array([max(1, sharing.get(int(e["epoch"]), 1)) for e in epochs], dtype=float)
    return np.cumsum(np.diff(cum, prepend=0.0) / members)


def log_nll_axis(ax, ys: list[float]) -> None:
    """A log-scale NLL axis whose tick labels can be read at any range.

    Curves usually span well under two decades (JSB: 8 to 30 nats), where matplotlib's log
    ticks label only one or two values (e.g. 20 and 30, none near the curves' ends); there,
    round values at log-even spacing (…, 8, 9, 10, 12, 15, 20, 25, 30, …) are labelled instead.
    """
    ax.set_yscale("log")
    if max(ys) / min(ys) < 100:
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_locator(NullLocator())
    else:
        ax.yaxis.set_major_formatter(LogFormatter())
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))


def focus_range(ys: list[float], finals: list[float]) -> tuple[float, float]:
    """Log-axis limits that show where the curves end, not the first epochs' huge NLL.

    The top is 1.5 times the largest final value (or the largest value when that is lower);
    the first epochs of a curve may run off the top, which is where nothing is compared.
    """
    bottom = min(ys) * 0.97
    top = max(ys) * 1.03
    if finals:
        top = min(top, 1.5 * max(finals))
    return bottom, max(top, bottom * 1.1)


def best_per_unit(cells: list[Cell], dataset: str) -> dict[str, tuple[Cell, dict]]:
    """For each unit of ``dataset``, the best run (lowest valid NLL) over its forms' chosen lrs."""
    best: dict[str, tuple[Cell, dict]] = {}
    for cell in cells:
        run = cell.best_run
        if cell.dataset != dataset or run is None:
            continue
        if cell.unit not in best or run["valid_nll"] < best[cell.unit][1]["valid_nll"]:
            best[cell.unit] = (cell, run)
    return best


def learning_curves(
    path: Path,
    title: str,
    datasets: list[str],
    cells: list[Cell],
    curves: dict[str, list[dict]],
    *,
    banner: str = "",
    footer: str = "",
    sharing: dict[str, dict[int, int]] | None = None,
) -> bool:
    """Draw one figure (a column per data set) to ``path``; False when there is nothing to draw.

    ``curves`` maps a run key to its per-epoch records (``Store.epochs``); ``sharing`` maps a
    run key to ``{epoch: members of its population that trained in that epoch}`` (see
    :func:`per_model_seconds`).
    """
    sharing = sharing or {}
    panels = []
    for name in datasets:
        best = best_per_unit(cells, name)
        lines = {u: (c, r) for u, (c, r) in best.items() if curves.get(r["key"])}
        if lines:
            panels.append((name, lines))
    if not panels:
        return False
    ncols = len(panels)
    fig = Figure(figsize=(4.6 * ncols + 0.6, 8.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, ncols, squeeze=False)
    for col, (name, lines) in enumerate(panels):
        ys = [
            v
            for _, r in lines.values()
            for e in curves[r["key"]]
            for v in (e.get("train_nll"), e.get("valid_nll"))
            if v is not None
        ]
        log = bool(ys) and min(ys) > 0
        finals = [
            v
            for _, r in lines.values()
            for v in (curves[r["key"]][-1].get("train_nll"), curves[r["key"]][-1].get("valid_nll"))
            if v is not None and curves[r["key"]]
        ]
        for row, xlabel in enumerate(("epoch", "wall-clock seconds per model")):
            ax = axes[row][col]
            for unit in paper.UNITS:
                if unit not in lines:
                    continue
                cell, run = lines[unit]
                recs = curves[run["key"]]
                x = (
                    np.array([e["epoch"] for e in recs], dtype=float)
                    if row == 0
                    else per_model_seconds(recs, run.get("seconds"), sharing.get(run["key"]))
                )
                for split, style in (("train", "--"), ("valid", "-")):
                    y = np.array(
                        [
                            np.nan if e.get(f"{split}_nll") is None else e[f"{split}_nll"]
                            for e in recs
                        ],
                        dtype=float,
                    )
                    label = None
                    if split == "valid":
                        label = (
                            f"{cell.label}, lr {run['config']['lr']:.2g}, "
                            f"seed {run['config'].get('seed', 0)}"
                        )
                    ax.plot(x, y, style, color=COLORS.get(unit), lw=1.6, label=label)
            if log:
                log_nll_axis(ax, ys)
                ax.set_ylim(*focus_range(ys, finals))
            if row == 0:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel(xlabel)
            ax.set_ylabel(
                "NLL per step (nats" + (", log scale)" if log else "; linear: some values ≤ 0)")
            )
            ax.grid(True, which="both", alpha=0.3)
            info = paper.dataset_info(name)
            ax.set_title(f"{info.label}: NLL vs {xlabel}", fontsize=11)
            if row == 0:
                handles, _ = ax.get_legend_handles_labels()
                handles += [
                    Line2D([], [], color="k", ls="-", label="validation"),
                    Line2D([], [], color="k", ls="--", label="train"),
                ]
                # Below the panel, never over its curves.
                ax.legend(
                    handles=handles,
                    fontsize=8,
                    loc="upper center",
                    bbox_to_anchor=(0.5, -0.16),
                    ncol=2,
                    frameon=False,
                )
    width = 60 * ncols
    heading = title + (f"\n{textwrap.fill(figure_banner(banner), width)}" if banner else "")
    footer = "\n".join(textwrap.fill(line, int(width * 1.4)) for line in footer.splitlines())
    fig.suptitle(
        heading,
        fontsize=12,
        color="#b00000" if banner else "black",
        fontweight="bold" if banner else "normal",
    )
    if footer:
        fig.text(0.5, -0.01, footer, ha="center", va="top", fontsize=7, color="#555")
    metadata = {"Title": f"{title}. {banner}".strip(), "Source": footer}
    if banner:
        metadata["Warning"] = banner
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata=metadata)
    return True


def figure_banner(banner: str) -> str:
    """The banner as a figure shows it: one line (the report and the PNG's metadata keep the
    full list of departures)."""
    if banner.startswith("QUICK"):
        return "QUICK RUN: not the paper's protocol (the report lists every departure)"
    return "NOT THE PAPER'S PROTOCOL (the report lists every departure)"


CURVES_COLUMNS = [
    "dataset",
    "unit",
    "form",
    "lr",
    "seed",
    "key",
    "in_figure",
    "epoch",
    "train_nll",
    "valid_nll",
    "updates",
    "seconds_per_model",
]


def write_curves_csv(
    path: Path,
    cells: list[Cell],
    curves: dict[str, list[dict]],
    sharing: dict[str, dict[int, int]] | None = None,
) -> int:
    """The learning curves behind Figures 2-3, one row per epoch, for every seed at each cell's
    chosen learning rate (``in_figure`` 1 for the run the figure draws); returns the row count.

    The figures' data in plain text: replot them, or draw bands over seeds, without the store.
    ``seconds_per_model`` is the figures' clock (:func:`per_model_seconds`).
    """
    sharing = sharing or {}
    rows = []
    for cell in cells:
        drawn = cell.best_run
        for run in cell.chosen:
            recs = curves.get(run["key"]) or []
            clock = per_model_seconds(recs, run.get("seconds"), sharing.get(run["key"]))
            for e, seconds in zip(recs, clock, strict=True):
                rows.append(
                    {
                        "dataset": cell.dataset,
                        "unit": cell.unit,
                        "form": cell.form,
                        "lr": f"{float(run['config']['lr']):.10g}",
                        "seed": run["config"].get("seed", 0),
                        "key": run["key"],
                        "in_figure": int(drawn is not None and run["key"] == drawn["key"]),
                        "epoch": int(e["epoch"]),
                        "train_nll": _num(e.get("train_nll")),
                        "valid_nll": _num(e.get("valid_nll")),
                        "updates": "" if e.get("updates") is None else int(e["updates"]),
                        "seconds_per_model": f"{float(seconds):.6g}",
                    }
                )
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CURVES_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def _num(value) -> str:
    return "" if value is None else f"{float(value):.10g}"
