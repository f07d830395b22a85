"""The model borrowed for one step or many.

A step borrows the model (eval mode, parameters frozen; everything restored on exit, see
:func:`nbvis.compute.probe.borrowed`) and reads the activations of the objective's layers with
:func:`~nbvis.compute.probe.forward_with`. A :class:`Session` borrows once and can then run any
number of forward passes: ``run.step()`` opens one per step (the caller's code runs between
steps), ``run.run(n)`` one for all ``n`` steps, so that a long call pays the borrow once.
"""

from __future__ import annotations

import torch
from torch import nn

from nbvis.compute import interrupts
from nbvis.compute.probe import borrowed, forward_with
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
        self._borrow = None

    def __enter__(self):
        self._borrow = borrowed(self.model, grad=self.grad)
        self._borrow.__enter__()  # the last call: a Ctrl-C after it waits for the block
        return self.forward

    def __exit__(self, *exc):
        # no Python frame between here and the borrow's own exit (an ExitStack would be one: a
        # Ctrl-C in it would skip the restore); its first instructions defer a Ctrl-C
        borrow, self._borrow = self._borrow, None
        return borrow.__exit__(*exc) if borrow is not None else False

    def forward(self, x: torch.Tensor):
        """``(output, activations)`` of one pass, in the autograd graph when ``grad``."""
        output, acts = forward_with(self.model, x, self.layers, detach=False)
        final = resolve_output(output)
        if self.layers is None and final is not None:
            acts[""] = final
        return output, acts


interrupts.protect(Session.__enter__, head=False, tail=True)
interrupts.protect(Session.__exit__)
