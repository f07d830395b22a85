"""scripts/demo.sh serves copies of the example notebooks, so saving them leaves the repository clean."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPY = ROOT / "scripts" / "demo_notebooks.sh"


def _copy(src: Path, dest: Path) -> None:
    subprocess.run(["bash", str(COPY), str(src), str(dest)], check=True)


def test_demo_opens_jupyterlab_on_copies_outside_the_repository_notebooks():
    script = (ROOT / "scripts" / "demo.sh").read_text()
    copy = re.search(r"demo_notebooks\.sh example_notebooks (\S+)", script)
    assert copy, "demo.sh does not copy the example notebooks"
    served = re.search(r"--notebook-dir=(\S+?)\)", script).group(1)
    assert served == copy.group(1) and "example_notebooks" not in served
    assert (ROOT / ".gitignore").read_text().splitlines().count(".venv/") == 1 and served.startswith(".venv/")


def test_copies_keep_edits_until_the_repository_notebook_changes(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    for notebook in sorted((ROOT / "example_notebooks").glob("*.ipynb"))[:2]:
        shutil.copy(notebook, src / notebook.name)
    first, second = sorted(p.name for p in src.glob("*.ipynb"))
    _copy(src, dest)
    assert sorted(p.name for p in dest.glob("*.ipynb")) == [first, second]
    assert (dest / first).read_bytes() == (src / first).read_bytes()

    (dest / first).write_text("saved by JupyterLab")  # the person runs and saves the copy
    _copy(src, dest)
    assert (dest / first).read_text() == "saved by JupyterLab"  # kept: the source did not change
    assert (src / first).read_bytes() != b"saved by JupyterLab"

    (src / first).write_text((src / first).read_text().replace("nbvis", "nbvis ", 1))  # a new version
    _copy(src, dest)
    assert (dest / first).read_bytes() == (src / first).read_bytes()
    assert (dest / ".previous" / first).read_text() == "saved by JupyterLab"
    assert (dest / second).read_bytes() == (src / second).read_bytes()
