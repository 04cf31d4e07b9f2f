"""The ablation report's figures: each variant's paired difference to its full unit, and the
gradient flow per variant (matplotlib's Agg canvas, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnbench.analysis import units
from rnnbench.report import paper


def _figure(ncols: int, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * ncols + 0.6, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _finish(fig, path: Path, title: str, banner: str, footer: str) -> None:
    import textwrap

    heading = title + (f"\n{textwrap.fill(banner, 100)}" if banner else "")
    fig.suptitle(heading, fontsize=11, color="#b00000" if banner else "black")
    if footer:
        fig.text(0.5, -0.02, textwrap.fill(footer, 160), ha="center", va="top", fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Title": f"{title}. {banner}"})


def differences_figure(path: Path, rows: list[dict], banner: str, footer: str) -> bool:
    """Each variant's mean paired difference to its full unit with its 95% CI, one panel per
    data set; filled markers where Holm p < 0.05."""
    sets = list(dict.fromkeys(r["dataset"] for r in rows if r["diff_vs_full"] != ""))
    if not sets:
        return False
    fig, axes = _figure(len(sets), 0.5 + 0.45 * max(3, len(rows) / len(sets)))
    for ax, name in zip(axes, sets, strict=True):
        mine = [r for r in rows if r["dataset"] == name and r["diff_vs_full"] != ""]
        for i, r in enumerate(mine):
            d = float(r["diff_vs_full"])
            lo = float(r["diff_ci95_low"]) if r["diff_ci95_low"] else d
            hi = float(r["diff_ci95_high"]) if r["diff_ci95_high"] else d
            sig = r["p_holm"] != "" and float(r["p_holm"]) < 0.05
            color = "#1f77b4" if r["unit"] == "lstm" else "#d62728"
            ax.errorbar(
                d,
                i,
                xerr=[[d - lo], [hi - d]],
                fmt="o",
                color=color,
                mfc=color if sig else "white",
                capsize=3,
            )
        ax.set_yticks(range(len(mine)), [units.label(r["unit"], r["variant"]) for r in mine])
        ax.invert_yaxis()
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel("test NLL − full unit's (nats; paired by seed, 95% CI)")
        ax.set_title(paper.dataset_info(name).label, fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
    _finish(fig, path, "Variants against their full unit (filled: Holm p < 0.05)", banner, footer)
    return True


def gradflow_figure(path: Path, rows: list[dict], banner: str, footer: str) -> bool:
    """‖∂L/∂h_t‖ against the distance to the loss, per variant: trained solid, init dashed."""
    sets = list(dict.fromkeys(r["dataset"] for r in rows))
    if not sets:
        return False
    fig, axes = _figure(len(sets), 4.6)
    cmap = __import__("matplotlib").colormaps["tab20"]
    for ax, name in zip(axes, sets, strict=True):
        mine = [r for r in rows if r["dataset"] == name]
        keys = list(dict.fromkeys((r["unit"], r["variant"]) for r in mine))
        for i, (unit, variant) in enumerate(keys):
            for state, style in (("trained", "-"), ("init", "--")):
                pts = sorted(
                    (int(r["distance"]), float(r["grad_h"]))
                    for r in mine
                    if (r["unit"], r["variant"], r["state"]) == (unit, variant, state)
                    and r["grad_h"] != ""
                )
                if not pts:
                    continue
                d, g = zip(*pts, strict=True)
                ax.plot(
                    d,
                    np.maximum(g, 1e-30),
                    style,
                    color=cmap(i % 20),
                    lw=1.3,
                    label=units.label(unit, variant if variant != "full" else "")
                    if state == "trained"
                    else None,
                )
        ax.set_yscale("log")
        ax.set_xlabel("distance to the loss (steps)")
        ax.set_ylabel("mean ‖∂L/∂h_t‖")
        ax.set_title(
            f"{paper.dataset_info(name).label} (solid: trained; dashed: init)", fontsize=10
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    _finish(fig, path, "Gradient flow: how far back the error reaches", banner, footer)
    return True


# -- the report -------------------------------------------------------------------------------
