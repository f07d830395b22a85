"""The dataset sample that excites each unit (or direction) of a conv layer most: one pass for all."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from ..dataset import iter_batches
from ..probe import LayerRef, as_input, borrowed, forward_with, resolve_layer

__all__ = ["top_direction_examples"]


def top_direction_examples(
    model: nn.Module, layer: LayerRef, directions, data, *, batch_size: int = 256, limit: Optional[int] = None
) -> tuple[np.ndarray, np.ndarray]:
    """For each direction ``d`` (rows of ``directions``, ``(n, C)``; a one-hot row is a channel), the
    index of the sample of ``data`` whose activation at ``layer`` has the largest ``max over
    positions of (activation . d)``, and that value: ``(indices (n,), values (n,))``.

    ``data``: what :func:`nbvis.top_examples` reads. ``limit``: read at most this many samples.
    """
    name, _ = resolve_layer(model, layer)
    dirs = torch.as_tensor(np.asarray(directions, dtype=np.float32))
    if dirs.dim() != 2:
        raise ValueError(f"directions must be (n, channels), not shape {tuple(dirs.shape)}")
    best_values = torch.full((len(dirs),), -float("inf"))
    best_index = torch.full((len(dirs),), -1, dtype=torch.long)
    done = 0
    for batch in iter_batches(data, int(batch_size)):
        x = as_input(batch, model, name="a dataset batch")
        if limit is not None and done >= limit:
            break
        if limit is not None:
            x = x[: limit - done]
        with borrowed(model), torch.no_grad():
            _, acts = forward_with(model, x, [name])
        act = acts[name].float().cpu()
        if act.shape[1] != dirs.shape[1]:
            raise ValueError(f"layer {name!r} has {act.shape[1]} channels; the directions have {dirs.shape[1]}")
        projected = torch.einsum("nc...,dc->nd...", act, dirs).reshape(len(x), len(dirs), -1).amax(dim=2)  # (N, n)
        values, where = projected.max(dim=0)
        better = values > best_values
        best_values = torch.where(better, values, best_values)
        best_index = torch.where(better, where + done, best_index)
        done += len(x)
    if done == 0:
        raise ValueError("the dataset yielded no samples")
    return best_index.numpy(), best_values.numpy()
