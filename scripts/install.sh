#!/usr/bin/env bash
# Create ./.venv (Python 3.11+) and install rnnbench with the pinned versions in constraints.txt.
# torch is installed first, alone, so pip takes the CPU wheel and never pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
torch_pin=$(grep -E '^torch==' constraints.txt)
.venv/bin/python -m pip install --quiet "$torch_pin"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test,ray]"
echo "rnnbench installed in .venv ($(.venv/bin/rnnbench --version))"
