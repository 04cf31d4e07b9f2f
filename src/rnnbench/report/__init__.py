"""The report: Tables 1 and 2, Figures 2 and 3, Markdown and one self-contained HTML page.

``build_report(store_paths, out_dir, quick=False)`` reads one results store or several (merged
run by run) and writes the folder; ``rnnbench report`` is its command. The paper's own numbers
live in :mod:`rnnbench.report.paper`.
"""

from rnnbench.report.build import build_report

__all__ = ["build_report"]
