"""``build_report``: the whole report folder from one results store or several.

Writes ``report.md``, ``report.html`` (self-contained), ``table2.csv``, ``runs.csv`` (every
run: config fields, status, NLLs), ``curves.csv`` (per-epoch NLLs of every seed at each
cell's chosen rate), ``figure2.png`` (music) and ``figure3.png`` (speech) into the output
folder. Sections: provenance, Table 1, Table 2,
the progress of unfinished cells (only while some runs are queued or running), the
learning-rate choice, GRU against LSTM, gated units against tanh, Figures 2–3, the compute
each cell took, how our setup differs from the paper.
"""

from __future__ import annotations

import shlex
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from rnnbench import __version__
from rnnbench.errors import RnnbenchError
from rnnbench.report import paper
from rnnbench.report.ablations import reproduce_runs
from rnnbench.report.baselines import with_baselines
from rnnbench.report.compute import compute_table, epoch_sharing
from rnnbench.report.departures import PATIENCE, departures, reduced_banner  # noqa: F401
from rnnbench.report.document import Banner, Block, Bullets, Heading, Image, Para, to_markdown
from rnnbench.report.exports import EXPORT_FILES, collect, write_exports
from rnnbench.report.figures import learning_curves, write_curves_csv
from rnnbench.report.halving import quick_note
from rnnbench.report.html import to_html
from rnnbench.report.literature import literature_blocks
from rnnbench.report.marking import (
    PAPER_ONLY,
    QUICK,
    add_marking,
    protocol_labels,
    protocol_summary,
)
from rnnbench.report.progress import cell_progress, progress_table
from rnnbench.report.results import (
    GATED_AGAINST_TANH,
    UNFINISHED,
    UNIT_CONTRASTS,
    Cell,
    build_cells,
    paired_tests,
)
from rnnbench.report.samples import samples_section
from rnnbench.report.setting_values import labelled_values
from rnnbench.report.stores import Sources, StorePaths, open_stores
from rnnbench.report.tables import (
    fmt,
    lr_table,
    paired_table,
    stopped_table,
    table1,
    table2,
    write_runs_csv,
    write_table2_csv,
)
from rnnbench.report.untrained import mark_untrained

QUICK_BANNER = (
    "QUICK RUN: these numbers do not follow the paper's protocol (few learning-rate "
    "candidates, capped epochs, few data sets); do not compare them with the paper."
)
TITLE = "rnnbench: Chung et al. (2014), gated recurrent units on sequence modeling"
# Every file a report folder holds (figure2.png or figure3.png is left out when no music or no
# speech run has per-epoch metrics).
REPORT_FILES = (
    "report.md",
    "report.html",
    "table2.csv",
    "runs.csv",
    "curves.csv",
    "figure2.png",
    "figure3.png",
    *EXPORT_FILES,
)


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


def _hosts(runs: list[dict]) -> str:
    """ ", on HOST" (or the hosts with their run counts) as the store recorded them."""
    hosts = Counter(r["host"] for r in runs if r.get("host"))
    if not hosts:
        return ""
    if len(hosts) == 1:
        return f", on {next(iter(hosts))}"
    return ", on " + ", ".join(f"{h} ({_runs(n)})" for h, n in hosts.most_common())


def _span(runs: list[dict]) -> str:
    """When the runs were trained, from the store's timestamps; while some runs are still
    queued or running, since when and the last update any run wrote."""
    started = sorted(r["started"] for r in runs if r.get("started"))
    finished = sorted(r["finished"] for r in runs if r.get("finished"))
    if not started:
        return ""
    if any(r["status"] in UNFINISHED for r in runs):
        last = max(r.get("updated") or "" for r in runs)
        return f", training since {started[0]}, last update {last}"
    return f", trained {started[0]} to {finished[-1] if finished else 'now'}"


def _values(runs: list[dict], key: str) -> str:
    return labelled_values(runs, key)  # several values: each names its data sets


def _differences(runs: list[dict], cells: list[Cell], where: str = "this store") -> list[str]:
    """'How our setup differs from the paper', from the stored configs (``where``: the stores)."""
    done = [r for r in runs if r["status"] == "done"] or runs
    p = paper.PROTOCOL
    items = [
        f"Batch size: {_values(done, 'batch_size')} (paper: {p['batch_size']}). Larger batches "
        "mean fewer updates per epoch.",
        f"Epochs: at most {_values(done, 'max_epochs')}, early stopping with patience "
        f"{_values(done, 'patience')} (paper: {p['max_epochs']}; {p['patience']}).",
        f"Weight noise σ: {_values(done, 'weight_noise')} (paper: {p['weight_noise']}); "
        f"gradient-norm clip: {_values(done, 'clip')} (paper: {p['clip']}).",
        "Weight noise on the output layer: "
        + _values(done, "noise_output").replace("True", "yes").replace("False", "no")
        + " (paper: not said; the authors' code: no, the recurrent layer only; ours: yes for "
        "music, no for speech by default).",
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
            "Wall-clock seconds: runs train in populations (all learning rates, or all seeds, "
            "of a cell together on one device; populations of "
            f"{', '.join(map(str, sorted(set(sizes.values()))))} members here). The store keeps "
            "the population's seconds; the figures divide each epoch's time among the members "
            "that trained in it, an estimate of one model's time (the paper timed one model per "
            "run)."
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
        items.append(f"Paper data sets not in {where}: {', '.join(missing)}.")
    items.append(
        "Music frames are 88-key piano rolls (MIDI 21–108) rather than the paper's 93–108-dim "
        "vectors; notes outside that range never sound, so the NLL is the same quantity."
    )
    return items


def _headline(cells: list[Cell]) -> list[str]:
    """One sentence per data set: which unit has the lowest mean test NLL. A data set with a
    cell still in progress (or not started) says so: its ranking may change. A cell has a
    result once its rate is chosen and a reported (fresh) seed has finished."""
    out = []
    by_ds: dict[str, list[Cell]] = {}
    for c in cells:
        by_ds.setdefault(c.dataset, []).append(c)
    for ds, group in by_ds.items():
        ready = [c for c in group if c.chosen_lr is not None and c.seeds]
        waiting = [c.label for c in group if c not in ready and c.unfinished]
        lost = [c.label for c in group if c not in ready and not c.unfinished]
        note = ""
        if waiting:
            note += f" Not finished yet: {', '.join(waiting)}."
        elif any(c.unfinished for c in group):
            note += " Some cells are still training; the order may change."
        if lost:
            note += f" No result (every run diverged or failed): {', '.join(lost)}."
        label = paper.dataset_info(ds).label
        if not ready:
            out.append(f"{label}: no unit has a result yet.{note}")
            continue
        ranked = sorted(ready, key=lambda c: c.summary("test").mean)
        text = ", ".join(
            f"{c.label} {fmt(c.summary('test').mean)}"
            + (
                f" ({len(c.seeds)} seed{'s' if len(c.seeds) != 1 else ''} so far)"
                if c.unfinished
                else ""
            )
            for c in ranked
        )
        out.append(f"{label}: lowest mean test NLL first: {text}.{note}")
    return out


def build_report(
    store_paths: StorePaths,
    out_dir: str | Path,
    *,
    quick: bool = False,
    command: str | None = None,
    samples: bool = True,
    data_dir: str | Path | None = None,
) -> Path:
    """Build the report folder from one results store or several; return the folder.

    ``store_paths`` is one path or a sequence of paths; the stores' runs are merged by key
    (see :mod:`rnnbench.report.stores`). ``quick`` (or any run or store marked quick) puts the
    quick-run banner on every output. ``command`` is the command line named as provenance
    (default: the ``rnnbench report`` call). ``samples``: write the Samples section
    (:mod:`rnnbench.report.samples`, data from ``data_dir``). Raises :class:`RnnbenchError`
    when a store is missing or holds no runs.
    """
    out = Path(out_dir)
    with open_stores(store_paths) as sources:
        sources.runs = reproduce_runs(sources.runs)  # `rnnbench ablate` reports its own runs
        runs = sources.runs
        cells = build_cells(runs)
        mark_untrained(cells, data_dir)
        curves = _curves(sources, cells)
        sharing = _sharing(sources, runs, cells, curves)
        cost = compute_table(cells, lambda key: curves.get(key) or sources.epochs(key))
        exported = collect(sources)
    quick = quick or sources.quick or any(r.get("quick") for r in runs)
    _make_folder(out)
    if command is None:
        stores = [arg for p in sources.paths for arg in ("--store", str(p))]
        command = shlex.join(
            ["rnnbench", "report", *stores, "--out", str(out)] + (["--quick"] if quick else [])
        )
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    several = len(sources.paths) > 1
    where = ", ".join(str(p.resolve()) for p in sources.paths)
    provenance = (
        f"{command} | {'stores' if several else 'store'} {where} | {len(runs)} runs | "
        f"rnnbench {__version__} | {date}"
    )
    banner = (
        " ".join([QUICK_BANNER, *quick_note(runs)])
        if quick
        else reduced_banner(departures(runs, cells))
    )
    blocks = _front(sources, command, date, quick, banner)
    blocks += _tables(cells, runs, curves)
    blocks += _figures(
        out,
        cells,
        curves,
        banner,
        footer=provenance,  # the banner heads the figure, in a line (figure_banner)
        sharing=sharing,
    )
    if samples:
        blocks += samples_section(cells, out, sources.paths, data_dir=data_dir)
    blocks += [
        Heading("Compute", 2, "compute"),
        Para(
            "What each cell cost to train, in worker time (one worker process trains one "
            f"population at a time){_hosts(runs)}. The provenance above gives the elapsed time."
        ),
        cost,
        Heading("How our setup differs from the paper", 2, "differences"),
        Bullets(_differences(runs, cells, "these stores" if several else "this store")),
    ]
    if banner:
        blocks.append(Banner(banner))
    write_curves_csv(out / "curves.csv", cells, curves, sharing)
    write_exports(exported, out)  # the stores as text: `report --store OUT` rebuilds it all
    _write(out, blocks, cells, runs, quick, provenance, reduced=bool(banner) and not quick)
    return out


def _curves(sources: Sources, cells: list[Cell]) -> dict[str, list[dict]]:
    """Per-epoch rows of the runs the report draws or follows: each cell's chosen runs (the
    figures) and every run of a cell still in progress (the progress section)."""
    keys = [r["key"] for c in cells for r in (c.runs if c.unfinished else c.chosen)]
    return {key: sources.epochs(key) for key in keys}


def _sharing(
    sources: Sources, runs: list[dict], cells: list[Cell], curves: dict[str, list[dict]]
) -> dict[str, dict[int, int]]:
    """For each run the figures draw: epoch -> how many members of its population (the runs
    with its stored group key and stage that trained together with it,
    :func:`rnnbench.report.compute.population_key`) trained in that epoch."""
    drawn = {r["key"]: r for c in cells for r in c.chosen}
    families: dict[tuple, list[dict]] = {}
    for r in runs:
        families.setdefault((r.get("group_key"), r.get("stage")), []).append(r)

    def rows(key: str) -> list[dict]:
        return curves[key] if key in curves else sources.epochs(key)

    return {
        key: epoch_sharing(run, families.get((run.get("group_key"), run.get("stage")), []), rows)
        for key, run in drawn.items()
    }


def _make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RnnbenchError(
            f"Cannot create the report folder {out} ({exc.strerror}): choose another with --out."
        ) from exc


def _store_lines(sources: Sources) -> str:
    """The provenance line naming the store, or every store with how many runs came from it."""
    if len(sources.paths) == 1:
        return f"Results store: `{sources.paths[0].resolve()}`"
    named = ", ".join(
        f"`{p.resolve()}` ({_runs(n)})"
        for p, n in zip(sources.paths, sources.counts(), strict=True)
    )
    text = f"Results stores (runs taken from each): {named}"
    if sources.shared:
        text += (
            f"; {_runs(len(sources.shared))} found in more than one store: each keeps its finished "
            "row (done or diverged) over an unfinished one, else the row updated last, and its "
            "per-epoch curve from the same store"
        )
    return text


def _trained_by(sources: Sources) -> str:
    """The provenance line naming the commands that trained the runs, as the stores hold them."""
    commands = sources.commands
    if not commands:
        return "Trained by: not recorded (the store predates rnnbench recording its commands)"
    calls: dict[str, list[dict]] = {}
    for call in sorted(commands, key=lambda c: str(c.get("at", ""))):
        calls.setdefault(call["command"], []).append(call)
    parts = []
    for command, made in calls.items():
        hosts = sorted({str(c.get("host")) for c in made if c.get("host")})
        when = str(made[0].get("at", "?"))
        if len(made) > 1:
            when = f"{len(made)} calls, first {when}, last {made[-1].get('at', '?')}"
        parts.append(f"`{command}` ({when}" + (f" on {', '.join(hosts)})" if hosts else ")"))
    silent = [
        p for p, recorded in zip(sources.paths, sources.recorded, strict=True) if not recorded
    ]
    if silent:
        parts.append("not recorded for " + ", ".join(f"`{p.resolve()}`" for p in silent))
    return "Trained by: " + "; ".join(parts)


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _front(sources: Sources, command: str, date: str, quick: bool, banner: str) -> list[Block]:
    """Title, banner, introduction and provenance."""
    runs = sources.runs
    status = Counter(r["status"] for r in runs)
    status_text = ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
    n = len(sources.paths)
    origin = "one results store" if n == 1 else f"{n} results stores merged run by run"
    blocks: list[Block] = [Heading(TITLE, 1)]
    if banner:
        blocks.append(Banner(banner))
    return blocks + [
        Para(
            'Reproduction of Chung, Gulcehre, Cho and Bengio, "Empirical Evaluation of Gated '
            'Recurrent Neural Networks on Sequence Modeling" (arXiv:1412.3555), from the '
            f"runs of {origin}. NLL is the average negative log-likelihood per time "
            "step in nats; lower is better. Speech NLLs can be negative: they are of a density "
            "over continuous (standardised) samples, which can exceed 1, unlike the "
            "probabilities of the music's binary notes."
        ),
        Heading("Provenance", 2, "provenance"),
        Bullets(
            [
                _trained_by(sources),
                f"Report command: `{command}`",
                _store_lines(sources),
                f"Runs: {len(runs)} ({status_text})" + _span(runs),
                "Software (from the store): " + "; ".join(_versions(runs)),
                f"Report built {date} by rnnbench {__version__}",
                "Protocol: "
                + ("QUICK (not the paper's protocol)" if quick else protocol_summary(runs)),
            ]
        ),
    ]


def _tables(cells: list[Cell], runs: list[dict], curves: dict[str, list[dict]]) -> list[Block]:
    """Results at a glance, Tables 1 and 2, progress, the lr choice and the paired tests."""
    blocks: list[Block] = []
    headline = _headline(cells)
    if headline:
        blocks += [Heading("Results at a glance", 2, "glance"), Bullets(headline)]
    blocks += [
        Heading("Table 1: model sizes", 2, "table1"),
        table1(runs),
        Heading("Table 2: NLL per time step", 2, "table2"),
        with_baselines(
            table2(cells, started={key for key, rows in curves.items() if rows}),
            [c.dataset for c in cells],
        ),
    ]
    blocks += _progress(cells, curves)
    blocks += literature_blocks([c.dataset for c in cells])
    blocks += [
        Heading("Learning-rate choice", 2, "lr"),
        lr_table(cells),
        Heading("GRU against LSTM", 2, "paired"),
        Para(
            "The paper could not decide between LSTM and GRU from one run each. With several "
            "seeds per unit we pair runs that share a seed and test whether the mean "
            "difference in test NLL is zero."
        ),
    ]
    # One Holm family per data set: its unit contrasts (GRU − LSTM, GRU − tanh, LSTM − tanh)
    contrasts = paired_tests(cells, UNIT_CONTRASTS, per_dataset=True)
    family = (
        "each data set's unit contrasts, in this section and the next (GRU − LSTM, GRU − tanh, "
        "LSTM − tanh: 3 tests per data set with the paper's three units, more where a store "
        "holds other forms), that is, one family per data set"
    )
    tests = [t for t in contrasts if (t.a.unit, t.b.unit) == ("gru", "lstm")]
    blocks.append(
        paired_table(tests, family=family)
        if tests
        else Para("No data set has both GRU and LSTM runs to compare.")
    )
    blocks += [
        Heading("Gated units against tanh", 2, "gated"),
        Para(
            "The paper's main conclusion is that gated units beat the tanh RNN. The same paired "
            "test, each gated unit against tanh."
        ),
    ]
    tests = [t for t in contrasts if (t.a.unit, t.b.unit) in GATED_AGAINST_TANH]
    blocks.append(
        paired_table(tests, "gated unit", "tanh", family=family)
        if tests
        else Para("No data set has both gated and tanh runs to compare.")
    )
    stopped = stopped_table(cells)
    if stopped is not None:
        blocks += [Heading("Runs that diverged or failed", 2, "stopped"), stopped]
    return blocks


def _progress(cells: list[Cell], curves: dict[str, list[dict]]) -> list[Block]:
    """The "Progress of unfinished cells" section; nothing when every cell is finished."""
    rows = [p for c in cells if (p := cell_progress(c, curves)) is not None]
    if not rows:
        return []
    return [
        Heading("Progress of unfinished cells", 2, "progress"),
        Para(
            f"{len(rows)} of {len(cells)} cells still have runs queued or running. Table 2 "
            "counts only finished runs; this is how far each unfinished cell got. Its "
            "validation NLLs are provisional (the best epoch so far, not an early-stopped "
            "result) and will change as training goes on."
        ),
        progress_table(rows),
    ]


def _figures(
    out: Path,
    cells: list[Cell],
    curves: dict[str, list[dict]],
    banner: str,
    footer: str,
    sharing: dict[str, dict[int, int]],
) -> list[Block]:
    """Figures 2 (music) and 3 (speech), or a sentence for each that has nothing to draw."""
    blocks: list[Block] = [
        Heading("Figures 2 and 3: learning curves", 2, "figures"),
        Para(
            "Train (dashed) and validation (solid) NLL of the best run of each unit (the seed with "
            "the lowest validation NLL at the chosen learning rate), against epochs (top row) and "
            "against wall-clock seconds per model (bottom row): each epoch's time divided by the "
            "members its population trained in that epoch, so a run from a learning-rate search "
            "of 10 and one from a population of 2 seeds are on one clock. `curves.csv` holds "
            "these curves for every seed at each cell's chosen rate, one row per epoch."
        ),
    ]
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    for number, task, path in (
        (2, "music", out / "figure2.png"),
        (3, "speech", out / "figure3.png"),
    ):
        names = [d for d in datasets if paper.dataset_info(d).task == task]
        title = f"Figure {number}: {task}, best run of each unit"
        if learning_curves(
            path, title, names, cells, curves, banner=banner, footer=footer, sharing=sharing
        ):
            blocks.append(
                Image(
                    path,
                    f"{title}. Top: against epochs; bottom: against wall-clock seconds per model.",
                )
            )
        else:
            path.unlink(missing_ok=True)
            blocks.append(
                Para(
                    f"Figure {number}: no completed {task} runs with per-epoch "
                    "metrics in the store (not run)."
                )
            )
    return blocks


def _write(
    out: Path,
    blocks: list[Block],
    cells: list[Cell],
    runs: list[dict],
    quick: bool,
    provenance: str,
    reduced: bool = False,
) -> None:
    """report.md, report.html, table2.csv and runs.csv (``reduced``: the runs depart from the
    paper's protocol, see :func:`departures`)."""
    write_runs_csv(out / "runs.csv", runs)
    labels = protocol_labels(cells, runs, quick)  # each row's own protocol (marking)
    write_table2_csv(out / "table2.csv", cells, labels, provenance, QUICK if quick else PAPER_ONLY)
    add_marking(out, labels, provenance)  # runs.csv and curves.csv: the same two columns
    title = TITLE
    if quick:
        title = f"QUICK RUN, not the paper's protocol: {TITLE}"
    elif reduced:
        title = f"Not the paper's protocol: {TITLE}"
    (out / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(to_html(blocks, title), encoding="utf-8")
