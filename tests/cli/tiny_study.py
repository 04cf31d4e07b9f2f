"""The command line of a small full-protocol study (2 candidate rates, then 3 fresh seeds,
2 epochs each), shared by the tests that train one end to end."""


def reproduce_argv(sets, out, *extra, workers=1):
    """``rnnbench reproduce`` over ``sets`` into ``out``, with ``extra`` flags appended."""
    return [
        "reproduce",
        "--sets",
        *sets,
        "--candidates",
        "2",
        "--seeds",
        "3",
        "--max-epochs",
        "2",
        "--workers",
        str(workers),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]
