"""ActivationHeatmap: watch every layer react to an input you can change, and ask any unit why."""

from __future__ import annotations

import math
import threading
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import traitlets
from torch import nn

from .._arrays import message_bytes
from ..compute import structure, units
from ..compute.dataset import as_samples, sample_tensor
from ..compute.gradients import METHODS
from ..compute.images import DEFAULT_MAX_BYTES, decode_image, pixels_to_input
from ..compute.probe import LayerRef, capture_sample
from ._base import STATIC, NbvisWidget
from ._dataset_input import DatasetInput
from ._heatmap_layout import MAX_BARS, HeatmapLayout
from ._selection import checked_selection
from ._top_examples import TopExamplesView
from ._traits import Array, ArrayDict

__all__ = ["ActivationHeatmap"]

class ActivationHeatmap(HeatmapLayout, DatasetInput, TopExamplesView, NbvisWidget):
    """Every chosen layer's activations for one input, as heatmaps, with the input changeable.

    ``model``: any ``nn.Module``. ``x``: one input sample (``images[0]``; a batch of one also
    works); optional when ``dataset`` is given. ``layers``: names (or modules) to show; default
    every leaf module whose output is a tensor, plus the model's output when no leaf returns it.
    ``labels``: class names for the output bars. ``dataset``: samples to pick from with a slider
    (a tensor or array of samples, a map-style torch Dataset, or an ``(inputs, targets)`` pair);
    it is also scanned for the selected unit's top examples. ``preprocess``: a callable that
    turns a ``PIL.Image`` (an upload, a drawing, a webcam frame) into one model input; by default
    images are converted to the model's channels, fitted to its height x width and scaled to
    [0, 1] (single-channel images are inverted when their border is bright, as dark ink on
    paper, unless ``invert=False``).

    In the view: hover any unit for its value (no message to the kernel); hover a conv channel
    to enlarge it, and a position to outline its receptive field on the input; click a unit to
    set ``selected`` and see its gradient (or guided backprop / deconvnet map) over the input or
    an earlier layer, and its top dataset examples; draw on the input, upload an image, use the
    webcam, or pick a dataset sample.
    """

    _esm = STATIC / "activation_heatmap.js"
    _css = STATIC / "activation_heatmap.css"

    _layout = traitlets.List().tag(sync=True, from_view=False)
    _input = Array()
    _acts = ArrayDict()
    labels = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    selected = traitlets.Any(None).tag(sync=True)
    method = traitlets.Enum(tuple(METHODS), default_value="gradient").tag(sync=True)
    wrt = traitlets.Unicode("input").tag(sync=True)
    # how the why map of a conv channel gathers its positions: "weighted" by the channel's own
    # activation on this input (where and why it fires here; see nbvis.compute.units), "sum"
    # (what would raise it everywhere) or "max" (its strongest position alone); a selected
    # position (layer, (c, y, x)) is one element and needs none
    reduce = traitlets.Enum(("weighted", "sum", "max"), default_value="weighted").tag(sync=True)
    # what the top examples of a unit are ranked by: "preactivation", for a unit that saturates
    # (a sigmoid, whose values are 1.000 for many inputs) the Linear or Conv unit it rises with
    # (fc1[12] for sigmoid[12]: the same order without the ties), else the unit itself; or
    # "unit", always the unit itself
    rank = traitlets.Enum(("preactivation", "unit"), default_value="preactivation").tag(sync=True)
    # the one-screen layout of the Explorer: input at the left, the selected layer large among
    # thumbnails of the others, the selected unit at the right
    dashboard = traitlets.Bool(False).tag(sync=True)
    _grad = Array()
    grad_caption = traitlets.Unicode("").tag(sync=True)
    index = traitlets.Int(0).tag(sync=True)
    dataset_size = traitlets.Int(0, read_only=True).tag(sync=True)
    input_caption = traitlets.Unicode("").tag(sync=True)
    can_draw = traitlets.Bool(False, read_only=True).tag(sync=True)
    _seq_done = traitlets.Int(0).tag(sync=True, from_view=False)
    # limits that protect the kernel: set from Python only
    upload_max_bytes = traitlets.Int(DEFAULT_MAX_BYTES).tag(sync=True, from_view=False)
    webcam_fps = traitlets.Float(4.0).tag(sync=True, from_view=False)

    def __init__(
        self,
        model: nn.Module,
        x=None,
        layers: Optional[Sequence[LayerRef]] = None,
        labels: Optional[Sequence[str]] = None,
        dataset=None,
        preprocess: Optional[Callable] = None,
        *,
        invert="auto",
        input_shape: Optional[Sequence[int]] = None,
        **kwargs,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        if preprocess is not None and not callable(preprocess):
            raise TypeError(f"preprocess must be a callable(PIL.Image) -> array, not {type(preprocess).__name__}")
        if invert not in (True, False, "auto"):
            raise ValueError(f"invert is True, False or 'auto', not {invert!r}")
        self.model = model
        self._preprocess = preprocess
        self._invert = invert
        self._lock = threading.RLock()  # one computation on the model at a time (jobs run on threads outside a kernel)
        self._dataset, self._targets = as_samples(dataset)
        from_dataset = x is None
        start = int(kwargs.get("index", 0))
        if from_dataset:
            if self._dataset is None:
                raise TypeError("ActivationHeatmap needs an input x (one sample), or a dataset to pick samples from")
            x = self._sample(start)
        self._names = None if layers is None else [units.parse_layer(model, layer).name for layer in _as_list(layers)]
        self._sample_shape: Optional[tuple] = None if input_shape is None else tuple(int(n) for n in input_shape)
        if self._sample_shape is None and self._dataset is not None:
            self._sample_shape = tuple(sample_tensor(self._dataset[0]).shape)  # a dataset sample's shape
        self._layout_key = None
        self._sent_factors: dict[str, int] = {}  # how much each array went averaged down in the last update
        self._grad_values: Optional[np.ndarray] = None
        self._batch, self._activations, self._output_name = self._run(x)
        n_out = self._units(self._output_name) if self._output_name is not None else 0
        if labels is not None:
            labels = [str(label) for label in labels]
            if self._output_name is None or len(labels) != n_out:
                shape = "" if self._output_name is None else f" (one sample has shape {tuple(self._activations[self._output_name].shape[1:])})"
                raise ValueError(f"labels has {len(labels)} names; the model's output has {n_out} units{shape}")
        self._init_top()
        super().__init__(**kwargs)
        self.set_trait("labels", labels or [])
        self.set_trait("dataset_size", 0 if self._dataset is None else len(self._dataset))
        # an image input shown averaged down is not drawn on: a drawing would replace it by its blocks
        self.set_trait("can_draw", self._input_image() is not None and self._input_factor() == 1)
        self._publish(caption=f"dataset #{start}{self._target_text(start)}" if from_dataset else "")
        self.observe(self._on_index, names=["index"])
        self.observe(self._on_selected, names=["selected"])
        self.observe(self._on_grad_options, names=["method", "wrt", "reduce"])
        self.observe(self._on_rank, names=["rank"])
        self.on_msg(self._on_input_msg)
        self.observe(self._on_top_k, names=["top_k"])
        if self.selected is not None:
            self._start_top()

    # ----- public API --------------------------------------------------------------------------

    @property
    def activations(self) -> dict[str, np.ndarray]:
        """Each shown layer's activation for the current input (one sample, no batch axis), by
        layer name (``""`` is the model's output)."""
        return {name: act[0].detach().float().cpu().numpy() for name, act in self._activations.items()}

    @property
    def output_layer(self) -> Optional[str]:
        """The name of the shown layer that is the model's output ("" for the model itself), or None."""
        return self._output_name

    @property
    def layers(self) -> list[str]:
        """The names of the layers shown, in order (``""`` for the model's own output, ``"relu#2"``
        for a second call of ``relu``)."""
        return list(self._activations)

    @property
    def gradient_map(self) -> Optional[np.ndarray]:
        """The map shown for the selected unit (over the input or the ``wrt`` layer), or None."""
        return self._grad_values

    def _picture(self):
        """The input and every layer's activations on the view's scales (the output as bars)."""
        from ._picture import auto_scale, bars, caption, colormap, fit_zoom, gray, mosaic, row, stack

        panels = []
        image = self._input_image()
        if image is not None:
            x = self._batch[0].detach().cpu().float().numpy().reshape(image)
            picture = mosaic([gray(x)], gap=0, zoom=fit_zoom(image[2], image[1], 112))
            panels.append(caption(picture, "input"))
        for name, act in self._activations.items():
            values = act[0].detach().cpu().float().numpy()
            label = self._label(name)
            if values.ndim <= 1 and name == self._output_name and values.size <= MAX_BARS:
                names = self.labels or [str(i) for i in range(values.size)]
                panels.append(bars(names, values.reshape(-1), title=label, width=200))
                continue
            lo, hi, cmap = auto_scale(values)
            if values.ndim <= 1:
                n = values.size
                side = max(1, math.ceil(math.sqrt(n)))
                grid = np.full(side * side, np.nan)
                grid[:n] = values.reshape(-1)
                tile = colormap(grid.reshape(side, side), lo, hi, cmap)
                tile.reshape(-1, 3)[n:] = 255
                picture = mosaic([tile], gap=0, zoom=fit_zoom(side, side, 112))
            else:
                maps = values.reshape(values.shape[0], -1, values.shape[-1])
                tiles = [colormap(m, lo, hi, cmap) for m in maps[:64]]
                cols = max(1, math.ceil(math.sqrt(len(tiles))))
                picture = mosaic(tiles, cols=cols, zoom=fit_zoom(cols * maps.shape[2], cols * maps.shape[1], 160))
            panels.append(caption(picture, label))
        lines = [row(panels[i:i + 4], gap=16) for i in range(0, len(panels), 4)]
        return stack(lines, gap=12)

    def close(self):
        self._stop_top()
        super().close()

    # ----- inputs ------------------------------------------------------------------------------

    def _run(self, x):
        """``x`` as one sample and what it gives: (batch of one, activations, output layer name)."""
        with self._lock:
            batch, acts, output_name = capture_sample(self.model, x, self._names, input_shape=self._sample_shape)
        if self._sample_shape is None:
            self._sample_shape = tuple(batch.shape[1:])
        return batch, acts, output_name

    def _set_input(self, x, caption: str, seq: Optional[int] = None) -> None:
        with self._guard():
            batch, acts, output_name = self._run(x)
            self._batch, self._activations, self._output_name = batch, acts, output_name
            self._publish(caption=caption, seq=seq)

    def _decode(self, data) -> np.ndarray:
        layout = self._input_image()
        if layout is None and self._preprocess is None:
            raise ValueError(f"the model's input of shape {self._sample_shape} is not an image; pass preprocess= to map images to it")
        return decode_image(data, self._sample_shape, self._preprocess, invert=self._default_invert(), max_bytes=self.upload_max_bytes)

    def _default_invert(self):
        layout = self._input_image()
        return self._invert if layout is not None and layout[0] == 1 else (self._invert is True)

    def _on_input_msg(self, _widget, content, buffers) -> None:
        if not isinstance(content, dict) or content.get("type") != "input":
            return
        seq = int(content.get("seq", 0))
        source = str(content.get("source", ""))
        try:
            with self._guard():
                data = message_bytes(content, buffers)
                if data is None:
                    raise ValueError("the view sent no data")
                if source == "draw" and not self.can_draw:
                    raise ValueError("this input cannot be drawn on: it is not an image, or it is shown averaged down "
                                     f"(an image of {self._sample_shape}); upload an image or set the input from Python")
                if source == "upload":
                    x = self._decode(data)
                    caption = f"uploaded {content.get('name', 'image')}"
                else:
                    height, width, channels = (int(v) for v in content.get("shape", (0, 0, 1)))
                    if len(data) != height * width * channels:
                        raise ValueError(f"the view sent {len(data)} bytes for a {height}x{width}x{channels} image")
                    pixels = np.frombuffer(data, np.uint8).reshape(height, width, channels)
                    x = pixels_to_input(pixels, self._sample_shape, self._preprocess, fit="crop",
                                        invert=False if source == "draw" else self._default_invert())
                    caption = {"draw": "drawing", "webcam": "webcam"}.get(source, source)
                self._set_input(x, caption, seq)
        except Exception:
            self.set_trait("_seq_done", seq)  # the view may send again; the error is shown under it

    # ----- state -> traits ---------------------------------------------------------------------

    def _label(self, name: str) -> str:
        return units.layer_label(name)

    def _axis(self, name: str) -> int:
        act = self._activations[name]
        return self._activations.axes.get(name, units.default_axis(act)) if act.dim() >= 2 else 0

    def _units(self, name: str) -> int:
        act = self._activations[name]
        return units.unit_count(act, self._axis(name))

    def _shown(self, name: str, values: torch.Tensor) -> torch.Tensor:
        """One sample of a layer's values with its feature axis first, as the view draws units."""
        axis = self._axis(name)
        return values.movedim(axis - 1, 0) if values.dim() >= 2 and axis > 1 else values

    def _publish(self, caption: str = "", seq: Optional[int] = None, gradient: Optional[tuple] = None) -> None:
        grad, grad_caption = self._gradient_state() if gradient is None else gradient
        self._grad_values = grad
        factors = self._sent_factors = self._factors(grad is not None)
        with self.hold_sync():  # one message: the view redraws once
            if caption:
                self.input_caption = caption
            layout = self._layout_entries(factors)
            if layout != self._layout:
                self._layout = layout
            self._input = self._shrunk("input", self._batch[0], factors.get("input", 1))
            self._grad = self._sent_grad(grad, factors)
            self.grad_caption = grad_caption
            self._acts = self._sent_acts(factors)
            if seq is not None:
                self._seq_done = seq

    def _gradient_state(self):
        if self.selected is None:
            return None, ""
        layer, unit = self.selected
        wrt = self.wrt or "input"
        if wrt == "input" and not self._batch.is_floating_point():
            return None, "the input is token ids, which have no gradient: choose a layer to see the map over it"
        channel = self._has_positions(layer) and not isinstance(unit, tuple)
        with self._lock:
            reduce = self.reduce if channel else units.DEFAULT_REDUCE
            values = METHODS[self.method](self.model, self._batch, of=(layer, unit), wrt=wrt, reduce=reduce)[0]
        if wrt != "input":
            values = self._shown(wrt, values)
        what = {"gradient": "gradient", "guided": "guided backprop", "deconvnet": "deconvnet"}[self.method]
        how = ""
        if channel:
            how = {"weighted": " (positions weighted by its activation)", "sum": " (summed over positions)",
                   "max": " (at its strongest position)"}[self.reduce]
        over = self._label(wrt) if wrt != "input" else "the input"
        return values.detach().float().cpu().numpy(), f"{what} of {units.unit_label(layer, unit)}{how} over {over}"

    def _has_positions(self, name: str) -> bool:
        """Whether a unit of layer ``name`` is a channel of 2-D maps (N, C, H, W), whose positions
        ``reduce`` gathers; other units (tokens of a sequence) keep the contract's mean."""
        act = self._activations[name]
        return act.dim() == 4 and self._axis(name) == 1 and act[0, 0].numel() > 1

    # ----- what the top examples are ranked by ---------------------------------------------------

    def ranked_unit(self, layer: str, unit) -> tuple:
        """The ``(layer, unit)`` that the top examples of ``(layer, unit)`` are ranked by (see
        ``rank``): its pre-activation ``(fc1, 12)`` for ``(sigmoid, 12)``, or the unit itself."""
        if self.rank == "unit" or layer not in self._activations:
            return (layer, unit)
        chain = self._structure()
        source = structure.preactivation(chain, layer, unit)
        return (source, unit) if source is not None and structure.saturates(chain, source, layer) else (layer, unit)

    def preactivation(self, layer: str, unit) -> tuple:
        """The Linear or Conv unit that ``(layer, unit)`` rises with (``(conv2, 5)`` for ``(relu2,
        5)``), or ``(layer, unit)`` itself when there is none (see :func:`structure.preactivation`)."""
        source = structure.preactivation(self._structure(), layer, unit) if layer in self._activations else None
        return (layer, unit) if source is None else (source, unit)

    def _structure(self) -> structure.Structure:
        """Which call feeds which (traced once per sample shape)."""
        key = tuple(self._batch.shape)
        if getattr(self, "_structure_key", None) != key:
            with self._lock:
                self._structure_cache = structure.trace(self.model, self._batch.clone())
            self._structure_key = key
        return self._structure_cache

    def _top_target(self):
        return self.ranked_unit(*self.selected)

    # ----- observers ---------------------------------------------------------------------------

    @traitlets.validate("selected")
    def _check_selected(self, proposal):
        return checked_selection(proposal["value"], self._selection)

    def _selection(self, layer, unit) -> tuple:
        """``(layer, unit)`` as stored: the layer's name, and the unit's index or position."""
        name = units.parse_layer(self.model, layer).name
        if name not in self._activations:
            raise ValueError(f"selected layer {layer!r} is not shown; the layers are {self.layers}")
        if isinstance(unit, (tuple, list)):  # one position (c, y, x) of a conv channel
            return (name, self._check_position(name, unit))
        return (name, units.check_index(unit, self._units(name), "unit", f" for layer {self._label(name)!r}"))

    def _check_position(self, name: str, unit) -> tuple:
        """``unit`` as one position ``(c, y, x)`` of layer ``name``'s channel maps."""
        if not self._has_positions(name):
            raise ValueError(
                f"a position (c, y, x) is a unit of a layer of channel maps; layer {self._label(name)!r} has "
                f"{self._units(name)} units of one value each: select one by its index"
            )
        parsed = units.parse_unit((name, unit))
        units.select(parsed, name, self._activations[name][:1], self._axis(name))  # range, against its shape
        return tuple(parsed.element)

    @traitlets.validate("wrt")
    def _check_wrt(self, proposal):
        value = proposal["value"] or "input"
        if value == "input":
            return value
        try:
            name = units.parse_layer(self.model, value).name
        except (TypeError, ValueError):
            name = value
        if name not in self._activations or name == units.OUTPUT:
            raise traitlets.TraitError(f"wrt is 'input' or one of the shown layers {self.layers}, not {value!r}")
        return name

    def _on_selected(self, change) -> None:
        with self._guard():
            names = list(self._activations)
            new = change["new"]
            try:
                if self.wrt != "input" and new is not None and names.index(self.wrt) >= names.index(new[0]):
                    self.wrt = "input"  # only layers before the selected one can be asked; its observer refreshes the map
                else:
                    self._refresh_gradient()
            finally:  # the unit's top examples are worth finding even when its map cannot be drawn
                self._start_top()

    def _on_rank(self, _change) -> None:
        with self._guard():
            self._start_top()

    def _on_grad_options(self, _change) -> None:
        with self._guard():
            self._refresh_gradient()

    def _refresh_gradient(self) -> None:
        try:
            grad, caption = self._gradient_state()
        except Exception:
            self._grad, self.grad_caption, self._grad_values = None, "", None
            raise
        self._grad_values = grad
        factors = self._factors(grad is not None)
        if factors != self._sent_factors:  # the map goes beside a big layer: that layer is averaged further down
            self._publish(gradient=(grad, caption))
            return
        with self.hold_sync():
            self._grad = self._sent_grad(grad, factors)
            self.grad_caption = caption


def _as_list(layers) -> list:
    if isinstance(layers, (str, nn.Module)):
        return [layers]
    return list(layers)
