"""Figures' wall clock: one model's seconds, whatever the size of the population it trained in."""

from __future__ import annotations

import numpy as np

from rnnbench.report.build import _curves, _sharing
from rnnbench.report.figures import per_model_seconds
from rnnbench.report.results import build_cells
from rnnbench.report.stores import open_stores
from rnnbench.store import Store
from tests.report.conftest import add_run


def records(cumulative):
    return [{"epoch": e, "seconds": s} for e, s in enumerate(cumulative, start=1)]


def test_each_epoch_is_shared_among_the_members_that_trained_in_it():
    recs = records([10.0, 20.0, 30.0, 35.0])
    x = per_model_seconds(recs, 35.0, {1: 10, 2: 10, 3: 5, 4: 1})
    np.testing.assert_allclose(x, [1.0, 2.0, 4.0, 9.0])
    np.testing.assert_allclose(per_model_seconds(recs, 35.0, None), [10, 20, 30, 35])


def _sharing_of(path):
    with open_stores(path) as sources:
        cells = build_cells(sources.runs)
        curves = _curves(sources, cells)
        return curves, _sharing(sources, sources.runs, cells, curves)


def test_members_are_counted_within_their_own_population(tmp_path):
    path = tmp_path / "results.db"
    with Store(path) as store:
        # A learning-rate search of 3 (epochs 1-4 / 1-2 / 1) ...
        best = add_run(store, "jsb", "gru", 1e-3, 0, status="done", valid=[9, 8, 7, 6.5])
        add_run(store, "jsb", "gru", 1e-4, 0, status="done", valid=[9.5, 9.4])
        add_run(store, "jsb", "gru", 1e-2, 0, status="done", valid=[12])
    # ... alone (no fresh seeds): the figures draw its best run, which shared each epoch
    # with the search members still training
    curves, sharing = _sharing_of(path)
    assert sharing == {best: {1: 3, 2: 2, 3: 1, 4: 1}}
    # add_run stores 1 s per epoch of the population: alone, the best run took 1/3 + 1/2 + 1 + 1.
    x = per_model_seconds(curves[best], 4.0, sharing[best])
    np.testing.assert_allclose(x[-1], 1 / 3 + 1 / 2 + 1 + 1)
    # ... then 2 fresh seeds at the best rate (epochs 1-3 / 1-2): the figures draw them, each
    # counted within the seeds' population only, never with the search's members
    with Store(path) as store:
        seeds = [
            add_run(store, "jsb", "gru", 1e-3, s, status="done", valid=v, stage="seeds")
            for s, v in ((1, [9, 8, 7]), (2, [9, 8]))
        ]
    curves, sharing = _sharing_of(path)
    assert set(sharing) == set(seeds)
    assert sharing[seeds[0]] == sharing[seeds[1]] == {1: 2, 2: 2, 3: 1}
    x = per_model_seconds(curves[seeds[0]], 3.0, sharing[seeds[0]])
    np.testing.assert_allclose(x[-1], 1 / 2 + 1 / 2 + 1)
