"""One sample's activation at a spatial (conv) layer, and the layers that suit a factorization."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..probe import LayerRef, as_input, borrowed, forward_with, resolve_layer
from ..samples import consumer, describe_consumer, split_sample

__all__ = ["conv_layers", "default_layer", "layer_activation", "nearest_non_negative", "one_sample", "spatial_layers"]


def one_sample(model: nn.Module, x) -> torch.Tensor:
    """``x`` as a batch of one image: ``(C, H, W)`` gets a batch axis, ``(1, C, H, W)`` is kept;
    ValueError for a model whose layer that takes the input (the contract's sample rule) reads
    such an ``x`` as a sequence."""
    tensor = as_input(x, model, "x")
    if not (tensor.dim() == 3 or (tensor.dim() == 4 and tensor.shape[0] == 1)):
        raise ValueError(
            "x must be one image input, (C, H, W), or a batch of one, (1, C, H, W); "
            f"got shape {tuple(tensor.shape)}"
        )
    found = consumer(model, tensor)
    module = None if found is None else found[1]
    if isinstance(module, nn.modules.conv._ConvNd) and len(module.kernel_size) == 2:
        module = None  # an image model: (C, H, W) is what its first conv takes
    if module is not None:
        try:
            ruled, _ = split_sample(model, tensor, one=True)
        except ValueError:
            if not isinstance(module, nn.Linear):
                raise  # the contract's words on what the recurrent or conv layer takes
            ruled = None  # a Linear defined before the conv that reads the image (a head): taken as it is
        if ruled is not None and ruled.dim() != 4:
            raise ValueError(
                "neuron groups and the semantic dictionary factor the (channels, height, width) maps of an image "
                f"model; this model reads x of shape {tuple(tensor.shape)} as one sample of shape "
                f"{tuple(ruled.shape[1:])} ({describe_consumer(model, tensor)})"
            )
    return tensor.unsqueeze(0) if tensor.dim() == 3 else tensor


def spatial_layers(model: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every leaf layer whose output for ``batch`` has channels and two position axes of at least 2
    positions each, in execution order: ``(N, C, H, W)`` each. The batch runs twice in one, so that
    a layer whose output does not follow the batch (a Swin transformer's relative position bias,
    the same for every input) is left out."""
    n = len(batch)
    with borrowed(model), torch.no_grad():
        _, acts = forward_with(model, torch.cat([batch, batch]), None)
    return {name: act[:n] for name, act in acts.items() if act.dim() == 4 and len(act) == 2 * n and min(act.shape[2:]) >= 2}


def conv_layers(model: nn.Module, x) -> list[str]:
    """Names of the layers with (channels, height, width) outputs for the sample ``x``."""
    return list(spatial_layers(model, one_sample(model, x)))


def default_layer(model: nn.Module, x, *, non_negative: bool = True) -> str:
    """The last spatial layer (with no negative value for ``x`` when ``non_negative``)."""
    acts = spatial_layers(model, one_sample(model, x))
    names = [n for n, a in acts.items() if not non_negative or float(a.min()) >= 0]
    if not names:
        what = "non-negative (channels, height, width) output" if non_negative else "(channels, height, width) output"
        raise ValueError(f"the model has no layer with a {what} for this input; spatial layers: {list(acts) or 'none'}")
    return names[-1]


def nearest_non_negative(acts: dict[str, torch.Tensor], name: str) -> Optional[str]:
    """The spatial layer nearest to ``name`` in execution order whose values are all >= 0 (later ones first on ties)."""
    names = list(acts)
    if name not in names:
        return None
    here = names.index(name)
    ranked = sorted(
        (abs(i - here) - (0.5 if i > here else 0), n)
        for i, n in enumerate(names)
        if n != name and float(acts[n].min()) >= 0
    )
    return ranked[0][1] if ranked else None


def layer_activation(model: nn.Module, x, layer: LayerRef) -> tuple[str, torch.Tensor, torch.Tensor]:
    """``(name, activation (C, H, W), batch (1, ...))`` of one input at a spatial layer."""
    batch = one_sample(model, x)
    name, _ = resolve_layer(model, layer)
    with borrowed(model), torch.no_grad():
        _, acts = forward_with(model, batch, [name])
    act = acts[name]
    if act.dim() != 4:
        spatial = [n for n in spatial_layers(model, batch)]
        raise ValueError(
            f"layer {name!r} gives an output of shape {tuple(act.shape)}; neuron groups and the semantic "
            f"dictionary need (channels, height, width) maps. Layers with such maps: {spatial or 'none'}"
        )
    return name, act[0], batch
