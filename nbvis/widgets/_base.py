"""What every nbvis view shares: the base widget class."""

from __future__ import annotations

from pathlib import Path

import anywidget
import ipywidgets
import traitlets

from .._arrays import base64_transport, message_bytes
from ._export import Exportable
from ._guard import ErrorGuard

STATIC = Path(__file__).resolve().parent.parent / "static"

__all__ = ["STATIC", "NbvisWidget", "StaticFile", "close_parts"]


class StaticFile:
    """A built browser asset (a view's ``_esm`` or ``_css``), read when a widget is made.

    anywidget turns a ``pathlib.Path`` asset into a file watcher whose signal holds every widget
    made from the class, so that none is ever freed (manzt/anywidget#929), and it fails at import
    when the file is missing. ``str()`` of this is the file's text (read once).
    """

    def __init__(self, path: Path):
        self.path = path
        self._text: str | None = None

    def exists(self) -> bool:
        return self.path.exists()

    def __str__(self) -> str:
        if self._text is None:
            self._text = self.path.read_text(encoding="utf-8")
        return self._text


def close_parts(widget: ipywidgets.Widget) -> None:
    """Close every widget ``widget`` contains (a box's children, all the way down) and its layout
    and style: ipywidgets' ``close()`` leaves those open, that is registered and alive, for good."""
    for child in getattr(widget, "children", ()):
        close_parts(child)
        child.close()
    for part in ("layout", "style"):
        sub = widget._trait_values.get(part)  # only what exists: reading would create a default
        if isinstance(sub, ipywidgets.Widget):
            sub.close()


class NbvisWidget(Exportable, ErrorGuard, anywidget.AnyWidget):
    """Base class of the views.

    - Unknown keyword arguments raise ``TypeError`` (traitlets would accept them silently).
    - ``error`` is shown under the view; ``_guard()`` (see :class:`ErrorGuard`) puts an exception
      there and re-raises it.
    - Commands from the browser (``model.send({type: "command", name, args})``) call
      ``self._cmd_<name>(**args)`` inside the guard.
    - The browser may set only what a person may change in the view: read-only traits, and
      traits tagged ``from_view=False`` (limits that protect the kernel, arrays the kernel
      computes), are refused when a front end sends them (``set_state``), said so in the error
      area, and sent back as they are.
    - ``to_html()``, ``await snapshot()`` and a picture in every output (see ``_export.py``); the
      views tell Python when they are shown (``{type: "view", attached}``) and answer snapshots.
    """

    error = traitlets.Unicode("").tag(sync=True)
    # True where binary buffers are dropped (Colab, NBVIS_BASE64=1): arrays, and what the view
    # sends back, travel as base64 text (see nbvis._arrays)
    _base64 = traitlets.Bool(False).tag(sync=True)

    def __init_subclass__(cls, **kwargs):
        for key in ("_esm", "_css"):
            asset = cls.__dict__.get(key)
            if isinstance(asset, Path):
                setattr(cls, key, StaticFile(asset))
        super().__init_subclass__(**kwargs)

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(self.class_trait_names()))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}"
            )
        for asset in (getattr(type(self), "_esm", None), getattr(type(self), "_css", None)):
            if isinstance(asset, StaticFile) and not asset.exists():
                raise RuntimeError(
                    f"the browser view {asset.path.name} is not built: run `npm install && npm run build` in js/, "
                    "or reinstall nbvis with `pip install .`"
                )
        self._attached = 0  # views of this widget shown in front ends now
        self._snapshots: dict = {}  # snapshot request id -> the future that gets the PNG
        super().__init__(**kwargs)
        self.set_trait("_base64", base64_transport())
        self.on_msg(self._on_custom_msg)

    def set_state(self, sync_data):
        traits = self.traits()
        refused = sorted(
            name for name in sync_data
            if name in traits and (traits[name].read_only or traits[name].metadata.get("from_view") is False)
        )
        if refused:
            sync_data = {name: value for name, value in sync_data.items() if name not in refused}
            self._report(PermissionError(f"the view cannot set {', '.join(refused)}: only Python can"))
            self.send_state(refused)  # the view shows the kernel's values again
        super().set_state(sync_data)

    def _on_custom_msg(self, _widget, content, buffers) -> None:
        if not isinstance(content, dict):
            return
        if content.get("type") == "view":
            self._attached = max(0, self._attached + (1 if content.get("attached") else -1))
            return
        if content.get("type") == "snapshot":
            self._snapshot_reply(content, buffers)
            return
        if content.get("type") != "command":
            return
        name = str(content.get("name", ""))
        handler = getattr(self, f"_cmd_{name}", None)
        if handler is None:
            self._report(ValueError(f"the view sent an unknown command {name!r}"))
            return
        try:
            with self._guard():
                handler(**(content.get("args") or {}))
        except Exception:
            pass  # already shown in the view; nobody in Python is waiting for a browser command

    def close(self):
        super().close()
        close_parts(self)

    def _resync(self) -> None:
        """Send the whole state again, from the cell that runs now.

        A background job's updates carry the cell that started it; tools that record a notebook's
        widget state cell by cell (``nbconvert --execute``, nbclient) keep only the messages of the
        cell they run, and would save the state as it was when the job began. ``wait()`` calls this.
        """
        if self.comm is not None:
            self.send_state()

    def _snapshot_reply(self, content: dict, buffers) -> None:
        future = self._snapshots.get(content.get("id"))
        if future is None or future.done():
            return  # answered already (by another view of this widget), or given up
        data = message_bytes(content, buffers)
        if data is None:
            outcome = RuntimeError(f"the front end could not draw the image: {content.get('error') or 'no data'}")
            future.get_loop().call_soon_threadsafe(lambda: future.done() or future.set_exception(outcome))
        else:
            future.get_loop().call_soon_threadsafe(lambda: future.done() or future.set_result(data))
