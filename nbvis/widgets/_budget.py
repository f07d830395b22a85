"""How much one update of a view may carry: a websocket message of about 10 MB is a practical
ceiling, so views keep each update under :data:`MESSAGE_BUDGET` (pages, or arrays averaged down)."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch.nn import functional as F

#: bytes of arrays one update of a view carries at most
MESSAGE_BUDGET = 6 * 2**20


def _shrinkable(shape: tuple[int, ...], k: int) -> bool:
    """Whether values of ``shape`` can be averaged down by ``2 * k``: (C, H, W) maps over blocks, (N,) values over runs."""
    if len(shape) == 3:
        return min(shape[1:]) >= 2 * k
    return len(shape) == 1 and shape[0] >= 2 * k


def shrunk_shape(shape: Iterable[int], k: int) -> tuple[int, ...]:
    """The shape of values of ``shape`` averaged down by ``k`` (see :func:`shrunk`)."""
    shape = tuple(int(d) for d in shape)
    if k == 1:
        return shape
    if len(shape) == 3:
        return (shape[0], math.ceil(shape[1] / k), math.ceil(shape[2] / k))
    return (math.ceil(shape[0] / k),)


def shrunk(values: torch.Tensor, k: int) -> torch.Tensor:
    """``values`` averaged down by ``k``, as float32: (C, H, W) maps over k x k blocks, (N,) values
    over runs of k consecutive ones (the last block or run may be smaller)."""
    values = values.float()
    if k == 1:
        return values
    if values.dim() == 3:
        return F.adaptive_avg_pool2d(values[None], shrunk_shape(values.shape, k)[1:])[0]
    n = values.shape[0]
    runs = math.ceil(n / k)
    sums = torch.zeros(runs, dtype=values.dtype).index_add_(0, torch.arange(n) // k, values)
    counts = torch.full((runs,), float(k))
    counts[-1] = n - (runs - 1) * k
    return sums / counts


def factors_to_fit(
    shapes: dict[str, tuple[int, ...]], budget: int = MESSAGE_BUDGET, twice: Iterable[str] = (), itemsize: int = 4
) -> dict[str, int]:
    """How much to average down arrays of ``shapes`` (name -> shape; (C, H, W) maps and (N,) values
    can shrink, see :func:`shrunk`) of ``itemsize`` bytes a value (float32) to take ``budget``
    bytes: 2, 4, ..., the largest first, until all fit (or none can shrink further). The names in
    ``twice`` count twice: another array of their shape goes with them, shrunk by the same factor.
    Names left as they are are left out."""
    shapes = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
    factors: dict[str, int] = {}
    twice = set(twice)

    def size(name: str) -> int:
        shape = shapes[name]
        sent = shrunk_shape(shape, factors[name]) if name in factors else shape
        return math.prod(sent) * itemsize * (2 if name in twice else 1)

    while sum(size(name) for name in shapes) > budget:
        able = [name for name, shape in shapes.items() if _shrinkable(shape, factors.get(name, 1))]
        if not able:
            break
        name = max(able, key=size)
        factors[name] = factors.get(name, 1) * 2
    return factors


def averaged_to_fit(
    maps: dict[str, torch.Tensor], budget: int = MESSAGE_BUDGET, twice: Iterable[str] = ()
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """``maps`` (name -> tensor) within ``budget`` bytes, as :func:`factors_to_fit` says (the
    shrunk ones as float32), and the factor each shrunk one was averaged down by."""
    factors = factors_to_fit({name: tuple(v.shape) for name, v in maps.items()}, budget, twice)
    shown = dict(maps)
    for name, k in factors.items():
        shown[name] = shrunk(maps[name], k)
    return shown, factors


def fitted(image: torch.Tensor, budget: int = MESSAGE_BUDGET // 2) -> torch.Tensor:
    """One (C, H, W) image as a view gets it beside its other arrays: averaged down 2, 4, ... times
    when it alone would take more than ``budget`` bytes (the view draws it at the same size)."""
    return averaged_to_fit({"image": image}, budget)[0]["image"]
