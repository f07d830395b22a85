"""The browser views' pure helpers (colormaps, array decoding, layout maths, the heatmap's parts),
tested with Node's own test runner (`npm test` in js/: `node --test` on every js/test/*.test.js)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

JS = Path(__file__).resolve().parents[1] / "js"


def test_js_unit_tests_pass():
    node = shutil.which("node")
    assert node, "node is needed to build and test the browser views (js/): install Node.js 18+"
    tests = sorted((JS / "test").glob("*.test.js"))
    assert len(tests) >= 4, tests
    # the files by name: Node's own discovery would also walk js/node_modules (a link in worktrees)
    result = subprocess.run([node, "--test", *map(str, tests)], cwd=JS, capture_output=True, text=True, timeout=300)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    # every test file ran, and none was skipped or left undone
    assert "# fail 0" in report and "# skipped 0" in report and "# todo 0" in report, report[-3000:]
    passed = int(report.split("# pass ")[1].split()[0])
    assert passed >= 25, report[-3000:]
