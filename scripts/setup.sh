#!/usr/bin/env bash
# Set up nbvis in ./.venv: a CPU build of torch, the package with its built browser views, and the
# extras named by the first argument ("demo" or "test"). For "test" also Debian's Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-demo}"

if ! command -v npm >/dev/null 2>&1; then
  echo "nbvis builds its browser views with Node.js and npm; install them first (e.g. apt-get install -y nodejs npm)." >&2
  exit 1
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check)

# torch first, pinned to the CPU build unless one is importable already: an open range with no
# torch installed would fetch a multi-gigabyte CUDA build.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  "${pip[@]}" install -q "${NBVIS_TORCH:-torch==2.13.0}"
fi
# Installing the package runs `npm install && npm run build` in js/ (hatch-jupyter-builder).
"${pip[@]}" install -q -e ".[${extra}]"

if [ "$extra" = "test" ] && [ ! -x /usr/bin/chromium ]; then
  echo "Installing Debian's chromium for the browser tests..."
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
