"""What every nbvis view shares: the base widget class."""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

from ._guard import ErrorGuard

STATIC = Path(__file__).resolve().parent.parent / "static"

__all__ = ["STATIC", "NbvisWidget"]


class NbvisWidget(ErrorGuard, anywidget.AnyWidget):
    """Base class of the views.

    - Unknown keyword arguments raise ``TypeError`` (traitlets would accept them silently).
    - ``error`` is shown under the view; ``_guard()`` (see :class:`ErrorGuard`) puts an exception
      there and re-raises it.
    - Commands from the browser (``model.send({type: "command", name, args})``) call
      ``self._cmd_<name>(**args)`` inside the guard.
    """

    error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(self.class_trait_names()))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}"
            )
        for asset in (getattr(type(self), "_esm", None), getattr(type(self), "_css", None)):
            if isinstance(asset, Path) and not asset.exists():
                raise RuntimeError(
                    f"the browser view {asset.name} is not built: run `npm install && npm run build` in js/, "
                    "or reinstall nbvis with `pip install .`"
                )
        super().__init__(**kwargs)
        self.on_msg(self._on_custom_msg)

    def _on_custom_msg(self, _widget, content, _buffers) -> None:
        if not isinstance(content, dict) or content.get("type") != "command":
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
