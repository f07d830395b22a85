"""Redirected ReLU gradients (as Lucid's ``redirected_relu_grad``), so that a unit that is off at
the start still gets a gradient.

A ReLU whose input is negative passes no gradient back, so a unit that no random start turns on
never moves. While the override is on, each ``nn.ReLU`` of the model keeps its forward value but,
for a start where the ordinary ReLU gradient is zero everywhere, passes the incoming gradient
through wherever it would raise the ReLU's input (and not where it would lower an input that is
already negative). Starts whose ReLU gradient is not all zero keep the ordinary gradient. The run
uses it for its first few steps only, until the unit has woken up.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from nbvis.compute.running import this_thread_only

__all__ = ["REDIRECT_STEPS", "Redirect", "redirected_relus"]

#: Steps at the start of a run whose ReLU gradients are redirected while the objective of some
#: start is exactly 0, a unit that is off.
REDIRECT_STEPS = 16


class _RedirectedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        negative = x < 0
        ordinary = grad.masked_fill(negative, 0.0)
        # grad is of the loss (minimized): a positive grad at a negative input would push it lower.
        redirected = grad.masked_fill(negative & (grad > 0), 0.0)
        alive = ordinary.reshape(ordinary.shape[0], -1).abs().amax(dim=1) > 0
        return torch.where(alive.view(-1, *([1] * (grad.dim() - 1))), ordinary, redirected)


@contextlib.contextmanager
def redirected_relus(model: nn.Module, on: bool = True) -> Iterator[int]:
    """Inside: every ``nn.ReLU`` of ``model`` passes redirected gradients; yields how many there are.

    The hooks are removed on exit, whatever happens; the model's modules are not otherwise touched.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)] if on else []
    pending: dict[int, torch.Tensor] = {}

    def before(module, args):
        pending[id(module)] = args[0].clone() if module.inplace else args[0]

    def after(module, _args, _output):
        x = pending.pop(id(module), None)
        return None if x is None else _RedirectedReLU.apply(x)

    handles = []
    try:
        for module in relus:
            handles.append(module.register_forward_pre_hook(this_thread_only(before)))
            handles.append(module.register_forward_hook(this_thread_only(after), prepend=True))  # before any capture
        yield len(relus)
    finally:
        for handle in handles:
            handle.remove()
        pending.clear()


class Redirect:
    """When a run redirects its ReLU gradients: in its first ``steps`` steps, while the objective of
    some start is exactly 0 (a unit that is off). :meth:`note` reads the values of each pass."""

    def __init__(self, steps: int):
        self.steps = steps
        self.off = False

    def note(self, values: torch.Tensor, count: int) -> None:
        """The objective ``values`` of a pass made with ``count`` steps done (looked at only while
        the next step could still redirect)."""
        if count < self.steps:
            self.off = 0.0 in values.detach().tolist()

    def due(self, count: int) -> bool:
        """Whether the step after ``count`` steps redirects."""
        return self.off and count < self.steps
