"""The semantic dictionary: for every position of a conv layer, its strongest channels.

Olah et al. 2018 show, for the position under the pointer, the channels with the largest activation
there, each as its feature visualization with a bar of its activation divided by the largest value
of the whole ``(C, H, W)`` activation.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from ..probe import LayerRef
from .layer import layer_activation

__all__ = ["Dictionary", "semantic_dictionary"]


@dataclasses.dataclass
class Dictionary:
    """The result of :func:`semantic_dictionary`.

    ``channels`` ``(H, W, k)`` int: at each position, the ``k`` channels with the largest
    activation, largest first (ties: the lower channel first); ``values`` ``(H, W, k)``: their
    activations; ``maximum``: the largest activation of the layer (bars are ``values / maximum``);
    ``start``: the position ``(row, col)`` of that maximum; ``activation``: ``(C, H, W)``.
    """

    layer: str
    channels: np.ndarray
    values: np.ndarray
    maximum: float
    start: tuple[int, int]
    activation: np.ndarray

    @property
    def k(self) -> int:
        return int(self.channels.shape[-1])

    @property
    def bars(self) -> np.ndarray:
        """``values / maximum`` (zeros when the maximum is not positive)."""
        return self.values / self.maximum if self.maximum > 0 else np.zeros_like(self.values)

    def at(self, row: int, col: int) -> list[tuple[int, float, float]]:
        """``[(channel, value, value / maximum), ...]`` at one position, largest first."""
        height, width = self.channels.shape[:2]
        if not (0 <= row < height and 0 <= col < width):
            raise ValueError(f"position ({row}, {col}) is outside the layer's {height}x{width} positions")
        bars = self.bars
        return [(int(c), float(v), float(b)) for c, v, b in zip(self.channels[row, col], self.values[row, col], bars[row, col])]


def semantic_dictionary(model: nn.Module, x, layer: LayerRef, k: int = 5) -> Dictionary:
    """The ``k`` strongest channels at every position of a conv ``layer`` for one input ``x``.

    The model is borrowed and left exactly as it was.
    """
    name, act, _ = layer_activation(model, x, layer)
    channels, height, width = act.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= channels:
        raise ValueError(f"k must be an integer in 1..{channels} (the layer's channels), not {k!r}")
    values = act.detach().float().cpu()
    # a stable descending sort: ties keep the lower channel first
    order = torch.sort(values, dim=0, descending=True, stable=True).indices[: int(k)]
    top = torch.gather(values, 0, order)
    flat = int(torch.argmax(values.reshape(channels, -1).amax(dim=0)))
    return Dictionary(
        layer=name,
        channels=order.permute(1, 2, 0).numpy().astype(np.int64),
        values=top.permute(1, 2, 0).numpy(),
        maximum=float(values.max()),
        start=(flat // width, flat % width),
        activation=values.numpy(),
    )
