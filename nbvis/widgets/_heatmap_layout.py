"""What the ActivationHeatmap's view gets in one update: the layout of its panels, and the input,
every layer and the why map averaged down (``_budget.py``) so that together they fit one message."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..compute import units
from ..compute.dataset import field_geometries
from ..compute.images import image_layout
from ._budget import MESSAGE_BUDGET, factors_to_fit, shrunk, shrunk_shape

MAX_BARS = 64  # outputs with more units are drawn as a grid, not as bars
#: bytes the input image takes in one update at most (its why map, as large, goes beside it):
#: a larger one is sent averaged down, and the view draws, outlines and hovers it at that size.
#: The layers share the rest of MESSAGE_BUDGET: larger maps and dense layers go averaged down too.
INPUT_BUDGET = MESSAGE_BUDGET // 4


class HeatmapLayout:
    """Mixin of :class:`~nbvis.widgets.activation_heatmap.ActivationHeatmap`: its panels' layout
    and the arrays as they are sent (the view holds ``_activations``, ``_batch``, ``wrt``...)."""

    def _folds(self) -> dict[str, tuple[int, int, int]]:
        """(C, H, W) of each layer that is an ``nn.Flatten`` of the (C, H, W) maps shown just before
        it: the view draws its units as those maps rather than as one scrambled square."""
        folds, previous = {}, None
        for name, act in self._activations.items():
            sample = tuple(self._shown(name, act[0]).shape)
            if len(sample) <= 1 and previous is not None and len(previous) == 3 and math.prod(previous) == (sample[0] if sample else 1):
                layer = units.parse_layer(self.model, name)
                if not layer.pick and isinstance(layer.module, nn.Flatten):
                    folds[name] = tuple(int(d) for d in previous)
            previous = sample
        return folds

    # ----- what one update carries: every array within MESSAGE_BUDGET --------------------------

    def _input_image(self) -> Optional[tuple]:
        """(C, H, W) when the input is an image (see :func:`image_layout_of`); None for other inputs
        and for token ids, whatever their count (64 ids are no 8 x 8 picture)."""
        return image_layout_of(self._sample_shape) if self._batch.is_floating_point() else None

    def _input_factor(self) -> int:
        """How much the input (an image) is averaged down for the view: its map goes beside it."""
        image = self._input_image()
        if image is None:
            return 1
        return factors_to_fit({"input": image}, INPUT_BUDGET).get("input", 1)

    def _shrunk(self, name: str, values: torch.Tensor, k: int) -> torch.Tensor:
        """One sample of the input (``name`` "input") or of a layer as the view gets it, averaged
        down by ``k`` (a flattened map over its maps' blocks, a dense layer over runs of units)."""
        if k == 1:
            return values
        if name == "input":
            return shrunk(values.reshape(self._input_image()), k)
        fold = self._folds().get(name)
        return shrunk(values.reshape(fold), k).reshape(-1) if fold else shrunk(values, k)

    def _factors(self, with_grad: bool) -> dict[str, int]:
        """How much each array is averaged down ("input" and layer names; 1s left out), so that the
        input, every layer and the why map (``with_grad``) fit in one message."""
        factors = {"input": self._input_factor()}
        wrt = self.wrt or "input"
        image = self._input_image()
        sent = math.prod(shrunk_shape(image, factors["input"])) if factors["input"] > 1 else self._batch[0].numel()
        budget = MESSAGE_BUDGET - 4 * sent * (2 if with_grad and wrt == "input" else 1)
        folds = self._folds()
        shapes = {name: folds.get(name) or tuple(self._shown(name, act[0]).shape) for name, act in self._activations.items()}
        factors.update(factors_to_fit(shapes, budget, twice=[wrt] if with_grad and wrt != "input" else []))
        return {name: k for name, k in factors.items() if k > 1}

    def _sent_acts(self, factors: dict[str, int]) -> dict[str, torch.Tensor]:
        return {name: self._shrunk(name, self._shown(name, act[0]), factors.get(name, 1))
                for name, act in self._activations.items()}

    def _sent_grad(self, grad: Optional[np.ndarray], factors: dict[str, int]):
        if grad is None:
            return None
        wrt = self.wrt or "input"
        return self._shrunk(wrt, torch.from_numpy(grad), factors.get(wrt, 1))

    def _layout_entries(self, factors: Optional[dict[str, int]] = None) -> list[dict]:
        """What the view needs to lay out every panel; recomputed only when shapes change."""
        factors = factors or {}
        key = (self._sample_shape, self._output_name, tuple((n, tuple(a.shape)) for n, a in self._activations.items()),
               tuple(sorted(factors.items())))
        if key == self._layout_key:
            return self._layout
        geometry = {}
        image = self._input_image()
        spatial = [name for name, act in self._activations.items() if act.dim() == 4 and self._axis(name) == 1]
        if image is not None and len(self._sample_shape) == 3 and spatial:
            try:
                geometry = field_geometries(self.model, spatial, self._sample_shape)
            except ValueError:
                geometry = {}
        kind = "image" if image else "dense" if self._batch.is_floating_point() else "tokens"  # token ids: drawn as their numbers
        entry = {"name": "input", "label": "input", "kind": kind,
                 "shape": list(self._sample_shape), "image": list(image) if image else None}
        if "input" in factors:  # sent averaged down: drawn (and hovered, outlined) at that size
            entry.update(image=list(shrunk_shape(image, factors["input"])), pooled=factors["input"], full=list(image))
        entries = [entry]
        folds = self._folds()
        for name, act in self._activations.items():
            sample = tuple(self._shown(name, act[0]).shape)
            k = factors.get(name, 1)
            if len(sample) <= 1:
                count = int(sample[0]) if sample else 1
                kind = "bars" if name == self._output_name and count <= MAX_BARS else "dense"
                maps = None
            else:
                kind = "conv"
                count = int(sample[0])
                sample = shrunk_shape(sample, k) if len(sample) == 3 else sample
                maps = [int(math.prod(sample[1:-1])), int(sample[-1])]
            entry = {"name": name, "label": self._label(name), "kind": kind, "shape": list(sample),
                     "units": count, "maps": maps, "output": name == self._output_name}
            if name in folds:
                entry["fold"] = list(shrunk_shape(folds[name], k))
                if k > 1:
                    entry["full"] = list(folds[name])
            elif kind != "conv" and k > 1:  # a dense layer sent in runs of k units
                entry["shape"] = list(shrunk_shape(sample, k))
            if k > 1:
                entry["pooled"] = k
            if name in geometry and not geometry[name].whole:  # per position of the layer (a block of k x k when pooled)
                entry["field"] = geometry[name].to_dict()
            entries.append(entry)
        self._layout_key = key
        return entries


def image_layout_of(shape) -> Optional[tuple]:
    """(C, H, W) when inputs of ``shape`` are images; flat inputs count when they are a square of
    at least 8 x 8 values (784 -> 28 x 28), so that a few tabular features stay a bar of values."""
    try:
        layout = image_layout(shape)
    except ValueError:
        return None
    return None if len(shape) == 1 and layout[1] < 8 else layout
