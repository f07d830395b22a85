"""WeightGrid: every unit's incoming weights as a tile (receptive fields, conv filters)."""

from __future__ import annotations

import asyncio
import math
from typing import Sequence

import numpy as np
import torch
import traitlets
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from .._arrays import unpack
from ..compute.probe import LayerRef, as_input, capture, resolve_layer
from ..compute.units import check_index
from ..compute.weights import input_products, layer_tiles, readout_weights, unit_order
from ._base import STATIC, NbvisWidget
from ._budget import MESSAGE_BUDGET
from ._jobs import Throttle, running_loop
from ._traits import Array

__all__ = ["WeightGrid"]

SORTS = ("index", "norm", "bias", "class")
# The most bytes one page of tiles (and their input * weights) may take: messages of about 10 MB
# are a practical ceiling of the websocket, so a page of big tiles holds fewer units.
MAX_PAGE_BYTES = MESSAGE_BUDGET


class WeightGrid(NbvisWidget):
    """Each unit's incoming weights of ``layer`` as an image tile, drawn on a diverging colormap.

    ``layer``: a dotted name from ``model.named_modules()`` or the module (nn.Linear, nn.Conv1d
    or nn.Conv2d). ``input_shape``: how a Linear layer's inputs form an image, (H, W) or
    (C, H, W); inferred for square inputs (784 -> 28x28). ``x``: an optional input (one sample)
    for the input * weights overlay and for ranking units by their contribution to a class.

    In the view: hover a pixel for its weight, the unit and its bias; click a tile to set
    ``selected``; sort by index, weight norm, bias or contribution to a class; show the top-k;
    page through thousands of units; toggle shared or per-tile color scale; show input * weights.
    """

    _esm = STATIC / "weight_grid.js"
    _css = STATIC / "weight_grid.css"

    layer = traitlets.Unicode(read_only=True).tag(sync=True)
    kind = traitlets.Unicode(read_only=True).tag(sync=True)
    n_units = traitlets.Int(0, read_only=True).tag(sync=True)
    page = traitlets.Int(0).tag(sync=True)
    page_size = traitlets.Int(100).tag(sync=True)
    n_pages = traitlets.Int(1, read_only=True).tag(sync=True)
    sort_by = traitlets.Enum(SORTS, default_value="index").tag(sync=True)
    sort_class = traitlets.Int(0).tag(sync=True)
    top_k = traitlets.Int(0).tag(sync=True)
    scale = traitlets.Enum(("shared", "tile"), default_value="shared").tag(sync=True)
    vmax = traitlets.Float(0.0, read_only=True).tag(sync=True)
    show_products = traitlets.Bool(False).tag(sync=True)
    has_input = traitlets.Bool(False, read_only=True).tag(sync=True)
    class_labels = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    zoom = traitlets.Int(0).tag(sync=True)
    show_index = traitlets.Bool(False).tag(sync=True)  # draw each tile's unit index on it
    # what a tile's pixels are: the (C, H, W) weights of one unit before layout ("channels": the
    # C maps side by side; "rgb": one RGB image; "mean"/"norm": over C; a number: that channel)
    source_shape = traitlets.List(traitlets.Int(), read_only=True).tag(sync=True)
    reduction = traitlets.Unicode(read_only=True).tag(sync=True)
    selected = traitlets.Any(None, allow_none=True).tag(sync=True)  # a unit index (validated below) or None
    live = traitlets.Bool(False).tag(sync=True)
    live_interval = traitlets.Float(0.25)  # seconds between live refreshes after optimizer steps

    _clamping = False  # True while _sync moves an out-of-range page
    _watch_handle = None  # the optimizer hook of live mode
    _watch_timer: asyncio.TimerHandle | None = None  # the idle poll of live mode

    _tiles = Array()
    _units = Array("int32")
    _bias = Array()
    _products = Array()

    def __init__(
        self,
        model: nn.Module,
        layer: LayerRef = None,
        input_shape: Sequence[int] | None = None,
        *,
        x=None,
        labels: Sequence[str] | None = None,
        reduce: str | int = "auto",
        **kwargs,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        if layer is None:
            layer = _first_weighted_layer(model)
        self.model = model
        self._layer_ref = layer
        self._input_shape = input_shape
        self._reduce = reduce
        self._labels = list(labels) if labels is not None else None
        self._x: torch.Tensor | None = None
        self._hidden: torch.Tensor | None = None
        self._signature = None
        self._throttle = Throttle(float(kwargs.get("live_interval", 0.25)))
        self._read_weights()  # raises a clear error before the widget exists
        if x is not None:
            self._x, self._hidden = self._prepare_input(x)
        super().__init__(**kwargs)
        self.set_trait("has_input", self._x is not None)
        self._sync()
        self.observe(self._on_view_change, names=["page", "page_size", "sort_by", "sort_class", "top_k", "show_products"])
        self.observe(self._on_live, names=["live"])
        if self.live:
            self._start_watching()

    # ----- reading the model -------------------------------------------------------------------

    def _read_weights(self) -> None:
        self._grid = layer_tiles(self.model, self._layer_ref, self._input_shape, self._reduce)
        try:
            readout_name, self._readout = readout_weights(self.model, self._grid.name)
        except ValueError:
            readout_name, self._readout = None, None
        self._readout_name = readout_name
        self._signature = self._weights_signature()

    def _weights_signature(self):
        _, module = resolve_layer(self.model, self._grid.name)
        tensors = [getattr(module, "weight", None), getattr(module, "bias", None)]
        if self._readout_name is not None:
            tensors.append(getattr(resolve_layer(self.model, self._readout_name)[1], "weight", None))
        return tuple((id(t), t._version) for t in tensors if t is not None)

    # ----- public API --------------------------------------------------------------------------

    @property
    def input(self) -> torch.Tensor | None:
        """The input sample used for input * weights and class contributions (None when unset)."""
        return self._x

    @input.setter
    def input(self, x) -> None:
        with self._guard():
            self._x, self._hidden = (None, None) if x is None else self._prepare_input(x)
            self.set_trait("has_input", self._x is not None)
            if self._x is None and self.show_products:
                self.show_products = False
            self._sync()

    def _prepare_input(self, x) -> tuple[torch.Tensor, torch.Tensor | None]:
        tensor = as_input(x, self.model, "x")
        if self._grid.kind == "linear":
            expected = math.prod(self._grid.input_shape)
            if tensor.numel() != expected:
                raise ValueError(
                    f"the input has shape {tuple(tensor.shape)} ({tensor.numel()} values); "
                    f"layer {self._grid.name!r} has {expected} inputs"
                )
        return tensor, self._unit_activations(tensor)

    def _unit_activations(self, tensor: torch.Tensor) -> torch.Tensor | None:
        """What the readout layer reads from this layer's units for the model input ``tensor``
        (None when there is no readout or the model cannot take the input as one sample)."""
        if self._readout is None:
            return None
        try:
            seen = capture(self.model, tensor.unsqueeze(0), [self._readout_name], inputs=True)
        except ValueError:
            return None
        return seen[self._readout_name][0].reshape(-1)

    def tiles(self) -> np.ndarray:
        """The tiles of every unit in display order, (units, H, W, C): exactly the values drawn."""
        return self._tile_values(self._order()).numpy()

    def units(self) -> np.ndarray:
        """Unit indices in display order (after sorting and top-k)."""
        return self._order().numpy()

    def top_units(self, class_index: int, k: int = 5) -> np.ndarray:
        """The k units with the largest outgoing weight into ``class_index`` (seed 002)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k is how many units to return, an integer of at least 1, not {k!r}")
        order = unit_order(self._grid, "class", readout=self._readout, class_index=class_index)
        return order[:k].numpy()

    @property
    def units_per_page(self) -> int:
        """How many tiles a page holds: ``page_size``, or fewer when a page of them would be more
        than ``MAX_PAGE_BYTES`` (6 MiB) to send."""
        per_tile = 4 * max(1, math.prod(self._grid.tiles.shape[1:]))
        if self._grid.kind == "linear" and self._x is not None:
            per_tile *= 2  # input * weights beside each tile
        return max(1, min(self.page_size, MAX_PAGE_BYTES // per_tile))

    def refresh(self) -> None:
        """Re-read the live weights of the model and redraw."""
        with self._guard():
            self._read_weights()
            if self._x is not None:
                self._hidden = self._unit_activations(self._x)
            self._sync()

    def close(self):
        self._stop_watching()
        super().close()

    def _picture(self):
        """The page of tiles shown, on the view's diverging scale (shared or per tile)."""
        from ._picture import caption, colormap, fit_zoom, gray, mosaic

        if self._tiles is None:
            return None
        tiles = unpack(self._tiles)  # (units, H, W, C)
        if not len(tiles):
            return None
        drawn = []
        for tile in tiles:
            if tile.shape[-1] == 3:
                drawn.append(gray(tile.transpose(2, 0, 1)))
                continue
            values = tile.mean(axis=-1)
            s = float(np.nanmax(np.abs(tile))) if self.scale == "tile" and np.isfinite(tile).any() else self.vmax
            drawn.append(colormap(values, -(s or 1.0), s or 1.0))
        h, w = drawn[0].shape[:2]
        cols = max(1, int(np.ceil(np.sqrt(len(drawn)))))
        picture = mosaic(drawn, cols=cols, zoom=fit_zoom(cols * (w + 1), cols * (h + 1), 360))
        return caption(picture, f"{self.layer} \u00b7 {self.n_units} units (page {self.page + 1} of {self.n_pages})")

    # ----- state -> traits ---------------------------------------------------------------------

    def _order(self) -> torch.Tensor:
        hidden = self._hidden if self._x is not None else None
        order = unit_order(
            self._grid, self.sort_by, readout=self._readout, class_index=self.sort_class, activations=hidden
        )
        return order[: self.top_k] if self.top_k > 0 else order

    def _tile_values(self, units: torch.Tensor) -> torch.Tensor:
        return self._grid.tiles[units]

    def _sync(self) -> None:
        order = self._order()
        size = self.units_per_page
        pages = max(1, math.ceil(len(order) / size))
        page = min(max(self.page, 0), pages - 1)
        units = order[page * size : (page + 1) * size]
        with self.hold_sync():
            self.set_trait("layer", self._grid.name)
            self.set_trait("kind", self._grid.kind)
            self.set_trait("n_units", self._grid.units)
            self.set_trait("source_shape", [int(d) for d in self._grid.input_shape])
            self.set_trait("reduction", str(self._grid.reduce))
            self.set_trait("n_pages", pages)
            self.set_trait("vmax", float(torch.nan_to_num(self._grid.tiles).abs().max()) if self._grid.units else 0.0)
            self.set_trait("class_labels", self._class_labels())
            if page != self.page:  # out of range after a change of top_k or page_size
                self._clamping = True
                try:
                    self.page = page
                finally:
                    self._clamping = False
            self._tiles = self._tile_values(units)
            self._units = units
            self._bias = self._grid.bias[units]
            if self.show_products and self._x is not None:
                self._products = input_products(self._grid, self._x)[units]
            else:
                self._products = None

    def _class_labels(self) -> list[str]:
        if self._readout is None:
            return []
        n = self._readout.shape[0]
        if self._labels is not None and len(self._labels) == n:
            return [str(label) for label in self._labels]
        return [str(i) for i in range(n)]

    # ----- validation and observers --------------------------------------------------------------

    @traitlets.validate("selected")
    def _check_selected(self, proposal):
        value = proposal["value"]
        if value is None:
            return None
        try:  # the one rule for unit indices (nbvis.compute.units)
            return check_index(value, self._grid.units, "unit", f" for layer {self._grid.name!r}")
        except (TypeError, ValueError) as err:
            raise traitlets.TraitError(str(err)) from None

    @traitlets.validate("sort_class")
    def _check_class(self, proposal):
        value = proposal["value"]
        classes = 0 if self._readout is None else self._readout.shape[0]
        if value != 0 and not 0 <= value < classes:
            raise traitlets.TraitError(f"sort_class must be in 0..{max(classes - 1, 0)}, not {value}")
        return value

    @traitlets.validate("sort_by")
    def _check_sort(self, proposal):
        if proposal["value"] == "class" and self._readout is None:
            raise traitlets.TraitError(
                f"sort_by='class' needs a Linear layer that reads the units of {self._grid.name!r}; this model has none"
            )
        return proposal["value"]

    @traitlets.validate("show_products")
    def _check_products(self, proposal):
        if proposal["value"] and (self._x is None or self._grid.kind != "linear"):
            raise traitlets.TraitError("input * weights needs a Linear layer and an input: set grid.input = x first")
        return proposal["value"]

    @traitlets.validate("page_size", "top_k")
    def _check_counts(self, proposal):
        value = proposal["value"]
        low = 1 if proposal["trait"].name == "page_size" else 0
        if value < low:
            raise traitlets.TraitError(f"{proposal['trait'].name} must be at least {low}, not {value}")
        return value

    def _on_view_change(self, _change) -> None:
        if self._clamping:  # _sync itself moved the page: it is drawing that page already
            return
        with self._guard():
            self._sync()

    # ----- live mode ---------------------------------------------------------------------------

    @traitlets.validate("live_interval")
    def _check_interval(self, proposal):
        if not proposal["value"] >= 0:
            raise traitlets.TraitError(f"live_interval is in seconds, 0 or more, not {proposal['value']}")
        return proposal["value"]

    @traitlets.observe("live_interval")
    def _on_interval(self, change) -> None:
        self._throttle.interval = float(change["new"])

    def _on_live(self, change) -> None:
        if change["new"]:
            self._start_watching()
        else:
            self._stop_watching()
            # The last steps of a loop may have fallen inside the throttle interval: the grid
            # ends on the weights as they are when live mode is turned off.
            self._refresh_if_changed()

    def _start_watching(self) -> None:
        if self._watch_handle is None:
            # After every optimizer step anywhere (a training loop in another cell runs on the
            # kernel's main thread, so the update goes out from there, throttled).
            self._watch_handle = register_optimizer_step_post_hook(self._after_step)
        self._schedule_poll()

    def _stop_watching(self) -> None:
        if self._watch_handle is not None:
            self._watch_handle.remove()
            self._watch_handle = None
        if self._watch_timer is not None:
            self._watch_timer.cancel()
            self._watch_timer = None

    def _after_step(self, *_args) -> None:
        if self._throttle.ready():
            self._refresh_if_changed()

    def _schedule_poll(self) -> None:
        # While the kernel is idle, notice changes made without an optimizer (e.g. by hand).
        loop = running_loop()
        if loop is not None and self.live:
            self._watch_timer = loop.call_later(self.live_interval * 4, self._poll)

    def _poll(self) -> None:
        self._watch_timer = None
        if not self.live:
            return
        self._refresh_if_changed()
        self._schedule_poll()

    def _refresh_if_changed(self) -> None:
        try:
            changed = self._weights_signature() != self._signature
        except ValueError:  # the layer was removed from the model
            changed = True
        if changed:
            try:
                self.refresh()
            except Exception:
                pass  # shown in the view by refresh(); a training loop must not fail because of it


def _first_weighted_layer(model: nn.Module) -> str:
    for name, module in model.named_modules():  # the model itself ("") when it is one nn.Linear
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            return name
    raise ValueError("the model has no nn.Linear or nn.Conv layer whose weights could be shown")
