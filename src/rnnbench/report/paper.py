"""The numbers of Chung et al. (2014), arXiv:1412.3555, that the report compares against.

Everything here is copied from the paper (Tables 1 and 2) or from the authors' code
(github.com/jych/librnn) where the paper is silent; nothing is measured. Our data set names
(``rnnbench.data.registry``) map onto the paper's rows through :data:`DATASETS`.
"""

from __future__ import annotations

from dataclasses import dataclass

UNITS = ("tanh", "gru", "lstm")
UNIT_LABELS = {"tanh": "tanh", "gru": "GRU", "lstm": "LSTM"}

# The forms the paper used: LSTM with peepholes, GRU with the reset gate before the product.
PAPER_FORMS = {"tanh": "", "gru": "reset before", "lstm": "peephole"}


@dataclass(frozen=True)
class DatasetInfo:
    """How one of our data set names relates to the paper."""

    name: str  # our registry name
    label: str  # what the report prints
    task: str  # "music" or "speech": selects the paper's model sizes
    paper_row: str | None  # the paper's Table 2 row this data set reproduces, if any
    note: str = ""


DATASETS: dict[str, DatasetInfo] = {
    "nottingham": DatasetInfo("nottingham", "Nottingham", "music", "Nottingham"),
    "jsb": DatasetInfo("jsb", "JSB Chorales", "music", "JSB Chorales"),
    "musedata": DatasetInfo("musedata", "MuseData", "music", "MuseData"),
    "pianomidi": DatasetInfo("pianomidi", "Piano-midi.de", "music", "Piano-midi.de"),
    "fsdd-a": DatasetInfo(
        "fsdd-a",
        "FSDD-A (speech)",
        "speech",
        None,
        "open substitute for the private Ubisoft A, cut the same way; no paper value",
    ),
    "fsdd-b": DatasetInfo(
        "fsdd-b",
        "FSDD-B (speech)",
        "speech",
        None,
        "open substitute for the private Ubisoft B, cut the same way; no paper value",
    ),
}

# Table 2 rows that only the paper has; shown for reference.
PAPER_ONLY = {"ubisoft-a": "Ubisoft A (speech)", "ubisoft-b": "Ubisoft B (speech)"}

# Table 2: average negative log-likelihood per time step, nats, as (train, test).
TABLE2: dict[str, dict[str, tuple[float, float]]] = {
    "Nottingham": {"tanh": (3.22, 3.13), "gru": (2.79, 3.23), "lstm": (3.08, 3.20)},
    "JSB Chorales": {"tanh": (8.82, 9.10), "gru": (6.94, 8.54), "lstm": (8.15, 8.67)},
    "MuseData": {"tanh": (5.64, 6.23), "gru": (5.06, 5.99), "lstm": (5.18, 6.23)},
    "Piano-midi.de": {"tanh": (5.64, 9.03), "gru": (4.93, 8.82), "lstm": (6.49, 9.03)},
    "Ubisoft A (speech)": {"tanh": (6.29, 6.44), "gru": (2.31, 3.59), "lstm": (1.44, 2.70)},
    "Ubisoft B (speech)": {"tanh": (7.61, 7.62), "gru": (0.38, 0.88), "lstm": (0.80, 1.26)},
}

# Table 1: hidden units and parameter counts. Speech counts are exact (recurrent layer only,
# 20-dim input, one bias per gate, 3 peephole vectors for LSTM); music counts are the paper's
# rounded figures.
TABLE1_UNITS = {
    "music": {"lstm": 36, "gru": 46, "tanh": 100},
    "speech": {"lstm": 195, "gru": 227, "tanh": 400},
}
TABLE1_PARAMS = {
    "music": {"lstm": 19_800, "gru": 20_200, "tanh": 20_100},
    "speech": {"lstm": 169_065, "gru": 168_888, "tanh": 168_400},
}
TABLE1_EXACT = {"music": False, "speech": True}

# The protocol's numbers that a report checks the stored runs against (the paper's, else the
# authors' code's): a run below these caps or with other noise or clipping is a shortened study.
PROTOCOL_VALUES = {"max_epochs": 500, "lr_candidates": 10, "weight_noise": 0.075, "clip": 1.0}

# The training setup: what the paper says, else what the authors' code did.
PROTOCOL = {
    "batch_size": "not published (authors' code: 1)",
    "max_epochs": "not published (authors' code: up to 500)",
    "patience": "early stopping on validation; patience not published",
    "weight_noise": "0.075",
    "clip": "gradient norm rescaled to 1",
    "init": "not published (authors' code: uniform ±0.1, orthogonal recurrent matrices)",
    "optimizer": "RMSProp (authors' code: momentum 0.9, decay 0.95, eps 1e-2)",
    "lr_candidates": "10 log-uniform candidates, ln lr ~ U(-12, -6) (about 6e-6 to 2.5e-3)",
    "seeds": "1 run per cell, no error bars",
    "bptt": "full sequences (no truncation)",
}


def dataset_info(name: str) -> DatasetInfo:
    """Our description of data set ``name``; user data (``midi:``/``wav:``) has no paper row."""
    if name in DATASETS:
        return DATASETS[name]
    if name.startswith("wav:"):
        return DatasetInfo(name, name, "speech", None, "user WAV folder; no paper value")
    return DatasetInfo(name, name, "music", None, "user data; no paper value")


def paper_nll(dataset: str, unit: str) -> tuple[float, float] | None:
    """The paper's (train, test) NLL for our data set ``dataset`` and ``unit``, or None."""
    row = dataset_info(dataset).paper_row
    if row is None:
        return None
    return TABLE2[row].get(unit)
