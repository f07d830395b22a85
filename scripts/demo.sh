#!/usr/bin/env bash
# Set up nbvis and open JupyterLab on the example notebooks (the demo models train at first use,
# in seconds, and are cached: nothing is downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
args=(--notebook-dir=example_notebooks)
if [ "$(id -u)" = 0 ]; then args+=(--allow-root); fi
exec .venv/bin/jupyter lab "${args[@]}" "$@"
