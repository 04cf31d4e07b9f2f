"""Table 2's baseline rows: the per-note marginal and Markov chain on each music set run.

:func:`with_baselines` adds, after the rows of each music data set of the report, one row per
baseline of :mod:`rnnbench.baselines` (fitted on that set's training split, loaded with the
normal loader from ``$RNNBENCH_DATA`` or the cache), with its train and test NLL per step in
the columns the models use; a column whose header names the per-sequence average gets the
per-sequence test NLL. A set whose data cannot be loaded gets no rows and the caption says so.
"""

from __future__ import annotations

from functools import lru_cache

from rnnbench.errors import RnnbenchError
from rnnbench.report import paper
from rnnbench.report.document import Table
from rnnbench.report.tables import fmt

LABELS = {
    "marginal": "per-note marginal (baseline)",
    "markov": "per-note Markov chain (baseline)",
}
CAPTION = (
    " Baseline rows: each note on with its training-split frequency (marginal), or an "
    "independent two-state chain per note fitted on the training split (Markov), both with "
    "add-half smoothing (`rnnbench baselines`); no learning rate and no seeds: they are fitted, "
    "not trained."
)


@lru_cache(maxsize=8)
def _scores(dataset: str) -> dict[tuple[str, str], tuple[float, float]]:
    from rnnbench.baselines import music_baselines
    from rnnbench.data.registry import load_dataset

    return {
        (r.baseline, r.split): (r.frame_weighted, r.per_sequence)
        for r in music_baselines(load_dataset(dataset))
    }


def _row(header: list[str], label: str, unit: str, scores: dict, baseline: str) -> list[str]:
    train, test = scores[(baseline, "train")], scores[(baseline, "test")]
    row = []
    for name in header:
        low = name.lower()
        if low == "data set":
            row.append(label)
        elif low == "unit":
            row.append(unit)
        elif "(ours)" in low and "train" in low and "sequence" not in low:
            row.append(fmt(train[0]))
        elif "(ours)" in low and "test" in low and "sequence" not in low:
            row.append(fmt(test[0]))
        elif "test" in low and "sequence" in low and "paper" not in low:
            row.append(fmt(test[1]))
        else:
            row.append("—")
    return row


def with_baselines(table: Table, datasets: list[str]) -> Table:
    """``table`` (Table 2) with baseline rows after the rows of each music set in
    ``datasets``."""
    rows = [list(r) for r in table.rows]
    missing = []
    for name in dict.fromkeys(datasets):
        info = paper.dataset_info(name)
        if info.task != "music":
            continue
        try:
            scores = _scores(name)
        except (RnnbenchError, OSError):
            missing.append(info.label)
            continue
        at = max((i for i, r in enumerate(rows) if r[0] == info.label), default=len(rows) - 1)
        new = [_row(table.header, info.label, LABELS[b], scores, b) for b in LABELS]
        rows[at + 1 : at + 1] = new
    caption = table.caption + CAPTION
    if missing:
        caption += f" Baselines not computed (data not found): {', '.join(missing)}."
    return Table(table.header, rows, caption=caption, numeric=table.numeric)
