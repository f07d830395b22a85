"""Rows whose predicted class provably stays when one input element changes (for accuracy).

Through the rank-1 shortcut, changing element ``j`` of a row by ``delta`` changes the first
layer's output by ``delta * W[:, j]``. Each later layer moves its output by at most its Lipschitz
bound times the move of its input (``|W|`` for a Linear layer, elementwise), so the gap between
the row's top class ``a`` and any class ``c`` moves by at most ``|delta| * B[a, j]``. A row
whose top-class margin exceeds that (with room for float rounding) keeps its predicted class,
hence its accuracy contribution: it need not be run. The numbers are unchanged.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from .shortcut import has_hooks

__all__ = ["ClassMargins", "class_margins"]

#: Elementwise Lipschitz bounds of the activations the bound goes through.
_LIPSCHITZ = {
    nn.ReLU: lambda m: 1.0,
    nn.Identity: lambda m: 1.0,
    nn.Tanh: lambda m: 1.0,
    nn.Sigmoid: lambda m: 0.25,
    nn.LeakyReLU: lambda m: max(1.0, abs(m.negative_slope)),
}

#: Relative room for float rounding in the margins and bounds (rounding is ~1e-7 relative).
_ROOM = 1e-3

#: Class pairs whose exact gap bound is computed (more classes: each class's own bound, summed).
_PAIRS = 1 << 12


def _bounds(weight_t: torch.Tensor, modules: list[nn.Module], outputs: int) -> Optional[torch.Tensor]:
    """B (o, F), float64: the most the gap between class a and any other moves per unit change of
    element j; None when a layer has no known bound (or hooks)."""
    bound = weight_t.detach().double().abs().t()  # (H, F): |move of the first layer's output|
    last = modules[-1] if modules and type(modules[-1]) is nn.Linear else None
    for module in modules[: -1 if last is not None else None]:
        if has_hooks(module):
            return None
        if type(module) is nn.Linear:
            bound = module.weight.detach().double().abs() @ bound
        elif type(module) in _LIPSCHITZ:
            bound = bound * _LIPSCHITZ[type(module)](module)
        else:
            return None
    if last is None:  # the outputs themselves: the gap moves by at most the sum of two outputs' moves
        own = bound
    elif has_hooks(last):
        return None
    else:
        weight = last.weight.detach().double()
        own = weight.abs() @ bound
        if outputs > 1 and outputs * outputs <= _PAIRS:  # tighter: |W[a] - W[c]| through the bound
            pairs = (weight[:, None, :] - weight[None, :, :]).abs().reshape(outputs * outputs, -1)
            return (pairs @ bound).view(outputs, outputs, -1).amax(dim=1)
    if len(own) != outputs:
        return None
    if outputs == 1:
        return own
    return own + own.amax(dim=0)  # |move of a| + the largest move of another class


class ClassMargins(NamedTuple):
    """What :func:`class_margins` found; :meth:`moves` and ``margin`` tell which rows keep their class."""

    bounds: torch.Tensor  # (o, F) B, with room for rounding
    top: torch.Tensor  # (m,) each row's predicted class
    margin: torch.Tensor  # (m,) each row's margin to the next class, less room for rounding

    def moves(self, index: torch.Tensor) -> torch.Tensor:
        """(m, E): the most each row's margin moves per unit change of the elements ``index``. A row
        whose summed ``|change| * moves`` stays at most ``margin`` keeps its predicted class."""
        return self.bounds.index_select(1, index).index_select(0, self.top)


def class_margins(weight_t: torch.Tensor, modules: list[nn.Module], base: torch.Tensor, probs: bool) -> Optional[ClassMargins]:
    """The margins of the rows' predicted classes (as accuracy reads the outputs ``base`` (m, o))
    and their bounds through the layers after the first; None when a layer has no known bound."""
    if base.dtype not in (torch.float32, torch.float64) or base.device.type == "mps":
        return None  # half precision rounds by about the room left for rounding (and MPS has no float64)
    m, outputs = base.shape
    bounds = _bounds(weight_t, modules, outputs)
    if bounds is None:
        return None
    z = base.double()
    if outputs == 1:  # one output: the class is which side of the threshold it lies
        top = torch.zeros(m, dtype=torch.long, device=z.device)
        margin = (z[:, 0] - (0.5 if probs else 0.0)).abs()
    else:
        values, indices = z.topk(2, dim=1)
        top, margin = indices[:, 0], values[:, 0] - values[:, 1]
    margin = margin - _ROOM * (1.0 + z.abs().amax(dim=1))  # a tie (or nearly one): never skipped
    return ClassMargins(bounds=(bounds * (1.0 + _ROOM)).to(base.dtype), top=top, margin=margin.to(base.dtype))
