"""How much one update of a view may carry: a websocket message of about 10 MB is a practical
ceiling, so views keep each update under :data:`MESSAGE_BUDGET` (pages, or maps averaged down)."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

#: bytes of arrays one update of a view carries at most
MESSAGE_BUDGET = 6 * 2**20


def averaged_to_fit(maps: dict[str, torch.Tensor], budget: int = MESSAGE_BUDGET) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """``maps`` (name -> tensor; (C, H, W) ones can shrink) as float32 within ``budget`` bytes, and
    the factor each shrunk one was averaged down by: 2, 4, ..., the largest first, until all fit
    (or none can shrink further). Tensors of other shapes are left as they are."""
    factors: dict[str, int] = {}

    def size(name: str) -> int:
        values, k = maps[name], factors.get(name, 1)
        if values.dim() != 3:
            return values.numel() * 4
        return values.shape[0] * math.ceil(values.shape[1] / k) * math.ceil(values.shape[2] / k) * 4

    while sum(size(name) for name in maps) > budget:
        able = [name for name, v in maps.items() if v.dim() == 3 and min(v.shape[1:]) >= 2 * factors.get(name, 1)]
        if not able:
            break
        name = max(able, key=size)
        factors[name] = factors.get(name, 1) * 2
    shown = dict(maps)
    for name, k in factors.items():
        values = maps[name]
        shape = (math.ceil(values.shape[1] / k), math.ceil(values.shape[2] / k))
        shown[name] = F.adaptive_avg_pool2d(values.float()[None], shape)[0]
    return shown, factors


def fitted(image: torch.Tensor, budget: int = MESSAGE_BUDGET // 2) -> torch.Tensor:
    """One (C, H, W) image as a view gets it beside its other arrays: averaged down 2, 4, ... times
    when it alone would take more than ``budget`` bytes (the view draws it at the same size)."""
    return averaged_to_fit({"image": image}, budget)[0]["image"]
