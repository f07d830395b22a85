"""What in each top dataset example makes its unit fire: the guided-backprop or deconvnet map of
the unit at the example's own strongest position, cropped like the example's patch (the Deep
Visualization Toolbox shows these beside the top 9 crops)."""

from __future__ import annotations

import torch
from torch import nn

from .dataset import TopExamples, crop_like
from .gradients import METHODS, element_maps

__all__ = ["example_maps"]


def _elements(top: TopExamples) -> torch.Tensor:
    """Each example's element ``(c, y, x)``: the unit's channel at that example's strongest position."""
    channel = top.unit[0] if isinstance(top.unit, tuple) else int(top.unit)
    return torch.cat([torch.full((len(top.positions), 1), channel, dtype=torch.long), top.positions.long()], dim=1)


def example_maps(model: nn.Module, top: TopExamples, method: str = "guided") -> torch.Tensor:
    """For each example of ``top``, ``method``'s map ("guided", "deconvnet" or "gradient") of its
    unit over its input, cropped like ``top.patches`` (same shape). A conv channel's map is the one
    of its value at the position where that example peaks, as its patch is the input that
    position sees (one backward pass for all the examples). Raises ``ValueError`` as the method does (guided backprop and deconvnet need a ReLU)."""
    if method not in METHODS:
        raise ValueError(f"method is one of {sorted(METHODS)}, not {method!r}")
    run = METHODS[method]
    inputs = top.inputs
    if len(inputs) == 0:
        return crop_like(top, inputs)
    if top.positions is None:  # one unit for every example
        full = run(model, inputs, of=(top.layer, top.unit), wrt="input")
    else:  # each example's own position
        full = element_maps(model, inputs, top.layer, _elements(top), method)
    return crop_like(top, full.reshape(inputs.shape))
