"""The exact rank-1 shortcut through a model's first Linear layer.

When the model is an ``nn.Sequential`` that starts with a ``Linear`` layer (optionally after
``Flatten``), perturbing feature ``j`` changes that layer's output by ``(x'_j - x_j) * W[:, j]``:
the first layer is computed once and updated, never recomputed per perturbation.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

__all__ = ["linear_start", "run_tail"]


def _has_hooks(module: nn.Module) -> bool:
    return any(getattr(module, d, None) for d in ("_forward_hooks", "_forward_pre_hooks"))


def _sequence(model: nn.Module) -> Optional[list[nn.Module]]:
    """The modules a plain (possibly nested) ``nn.Sequential`` runs in order; None otherwise."""
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward or _has_hooks(model):
        return None
    out = []
    for child in model:
        if isinstance(child, nn.Sequential):
            inner = _sequence(child)
            if inner is None:
                return None
            out.extend(inner)
        else:
            out.append(child)
    return out


def linear_start(model: nn.Module, sample_shape: tuple[int, ...]):
    """``(linear, tail)`` when the model is Sequential(Flatten*, Linear, *tail) on flat samples."""
    global_hooks = (nn.modules.module._global_forward_hooks, nn.modules.module._global_forward_pre_hooks)
    modules = _sequence(model)
    if modules is None or any(global_hooks):
        return None
    i = 0
    while i < len(modules) and type(modules[i]) in (nn.Flatten, nn.Identity):
        if isinstance(modules[i], nn.Flatten) and (modules[i].start_dim, modules[i].end_dim) != (1, -1):
            return None
        i += 1
    if i == len(modules) or type(modules[i]) is not nn.Linear or any(_has_hooks(m) for m in modules[: i + 1]):
        return None
    flattened = len(sample_shape) == 1 or any(isinstance(m, nn.Flatten) for m in modules[:i])
    linear = modules[i]
    if not flattened or linear.in_features != int(np.prod(sample_shape)):
        return None
    return linear, modules[i + 1 :]


# Activations the shortcut may apply in place to a tensor it owns (same kernels, same numbers).
_IN_PLACE = {
    nn.ReLU: lambda m, h: torch.relu_(h),
    nn.Sigmoid: lambda m, h: torch.sigmoid_(h),
    nn.Tanh: lambda m, h: torch.tanh_(h),
    nn.LeakyReLU: lambda m, h: nn.functional.leaky_relu_(h, m.negative_slope),
}
# Modules whose output is a new tensor that nothing else keeps.
_FRESH = (nn.Linear, nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Softplus)


def _scratch(buffers: Optional[dict], key: int, shape: tuple[int, int], like: torch.Tensor) -> Optional[torch.Tensor]:
    """A reused output tensor of ``shape`` from ``buffers`` (grown when too small); None without buffers."""
    if buffers is None:
        return None
    size = shape[0] * shape[1]
    flat = buffers.get(key)
    if flat is None or flat.numel() < size or flat.dtype != like.dtype or flat.device != like.device:
        flat = buffers[key] = torch.empty(size, dtype=like.dtype, device=like.device)
    return flat[:size].view(shape)


def run_tail(tail: list[nn.Module], h: torch.Tensor, buffers: Optional[dict] = None) -> torch.Tensor:
    """The layers after the first one; activations run in place while the tensor is ours.

    With ``buffers`` (a dict kept by the caller), Linear layers write into tensors reused from one
    call to the next: the result is only valid until the next call with the same buffers.
    """
    owned = True  # h starts as the caller's scratch buffer
    for position, module in enumerate(tail):
        in_place = _IN_PLACE.get(type(module))
        hooked = _has_hooks(module)
        if owned and in_place is not None and not hooked:
            h = in_place(module, h)
        elif type(module) is nn.Linear and h.dim() == 2 and not hooked:
            # the same kernels nn.Linear runs (addmm with the bias, mm without), into reused outputs
            few = module.out_features <= 16  # a few outputs (class scores): W @ h^T is about twice as fast on CPU
            shape = (module.out_features, len(h)) if few else (len(h), module.out_features)
            out = _scratch(buffers, position, shape, h)
            a, b = (module.weight, h.t()) if few else (h, module.weight.t())
            bias = None if module.bias is None else (module.bias[:, None] if few else module.bias)
            if bias is None:
                h = torch.mm(a, b, out=out) if out is not None else torch.mm(a, b)
            else:
                h = torch.addmm(bias, a, b, out=out) if out is not None else torch.addmm(bias, a, b)
            h = h.t() if few else h
            owned = True
        else:
            h = module(h)
            owned = type(module) in _FRESH and not hooked
    return h
