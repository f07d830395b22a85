"""The model borrowed for one step or many.

A step borrows the model (eval mode, parameters frozen; everything restored on exit, see
:func:`nbvis.compute.probe.borrowed`) and reads the activations of the objective's layers with
a :class:`~nbvis.compute.probe.Recorder`. A :class:`Session` borrows once and can then run any
number of forward passes: ``run.step()`` opens one per step (the caller's code runs between
steps), ``run.run(n)`` one for all ``n`` steps, so that a long call pays the borrow, the layer
lookups, the hooks and the tracing of feature axes once.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from nbvis.compute.probe import Recorder, borrowed
from nbvis.compute.units import resolve_output

__all__ = ["Session"]


class Session:
    """``with Session(model, layers) as forward: output, acts = forward(x)``.

    ``layers`` are names of ``model`` (``""`` is the model's output), or None for every leaf
    layer plus the output under ``""``.
    """

    def __init__(self, model: nn.Module, layers, *, grad: bool = True):
        self.model = model
        self.layers = None if layers is None else list(layers)
        self.grad = grad
        self._stack: contextlib.ExitStack | None = None
        self._record: Recorder | None = None

    def __enter__(self):
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(borrowed(self.model))
            stack.enter_context(torch.enable_grad() if self.grad else torch.no_grad())
            self._record = stack.enter_context(Recorder(self.model, self.layers, detach=False))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self.forward

    def __exit__(self, *exc):
        stack, self._stack, self._record = self._stack, None, None
        return stack.__exit__(*exc) if stack is not None else False

    def forward(self, x: torch.Tensor):
        """``(output, activations)`` of one pass, in the autograd graph when ``grad``."""
        output, acts = self._record(x)
        final = resolve_output(output)
        if self.layers is None and final is not None:
            acts[""] = final
        return output, acts
