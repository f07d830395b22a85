"""SemanticDictionary: for the position under the pointer, a conv layer's strongest channels as icons."""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import traitlets
from torch import nn

from ..compute.blocks import Dictionary, semantic_dictionary
from ..compute.blocks.layer import layer_activation
from ..compute.probe import LayerRef
from ..compute.units import check_index
from ._base import STATIC
from ._blocks import BlocksView
from ._budget import fitted
from ._selection import checked_selection
from ._traits import Array

__all__ = ["SemanticDictionary"]


class SemanticDictionary(BlocksView):
    """The semantic dictionary (Olah et al. 2018): hover any position of the input and see the ``k``
    channels of ``layer`` with the largest activation there, each as its feature visualization with
    a bar of its activation divided by the layer's maximum.

    ``model``, ``x``, ``layer``, ``dataset``, ``preprocess``, ``icons``, ``icon_steps``: as in
    :class:`NeuronGroups`. Every channel of the layer gets an icon, computed in the background
    (the channels at the shown position first) and shared with every other view of the model;
    until it is ready the channel's top dataset example stands in for it.

    In the view: a reticle over the layer's grid follows the pointer (no kernel round trip); click
    the input to pin a position (``position``); click a channel to select it (``selected`` is
    ``(layer, channel)``). The first position shown is the one with the largest activation.
    ``dictionary`` holds the :class:`~nbvis.compute.blocks.Dictionary` result.
    """

    _esm = STATIC / "semantic_dictionary.js"
    _css = STATIC / "semantic_dictionary.css"

    k = traitlets.Int(5).tag(sync=True)
    position = traitlets.List(traitlets.Int(), default_value=[0, 0]).tag(sync=True)
    selected = traitlets.Any(None).tag(sync=True)
    maximum = traitlets.Float(0.0, read_only=True).tag(sync=True)
    grid = traitlets.List(traitlets.Int(), default_value=[1, 1], read_only=True).tag(sync=True)
    _channels = Array("int32")  # (H, W, k)
    _values = Array()  # float32 (H, W, k)

    def __init__(
        self,
        model: nn.Module,
        x=None,
        layer: Optional[LayerRef] = None,
        k: int = 5,
        *,
        dataset=None,
        preprocess: Optional[Callable] = None,
        icons=True,
        icon_steps: int = 256,
        value_range=None,
        **kwargs,
    ):
        self._dictionary: Optional[Dictionary] = None
        super().__init__(model, x, layer, dataset, preprocess, icons, icon_steps, value_range, k=k, **kwargs)
        self._recompute()
        self.observe(self._on_k, names=["k"])
        self.observe(self._on_position, names=["position"])

    @property
    def dictionary(self) -> Dictionary:
        """The semantic dictionary of the current input (see :func:`nbvis.semantic_dictionary`)."""
        return self._dictionary

    def entries(self, position=None) -> list[tuple[int, float, float]]:
        """``[(channel, value, value / maximum), ...]`` at ``position`` (default: the pinned one)."""
        row, col = self.position if position is None else position
        return self._dictionary.at(int(row), int(col))

    def _picture(self):
        """The input with the reticle at the pinned position, and that position's channels with
        their icons and bars (activation / the layer's maximum), as the view shows them."""
        from PIL import ImageDraw

        from ._picture import BACKGROUND, INK, caption, row, stack, zoomed

        x = self._input_rgb()
        zoom = max(1, 224 // max(x.shape[:2]))
        picture = zoomed(x, x.shape[1] * zoom, x.shape[0] * zoom)
        (gh, gw), (r, c) = self.grid, self.position
        cw, ch = picture.width / gw, picture.height / gh
        draw = ImageDraw.Draw(picture)
        box = [c * cw + 1, r * ch + 1, (c + 1) * cw - 2, (r + 1) * ch - 2]
        draw.rectangle(box, outline=(0, 0, 0), width=4)
        draw.rectangle(box, outline=(255, 212, 0), width=2)
        entries = []
        for channel, value, share in self.entries():
            from PIL import Image

            text = Image.new("RGB", (150, 64), BACKGROUND)
            lines = ImageDraw.Draw(text)
            lines.text((0, 8), f"channel {channel}", fill=INK)
            lines.rectangle([0, 26, 119, 35], fill=(230, 230, 230))
            if share > 0:
                lines.rectangle([0, 26, max(0, round(share * 120) - 1), 35], fill=(67, 147, 195))
            lines.text((0, 42), f"{value:.3g} ({share * 100:.0f}% of max)", fill=(102, 102, 102))
            entries.append(row([self._icon_picture(channel, 64), text], gap=8))
        side = caption(stack(entries, gap=4), f"{self.layer} at ({r}, {c}): top {len(entries)} channels")
        return row([caption(picture, f"{self.layer}: {gh}x{gw} positions"), side], gap=16)

    @traitlets.validate("selected")
    def _check_selected(self, proposal):
        return checked_selection(proposal["value"], self._selection, "channel")

    def _selection(self, layer, channel) -> tuple:
        if layer != self.layer:
            raise ValueError(f"selected is a channel of the layer shown, {self.layer!r}, not of {layer!r}")
        count = 0 if self._dictionary is None else self._dictionary.activation.shape[0]
        return (self.layer, check_index(channel, count, "channel", f" of layer {self.layer!r}"))

    @traitlets.validate("position")
    def _check_position(self, proposal):
        value = list(proposal["value"])
        height, width = self.grid
        if len(value) != 2 or not (0 <= value[0] < height and 0 <= value[1] < width):
            raise traitlets.TraitError(f"position is [row, col] inside the layer's {height}x{width} grid, not {value!r}")
        return value

    @traitlets.validate("k")
    def _check_k(self, proposal):
        value = proposal["value"]
        if value < 1:
            raise traitlets.TraitError(f"k must be a positive integer, not {value}")
        return value

    def _on_k(self, _change) -> None:
        with self._guard():
            self._recompute()

    def _on_position(self, change) -> None:
        with self._guard():
            if self._cache is not None:  # the pinned position's channels first
                row, col = change["new"]
                channels = [int(c) for c in self._dictionary.channels[row, col]]
                self._cache.request(self.layer, channels, first=True)

    def _recompute(self) -> None:
        dictionary = semantic_dictionary(self.model, self._batch, self.layer, min(self.k, self._channel_count()))
        layer_changed = self._dictionary is None or self._dictionary.layer != dictionary.layer
        self._dictionary = dictionary
        height, width = dictionary.channels.shape[:2]
        with self.hold_sync():
            if self.selected is not None and self.selected[0] != dictionary.layer:
                self.selected = None
            self.set_trait("grid", [height, width])
            self.set_trait("maximum", dictionary.maximum)
            self._input = fitted(self._batch[0])  # a huge image goes averaged down
            self._channels = dictionary.channels
            self._values = dictionary.values
            self.position = list(dictionary.start)
            if layer_changed or not self._icon_keys:
                self._request_icons()

    def _channel_count(self) -> int:
        return int(layer_activation(self.model, self._batch, self.layer)[1].shape[0])

    def _icon_items(self):
        dictionary = self._dictionary
        count = dictionary.activation.shape[0]
        row, col = dictionary.start
        first = [int(c) for c in dictionary.channels[row, col]]
        # every channel, the first position's ones first, then by their largest activation
        peaks = dictionary.activation.reshape(count, -1).max(axis=1)
        rest = [int(c) for c in np.argsort(-peaks, kind="stable") if int(c) not in first]
        # slots are indexed by channel; the order of the last list is the order of computing
        return list(range(count)), np.eye(count, dtype=np.float32), first + rest
