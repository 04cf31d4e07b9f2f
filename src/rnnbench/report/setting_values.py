"""The values of one setting across the stored runs, each labelled with where it applies.

"How our setup differs from the paper" lists, per setting (batch size, epochs, hidden units,
...), the values the runs used. One value is shown bare; several are each followed by the data
sets that used it, or by data set and unit where a data set used more than one, e.g.
``4 (JSB Chorales, Nottingham), 16 (FSDD-A)`` rather than a bare ``4, 16``; a unit trained
under another protocol than the paper's is named with it (``1 (Nottingham GRU under the authors'
protocol), 4 (Nottingham GRU, ...)``), so that no name stands under two values.
"""

from __future__ import annotations

from rnnbench.report import paper


def labelled_values(runs: list[dict], key: str) -> str:
    """``runs``' values of config ``key``, labelled when there are several (see above)."""
    where: dict[str, set[tuple[str, str]]] = {}
    for r in runs:
        config = r["config"]
        if key in config:
            value = repr(config[key]).strip("'")
            unit = (config.get("unit", ""), config.get("protocol", "paper"))
            where.setdefault(value, set()).add((config["dataset"], unit))
    if not where:
        return "not recorded"
    if len(where) == 1:
        return next(iter(where))
    sets = {v: {d for d, _ in pairs} for v, pairs in where.items()}
    shared = any(sets[a] & sets[b] for a in sets for b in sets if a < b)
    parts = []
    for value in sorted(where):
        if shared:
            names = sorted(
                f"{paper.dataset_info(d).label} {paper.UNIT_LABELS.get(u, u)}{_protocol(p)}"
                for d, (u, p) in where[value]
            )
        else:
            names = sorted(paper.dataset_info(d).label for d in sets[value])
        parts.append(f"{value} ({', '.join(names)})")
    return ", ".join(parts)


def _protocol(name: str) -> str:
    """ " under the authors' protocol" after a unit trained under a preset; "" at the paper's."""
    if name == "paper":
        return ""
    return " under the authors' protocol" if name == "authors" else f" under protocol {name}"
