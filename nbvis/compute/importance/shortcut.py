"""The exact rank-1 shortcut through a model's first Linear layer.

When the model is an ``nn.Sequential`` that starts with a ``Linear`` layer (optionally after
``Flatten``), perturbing feature ``j`` changes that layer's output by ``(x'_j - x_j) * W[:, j]``:
the first layer is computed once and updated, never recomputed per perturbation.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Optional

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
        self._generation = 0  # counts the compiles: what :meth:`bound` built follows it
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
                steps.append(("linear", (module.weight.t(), module.bias, module.out_features)))
                owned = True
            else:
                steps.append(("module", module))
                owned = type(module) in _FRESH and not hooked
        self._steps = steps
        self._views.clear()
        self._generation += 1

    def _outputs(self, h: torch.Tensor) -> list:
        """Each step's reused output tensor for an input like ``h`` (None where it needs none)."""
        key = (len(h), h.dtype, h.device)
        views = self._views.get(key)
        if views is None:
            views = []
            for position, (kind, op) in enumerate(self._steps):
                if kind != "linear":
                    views.append(None)
                    continue
                size = len(h) * op[2]
                flat = self._buffers.get(position)
                if flat is None or flat.numel() < size or flat.dtype != h.dtype or flat.device != h.device:
                    flat = self._buffers[position] = torch.empty(size, dtype=h.dtype, device=h.device)
                    self._views.clear()  # views of the old storage
                views.append(flat[:size].view(len(h), op[2]))
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
            elif kind == "linear":
                h = _linear(op, h, out if position == last and out is not None else buf)()
            else:
                h = op(h)
        if out is None:
            return h
        if steps and steps[-1][0] == "linear":
            return out  # the last layer wrote there
        return out.copy_(h.reshape(out.shape))

    def bound(self, h: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """``run(out)``: ``self(h, out=out)`` for the values ``h`` holds at the time of the call.

        The kernels are bound to ``h`` and the reused buffers once, so that a call costs little
        more than the kernels (a pass of the dense path makes one); it follows :meth:`compile`.
        """
        built = [0, None]  # the generation built for, its run

        def run(out: torch.Tensor) -> torch.Tensor:
            if built[0] != self._generation:
                built[:] = self._generation, self._bind(h)
            return built[1](out)

        return run

    def _bind(self, h: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`bound`'s run for the steps as compiled now."""
        steps = self._steps
        if h.dim() != 2 or any(kind == "module" for kind, _ in steps):
            return lambda out: self(h, out=out)
        into_out = bool(steps) and steps[-1][0] == "linear"  # the last layer writes straight into out
        calls = []
        for (kind, op), buf in list(zip(steps, self._outputs(h)))[: -1 if into_out else None]:
            if kind == "inplace":
                calls.append(partial(op, h))
            else:
                calls.append(_linear(op, h, buf))
                h = buf
        if into_out:
            into = _linear(steps[-1][1], h)
            last = lambda out: into(out=out)  # noqa: E731
        else:
            last = lambda out: out.copy_(h.reshape(out.shape))  # noqa: E731
        if not calls:
            return last

        def run(out: torch.Tensor) -> torch.Tensor:
            for call in calls:
                call()
            return last(out)

        return run


def _linear(op: tuple, h: torch.Tensor, buf: Optional[torch.Tensor] = None) -> Callable:
    """The Linear step ``op`` on ``h`` as ``nn.Linear`` runs it (addmm with the bias, mm without):
    a call that writes into ``buf`` when given, else into the ``out=`` it is given."""
    weight_t, bias, _ = op
    call = partial(torch.mm, h, weight_t) if bias is None else partial(torch.addmm, bias, h, weight_t)
    return call if buf is None else partial(call, out=buf)


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
