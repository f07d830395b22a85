"""A model's modules and parameters, listed in one loop.

The same lists as ``model.named_modules()``, ``model.modules()`` and ``model.parameters()``
(their order, their names, each module and parameter once), without their nested generators: each
of those yields every module through all its ancestors' generators, which on a model of a few
hundred modules (a ResNet-50) costs about a millisecond in Python, several times over in a step
that borrows the model around every update.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["modules", "named_modules", "parameters"]


def named_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``list(model.named_modules())``: depth first, parents before their children, a module
    reachable under several names listed once, under the first."""
    found: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    stack = [("", model)]
    while stack:
        name, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        found.append((name, module))
        children = module._modules
        if children:
            prefix = name + "." if name else ""
            stack.extend((prefix + key, child) for key, child in reversed(children.items()) if child is not None)
    return found


def modules(model: nn.Module) -> list[nn.Module]:
    """``list(model.modules())``."""
    return [module for _, module in named_modules(model)]


def parameters(model: nn.Module, listed: list[nn.Module] | None = None) -> list[torch.Tensor]:
    """``list(model.parameters())`` (``listed``: the model's modules, when already listed)."""
    found, seen = [], set()
    for module in modules(model) if listed is None else listed:
        for p in module._parameters.values():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                found.append(p)
    return found
