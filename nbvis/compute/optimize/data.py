"""What a run knows of the data: its value range, its pixel statistics, and its samples for comparisons."""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from typing import Iterator

import torch

from nbvis.compute.dataset import iter_batches

__all__ = ["MAX_WHITENED", "DataStatistics", "check_range", "data_range", "data_batches", "data_statistics", "whitenable"]

#: The largest input (values per sample) whose covariance is kept for the ``"data"`` parametrization.
MAX_WHITENED = 1024


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


class DataStatistics:
    """The range of a dataset and, for inputs of at most :data:`MAX_WHITENED` values, the mean and
    covariance of its samples (flattened, float64): one pass over the data, shared by the runs
    that take it as their ``dataset=``."""

    def __init__(self, low: float, high: float, mean: torch.Tensor | None, covariance: torch.Tensor | None):
        self.low, self.high, self.mean, self.covariance = low, high, mean, covariance
        self.cache: dict = {}  # what the parametrizations derive from it (their bases), by input shape

    @property
    def size(self) -> int | None:
        """Values per sample, when the covariance is kept."""
        return None if self.mean is None else int(self.mean.numel())

    def __repr__(self) -> str:
        return f"DataStatistics(range={self.low:g}..{self.high:g}, size={self.size})"


#: The statistics of the last few sample tensors, so that views made one after another on the
#: same data (the Explorer's optimizer, at each click) pass over it once.
_KEPT: OrderedDict = OrderedDict()
KEEP = 4


def _key(data):
    """``(tensor, key)`` for a sample tensor (or an ``(inputs, targets)`` pair of one); else None.
    The key changes when the tensor is modified in place."""
    if isinstance(data, tuple) and len(data) == 2:
        data = data[0]
    if not isinstance(data, torch.Tensor):
        return None
    return data, (id(data), data._version, data.data_ptr(), tuple(data.shape), data.dtype)


def data_statistics(data) -> DataStatistics:
    """The :class:`DataStatistics` of ``data`` (see :func:`data_batches`); a DataStatistics is
    returned as it is, and those of a sample tensor are kept for the next call on it."""
    if isinstance(data, DataStatistics):
        return data
    found = _key(data)
    if found is not None:
        tensor, key = found
        kept = _KEPT.get(key)
        if kept is not None and kept[0]() is tensor:
            _KEPT.move_to_end(key)
            return kept[1]
    stats = _statistics(data)
    if found is not None:
        _KEPT[key] = (weakref.ref(tensor), stats)
        while len(_KEPT) > KEEP:
            _KEPT.popitem(last=False)
    return stats


def _statistics(data) -> DataStatistics:
    low, high = math.inf, -math.inf
    count, total, products = 0, None, None
    keep = True
    for batch in data_batches(data):
        batch = torch.as_tensor(batch)
        if not batch.is_floating_point():
            batch = batch.double()
        if not batch.numel():
            continue
        low, high = min(low, float(batch.min())), max(high, float(batch.max()))
        flat = batch.reshape(len(batch), -1).double()
        keep = keep and flat.shape[1] <= MAX_WHITENED and (total is None or flat.shape[1] == total.numel())
        if keep:
            total = flat.sum(0) if total is None else total + flat.sum(0)
            products = flat.T @ flat if products is None else products + flat.T @ flat
            count += len(flat)
    if not low < high:
        raise ValueError(
            "the dataset has no spread of values to bound the inputs by"
            + ("" if math.isfinite(low) else " (it is empty)")
            + f"; give value_range=(low, high) instead (found {low}..{high})"
        )
    mean = covariance = None
    if keep and count > 1:
        mean = total / count
        covariance = (products - count * torch.outer(mean, mean)) / count
    return DataStatistics(low, high, mean, covariance)


def whitenable(stats: DataStatistics | None, input_shape) -> bool:
    """Whether the ``"data"`` parametrization applies: the data's covariance is known
    (``stats.covariance``) for samples of ``input_shape``'s size."""
    if stats is None or stats.covariance is None:
        return False
    try:
        shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        return stats.size == math.prod(int(s) for s in shape)
    except (TypeError, ValueError):
        return False  # the run says what an input shape is


def data_range(data) -> tuple[float, float]:
    """The smallest and largest value in ``data`` (see :func:`data_batches`; or a :class:`DataStatistics`)."""
    if isinstance(data, DataStatistics):
        return data.low, data.high
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
