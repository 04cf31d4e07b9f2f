"""``build_report``: the whole report folder from a results store.

Writes ``report.md``, ``report.html`` (self-contained), ``table2.csv``, ``figure2.png`` (music)
and ``figure3.png`` (speech) into the output folder. Sections: provenance, Table 1, Table 2,
the learning-rate choice, GRU against LSTM, Figures 2–3, how our setup differs from the paper.
"""

from __future__ import annotations

import shlex
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from rnnbench import __version__
from rnnbench.errors import RnnbenchError
from rnnbench.report import paper
from rnnbench.report.document import Banner, Block, Bullets, Heading, Image, Para, to_markdown
from rnnbench.report.figures import learning_curves
from rnnbench.report.html import to_html
from rnnbench.report.results import Cell, build_cells, paired_tests
from rnnbench.report.tables import (
    fmt,
    lr_table,
    paired_table,
    table1,
    table2,
    write_table2_csv,
)

QUICK_BANNER = (
    "QUICK RUN: these numbers do not follow the paper's protocol (few learning-rate "
    "candidates, capped epochs, few data sets); do not compare them with the paper."
)
TITLE = "rnnbench: Chung et al. (2014), gated recurrent units on sequence modeling"


def _load(store_path: Path) -> tuple[list[dict], dict[str, str], object]:
    from rnnbench.store import Store

    if not store_path.is_file():
        raise RnnbenchError(
            f"No results store at {store_path}: run `rnnbench reproduce` or `rnnbench train` "
            "first, or point --store at an existing results.db."
        )
    store = Store(store_path)
    runs = store.runs()
    if not runs:
        store.close()
        raise RnnbenchError(
            f"The results store {store_path} holds no runs: run `rnnbench reproduce` first, "
            "or point --store at another results.db."
        )
    return runs, store.meta(), store


def _versions(runs: list[dict]) -> list[str]:
    seen = Counter()
    for r in runs:
        parts = [
            f"{name} {r.get(name)}"
            for name in ("rnnbench", "torch", "numpy", "python")
            if r.get(name)
        ]
        if parts:
            seen[", ".join(parts) + (f" on {r['host']}" if r.get("host") else "")] += 1
    return [f"{text} ({n} runs)" for text, n in seen.most_common()] or ["not recorded in the store"]


def _span(runs: list[dict]) -> str:
    """When the runs were trained, from the store's timestamps."""
    started = sorted(r["started"] for r in runs if r.get("started"))
    finished = sorted(r["finished"] for r in runs if r.get("finished"))
    if not started:
        return ""
    return f", trained {started[0]} to {finished[-1] if finished else 'now'}"


def _values(runs: list[dict], key: str) -> str:
    vals = sorted({repr(r["config"].get(key)) for r in runs if key in r["config"]})
    return ", ".join(v.strip("'") for v in vals) if vals else "not recorded"


def _differences(runs: list[dict], cells: list[Cell]) -> list[str]:
    """'How our setup differs from the paper', from the stored configs."""
    done = [r for r in runs if r["status"] == "done"] or runs
    p = paper.PROTOCOL
    items = [
        f"Batch size: {_values(done, 'batch_size')} (paper: {p['batch_size']}). Larger batches "
        "mean fewer updates per epoch.",
        f"Epochs: at most {_values(done, 'max_epochs')}, early stopping with patience "
        f"{_values(done, 'patience')} (paper: {p['max_epochs']}; {p['patience']}).",
        f"Weight noise σ: {_values(done, 'weight_noise')} (paper: {p['weight_noise']}); "
        f"gradient-norm clip: {_values(done, 'clip')} (paper: {p['clip']}).",
        f"Initialisation: {_values(done, 'init')} (paper: {p['init']}).",
        f"RMSProp decay {_values(done, 'rms_decay')}, momentum {_values(done, 'rms_momentum')}, "
        f"eps {_values(done, 'rms_eps')} (paper: {p['optimizer']}).",
        f"Truncated BPTT window: {_values(done, 'bptt').replace('None', 'none')} "
        f"(paper: {p['bptt']}).",
    ]
    hidden = _values(done, "hidden").replace("None", "paper size (Table 1)")
    items.append(f"Hidden units: {hidden}.")
    n_lrs = sorted({len({r["config"]["lr"] for r in c.runs}) for c in cells})
    lrs = [float(r["config"]["lr"]) for r in runs]
    if lrs:
        items.append(
            f"Learning rates: {', '.join(map(str, n_lrs))} candidates per cell, from "
            f"{min(lrs):.3g} to {max(lrs):.3g}, chosen on validation (paper: "
            f"{p['lr_candidates']})."
        )
    n_seeds = sorted({len(c.seeds) for c in cells if c.chosen_lr is not None})
    items.append(
        f"Seeds at the chosen rate: {', '.join(map(str, n_seeds)) or 'none'} per cell, with "
        f"means, standard deviations and 95% intervals (paper: {p['seeds']})."
    )
    forms = sorted({c.label for c in cells if c.unit != "tanh"})
    if forms:
        items.append(
            f"Unit forms run: {', '.join(forms)} (paper: LSTM with peepholes, GRU with the "
            "reset gate before the recurrent product)."
        )
    sizes = Counter((r["group_key"], r.get("stage")) for r in runs if r.get("group_key"))
    if sizes:
        items.append(
            "Wall-clock seconds are those of the population a run trained in (all its learning "
            "rates and seeds together, on one device; populations of "
            f"{', '.join(map(str, sorted(set(sizes.values()))))} members here), so they compare "
            "units trained the same way, not single runs (the paper timed one model per run)."
        )
    datasets = sorted({r["config"]["dataset"] for r in runs})
    if any(d.startswith("fsdd") for d in datasets):
        items.append(
            "Speech: the open Free Spoken Digit Dataset (FSDD), cut like Ubisoft A (500-sample "
            "sequences) and B (8,000-sample sequences), replaces the private Ubisoft sets, whose "
            "sampling rate, scaling and split were never published; its NLLs are not comparable "
            "with the paper's speech numbers."
        )
    missing = [
        info.label
        for name, info in paper.DATASETS.items()
        if info.paper_row and name not in datasets
    ]
    if missing:
        items.append(f"Paper data sets not in this store: {', '.join(missing)}.")
    items.append(
        "Music frames are 88-key piano rolls (MIDI 21–108) rather than the paper's 93–108-dim "
        "vectors; notes outside that range never sound, so the NLL is the same quantity."
    )
    return items


def _headline(cells: list[Cell]) -> list[str]:
    """One sentence per data set: which unit has the lowest mean test NLL."""
    out = []
    by_ds: dict[str, list[Cell]] = {}
    for c in cells:
        if c.chosen_lr is not None:
            by_ds.setdefault(c.dataset, []).append(c)
    for ds, group in by_ds.items():
        ranked = sorted(group, key=lambda c: c.summary("test").mean)
        text = ", ".join(f"{c.label} {fmt(c.summary('test').mean)}" for c in ranked)
        out.append(f"{paper.dataset_info(ds).label}: lowest mean test NLL first: {text}.")
    return out


def build_report(
    store_path: str | Path,
    out_dir: str | Path,
    *,
    quick: bool = False,
    command: str | None = None,
) -> Path:
    """Build the report folder from the results store at ``store_path``; return the folder.

    ``quick`` (or any run stored as quick) puts the quick-run banner on every output.
    ``command`` is the command line named as provenance (default: the ``rnnbench report`` call).
    Raises :class:`RnnbenchError` when the store is missing or holds no runs.
    """
    store_path, out = Path(store_path), Path(out_dir)
    runs, meta, store = _load(store_path)
    try:
        cells = build_cells(runs)
        curves = {}
        for c in cells:
            for r in c.chosen:
                curves[r["key"]] = store.epochs(r["key"])
    finally:
        store.close()
    quick = quick or meta.get("quick") == "1" or any(r.get("quick") for r in runs)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RnnbenchError(
            f"Cannot create the report folder {out} ({exc.strerror}): choose another with --out."
        ) from exc

    if command is None:
        command = shlex.join(
            ["rnnbench", "report", "--store", str(store_path), "--out", str(out)]
            + (["--quick"] if quick else [])
        )
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    status = Counter(r["status"] for r in runs)
    status_text = ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
    provenance = (
        f"{command} | store {store_path.resolve()} | {len(runs)} runs | "
        f"rnnbench {__version__} | {date}"
    )
    banner = QUICK_BANNER if quick else ""

    blocks: list[Block] = [Heading(TITLE, 1)]
    if banner:
        blocks.append(Banner(banner))
    blocks += [
        Para(
            'Reproduction of Chung, Gulcehre, Cho and Bengio, "Empirical Evaluation of Gated '
            'Recurrent Neural Networks on Sequence Modeling" (arXiv:1412.3555), from the '
            "runs of one results store. NLL is the average negative log-likelihood per time "
            "step in nats; lower is better."
        ),
        Heading("Provenance", 2, "provenance"),
        Bullets(
            [
                f"Command: `{command}`",
                f"Results store: `{store_path.resolve()}`",
                f"Runs: {len(runs)} ({status_text})" + _span(runs),
                "Software (from the store): " + "; ".join(_versions(runs)),
                f"Report built {date} by rnnbench {__version__}",
                "Protocol: "
                + (
                    "QUICK (not the paper's protocol)"
                    if quick
                    else _protocol_summary(runs)
                ),
            ]
        ),
    ]
    headline = _headline(cells)
    if headline:
        blocks += [Heading("Results at a glance", 2, "glance"), Bullets(headline)]
    blocks += [
        Heading("Table 1: model sizes", 2, "table1"),
        table1(runs),
        Heading("Table 2: NLL per time step", 2, "table2"),
        table2(cells),
        Heading("Learning-rate choice", 2, "lr"),
        lr_table(cells),
        Heading("GRU against LSTM", 2, "paired"),
        Para(
            "The paper could not decide between LSTM and GRU from one run each. With several "
            "seeds per unit we pair runs that share a seed and test whether the mean "
            "difference in test NLL is zero."
        ),
    ]
    tests = paired_tests(cells)
    blocks.append(
        paired_table(tests) if tests else Para("No data set has both GRU and LSTM runs to compare.")
    )

    blocks.append(Heading("Figures 2 and 3: learning curves", 2, "figures"))
    blocks.append(
        Para(
            "Train (dashed) and validation (solid) NLL of the best run of each unit (the seed with "
            "the lowest validation NLL at the chosen learning rate), against epochs (top row) and "
            "wall-clock seconds as the store records them (bottom row)."
        )
    )
    footer = f"{provenance}" + (f"\n{banner}" if banner else "")
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    for number, task, path in (
        (2, "music", out / "figure2.png"),
        (3, "speech", out / "figure3.png"),
    ):
        names = [d for d in datasets if paper.dataset_info(d).task == task]
        title = f"Figure {number}: {task}, best run of each unit"
        if learning_curves(path, title, names, cells, curves, banner=banner, footer=footer):
            blocks.append(
                Image(path, f"{title}. Top: against epochs; bottom: against wall-clock seconds.")
            )
        else:
            path.unlink(missing_ok=True)
            blocks.append(
                Para(
                    f"Figure {number}: no completed {task} runs with per-epoch "
                    "metrics in the store (not run)."
                )
            )

    blocks += [
        Heading("How our setup differs from the paper", 2, "differences"),
        Bullets(_differences(runs, cells)),
    ]
    if banner:
        blocks.append(Banner(banner))

    write_table2_csv(
        out / "table2.csv",
        cells,
        "quick: not the paper's protocol" if quick else _protocol_summary(runs),
        provenance,
    )
    (out / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(
        to_html(blocks, f"QUICK RUN, not the paper's protocol: {TITLE}" if quick else TITLE),
        encoding="utf-8",
    )
    return out


def _protocol_summary(runs: list[dict]) -> str:
    """The protocol constants the stored runs used, e.g. "max_epochs 500; batch_size 16; ..."."""
    parts = []
    for field in ("max_epochs", "patience", "batch_size", "weight_noise", "clip", "init"):
        values = sorted({str(r["config"].get(field)) for r in runs})
        parts.append(f"{field} {'/'.join(values)}")
    return "as stored: " + "; ".join(parts)
