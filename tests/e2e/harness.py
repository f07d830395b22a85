"""Drive a real Jupyter server (JupyterLab 4 and Notebook 7) with Debian's Chromium via Playwright.

Usage in a test (the fixtures in conftest.py give ``jupyter`` and ``browser``)::

    cells = ["import nbvis", "nbvis.WeightGrid(...)"]
    with notebook_page(browser, jupyter, "demo.ipynb", cells, ready=".nbvis-weight-grid[data-draws]") as page:
        ...                                                # every cell has run, the view has drawn

or step by step: ``jupyter.write_notebook``, ``open_notebook`` (app="lab" or "notebook"),
``run_all`` (waits for every cell to finish), ``page.close()``.

Values the browser sends to Python are checked through files the kernel writes (see
``jupyter.wait_for_file``): a cell's printed output during Run All still shows the old value.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

import nbformat

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
DONE = "NBVIS-CELLS-DONE"
# The views' instrumentation (js/src/lib/debug.js): draw and round-trip times on root.nbvisDebug.
DEBUG = "globalThis.__nbvisDebug = true;"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterServer:
    """A Jupyter server (JupyterLab and Notebook 7 on one port) in a private temporary home."""

    def __init__(self, theme: str | None = None):
        self.theme = theme  # a JupyterLab theme name ("JupyterLab Dark"); None: the default light theme
        self.home = Path(tempfile.mkdtemp(prefix="nbvis-jupyter-"))
        self.root = self.home / "root"
        self.root.mkdir()
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = self.home / "server.log"

    def env(self) -> dict:
        env = dict(os.environ)
        for var, sub in [
            ("JUPYTER_CONFIG_DIR", "config"),
            ("JUPYTER_RUNTIME_DIR", "runtime"),
            ("IPYTHONDIR", "ipython"),
            ("JUPYTERLAB_SETTINGS_DIR", "settings"),
            ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
        ]:
            env[var] = str(self.home / sub)
        env.pop("JUPYTER_DATA_DIR", None)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, timeout: float = 60) -> "JupyterServer":
        settings = self.home / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        if self.theme is not None:
            (settings / "themes.jupyterlab-settings").write_text(json.dumps({"theme": self.theme}))
        cmd = [
            sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
            "--ServerApp.open_browser=False", "--LabApp.news_url=''",
        ]
        self.process = subprocess.Popen(
            cmd, env=self.env(), stdout=self.log.open("wb"), stderr=subprocess.STDOUT, cwd=self.root
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Jupyter server exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.api_url("/api/status"), timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"the Jupyter server did not answer in {timeout} s: {self.log.read_text()[-3000:]}")

    def api_url(self, path: str) -> str:
        return f"{self.url}{path}?token={self.token}"

    def api(self, path: str):
        with urllib.request.urlopen(self.api_url(path), timeout=5) as response:
            return json.loads(response.read())

    def shutdown_kernels(self) -> None:
        """Shut down every kernel of the server, so that work a test left running in one (an
        optimization, a scan) cannot slow the tests after it."""
        try:
            kernels = self.api("/api/kernels")
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            return
        for kernel in kernels:
            request = urllib.request.Request(self.api_url(f"/api/kernels/{kernel['id']}"), method="DELETE")
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except (urllib.error.URLError, ConnectionError, OSError):
                pass

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.home, ignore_errors=True)

    def write_notebook(self, name: str, cells: Sequence[str]) -> str:
        """Write a notebook of code cells into the server's root; a last cell prints a marker."""
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        nb.cells.append(nbformat.v4.new_code_cell(f"print({DONE!r})"))
        nbformat.write(nb, self.root / name)
        return name

    def copy_notebook(self, source: Path, name: str | None = None) -> str:
        """Copy an example notebook into the root and append the marker cell."""
        nb = nbformat.read(source, as_version=4)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells.append(nbformat.v4.new_code_cell(f"print({DONE!r})"))
        name = name or Path(source).name
        nbformat.write(nb, self.root / name)
        return name

    def wait_for_file(self, name: str, timeout: float = 20, content: str | None = None) -> str:
        """Wait until the kernel has written ``name`` in the root (with ``content`` if given)."""
        path = self.root / name
        deadline = time.monotonic() + timeout
        text = None
        while time.monotonic() < deadline:
            if path.exists():
                text = path.read_text()
                if content is None or text.strip() == content:
                    return text
            time.sleep(0.1)
        raise TimeoutError(f"{name} was not written with {content!r} in {timeout} s (last: {text!r})")

    def wait_for_json(self, name: str, predicate, timeout: float = 30):
        """The JSON the kernel last wrote to ``name`` in the root, once ``predicate(value)`` holds.

        The kernel may write the file several times; predicates name every field they rely on."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = json.loads((self.root / name).read_text())
                if predicate(value):
                    return value
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{name} never matched in {timeout} s (last: {value})")

    def wait_for_kernel(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                kernels = self.api("/api/kernels")
                if any(k.get("connections", 0) >= 1 for k in kernels):
                    return
            except (urllib.error.URLError, urllib.error.HTTPError, OSError, ValueError):
                pass
            time.sleep(0.25)
        raise TimeoutError("no kernel connected to the notebook")


def launch_browser(playwright):
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/setup.sh does it)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def open_notebook(browser, server: JupyterServer, name: str, app: str = "lab", viewport=(1400, 1000)):
    """Open a notebook in a new page of JupyterLab (``app="lab"``) or Notebook 7 and wait for its kernel."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.add_init_script(DEBUG)
    page.set_default_timeout(60_000)
    page.console_messages = []
    page.on("console", lambda msg: page.console_messages.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: page.console_messages.append(f"pageerror: {err}"))
    # ?reset: a fresh JupyterLab workspace, so notebooks of earlier tests do not reopen as tabs.
    path = f"/lab/tree/{name}?reset&" if app == "lab" else f"/notebooks/{name}?"
    page.goto(f"{server.url}{path}token={server.token}")
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    server.wait_for_kernel()
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=60_000)
    return page


@contextlib.contextmanager
def notebook_page(browser, server: JupyterServer, name: str, cells: Sequence[str] | None = None, *,
                  source: Path | None = None, app: str = "lab", viewport=(1400, 1000), ready: str | None = None,
                  fresh: Sequence[str] = (), opened=None, timeout: float = 180):
    """A page on the notebook ``name``, made of ``cells`` (or a copy of the notebook ``source``),
    with every cell run and, when ``ready`` is a selector, that element there (a view that has
    drawn: ``".nbvis-weight-grid[data-draws]"``). ``fresh``: files the kernel will write, removed
    first, so that a wait for them reads this run's. ``opened(page)``: a step before the cells run
    (folding a sidebar). A failure inside saves a screenshot of the page
    (tests/artifacts/<name>_failure.png); the page is closed at the end."""
    if source is not None:
        server.copy_notebook(source, name)
    else:
        server.write_notebook(name, cells)
    for file in fresh:
        (server.root / file).unlink(missing_ok=True)
    page = open_notebook(browser, server, name, app=app, viewport=viewport)
    try:
        if opened is not None:
            opened(page)
        run_all(page, timeout)
        if ready is not None:
            page.wait_for_selector(ready)
        yield page
    except Exception:
        screenshot(page, f"{Path(name).stem}_failure.png")
        raise
    finally:
        page.close()


def assert_no_console_errors(page, source: str = "nbvis") -> None:
    """No error in the page's console came from ``source`` (a word in the message: nbvis's own
    code; JupyterLab and Notebook 7 log errors of their own)."""
    errors = [m for m in page.console_messages if m.startswith(("error", "pageerror")) and source in m.lower()]
    assert not errors, errors


LOCAL = ("file:", "data:", "blob:", "http://127.0.0.1", "http://localhost", "ws://127.0.0.1", "ws://localhost")


def block_network(page) -> list:
    """Abort every request of ``page`` that leaves this machine (anything but file:, data:, blob:
    and localhost); returns the list the aborted URLs are appended to."""
    blocked: list = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith(LOCAL):
            request_route.continue_()
        else:
            blocked.append(url)
            request_route.abort()

    page.route("**/*", route)
    return blocked


def offline_page(browser, path, viewport=(1400, 1000)):
    """Open an HTML file from ``file://`` with the network blocked; returns (page, blocked URLs)."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True)
    page.set_default_timeout(30_000)
    page.console_messages = []
    page.on("console", lambda msg: page.console_messages.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: page.console_messages.append(f"pageerror: {err}"))
    blocked = block_network(page)
    page.goto(Path(path).resolve().as_uri())
    return page, blocked


def run_all(page, timeout: float = 180) -> None:
    """Run All Cells through the menu and wait for the marker cell's output."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.wait_for_selector(
        f".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output:has-text('{DONE}')", timeout=timeout * 1000
    )


def run_cell(page, code: str, timeout: float = 60) -> str:
    """Append a cell with ``code`` at the end of the notebook, run it, and return its output text."""
    marker = f"NBVIS-OUT-{secrets.token_hex(4)}"
    cells = page.locator(".jp-Notebook .jp-Cell")
    cells.last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.keyboard.insert_text(f"{code}\nprint({marker!r})")
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-Cell").filter(has=page.locator(f".jp-OutputArea-output:has-text('{marker}')"))
    output.first.wait_for(timeout=timeout * 1000)
    return output.first.locator(".jp-OutputArea").inner_text()


def screenshot(target, name: str) -> Path:
    """Save a screenshot of a page or element under tests/artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    target.screenshot(path=str(path))
    return path


def canvas_stats(page, selector: str) -> dict:
    """Size and pixel statistics of the first canvas matching ``selector``, read in the page."""
    return page.eval_on_selector(
        selector,
        """(c) => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let opaque = 0, colors = new Set();
            for (let i = 0; i < d.length; i += 4) {
                if (d[i + 3] > 0) opaque++;
                if (colors.size < 512) colors.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
            }
            return {width: c.width, height: c.height, opaque, colors: colors.size};
        }""",
    )


# A canvas's drawn pixels as one number (for page.eval_on_selector / locator.evaluate): equal
# checksums, the same picture; a different one, a redraw that changed something.
CHECKSUM = """(c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let h = 0;
    for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) % 2147483647;
    return h;
}"""


def layout_of(target) -> dict:
    """The ``data-layout`` of a canvas (a Playwright locator or element handle): how the view laid
    out its tiles (see ARCHITECTURE.md, "The data- contract")."""
    text = target.get_attribute("data-layout")
    if not text:
        raise AssertionError("the canvas has no data-layout: it is not drawn as a grid")
    return json.loads(text)


def grid_point(canvas, tile: int, row: int | None = None, col: int | None = None) -> tuple[float, float]:
    """Page coordinates of the middle of pixel (row, col) of ``tile`` on a canvas that publishes
    ``data-layout`` (the middle of the tile when row and col are None), scaled to its CSS size."""
    canvas.scroll_into_view_if_needed()
    layout = layout_of(canvas)
    tile_w, tile_h = layout["tile"]
    pitch_w, pitch_h = layout["pitch"]
    origin_x, origin_y = layout["origin"]
    x = origin_x + (tile % layout["cols"]) * pitch_w + (tile_w / 2 if col is None else col + 0.5)
    y = origin_y + (tile // layout["cols"]) * pitch_h + (tile_h / 2 if row is None else row + 0.5)
    box = canvas.bounding_box()
    width, height = canvas.evaluate("(c) => [c.width, c.height]")
    return box["x"] + x * layout["zoom"] * box["width"] / width, box["y"] + y * layout["zoom"] * box["height"] / height


def bar_point(canvas, tile: int, bar: int) -> tuple[float, float]:
    """Page coordinates of the middle of bar ``bar`` of ``tile`` on a canvas whose ``data-layout``
    splits each tile into ``bars`` equal columns (bar charts drawn as tiles)."""
    layout = layout_of(canvas)
    if "bars" not in layout:
        raise AssertionError("the canvas's data-layout has no bars: it is not drawn as bar tiles")
    col = int((bar + 0.5) * layout["tile"][0] / layout["bars"])
    return grid_point(canvas, tile, None, col)


def debug_stats(page, root) -> dict:
    """The instrumentation a view keeps when debugging (root.nbvisDebug: drawTimes, roundTrips, ...)."""
    return page.evaluate("(el) => el.nbvisDebug || null", root)
