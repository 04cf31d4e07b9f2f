"""``python -m rnnbench``: the same as the ``rnnbench`` command."""

import sys

from rnnbench.cli import main

sys.exit(main())
