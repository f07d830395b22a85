#!/usr/bin/env bash
# Set up nbvis with its test dependencies (and Debian's chromium) and run every test: unit,
# widget, example notebooks, and end to end in a real JupyterLab / Notebook 7 with Chromium.
# Extra arguments go to pytest (e.g. `-k weight_grid`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
