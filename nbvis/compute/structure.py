"""How a model's layers feed each other: which Linear or Conv layer computes a unit.

:func:`trace` runs the model once on one sample with hooks on its leaf modules and records, for
every call (named as in :mod:`nbvis.compute.units`: ``"relu#2"`` for a second call), the shape
of one sample of its output and the call whose output is exactly its input (None when the input
was made outside a module, ``x + shortcut``, or changed in place after it was produced).

:func:`weighted_source` walks back from a layer through modules that keep its units
(activations, pooling, normalization) along that exact-input chain to the Linear or Conv layer
that computes them. :func:`rises_with` says whether a layer's unit can only rise when the
weighted layer's unit rises, so that maximizing one maximizes the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from . import units
from .probe import borrowed, leaf_layers
from .running import run_model, this_thread_only

__all__ = ["Call", "Structure", "RISING", "WEIGHTED", "grid_shape", "preactivation", "rises_with", "saturates", "trace", "weighted_source"]

WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd)
# Layers whose output for a unit never decreases when that unit's input rises (in eval mode).
RISING = (nn.Sigmoid, nn.Tanh, nn.ReLU, nn.ReLU6, nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.Hardtanh,
          nn.Hardsigmoid, nn.LogSigmoid, nn.Dropout, nn.Identity, nn.modules.pooling._MaxPoolNd,
          nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd)
# Rising layers bounded above: many inputs reach the same top value (a sigmoid is exactly 1 in
# float32 from about 17 on), so that ranking by their output ties where the pre-activation does not.
SATURATING = (nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.ReLU6, nn.LogSigmoid, nn.Softsign)
INPUT = None  # the producer of a call that reads the model's input


@dataclass
class Call:
    """One call of a leaf module: its name, the module, the shape of one sample of its output,
    and the name of the call whose output is exactly its input ("<input>" for the model input,
    None when the input was computed outside a module or changed in place)."""

    name: str
    module: nn.Module
    shape: tuple
    producer: Optional[str]


@dataclass
class Structure:
    calls: list[Call] = field(default_factory=list)
    input_shape: tuple = ()

    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    def get(self, name: str) -> Optional[Call]:
        return next((c for c in self.calls if c.name == name), None)


def trace(model: nn.Module, batch: torch.Tensor) -> Structure:
    """The calls of ``model`` on ``batch`` (a batch of one), in execution order."""
    modules = dict(model.named_modules())
    produced: dict[int, tuple[str, int]] = {id(batch): ("<input>", batch._version)}
    keep: list[torch.Tensor] = [batch]
    counts: dict[str, int] = {}
    pending: dict[int, list] = {}
    structure = Structure(input_shape=tuple(batch.shape[1:]))

    def pre_hook(module, args):
        inp = units.resolve_output(args)
        producer = None
        if isinstance(inp, torch.Tensor) and id(inp) in produced:
            name, version = produced[id(inp)]
            producer = name if inp._version == version else None
        pending.setdefault(id(module), []).append(producer)

    def make_hook(path: str):
        def hook(module, _args, output):
            producer = pending[id(module)].pop()
            out = units.resolve_output(output)
            if out is None:
                return
            counts[path] = counts.get(path, 0) + 1
            name = path + (f"#{counts[path]}" if counts[path] > 1 else "")
            structure.calls.append(Call(name, module, tuple(out.shape[1:]), producer))
            keep.append(out)
            produced[id(out)] = (name, out._version)

        return hook

    handles = []
    with borrowed(model), torch.no_grad():
        try:
            for path in leaf_layers(model):
                handles.append(modules[path].register_forward_pre_hook(this_thread_only(pre_hook)))
                handles.append(modules[path].register_forward_hook(this_thread_only(make_hook(path))))
            run_model(model, batch)
        finally:
            for handle in handles:
                handle.remove()
    return structure


def weighted_source(structure: Structure, name: str, shape: Optional[tuple] = None) -> Optional[str]:
    """The Linear or Conv call whose units become ``name``'s units (``name`` itself when it is
    one; ``fc1`` for a sigmoid applied to ``fc1``'s output), or None when no single one does:
    the walk follows exact inputs only, through calls that keep the unit axis and count."""
    call = structure.get(name)
    if call is None:  # a container: its output is that of the last leaf inside it
        inside = [c for c in structure.calls if c.name.split("#")[0].startswith(name + ".")]
        if not inside:
            return None
        call = inside[-1]
    shape = call.shape if shape is None else tuple(shape)
    while call is not None:
        if call.shape != shape and (len(call.shape) != len(shape) or call.shape[:1] != shape[:1]):
            return None
        if isinstance(call.module, WEIGHTED):
            return call.name
        if call.producer is None or call.producer == "<input>":
            return None
        call = structure.get(call.producer)
    return None


def rises_with(structure: Structure, source: str, layer: str, unit: int) -> bool:
    """Whether every call on the exact-input chain from ``source`` to ``layer`` keeps ``unit``
    rising with its input (activations, pooling, batch norm with a positive scale)."""
    call = structure.get(layer)
    while call is not None and call.name != source:
        if not _rises(call.module, unit):
            return False
        call = structure.get(call.producer) if call.producer else None
    return call is not None


def preactivation(structure: Structure, layer: str, unit) -> Optional[str]:
    """The Linear or Conv call whose unit ``layer``'s ``unit`` rises with (see :func:`rises_with`):
    ``fc1`` for ``sigmoid[12]`` (the sigmoid's pre-activation), ``conv2`` for ``relu2[5]``; None
    when ``layer`` is such a call itself, when no single one computes it, or when a layer on the
    way may lower it. An element ``(c, y, x)`` has one only through layers that keep its shape
    (an activation, not a pooling), so that the same element exists in both."""
    call = structure.get(layer)
    if call is None:
        return None
    source = weighted_source(structure, layer, call.shape)
    if source is None or source == layer:
        return None
    channel = unit[0] if isinstance(unit, (tuple, list)) else int(unit)
    if isinstance(unit, (tuple, list)) and structure.get(source).shape != call.shape:
        return None
    return source if rises_with(structure, source, layer, channel) else None


def saturates(structure: Structure, source: str, layer: str) -> bool:
    """Whether a layer bounded above (see SATURATING) lies on the exact-input chain from
    ``source`` to ``layer`` (``layer`` included, ``source`` not)."""
    call = structure.get(layer)
    while call is not None and call.name != source:
        if isinstance(call.module, SATURATING):
            return True
        call = structure.get(call.producer) if call.producer else None
    return False


def _rises(module: nn.Module, unit: int) -> bool:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.weight is None or bool(module.weight[unit] > 0)
    if isinstance(module, nn.LeakyReLU):
        return module.negative_slope >= 0
    return isinstance(module, RISING)


def grid_shape(structure: Structure, layer: str, in_features: int) -> Optional[tuple]:
    """How a Linear layer's inputs form an image: the last image-shaped activation (or the model
    input) before it with as many values, e.g. (16, 7, 7) before a flatten; None when none does."""
    shapes = [structure.input_shape] + [c.shape for c in structure.calls]
    names = [None] + structure.names()
    if layer not in names:
        return None
    for shape in reversed(shapes[: names.index(layer)]):
        if math.prod(shape) != in_features:
            break
        if len(shape) in (2, 3):
            return shape
    return None
