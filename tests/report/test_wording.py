"""What a reader of the report sees (issue 12 §4): Table 1 says which rows were trained, the
setup differences label their values, speech NLLs say why they can be negative, a figure's
banner takes one line and its legends cover no curve."""

from __future__ import annotations

import matplotlib.figure
from matplotlib.transforms import Bbox

from rnnbench.report import paper
from rnnbench.report.build import reduced_banner
from rnnbench.report.figures import learning_curves
from rnnbench.report.results import build_cells
from rnnbench.report.setting_values import labelled_values
from rnnbench.store import Store
from tests.report.conftest import md_table


def test_table1_says_which_rows_were_trained(report_dir):
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    rows = {(r[0], r[1]): r[-1] for r in md_table(md, "Table 1: model sizes")}
    assert rows["music", "GRU"] == "yes, 12 runs (the paper's size)"
    assert rows["speech", "LSTM"] == "yes, 6 runs (the paper's size)"
    assert rows["speech", "GRU"] == "no (the paper's size, for reference)"


def test_several_values_name_where_they_apply():
    def run(dataset, unit, **config):
        return {"config": {"dataset": dataset, "unit": unit, **config}}

    jsb, fsdd = paper.dataset_info("jsb").label, paper.dataset_info("fsdd-a").label
    runs = [run("jsb", "gru", batch_size=4), run("fsdd-a", "gru", batch_size=16)]
    assert labelled_values(runs, "batch_size") == f"16 ({fsdd}), 4 ({jsb})"
    assert labelled_values(runs[:1], "batch_size") == "4"
    runs = [run("jsb", "gru", hidden=46), run("jsb", "lstm", hidden=36)]
    assert labelled_values(runs, "hidden") == f"36 ({jsb} LSTM), 46 ({jsb} GRU)"
    # a unit under two protocols is named apart, never under both values
    runs = [
        run("jsb", "gru", batch_size=1, protocol="authors"),
        run("jsb", "gru", batch_size=4, protocol="paper"),
        run("jsb", "lstm", batch_size=4),
    ]
    assert labelled_values(runs, "batch_size") == (
        f"1 ({jsb} GRU under the authors' protocol), 4 ({jsb} GRU, {jsb} LSTM)"
    )


def test_speech_nlls_say_once_why_they_can_be_negative(report_dir):
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    assert md.count("Speech NLLs can be negative: they are of a density") == 1


def test_a_figure_banner_is_one_line_and_legends_cover_no_curve(store_path, tmp_path, monkeypatch):
    with Store(store_path, readonly=True) as store:
        runs = store.runs()
        curves = {r["key"]: store.epochs(r["key"]) for r in runs}
    cells = build_cells(runs)
    banner = reduced_banner([f"departure number {i} with a long explanation" for i in range(12)])
    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: drawn.append(fig))
    assert learning_curves(tmp_path / "f.png", "Figure 2: music", ["jsb"], cells, curves,
                           banner=banner, footer="provenance")  # fmt: skip
    (fig,) = drawn
    fig.canvas.draw()
    assert len(fig.get_suptitle().splitlines()) == 2  # the title and a one-line banner
    assert "NOT THE PAPER'S PROTOCOL" in fig.get_suptitle()
    renderer = fig.canvas.get_renderer()
    legends = 0
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        legends += 1
        box = legend.get_window_extent(renderer)
        plot = ax.get_window_extent(renderer)
        assert not Bbox.intersection(box, plot) or box.y1 <= plot.y0 + 1
    assert legends >= 1
