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

__all__ = ["Tail", "has_hooks", "linear_start", "run_tail"]


def has_hooks(module: nn.Module) -> bool:
    return any(getattr(module, d, None) for d in ("_forward_hooks", "_forward_pre_hooks"))


def _sequence(model: nn.Module) -> Optional[list[nn.Module]]:
    """The modules a plain (possibly nested) ``nn.Sequential`` runs in order; None otherwise."""
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward or has_hooks(model):
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
    if i == len(modules) or type(modules[i]) is not nn.Linear or any(has_hooks(m) for m in modules[: i + 1]):
        return None
    flattened = len(sample_shape) == 1 or any(isinstance(m, nn.Flatten) for m in modules[:i])
    linear = modules[i]
    if not flattened or linear.in_features != int(np.prod(sample_shape)):
        return None
    return linear, modules[i + 1 :]


# Activations the shortcut may apply in place to a tensor it owns (same kernels, same numbers).
_IN_PLACE = {
    nn.ReLU: lambda m: torch.relu_,
    nn.Sigmoid: lambda m: torch.sigmoid_,
    nn.Tanh: lambda m: torch.tanh_,
    nn.LeakyReLU: lambda m: (lambda h, slope=m.negative_slope: nn.functional.leaky_relu_(h, slope)),
}
# Modules whose output is a new tensor that nothing else keeps.
_FRESH = (nn.Linear, nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Softplus)


class Tail:
    """The layers after the first one, run on a (rows, features) tensor the caller owns.

    Activations run in place on it; Linear layers run the kernels ``nn.Linear`` runs (addmm with
    the bias, mm without) into output tensors allocated once per row count and reused from one
    call to the next, so a result is only valid until the next call. Layers with hooks, and any
    other layer, are called as modules. :meth:`compile` reads the layers (and their hooks) again:
    call it whenever the model may have changed hands.
    """

    def __init__(self, modules: list[nn.Module]):
        self.modules = list(modules)
        self._buffers: dict[int, torch.Tensor] = {}  # step -> flat storage of its outputs
        self._views: dict[tuple, list] = {}  # (rows, dtype, device) -> each step's output view
        self.compile()

    def compile(self) -> None:
        """Choose how each layer runs: in place, into a reused buffer, or as a module call."""
        steps = []
        owned = True  # the input is the caller's scratch tensor
        for module in self.modules:
            hooked = has_hooks(module)
            if owned and type(module) in _IN_PLACE and not hooked:
                steps.append(("inplace", _IN_PLACE[type(module)](module)))
            elif type(module) is nn.Linear and not hooked:
                # a few outputs (class scores): W @ h^T is about twice as fast on CPU
                few = module.out_features <= 16
                weight, bias = module.weight, module.bias
                if few:
                    steps.append(("few", (weight, None if bias is None else bias[:, None], module.out_features)))
                else:
                    steps.append(("linear", (weight.t(), bias, module.out_features)))
                owned = True
            else:
                steps.append(("module", module))
                owned = type(module) in _FRESH and not hooked
        self._steps = steps
        self._views.clear()

    def _outputs(self, h: torch.Tensor) -> list:
        """Each step's reused output tensor for an input like ``h`` (None where it needs none)."""
        key = (len(h), h.dtype, h.device)
        views = self._views.get(key)
        if views is None:
            views = []
            for position, (kind, op) in enumerate(self._steps):
                if kind not in ("few", "linear"):
                    views.append(None)
                    continue
                shape = (op[2], len(h)) if kind == "few" else (len(h), op[2])
                size = shape[0] * shape[1]
                flat = self._buffers.get(position)
                if flat is None or flat.numel() < size or flat.dtype != h.dtype or flat.device != h.device:
                    flat = self._buffers[position] = torch.empty(size, dtype=h.dtype, device=h.device)
                    self._views.clear()  # views of the old storage
                views.append(flat[:size].view(shape))
            self._views[key] = views
        return views

    def __call__(self, h: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The tail's outputs for ``h``; with ``out`` (rows, o), written there and returned."""
        if h.dim() != 2:
            result = run_tail(self.modules, h)
            return result if out is None else out.copy_(result.reshape(out.shape))
        steps = self._steps
        last = len(steps) - 1
        for position, ((kind, op), buf) in enumerate(zip(steps, self._outputs(h))):
            if kind == "inplace":
                h = op(h)
            elif kind == "few":
                if position == last and out is not None:
                    buf = out.t()
                h = (torch.mm(op[0], h.t(), out=buf) if op[1] is None else torch.addmm(op[1], op[0], h.t(), out=buf)).t()
            elif kind == "linear":
                if position == last and out is not None:
                    buf = out
                h = torch.mm(h, op[0], out=buf) if op[1] is None else torch.addmm(op[1], h, op[0], out=buf)
            else:
                h = op(h)
        if out is None:
            return h
        if steps and steps[-1][0] in ("few", "linear"):
            return out  # the last layer wrote there
        return out.copy_(h.reshape(out.shape))


def run_tail(tail: list[nn.Module], h: torch.Tensor) -> torch.Tensor:
    """The layers after the first one as modules, activations in place while the tensor is ours."""
    owned = True  # h starts as the caller's scratch tensor
    for module in tail:
        hooked = has_hooks(module)
        if owned and type(module) in _IN_PLACE and not hooked:
            h = _IN_PLACE[type(module)](module)(h)
        else:
            h = module(h)
            owned = type(module) in _FRESH and not hooked
    return h
