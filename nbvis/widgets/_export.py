"""Views out of the notebook: an offline HTML file, the drawn image, and a picture in every output.

:class:`Exportable` gives every view (and the Explorer):

- ``to_html(path=None)``: one self-contained HTML file that works from ``file://`` with no
  network: require.js and the ipywidgets HTML manager (bundled from npm into
  ``nbvis/static/export/`` when nbvis is built; the manager gzip-compressed, unpacked by the
  browser's ``DecompressionStream``), anywidget's own front end (from the anywidget
  package) and the view's state are all inside it. Only the view's widget tree goes in (plotly.js
  too, for a chart: it is the state of the chart's ``PlotlyLibrary``). The views draw from that
  state alone, so hovering shows values; controls that need the kernel are disabled.
- ``await snapshot()``: the image the browser drew, read back from the front end as numpy.
- an ``image/png`` picture of the view in each display's output, drawn in Python, for the places
  where no widget manager runs (GitHub, nbviewer): see ``_picture.py``.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import html
import io
import json
import re
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

import numpy as np

__all__ = ["ASSETS", "Exportable", "STATIC_FLAG", "export_state", "html_page"]

ASSETS = Path(__file__).resolve().parent.parent / "static" / "export"
STATIC_FLAG = "_nbvis_static"  # set in an export's state: the view draws without a kernel
_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)

_NOTE = (
    "A static export of an nbvis view: it draws from the state saved at export time. Hover to read "
    "values; the controls that need the Python kernel are disabled."
)

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="nbvis {version}">
<title>{title}</title>
<style>
body {{ margin: 16px; background: #fff; color: #222; font: 13px/1.4 system-ui, sans-serif; }}
.nbvis-export-note {{ color: #666; margin: 0 0 10px; }}
</style>
<script>{requirejs}</script>
<script>{manager}</script>
<script>(function (define) {{
{anywidget}
}})(function (deps, factory) {{ window.define("anywidget", deps, factory); }});</script>
<script type="application/vnd.jupyter.widget-state+json">{state}</script>
</head>
<body>
<p class="nbvis-export-note">{note}</p>
<script type="application/vnd.jupyter.widget-view+json">{view}</script>
</body>
</html>
"""

_UNPACK = """(function () {{
  // the ipywidgets HTML manager, gzip-compressed and base64-encoded (2.4 MB less to carry):
  // the browser's DecompressionStream unpacks it, then it runs as if it were inline
  var packed = "{data}";
  function fail(message) {{
    var note = document.createElement("p");
    note.style.color = "#b00";
    note.textContent = message;
    (document.body || document.documentElement).prepend(note);
  }}
  if (typeof DecompressionStream === "undefined") {{
    fail("This page needs a browser with DecompressionStream (Chrome or Edge 80+, Firefox 113+, Safari 16.4+) to unpack its widget manager.");
    return;
  }}
  var binary = atob(packed), bytes = new Uint8Array(binary.length);
  for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text().then(function (code) {{
    var script = document.createElement("script");
    script.textContent = code;
    document.head.appendChild(script);
  }}, function (error) {{ fail("The widget manager of this page could not be unpacked: " + error); }});
}})();"""


def _script(text: str) -> str:
    """Text that can sit inside a <script> element (no early end tag)."""
    return _SCRIPT_END.sub(r"<\\/\1", text)


def _asset(path: Path) -> str:
    if not path.exists():
        raise RuntimeError(
            f"{path.name} is missing from {path.parent}: run `npm install && npm run build` in js/, "
            "or reinstall nbvis with `pip install .`"
        )
    return path.read_text(encoding="utf-8")


@lru_cache(maxsize=4)
def _gzip_base64(path: Path, mtime: float) -> str:
    """``path`` gzip-compressed and base64-encoded (cached per file version: 0.3 s for the manager)."""
    return base64.b64encode(gzip.compress(_asset(path).encode("utf-8"), 9, mtime=0)).decode("ascii")


def packed_manager() -> str:
    """The script that unpacks and runs the ipywidgets HTML manager inside an offline page."""
    path = ASSETS / "embed-amd.js"
    _asset(path)  # a clear error when nbvis was not built
    return _UNPACK.format(data=_gzip_base64(path, path.stat().st_mtime))


def _anywidget_frontend() -> Path:
    import anywidget

    return Path(anywidget.__file__).resolve().parent / "nbextension" / "index.js"


def export_state(widget) -> dict:
    """The widget-manager state of ``widget`` and every widget it refers to (nothing else of the
    kernel), with defaults kept (anywidget needs its ``_esm``) and every anywidget view marked static."""
    from ipywidgets.embed import dependency_state

    if getattr(widget, "comm", None) is None or widget.model_id is None:
        raise ValueError(f"this {type(widget).__name__} was closed; create it again to export it")
    state = dependency_state(widget, drop_defaults=False)
    for entry in state.values():
        if entry.get("model_module") == "anywidget":
            entry["state"][STATIC_FLAG] = True
    return state


def html_page(widget, title: Optional[str] = None) -> str:
    """The offline HTML page of ``widget`` (see :meth:`Exportable.to_html`)."""
    from ipywidgets.embed import embed_data

    import nbvis

    data = embed_data(views=[widget], drop_defaults=False, state=export_state(widget))
    return _PAGE.format(
        version=html.escape(nbvis.__version__),
        title=html.escape(title or f"nbvis {type(widget).__name__}"),
        requirejs=_script(_asset(ASSETS / "require.js")),
        manager=packed_manager(),  # base64 text and the loader: no "</script" in it
        anywidget=_script(_asset(_anywidget_frontend())),
        state=_script(json.dumps(data["manager_state"], separators=(",", ":"))),
        note=html.escape(_NOTE),
        view=_script(json.dumps(data["view_specs"][0])),
    )


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def decode_png(data: bytes) -> np.ndarray:
    """A PNG as a uint8 RGBA array (H, W, 4)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA")).copy()


class Exportable:
    """What every view shares to leave the notebook (mixed into ``NbvisWidget`` and ``Explorer``)."""

    # ----- offline HTML --------------------------------------------------------------------------

    def to_html(self, path: Union[str, Path, None] = None, *, title: Optional[str] = None):
        """One self-contained HTML file of this view as it is now, working offline from ``file://``.

        Nothing is fetched from a CDN: the widget manager, anywidget's front end, the view's code,
        its arrays (and plotly.js for a chart) are inside the file. The view draws from the saved
        state alone: hovering shows values; what needs the kernel is disabled. With ``path`` the
        page is written there and the path is returned; without, the page is returned as text.
        """
        page = html_page(self, title)
        if path is None:
            return page
        path = Path(path)
        path.write_text(page, encoding="utf-8")
        return path

    # ----- the image the browser drew ------------------------------------------------------------

    def _snapshot_target(self):
        """(the anywidget view that answers, the scope it captures: "view" or "explorer")."""
        return self, "view"

    async def snapshot(self, timeout: float = 10.0) -> np.ndarray:
        """The image the browser drew of this view, as a uint8 RGBA array (H, W, 4).

        In a notebook cell: ``image = await view.snapshot()`` (the browser's answer arrives while
        the cell awaits). Every canvas and chart the view drew is composed in the page at its
        place on screen. Raises ``RuntimeError`` at once outside a Jupyter kernel, and
        ``TimeoutError`` when no front end shows the view or none answers within ``timeout`` s.
        """
        target, scope = self._snapshot_target()
        if not _in_kernel():
            raise RuntimeError(
                f"{type(self).__name__}.snapshot() reads the image back from the browser that shows the view, "
                "and no Jupyter kernel (so no front end) is attached here; use to_html() for a file, or the "
                "arrays the view draws (tiles(), activations, images, importances)"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while target._attached <= 0:
            if loop.time() > deadline:
                raise TimeoutError(
                    f"no front end shows this {type(self).__name__} (waited {timeout} s): display it first "
                    "(in VS Code, scroll it into view)"
                )
            await asyncio.sleep(0.05)
        request = uuid.uuid4().hex
        future = loop.create_future()
        target._snapshots[request] = future
        try:
            target.send({"type": "snapshot", "id": request, "scope": scope})
            data = await asyncio.wait_for(future, max(0.05, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise TimeoutError(f"the front end did not send the image of this {type(self).__name__} in {timeout} s") from None
        finally:
            target._snapshots.pop(request, None)
        return decode_png(data)

    # ----- a picture in every output -------------------------------------------------------------

    def _picture(self):
        """A ``PIL.Image`` of what the view shows now, drawn in Python (None: no picture)."""
        return None

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)  # a dict (ipywidgets) or (data, metadata) (anywidget)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict) and "image/png" not in data:
            try:
                picture = self._picture()
            except Exception:  # a picture must never keep the view itself from showing
                picture = None
            if picture is not None:
                from ._picture import png

                data["image/png"] = base64.b64encode(png(picture)).decode("ascii")
        return bundle
