"""Find layers by name and read what they produce for an input (a borrow, see :mod:`.borrow`;
the hooks that record the values, see :mod:`.recorder`).

Every function here leaves the model exactly as it found it: parameters, their
``requires_grad``, every module's train/eval mode, and its hooks, even when the
forward pass raises.
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import nn

from . import samples, units
from .borrow import borrowed
from .recorder import Activations, Recorder
from .units import LayerRef

__all__ = [
    "Activations",
    "LayerRef",
    "as_input",
    "borrowed",
    "capture",
    "capture_sample",
    "first_tensor",
    "forward_with",
    "layer_names",
    "leaf_layers",
    "model_device",
    "model_dtype",
    "resolve_layer",
]


layer_names = units.layer_names
leaf_layers = units.leaf_layers


def resolve_layer(model: nn.Module, layer: LayerRef) -> tuple[str, nn.Module]:
    """A layer reference as ``(canonical name, module)`` (see :func:`nbvis.compute.units.parse_layer`:
    ``""``/None is the model's output, ``"relu#2"`` the second call of ``relu``)."""
    parsed = units.parse_layer(model, layer)
    return parsed.name, parsed.module


model_device = samples.model_device
model_dtype = samples.model_dtype
as_input = units.to_tensor


def forward_with(
    model: nn.Module,
    x: torch.Tensor,
    layers: Iterable[LayerRef] | None,
    *,
    detach: bool = True,
    inputs: bool = False,
    leaf: LayerRef | None = None,
) -> tuple[object, Activations]:
    """Run ``model(x)`` with forward hooks on ``layers``; return ``(output, activations)``.

    Names follow :mod:`nbvis.compute.units`: ``"relu#2"`` is the second call of ``relu``, ``""``
    the model's output, ``"attn[1]"`` a part of a layer's result. ``layers=None`` means every
    call of every leaf module whose result holds a tensor, in execution order. With
    ``inputs=True`` each layer's (first) input is recorded instead of its output.

    Each value is recorded when its layer returns it; downstream modules get a copy, so later
    in-place operations cannot change it. ``detach=False`` keeps the values in the autograd
    graph. ``leaf``: a layer whose value is replaced by a new leaf tensor that requires grad
    (returned as ``activations.leaf``), so that gradients stop there. Hooks are removed before
    returning, whatever happens. The caller decides grad mode and model mode (see :func:`borrowed`).
    For many passes through a model that does not change meanwhile, see :class:`Recorder`.
    """
    return Recorder(model, layers, detach=detach, inputs=inputs, leaf=leaf, reuse_axes=False)(x)


def first_tensor(output):
    """The tensor a layer's result stands for (see :func:`nbvis.compute.units.resolve_output`)."""
    return units.resolve_output(output)


def capture_sample(
    model: nn.Module, x, layers: Iterable[LayerRef] | None = None, *, input_shape=None
) -> tuple[torch.Tensor, Activations, Optional[str]]:
    """What a view shows for one sample: ``(batch of one, activations, output name)``.

    ``x`` is one sample or a batch of exactly one (the rule of :mod:`nbvis.compute.samples`;
    ``input_shape`` is one sample's shape when known). The output name is the recorded layer
    whose value is the model's output, or ``""`` (added to the activations, when ``layers`` is
    None) when no layer returns it; None when it is not shown.
    """
    batch, _ = units.split_sample(model, as_input(x, model), input_shape=input_shape, one=True)
    with borrowed(model), torch.no_grad():
        output, acts = forward_with(model, batch, layers)
    out = units.resolve_output(output)
    if out is not None and out.shape[:1] != (1,):
        raise ValueError(f"x must be one input sample; the model returned {tuple(out.shape)} for it")
    name = units.OUTPUT if units.OUTPUT in acts else acts.output_of
    if name is None and out is not None and layers is None:
        acts[units.OUTPUT] = out.detach()
        acts.axes[units.OUTPUT] = acts.output_axis
        name = units.OUTPUT
    if not acts:
        raise ValueError("none of the chosen layers returned a tensor for this input")
    return batch, acts, name


def capture(
    model: nn.Module, x, layers: Iterable[LayerRef] | None = None, *, inputs: bool = False
) -> dict[str, torch.Tensor]:
    """Activations of ``layers`` (default: every call of every leaf layer) for ``x``.

    ``x`` is a batch, or one sample (see :mod:`nbvis.compute.units`: then every activation comes
    back without the batch axis). Returns a dict from layer name (``"relu#2"`` for a second call,
    ``""`` for the model's output) to the detached tensor the layer returned (its input with
    ``inputs=True``), in execution order when ``layers`` is None, in the given order otherwise.
    The model runs in eval mode without gradients and is left exactly as it was.
    """
    tensor = as_input(x, model)
    batch, single = units.split_sample(model, tensor)
    with borrowed(model), torch.no_grad():
        _, activations = forward_with(model, batch, layers, inputs=inputs)
    if single:
        return {name: act[0] for name, act in activations.items()}
    return activations
