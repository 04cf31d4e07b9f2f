"""Give a report folder written before the exports its store exports (issue 23).

    python scripts/legacy_exports.py FOLDER [--out DIR] [--set FIELD=JSON ...]
        [--lr-draws COUNT LOW HIGH unit|dataset] [--sweep NAME]

See rnnbench.legacy_exports.
"""

from rnnbench.legacy_exports import main

if __name__ == "__main__":
    raise SystemExit(main())
