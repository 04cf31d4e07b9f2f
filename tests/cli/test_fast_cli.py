"""`rnnbench --version` and `--help` are instant: building the parser imports no torch
(issue 12 §4). Checked in a fresh interpreter, where nothing is imported yet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "numba", "numpy", "scipy", "matplotlib", "ray", "soundfile", "platformdirs")


def _fresh(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def test_building_the_parser_imports_nothing_heavy():
    done = _fresh(
        "import sys\n"
        "from rnnbench.cli import build_parser\n"
        "build_parser().parse_args(['params', '--task', 'music'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_help_and_version_answer_without_torch():
    for flag in ("--help", "--version"):
        done = _fresh(
            "import sys\n"
            "from rnnbench.cli import main\n"
            "try:\n"
            f"    main([{flag!r}])\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('torch' in sys.modules)\n"
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "False"
        assert "rnnbench" in done.stdout


def test_the_params_parser_knows_every_task():
    from rnnbench.commands.params import TASK_NAMES
    from rnnbench.models import TASKS

    assert sorted(TASK_NAMES) == sorted(TASKS)
