"""Weights as images: each unit's incoming weights as a tile (receptive fields, conv filters).

A tile array has shape (units, H, W, C) with C = 1 (one value per pixel) or C = 3 (an RGB
filter). Where several input channels are laid out side by side in one tile, the one-pixel
gaps between them hold NaN, which the view draws as background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .probe import LayerRef, resolve_layer

__all__ = [
    "WeightTiles",
    "channel_grid",
    "infer_input_shape",
    "input_products",
    "layer_tiles",
    "normalize_input_shape",
    "readout_weights",
    "unit_order",
]

REDUCTIONS = ("auto", "rgb", "channels", "mean", "norm")


@dataclass
class WeightTiles:
    """The tiles of one layer: ``tiles`` (units, H, W, C), ``bias`` (units,), and what they came from."""

    name: str
    kind: str  # "linear" | "conv"
    tiles: torch.Tensor
    bias: torch.Tensor
    filters: torch.Tensor  # (units, C, H, W): the incoming weights before layout
    reduce: str | int  # the reduction used ("rgb", "channels", "mean", "norm" or a channel index)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.filters.shape[1:])

    @property
    def units(self) -> int:
        return int(self.tiles.shape[0])


def infer_input_shape(in_features: int) -> tuple[int, int, int] | None:
    """(1, s, s) when in_features is a square, (3, s, s) when it is 3 squares; else None."""
    side = math.isqrt(in_features)
    if side * side == in_features:
        return (1, side, side)
    if in_features % 3 == 0:
        side = math.isqrt(in_features // 3)
        if 3 * side * side == in_features:
            return (3, side, side)
    return None


def normalize_input_shape(input_shape: Sequence[int] | None, in_features: int, name: str) -> tuple[int, int, int]:
    """Turn None, (n,), (H, W) or (C, H, W) into (C, H, W) whose product is ``in_features``."""
    if input_shape is None:
        shape = infer_input_shape(in_features)
        if shape is None:
            raise ValueError(
                f"cannot infer an image shape for the {in_features} inputs of layer {name!r} "
                f"(not a square nor 3 squares); pass input_shape=(height, width), (channels, height, width) "
                f"or ({in_features},) for a row"
            )
        return shape
    try:
        dims = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise TypeError(f"input_shape must be a tuple of ints, not {input_shape!r}") from None
    if len(dims) == 1:
        dims = (1, 1, dims[0])
    elif len(dims) == 2:
        dims = (1, *dims)
    elif len(dims) != 3:
        raise ValueError(f"input_shape must have 1, 2 or 3 dimensions, not {len(dims)}: {input_shape!r}")
    if math.prod(dims) != in_features or min(dims) < 1:
        raise ValueError(
            f"input_shape {tuple(input_shape)} holds {math.prod(dims)} values but layer {name!r} "
            f"has {in_features} inputs"
        )
    return dims


def channel_grid(filters: torch.Tensor) -> torch.Tensor:
    """Lay the C channels of (units, C, H, W) side by side in a near-square grid with NaN gaps.

    Returns (units, H', W', 1).
    """
    units, channels, height, width = filters.shape
    cols = math.ceil(math.sqrt(channels))
    rows = math.ceil(channels / cols)
    out = torch.full((units, rows * (height + 1) - 1, cols * (width + 1) - 1), float("nan"), dtype=filters.dtype)
    for c in range(channels):
        r, q = divmod(c, cols)
        out[:, r * (height + 1) : r * (height + 1) + height, q * (width + 1) : q * (width + 1) + width] = filters[:, c]
    return out.unsqueeze(-1)


def _layout(filters: torch.Tensor, reduce: str | int, name: str) -> tuple[torch.Tensor, str | int]:
    """(units, C, H, W) -> (units, H', W', C') following ``reduce``; returns the reduction used."""
    channels = filters.shape[1]
    if reduce == "auto":
        reduce = "rgb" if channels == 3 else "channels"
    if isinstance(reduce, int) and not isinstance(reduce, bool):
        if not 0 <= reduce < channels:
            raise ValueError(f"input channel {reduce} is out of range: layer {name!r} has {channels} input channels")
        return filters[:, reduce].unsqueeze(-1), reduce
    if reduce == "rgb":
        if channels != 3:
            raise ValueError(f"reduce='rgb' needs 3 input channels; layer {name!r} has {channels}")
        return filters.permute(0, 2, 3, 1), "rgb"
    if reduce == "channels":
        if channels == 1:
            return filters.permute(0, 2, 3, 1), "channels"
        return channel_grid(filters), "channels"
    if reduce == "mean":
        return filters.mean(dim=1).unsqueeze(-1), "mean"
    if reduce == "norm":
        return filters.norm(dim=1).unsqueeze(-1), "norm"
    raise ValueError(f"reduce must be one of {REDUCTIONS} or an input channel index, not {reduce!r}")


def layer_tiles(
    model: nn.Module,
    layer: LayerRef,
    input_shape: Sequence[int] | None = None,
    reduce: str | int = "auto",
) -> WeightTiles:
    """The incoming weights of every unit of a Linear or Conv layer, as tiles.

    Linear (out, in): each row reshaped to ``input_shape`` (inferred for square inputs).
    Conv (out, in, k...): each filter; 3 input channels as RGB, otherwise the channels side by
    side (``reduce`` = "channels"), their "mean", their L2 "norm", or one channel index.
    """
    name, module = resolve_layer(model, layer)
    weight = getattr(module, "weight", None)
    if isinstance(module, nn.Linear):
        shape = normalize_input_shape(input_shape, module.in_features, name)
        filters = weight.detach().float().cpu().reshape(module.out_features, *shape)
        kind = "linear"
    elif isinstance(module, nn.modules.conv._ConvNd) and weight is not None and weight.dim() in (3, 4):
        if input_shape is not None:
            raise ValueError(f"input_shape applies to Linear layers; layer {name!r} is {type(module).__name__}")
        filters = _conv_filters(module)
        if filters.dim() == 3:  # Conv1d: (out, in, k) -> (out, in, 1, k)
            filters = filters.unsqueeze(2)
        kind = "conv"
    else:
        raise ValueError(
            f"layer {name!r} is {type(module).__name__}; weight tiles need an nn.Linear, nn.Conv1d or nn.Conv2d layer"
        )
    tiles, used = _layout(filters, reduce, name)
    bias = getattr(module, "bias", None)
    bias = bias.detach().float().cpu() if bias is not None else torch.zeros(filters.shape[0])
    return WeightTiles(name, kind, tiles.contiguous(), bias, filters, used)


def _conv_filters(module: nn.modules.conv._ConvNd) -> torch.Tensor:
    """The filters ``(out, in / groups, *kernel)`` of a conv layer; a transposed conv stores its
    weight as ``(in, out / groups, *kernel)``, so each output channel's filter is gathered first."""
    weight = module.weight.detach().float().cpu()
    if not module.transposed:
        return weight
    groups = module.groups
    per_in, per_out = weight.shape[0] // groups, weight.shape[1]
    kernel = tuple(weight.shape[2:])
    grouped = weight.reshape(groups, per_in, per_out, *kernel).transpose(1, 2)
    return grouped.reshape(groups * per_out, per_in, *kernel).contiguous()


def readout_weights(model: nn.Module, layer: LayerRef) -> tuple[str, torch.Tensor]:
    """The weights (classes, units) of the first Linear layer after ``layer`` that reads its units."""
    name, module = resolve_layer(model, layer)
    units = getattr(module, "out_features", None) or getattr(module, "out_channels", None)
    after = False
    for other_name, other in model.named_modules():
        if other is module:
            after = True
            continue
        if after and isinstance(other, nn.Linear) and other.in_features == units:
            return other_name, other.weight.detach().float().cpu()
    raise ValueError(
        f"no Linear layer after {name!r} reads its {units} units, so units cannot be ranked by their "
        "contribution to a class"
    )


def unit_order(
    tiles: WeightTiles,
    sort_by: str = "index",
    *,
    readout: torch.Tensor | None = None,
    class_index: int = 0,
    activations: torch.Tensor | None = None,
    descending: bool = True,
) -> torch.Tensor:
    """Unit indices in display order.

    ``sort_by``: "index"; "norm" (L2 norm of the incoming weights); "bias"; "class" (the outgoing
    weight into ``class_index`` of ``readout``, times the unit's activation when ``activations``
    are given: its contribution to that class's logit for this input).
    """
    n = tiles.units
    if sort_by == "index":
        return torch.arange(n)
    if sort_by == "norm":
        key = tiles.filters.reshape(n, -1).norm(dim=1)  # the incoming weights, whatever the layout
    elif sort_by == "bias":
        key = tiles.bias
    elif sort_by == "class":
        if readout is None:
            raise ValueError("sort_by='class' needs the readout weights of a following Linear layer")
        classes = readout.shape[0]
        if not 0 <= class_index < classes:
            raise ValueError(f"class {class_index} is out of range: the readout layer has {classes} classes")
        key = readout[class_index].clone()
        if activations is not None:
            key = key * activations.reshape(-1).float().cpu()
    else:
        raise ValueError(f"sort_by must be 'index', 'norm', 'bias' or 'class', not {sort_by!r}")
    return torch.sort(key, descending=descending, stable=True).indices


def input_products(tiles: WeightTiles, x: torch.Tensor) -> torch.Tensor:
    """input * weights for every tile of a Linear layer (seed 002), in the same layout as the tiles."""
    if tiles.kind != "linear":
        raise ValueError("input * weights applies to Linear layers, whose weights have the input's shape")
    values = x.detach().float().cpu().reshape(-1)
    expected = math.prod(tiles.input_shape)
    if values.numel() != expected:
        raise ValueError(f"the input has {values.numel()} values; layer {tiles.name!r} has {expected} inputs")
    products, _ = _layout(tiles.filters * values.reshape(1, *tiles.input_shape), tiles.reduce, tiles.name)
    return products.contiguous()
