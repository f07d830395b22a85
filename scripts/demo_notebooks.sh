#!/usr/bin/env bash
# Copy the example notebooks from SRC to DEST for the demo to open, so that JupyterLab's autosave
# writes into the copies and never into the repository. A copy is kept (with the person's edits
# and outputs) until the repository's notebook changes; then it is replaced by the new version,
# and the replaced copy is kept as DEST/.previous/NAME.
#
#     bash scripts/demo_notebooks.sh SRC DEST
set -euo pipefail
src="$1"
dest="$2"
mkdir -p "$dest/.origin"
for notebook in "$src"/*.ipynb; do
  name="$(basename "$notebook")"
  stamp="$dest/.origin/$name.sha256"
  sum="$(sha256sum "$notebook" | cut -d' ' -f1)"
  if [ -f "$dest/$name" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
    continue  # the repository's version is the one this copy started from
  fi
  if [ -f "$dest/$name" ]; then
    mkdir -p "$dest/.previous"
    mv "$dest/$name" "$dest/.previous/$name"
  fi
  cp "$notebook" "$dest/$name"
  echo "$sum" > "$stamp"
done
