"""NeuronGroups: one input's activations at a conv layer as k groups of neurons, in k hues."""

from __future__ import annotations

import colorsys
from typing import Callable, Optional, Sequence

import numpy as np
import traitlets
from torch import nn

from ..compute.blocks import Groups, neuron_groups
from ..compute.probe import LayerRef
from ._base import STATIC
from ._blocks import BlocksView
from ._budget import fitted
from .._arrays import unpack
from ._traits import Array

__all__ = ["NeuronGroups", "group_hues"]

MAX_K = 12


def group_hues(k: int) -> list[str]:
    """One evenly spaced hue per group, as ``#rrggbb`` (hsl(i * 360 / k, 80%, 50%), as in Lucid)."""
    colors = []
    for i in range(k):
        r, g, b = colorsys.hls_to_rgb(i / k, 0.5, 0.8)
        colors.append("#%02x%02x%02x" % (round(r * 255), round(g * 255), round(b * 255)))
    return colors


def _rgb(color: str) -> tuple[int, int, int]:
    n = int(color[1:], 16)
    return (n >> 16) & 255, (n >> 8) & 255, n & 255


def blend_groups(maps: np.ndarray, colors) -> np.ndarray:
    """RGB uint8 (H, W, 3): per position, the brightest of every group's hue times its map value
    (the view's "lighten" blend on black)."""
    hues = np.asarray(colors, dtype=np.float64)  # (k, 3)
    return np.rint(np.max(maps[..., None] * hues[:, None, None, :], axis=0)).astype(np.uint8)


def _swatch(color, text: str):
    from PIL import Image, ImageDraw

    from ._picture import BACKGROUND, INK

    out = Image.new("RGB", (70, 16), BACKGROUND)
    draw = ImageDraw.Draw(out)
    draw.rectangle([1, 2, 12, 13], fill=tuple(color))
    draw.text((18, 2), text, fill=INK)
    return out


class NeuronGroups(BlocksView):
    """Neuron groups (Olah et al. 2018): the activations of one input at a conv layer, factorized by
    NMF into ``k`` groups, each laid over the input in its own hue.

    ``model``: any ``nn.Module``. ``x``: one image input (optional when ``dataset`` is given).
    ``layer``: a conv layer (default: the last one whose output is non-negative and at least 2x2).
    ``k``: the number of groups. ``labels``: class names for the attribution table. ``dataset``:
    samples to pick the input from with a slider (and to find each group's top example, shown
    until its feature visualization is ready). ``negative``, ``random_state``, ``classes``: passed to
    :func:`nbvis.neuron_groups`. ``icons``: feature-visualize each group's channel factor as a
    direction (True, a :class:`~nbvis.compute.blocks.FeatureCache`, or False); ``icon_steps``
    steps each, in the background, shared with every other view of the model.

    In the view: the input with each group's map (normalized by the 99th percentile of all maps)
    in its hue, blended so that the brightest group shows where groups overlap; a legend with each
    group's icon; hover a group (in the legend, the table or the map) to isolate it; a table of each
    group's attribution to the top classes, divided by the largest absolute value (shown); a k
    slider and a layer picker; click a group to select it (``selected``; ``direction`` gives its
    layer and channel factor); pick a dataset sample or upload an image. ``groups`` holds the
    :class:`~nbvis.compute.blocks.Groups` result.
    """

    _esm = STATIC / "neuron_groups.js"
    _css = STATIC / "neuron_groups.css"

    k = traitlets.Int(6).tag(sync=True)
    selected = traitlets.Int(None, allow_none=True).tag(sync=True)
    hues = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    r2 = traitlets.Float(0.0, read_only=True).tag(sync=True)
    class_labels = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    attribution_scale = traitlets.Float(0.0, read_only=True).tag(sync=True)
    note = traitlets.Unicode("", read_only=True).tag(sync=True)
    _maps = Array()  # float32 (k, H, W) in [0, 1]
    _attribution = Array()  # float32 (k, classes)

    def __init__(
        self,
        model: nn.Module,
        x=None,
        layer: Optional[LayerRef] = None,
        k: int = 6,
        *,
        labels: Optional[Sequence[str]] = None,
        dataset=None,
        preprocess: Optional[Callable] = None,
        negative: str = "refuse",
        random_state: int = 0,
        classes=10,
        icons=True,
        icon_steps: int = 256,
        value_range=None,
        **kwargs,
    ):
        self._labels = None if labels is None else [str(label) for label in labels]
        self._options = dict(negative=negative, random_state=random_state, classes=classes)
        self._groups: Optional[Groups] = None
        super().__init__(model, x, layer, dataset, preprocess, icons, icon_steps, value_range, k=k, **kwargs)
        self._recompute()
        self.observe(self._on_k, names=["k"])

    @property
    def groups(self) -> Groups:
        """The factorization of the current input (see :func:`nbvis.neuron_groups`)."""
        return self._groups

    @property
    def direction(self) -> Optional[tuple[str, np.ndarray]]:
        """``(layer, channel factor)`` of the selected group, or None."""
        if self.selected is None or self._groups is None:
            return None
        return self._groups.layer, self._groups.channels[self.selected].copy()

    @property
    def maps(self) -> np.ndarray:
        """The group maps drawn, float32 (k, H, W) in [0, 1]: each divided by the 99th percentile of all."""
        return unpack(self._maps).copy()

    @property
    def attribution(self) -> Optional[np.ndarray]:
        """The attribution table drawn, (k, classes), divided by its largest absolute value (the
        ``attribution_scale``); None when the output is not one vector of logits."""
        if self._attribution is None:
            return None
        return unpack(self._attribution) / (self.attribution_scale or 1.0)

    def _picture(self):
        """The input with the groups, the group maps, the legend with icons, the attribution table."""
        from ._picture import caption, row, stack, table, zoomed

        maps, colors = self.maps, [_rgb(h) for h in self.hues]
        blend = blend_groups(maps, colors)
        x = self._input_rgb(dim=0.45)
        zoom = max(1, 224 // max(x.shape[:2]))
        width, height = x.shape[1] * zoom, x.shape[0] * zoom
        base = np.asarray(zoomed(x, width, height))
        overlay = np.maximum(base, np.asarray(zoomed(blend, width, height, smooth=True)))  # "lighten", as in the view
        pictures = row([caption(zoomed(overlay, width, height), "input with groups"),
                        caption(zoomed(blend, width, height), "group maps")], gap=8)
        entries = []
        for i, color in enumerate(colors):
            entries.append(row([_swatch(color, f"group {i}"), self._icon_picture(i, 56), zoomed(self._thumbnail(i, color), 64, 64)], gap=6))
        legend = caption(stack(entries, gap=4), f"groups (icons {self.icons_ready}/{len(colors)})")
        values = self.attribution
        attribution = None if values is None else caption(
            table(values, [str(i) for i in range(len(colors))], self.class_labels, -1.0, 1.0), "attribution to the top classes")
        title = f"{self.k} groups at {self.layer} - R2 {self.r2:.3f}"
        return caption(stack([row([pictures, legend], gap=16), attribution], gap=10), title)

    def _thumbnail(self, i: int, color) -> np.ndarray:
        """The input in gray times group ``i``'s map (nearest cell), in its hue (the legend's thumbnail)."""
        gray = self._input_rgb()[..., 0] / 255.0
        m = self.maps[i]
        rows = np.minimum(m.shape[0] - 1, np.arange(gray.shape[0]) * m.shape[0] // gray.shape[0])
        cols = np.minimum(m.shape[1] - 1, np.arange(gray.shape[1]) * m.shape[1] // gray.shape[1])
        level = (0.25 + 0.75 * gray) * m[np.ix_(rows, cols)]
        return np.rint(level[..., None] * np.asarray(color, np.float64)).astype(np.uint8)

    @traitlets.validate("k")
    def _check_k(self, proposal):
        value = proposal["value"]
        if not 1 <= value <= MAX_K:
            raise traitlets.TraitError(f"k must be in 1..{MAX_K}, not {value}")
        return value

    @traitlets.validate("selected")
    def _check_selected(self, proposal):
        value = proposal["value"]
        if value is not None and not 0 <= value < self.k:
            raise traitlets.TraitError(f"selected is a group index in 0..{self.k - 1} or None, not {value}")
        return value

    def _on_k(self, _change) -> None:
        with self._guard():
            self._recompute()

    def _recompute(self) -> None:
        groups = neuron_groups(self.model, self._batch, self.layer, self.k, **self._options)
        self._groups = groups
        labels = []
        if groups.classes is not None:
            for c in groups.classes:
                c = int(c)
                labels.append(self._labels[c] if self._labels and c < len(self._labels) else str(c))
        scale = float(np.abs(groups.attribution).max()) if groups.attribution is not None and groups.attribution.size else 0.0
        note = "" if not groups.clipped else f"{groups.clipped} negative values clipped to zero"
        with self.hold_sync():
            self.selected = None
            self.set_trait("hues", group_hues(groups.k))
            self.set_trait("r2", groups.r2)
            self.set_trait("class_labels", labels)
            self.set_trait("attribution_scale", scale)
            self.set_trait("note", note)
            self._input = fitted(self._batch[0])  # a huge image goes averaged down
            self._maps = groups.normalized_maps()
            self._attribution = groups.attribution
            self._request_icons()

    def _icon_items(self):
        channels = self._groups.channels
        return list(channels), channels, list(channels)
