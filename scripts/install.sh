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
# The report's browser test opens report.html in a headless Chromium (Debian's chromium).
# Installed here when missing, if we may (root, apt-get); otherwise the test skips, and fails
# in CI (.ci/run sets RNNBENCH_REQUIRE_BROWSER=1).
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    if command -v apt-get >/dev/null && [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
            >/dev/null || echo "install.sh: could not install chromium (browser test)" >&2
    else
        echo "install.sh: no chromium; install it (Debian: apt-get install chromium) to run" \
            "the report's browser test" >&2
    fi
fi
echo "rnnbench installed in .venv ($(.venv/bin/rnnbench --version))"
