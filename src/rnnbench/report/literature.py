"""Table 2 in context: published per-step test NLLs on the four music sets, with their sources.

Only numbers checked against a source are here (:data:`ROWS`, each with its citation and how it
was confirmed); what was looked for and could not be confirmed is in :data:`UNCONFIRMED`, with
no numbers. :func:`literature_blocks` renders both as the report's "Table 2 in context" section;
``docs/literature.md`` holds the same table in Markdown.

Metric conventions differ between papers (:data:`NOTES`): some report the negative
log-likelihood per time step (positive, lower is better), others the log-likelihood (negative,
higher is better); most weight every time step equally (frame-weighted), which is Table 2's
metric; a per-sequence average weights short pieces more. Every NLL here is positive, in nats
per time step.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnnbench.report.document import Block, Bullets, Heading, Para, Table

__all__ = ["NOTES", "ROWS", "UNCONFIRMED", "LiteratureRow", "literature_blocks", "literature_table"]

SETS = ("JSB Chorales", "Nottingham", "MuseData", "Piano-midi.de")


@dataclass(frozen=True)
class LiteratureRow:
    """One published model's test NLL per time step (nats, positive) on each music set it
    reports (None: not reported), with where it comes from and how it was checked."""

    model: str
    citation: str  # paper, table
    nll: dict[str, float | None]
    metric: str  # what the paper reports and how we converted it
    confirmed_by: str  # the source we read the numbers in


_CHUNG = "Chung, Gulcehre, Cho & Bengio 2014 (arXiv:1412.3555), Table 2"
_CHUNG_METRIC = "average NLL per time step, test split; one run per cell, no error bars"
_CHUNG_SOURCE = (
    "Table 2 of the paper (arXiv:1412.3555), transcribed into rnnbench.report.paper.TABLE2 "
    "(a test checks this row against it)"
)

ROWS: tuple[LiteratureRow, ...] = (
    LiteratureRow(
        "tanh RNN, ~20k parameters",
        _CHUNG,
        {"JSB Chorales": 9.10, "Nottingham": 3.13, "MuseData": 6.23, "Piano-midi.de": 9.03},
        _CHUNG_METRIC,
        _CHUNG_SOURCE,
    ),
    LiteratureRow(
        "GRU, ~20k parameters",
        _CHUNG,
        {"JSB Chorales": 8.54, "Nottingham": 3.23, "MuseData": 5.99, "Piano-midi.de": 8.82},
        _CHUNG_METRIC,
        _CHUNG_SOURCE,
    ),
    LiteratureRow(
        "LSTM (peepholes), ~20k parameters",
        _CHUNG,
        {"JSB Chorales": 8.67, "Nottingham": 3.20, "MuseData": 6.23, "Piano-midi.de": 9.03},
        _CHUNG_METRIC,
        _CHUNG_SOURCE,
    ),
)

# Looked for, not confirmed: (citation, what, why). No numbers: an unchecked number is not cited.
UNCONFIRMED: tuple[tuple[str, str, str], ...] = (
    (
        "Boulanger-Lewandowski, Bengio & Vincent 2012 (ICML), Table 1",
        "RNN, RNN (HF), RNN-RBM, RNN-NADE log-likelihoods on the four sets",
        "no copy of the table could be read (the arXiv listing of arXiv:1206.6392 gives its "
        "abstract only)",
    ),
    (
        "Pascanu, Mikolov & Bengio 2013 (ICML, arXiv:1211.5063), polyphonic music table",
        "RNN trained with SGD, with gradient clipping, and with clipping and regularisation",
        "no copy of the table was found",
    ),
    (
        "Bai, Kolter & Koltun 2018 (arXiv:1803.01271), the sequence-modelling table",
        "TCN, LSTM, GRU, RNN on JSB Chorales and Nottingham",
        "the authors' repository (locuslab/TCN, README and TCN/poly_music/README.md) has no "
        "numbers and no copy of the paper's table was found; numbers quoted second-hand "
        "elsewhere are therefore left out",
    ),
    (
        "Greff et al. 2017 (LSTM: A Search Space Odyssey)",
        "LSTM variants on JSB Chorales",
        "no copy of the results was found; the paper reports them mostly as plots",
    ),
)

NOTES: tuple[str, ...] = (
    "Frame-weighted, log-likelihood sign: the data sets' own page (Boulanger-Lewandowski, "
    "www-etud.iro.umontreal.ca/~boulanni/icml2012, 'Evaluation notes') defines the score as "
    "the average log-likelihood of a time step, every time step of the test set weighted "
    "equally, so longer pieces weigh more; papers in that "
    "line print it negative (higher is better). Table 2 and this table print its negation.",
    "Per-sequence averages (the mean over pieces of each piece's mean per-step NLL) weight short "
    "pieces more; the report's per-sequence columns and `rnnbench baselines` give both.",
    "Model sizes differ: Chung et al. match ~20k parameters per model; later papers use larger "
    "models, which is not a like-for-like comparison with Table 2.",
)


def literature_table() -> Table:
    """One row per model: its test NLL per step on each set, the citation and the source."""
    body = [
        [
            row.model,
            *("—" if row.nll.get(s) is None else f"{row.nll[s]:.2f}" for s in SETS),
            row.citation,
            row.confirmed_by,
        ]
        for row in ROWS
    ]
    return Table(
        ["model", *SETS, "citation", "checked against"],
        body,
        caption=(
            "Published test NLL per time step (nats, lower is better), confirmed against the "
            "source named; compare with Table 2's test column and its baseline rows."
        ),
        numeric=[False, True, True, True, True, False, False],
    )


def literature_blocks(datasets: list[str] | None = None) -> list[Block]:
    """The report's "Table 2 in context" section; nothing when ``datasets`` (the report's data
    set names) holds no music set."""
    from rnnbench.report.paper import dataset_info

    if datasets is not None and not any(dataset_info(d).task == "music" for d in datasets):
        return []
    unconfirmed = [f"{cite}: {what} ({why})." for cite, what, why in UNCONFIRMED]
    return [
        Heading("Table 2 in context", 2, "literature"),
        Para(
            "Published results on the same four music sets. Only numbers checked against a "
            "source are shown; the list after the table names what could not be checked."
        ),
        literature_table(),
        Bullets(list(NOTES)),
        Para("Not confirmed, so not shown:"),
        Bullets(unconfirmed),
    ]
