"""The model borrowed for one step or many, with forward hooks on the objective's layers.

A step borrows the model (eval mode, parameters frozen; everything restored on exit, see
:func:`nbvis.compute.probe.borrowed`) and reads the activations of the objective's layers. A
:class:`Session` does both once and can then run any number of forward passes: ``run.step()``
opens one per step (the caller's code runs between steps), ``run.run(n)`` one for all ``n`` steps,
so that a long call pays the set-up once.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from nbvis.compute.probe import borrowed, first_tensor, forward_with, resolve_layer, run_model

__all__ = ["Session"]


class Session:
    """``with Session(model, layers) as forward: output, acts = forward(x)``.

    ``layers`` are names of ``model`` (``""`` is the model's output), or None for every leaf
    layer plus the output (then each pass hooks and unhooks, as :func:`forward_with` does).
    """

    def __init__(self, model: nn.Module, layers, *, grad: bool = True):
        self.model = model
        self.layers = None if layers is None else list(layers)
        self.grad = grad
        self._stack: contextlib.ExitStack | None = None
        self._seen: dict[str, torch.Tensor] = {}
        self._skipped: dict[str, str] = {}

    def __enter__(self):
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(borrowed(self.model))
            stack.enter_context(torch.enable_grad() if self.grad else torch.no_grad())
            if self.layers is not None:
                for name in self.layers:
                    if name == "":
                        continue
                    _, module = resolve_layer(self.model, name)
                    handle = module.register_forward_hook(self._hook(name))
                    stack.callback(handle.remove)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self.forward

    def __exit__(self, *exc):
        stack, self._stack = self._stack, None
        self._seen.clear()
        return stack.__exit__(*exc) if stack is not None else False

    def _hook(self, name: str):
        def hook(_module, _args, output):
            tensor = first_tensor(output)
            if tensor is None:
                self._skipped[name] = type(output).__name__
            else:
                self._seen[name] = tensor

        return hook

    def forward(self, x: torch.Tensor):
        """``(output, {layer: activation})`` of one pass, in the autograd graph when ``grad``."""
        if self.layers is None:
            output, acts = forward_with(self.model, x, None, detach=False)
            if isinstance(output, torch.Tensor):
                acts = {**acts, "": output}
            return output, acts
        self._seen.clear()
        self._skipped.clear()
        output = run_model(self.model, x)
        acts = {}
        for name in self.layers:
            if name == "":
                tensor = first_tensor(output)
                if tensor is not None:
                    acts[""] = tensor
                continue
            if name in self._seen:
                acts[name] = self._seen[name]
            elif name in self._skipped:
                raise ValueError(f"layer {name!r} returned a {self._skipped[name]}, not a tensor, so it cannot be shown")
            else:
                raise ValueError(f"layer {name!r} did not run when the model was called on this input")
        self._seen.clear()
        return output, acts
