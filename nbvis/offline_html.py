"""nbconvert's executed HTML of a notebook, with its nbvis views working offline.

    python -m nbvis.offline_html NOTEBOOK.ipynb [more jupyter nbconvert options]

``jupyter nbconvert --execute --to html`` saves the widget state in the page, but the page loads
require.js and the ipywidgets HTML manager from CDNs, and the manager asks jsDelivr for
anywidget's front end (``anywidget@<version>/dist/index.js``) because nbconvert's page does not
carry it. Without a network each view shows "Click to show javascript error." instead.

This runs ``jupyter nbconvert --execute --to html`` with the page pointed at local copies written
beside the HTML file: ``require.js`` and ``embed-amd.js`` (nbvis's own bundle of the manager) and
``anywidget.js`` (from the installed anywidget package; the manager looks for a module next to
the page before it asks the CDN). Keep the four files together. For one view in one file, use
``view.to_html()`` instead.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

from .widgets._export import ASSETS, _anywidget_frontend, _asset

__all__ = ["ASSET_FILES", "main", "nbconvert_options", "write_assets"]

ASSET_FILES = ("require.js", "embed-amd.js", "anywidget.js")


def write_assets(folder) -> list[Path]:
    """Copy require.js, the HTML manager and anywidget's front end into ``folder``; their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sources = (ASSETS / "require.js", ASSETS / "embed-amd.js", _anywidget_frontend())
    written = []
    for source, name in zip(sources, ASSET_FILES):
        _asset(source)  # a clear error when nbvis was not built
        written.append(Path(shutil.copyfile(source, folder / name)))
    return written


def nbconvert_options() -> list[str]:
    """The nbconvert options that point the page at the files :func:`write_assets` writes beside it."""
    return ["--HTMLExporter.require_js_url=require.js", "--HTMLExporter.widget_renderer_url=embed-amd.js"]


def _output_dir(notebook: Path, options: Sequence[str]) -> Path:
    for i, option in enumerate(options):
        if option.startswith("--output-dir="):
            return Path(option.split("=", 1)[1])
        if option == "--output-dir" and i + 1 < len(options):
            return Path(options[i + 1])
    return notebook.parent


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or not args[0].endswith(".ipynb"):
        print(__doc__.strip())
        return 0 if args and args[0] in ("-h", "--help") else 2
    notebook, options = Path(args[0]), args[1:]
    if not notebook.exists():
        print(f"{notebook} does not exist", file=sys.stderr)
        return 2
    folder = _output_dir(notebook, options)
    write_assets(folder)
    command = [sys.executable, "-m", "jupyter", "nbconvert", "--execute", "--to", "html", *nbconvert_options(), str(notebook), *options]
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
