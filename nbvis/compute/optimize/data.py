"""What a run knows of the data: its value range, and its samples for comparisons."""

from __future__ import annotations

import math
from typing import Iterator

import torch

from nbvis.compute.dataset import iter_batches

__all__ = ["check_range", "data_range", "data_batches"]


def check_range(value_range) -> tuple[float, float] | None:
    """``(low, high)`` as floats with ``low < high``, or None."""
    if value_range is None:
        return None
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise TypeError(f"value_range is a pair (low, high), not {value_range!r}") from None
    if not low < high or not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"value_range needs finite low < high, got {value_range!r}")
    return low, high


def data_batches(data, batch_size: int = 512) -> Iterator[torch.Tensor]:
    """Batches of inputs of ``data``: a tensor or array of samples, an ``(inputs, targets)`` pair,
    a map-style torch Dataset (of inputs or ``(input, target)`` items), or an iterable of batches."""
    if isinstance(data, tuple) and len(data) == 2 and all(hasattr(d, "__len__") for d in data):
        data = data[0]
    return iter_batches(data, batch_size)


def data_range(data) -> tuple[float, float]:
    """The smallest and largest value in ``data`` (see :func:`data_batches`)."""
    low, high = math.inf, -math.inf
    for batch in data_batches(data):
        batch = torch.as_tensor(batch)
        if not batch.is_floating_point():
            batch = batch.double()
        if batch.numel():
            low, high = min(low, float(batch.min())), max(high, float(batch.max()))
    if not low < high:
        raise ValueError(
            "the dataset has no spread of values to bound the inputs by"
            + ("" if math.isfinite(low) else " (it is empty)")
            + f"; give value_range=(low, high) instead (found {low}..{high})"
        )
    return low, high
