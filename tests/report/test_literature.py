"""The literature table: every row cited and checked, Chung et al. equal to the paper module."""

from __future__ import annotations

from rnnbench.report import paper
from rnnbench.report.document import Table, to_markdown
from rnnbench.report.literature import ROWS, UNCONFIRMED, literature_blocks


def test_every_row_has_a_citation_a_source_and_positive_nlls():
    assert ROWS
    for row in ROWS:
        assert row.citation and row.confirmed_by and row.metric
        assert all(v is None or 0 < v < 20 for v in row.nll.values())
    assert all(len(entry) == 3 and all(entry) for entry in UNCONFIRMED)


def test_chung_rows_equal_the_papers_table2():
    units = {"tanh RNN": "tanh", "GRU": "gru", "LSTM": "lstm"}
    chung = [r for r in ROWS if r.citation.startswith("Chung")]
    assert len(chung) == 3
    for row in chung:
        unit = next(u for name, u in units.items() if row.model.startswith(name))
        for dataset, value in row.nll.items():
            assert value == paper.TABLE2[dataset][unit][1]


def test_section_renders_for_music_and_not_for_speech_only():
    blocks = literature_blocks(["jsb", "fsdd-a"])
    md = to_markdown(blocks)
    assert "## Table 2 in context" in md and "Not confirmed, so not shown" in md
    (table,) = [b for b in blocks if isinstance(b, Table)]
    assert table.rows[1][1] == "8.54"  # GRU on JSB
    assert literature_blocks(["fsdd-a"]) == []


def test_the_report_cites_papers_not_files_a_user_lacks():
    from rnnbench.report import literature

    text = repr((literature.ROWS, literature.UNCONFIRMED, literature.NOTES))
    for private in ("PAPER.md", "shared/", "search corpora", "project's search"):
        assert private not in text
    assert all("arXiv:1412.3555" in row.confirmed_by for row in literature.ROWS)
