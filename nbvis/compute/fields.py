"""Receptive fields: which input region a position of a layer sees.

* :func:`field_geometry` / :func:`field_geometries` -- the geometry of a layer's positions, traced
  through chains of convolution and pooling layers.
* :func:`receptive_field` -- the input box of one position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from . import units
from .probe import LayerRef, as_input, borrowed, leaf_layers
from .running import run_model, this_thread_only

__all__ = ["FieldGeometry", "field_geometries", "field_geometry", "receptive_field"]


@dataclass(frozen=True)
class FieldGeometry:
    """Where the positions of one layer look in the input, per spatial axis.

    ``bounds[axis][p]`` is the input range ``(lo, hi)`` (``hi`` excluded) that index ``p`` on
    that axis sees, clipped to the input and to the taps that land on real values rather than
    padding. The nominal window, used for fixed-size patches, starts at ``start + p * jump``
    and spans ``size``. ``jump == 0`` on every axis means every position sees the whole input
    (a dense layer, or a layer after an operation whose geometry is not a plain window: the
    whole input is then a safe superset).
    """

    size: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[int, ...]
    input_spatial: tuple[int, ...]
    layer_spatial: tuple[int, ...]
    bounds: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def whole(self) -> bool:
        return all(j == 0 for j in self.jump)

    def box(self, position: Sequence[int] = ()) -> tuple[tuple[int, int], ...]:
        """``((lo, hi), ...)`` per input spatial axis for ``position``."""
        position = _check_position(position, self.layer_spatial)
        if self.whole:
            return tuple((0, n) for n in self.input_spatial)
        return tuple(axis[p] for axis, p in zip(self.bounds, position))

    def to_dict(self) -> dict:
        """Plain ints, for sending to a view: per axis, ``lo`` and ``hi`` of every index."""
        return {
            "whole": self.whole,
            "input_spatial": list(self.input_spatial),
            "layer_spatial": list(self.layer_spatial),
            "lo": [[lo for lo, _ in axis] for axis in self.bounds],
            "hi": [[hi for _, hi in axis] for axis in self.bounds],
        }


def _check_position(position, spatial: tuple[int, ...]) -> tuple[int, ...]:
    if position is None:
        position = ()
    if isinstance(position, (int, np.integer)):
        position = (position,)
    position = tuple(position)
    if len(position) != len(spatial):
        raise ValueError(
            f"a position in this layer has {len(spatial)} indices (its positions have shape {spatial}); got {position!r}"
        )
    for p, n in zip(position, spatial):
        if int(p) != p or not 0 <= int(p) < n:
            raise ValueError(f"position {position!r} is out of range for positions of shape {spatial}")
    return tuple(int(p) for p in position)


def _window(module: nn.Module, axes: int):
    """(kernel, stride, padding, dilation) per axis for conv / pooling modules, else None."""

    def per_axis(value):
        if isinstance(value, (tuple, list)):
            return tuple(int(v) for v in value)
        return (int(value),) * axes

    if isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
        kernel = per_axis(module.kernel_size)
        dilation = per_axis(module.dilation)
        if module.padding == "same":
            padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
        elif module.padding == "valid":
            padding = (0,) * axes
        else:
            padding = per_axis(module.padding)
        return kernel, per_axis(module.stride), padding, dilation
    if isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
        kernel = per_axis(module.kernel_size)
        stride = per_axis(module.stride or module.kernel_size)
        return kernel, stride, per_axis(getattr(module, "padding", 0)), per_axis(getattr(module, "dilation", 1))
    if isinstance(module, nn.modules.pooling._LPPoolNd):
        kernel = per_axis(module.kernel_size)
        return kernel, per_axis(module.stride or module.kernel_size), (0,) * axes, (1,) * axes
    return None


class _Reached(Exception):
    """Raised by a hook to end a tracing forward pass once the layer of interest has run."""


class _Field:
    """Geometry carried along one tensor while tracing: the windows applied since the input,
    each ``(kernel, stride, padding, dilation, input spatial shape)`` per axis; ``None`` = whole input."""

    __slots__ = ("steps", "spatial")

    def __init__(self, steps, spatial):
        self.steps, self.spatial = steps, tuple(spatial)


def _taps(a: int, b: int, kernel: int, stride: int, pad: int, dilation: int, n: int):
    """The lowest and highest input index that output indices a..b read, skipping padding."""

    def valid(q):
        first = q * stride - pad
        t_lo = 0 if first >= 0 else (-first + dilation - 1) // dilation
        t_hi = min(kernel - 1, (n - 1 - first) // dilation) if first <= n - 1 else -1
        return (first + dilation * t_lo, first + dilation * t_hi) if t_lo <= t_hi else None

    found = [v for v in map(valid, range(a, b + 1)) if v is not None]
    if not found:
        return None, None
    return min(v[0] for v in found), max(v[1] for v in found)


def _bounds(steps, axis: int, count: int) -> tuple[tuple[int, int], ...]:
    out = []
    for index in range(count):
        lo, hi = index, index
        for kernel, stride, padding, dilation, spatial in reversed(steps):
            if lo is None:
                break
            lo, hi = _taps(lo, hi, kernel[axis], stride[axis], padding[axis], dilation[axis], spatial[axis])
        out.append((0, 0) if lo is None else (lo, hi + 1))
    return tuple(out)


def field_geometry(model: nn.Module, layer: LayerRef, input_shape: Sequence[int]) -> FieldGeometry:
    """The receptive-field geometry of ``layer``'s positions for inputs of shape ``input_shape``
    (one sample, without the batch axis, e.g. ``(1, 28, 28)``).

    The model runs on zeros up to ``layer``, with hooks on its leaf modules, and the geometry is
    carried from tensor to tensor: convolutions and max/avg/LP pooling add their window (kernel,
    stride, padding, dilation); shape-preserving modules (activations, normalization, dropout)
    keep it; a module that changes the spatial shape in another way (flatten, linear, adaptive
    pooling, upsampling) makes every later position see the whole input. A module whose input
    comes from an operation outside any module (``x + y``, ``F.relu``) takes the geometry of the
    latest tensor of the same spatial shape; residual additions done in place (``out += skip``)
    keep the main path's geometry, which contains the skip path's.
    """
    return field_geometries(model, [layer], input_shape)[units.parse_layer(model, layer).name]


def field_geometries(
    model: nn.Module, layers: Sequence[LayerRef], input_shape: Sequence[int]
) -> dict[str, FieldGeometry]:
    """:func:`field_geometry` of several layers from one traced forward pass, by layer name."""
    shape = tuple(int(n) for n in input_shape)
    if not shape or any(n < 1 for n in shape):
        raise ValueError(f"input_shape is the shape of one sample without the batch axis, e.g. (1, 28, 28); got {shape}")
    wanted = {parsed.name: parsed for parsed in (units.parse_layer(model, layer) for layer in layers)}
    x = as_input(torch.zeros((1,) + shape), model)
    input_spatial = shape[1:]
    fields: dict[int, _Field] = {}
    keep: list[torch.Tensor] = []  # keeps the ids of traced tensors unique
    history: list[_Field] = []

    def record(tensor, field):
        keep.append(tensor)
        fields[id(tensor)] = field
        history.append(field)

    def lookup(tensor) -> _Field:
        found = fields.get(id(tensor))
        if found is not None:
            return found
        spatial = tuple(tensor.shape[2:])
        for field in reversed(history):  # produced by an operation outside a module
            if field.spatial == spatial:
                return field
        return _Field(None, spatial)

    record(x, _Field((), input_spatial))
    result: dict[str, _Field] = {}

    def leaf_hook(module, inputs, output):
        output = units.resolve_output(output)
        if not (inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor)):
            return
        before = lookup(inputs[0])
        spatial = tuple(output.shape[2:])
        window = _window(module, len(before.spatial))
        if before.steps is not None and window is not None and len(before.spatial) == len(spatial) > 0:
            after = _Field(before.steps + (window + (before.spatial,),), spatial)
        elif tuple(inputs[0].shape[2:]) == spatial and inputs[0].dim() == output.dim():
            after = _Field(before.steps, spatial)
        else:
            after = _Field(None, spatial)
        record(output, after)

    named = [name for name, layer in wanted.items() if not layer.is_output]
    stop_early = len(named) == len(wanted)  # the model's own output needs the whole forward pass

    calls: dict[str, int] = {}

    def target_hook(name):
        layer = wanted[name]

        def hook(_module, _inputs, output):
            calls[name] = calls.get(name, 0) + 1
            tensor = units.resolve_output(output, layer.pick)
            if tensor is not None and calls[name] == layer.call and name not in result:
                result[name] = lookup(tensor)
                if stop_early and len(result) == len(named):
                    raise _Reached  # later layers cannot change these fields: stop the forward pass

        return hook

    modules = dict(model.named_modules())
    handles = []
    output = None
    with borrowed(model), torch.no_grad():
        try:
            for leaf in leaf_layers(model):
                handles.append(modules[leaf].register_forward_hook(this_thread_only(leaf_hook)))
            for name in named:
                handles.append(wanted[name].module.register_forward_hook(this_thread_only(target_hook(name))))
            output = run_model(model, x)
        except _Reached:
            pass
        finally:
            for handle in handles:
                handle.remove()
    for name, layer in wanted.items():
        if layer.is_output:
            result[name] = lookup(units.output_tensor(output, layer.pick))
    missing = [name for name in wanted if name not in result]
    if missing:
        raise ValueError(f"layer {missing[0]!r} did not run (or returned no tensor) on an input of shape {shape}")
    return {name: _geometry(result[name], input_spatial) for name in wanted}


def _geometry(field: _Field, input_spatial: tuple[int, ...]) -> FieldGeometry:
    axes = len(input_spatial)
    if field.steps is None or len(field.spatial) != axes or axes == 0:
        whole = tuple(((0, n),) for n in input_spatial)
        return FieldGeometry(input_spatial, (0,) * axes, (0,) * axes, input_spatial, field.spatial, whole)
    size, jump, start = [1] * axes, [1] * axes, [0] * axes
    for kernel, stride, padding, dilation, _ in field.steps:
        for a in range(axes):
            size[a] += dilation[a] * (kernel[a] - 1) * jump[a]
            start[a] -= padding[a] * jump[a]
            jump[a] *= stride[a]
    bounds = tuple(_bounds(field.steps, a, field.spatial[a]) for a in range(axes))
    return FieldGeometry(tuple(size), tuple(jump), tuple(start), input_spatial, field.spatial, bounds)


def receptive_field(
    model: nn.Module, layer: LayerRef, position: Sequence[int], input_shape: Sequence[int]
) -> tuple[tuple[int, int], ...]:
    """The input region ``((lo, hi), ...)`` per spatial axis (``hi`` excluded) that ``position``
    of ``layer`` sees in an input of shape ``input_shape`` (one sample, e.g. (1, 28, 28)).
    Dense layers take ``position=()`` and see the whole input. See :func:`field_geometry`."""
    return field_geometry(model, layer, input_shape).box(position)
