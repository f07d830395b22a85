#!/usr/bin/env bash
# Set up nbvis and open JupyterLab on copies of the example notebooks (the demo models train at
# first use, in seconds, and are cached: nothing is downloaded). The copies live in
# .venv/notebooks, so saving them leaves the repository's notebooks as they are; they are
# refreshed when the repository's change (scripts/demo_notebooks.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
bash scripts/demo_notebooks.sh example_notebooks .venv/notebooks
args=(--notebook-dir=.venv/notebooks)
if [ "$(id -u)" = 0 ]; then args+=(--allow-root); fi
exec .venv/bin/jupyter lab "${args[@]}" "$@"
