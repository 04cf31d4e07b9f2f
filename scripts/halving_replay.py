"""Replay successive halving on a full search's per-epoch curves (issue 14).

    python scripts/halving_replay.py --store PATH [--store PATH] [--eta N] [--min-epochs R]

PATH: a results store or an exported report folder. See rnnbench.report.halving.
"""

from rnnbench.report.halving import main

if __name__ == "__main__":
    raise SystemExit(main())
