"""Scan a dataset for the inputs that most activate a unit, and map positions to input regions.

* :func:`top_examples` / :func:`scan_top_examples` -- a streaming top-k over a dataset, batch by
  batch, keeping only k candidates in memory. For a unit with positions (a conv channel) an
  input's score is the channel's maximum over positions, and the result also holds the input
  patch under that position's receptive field.
* :func:`field_geometry` / :func:`receptive_field` -- which input region a position of a layer
  sees, for chains of convolution and pooling layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .probe import LayerRef, as_input, borrowed, check_unit, forward_with, leaf_layers, resolve_layer, run_model

__all__ = [
    "FieldGeometry",
    "ScanProgress",
    "TopExamples",
    "field_geometries",
    "field_geometry",
    "receptive_field",
    "scan_top_examples",
    "top_examples",
]


# --------------------------------------------------------------------------- receptive fields


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
    return field_geometries(model, [layer], input_shape)[resolve_layer(model, layer)[0]]


def field_geometries(
    model: nn.Module, layers: Sequence[LayerRef], input_shape: Sequence[int]
) -> dict[str, FieldGeometry]:
    """:func:`field_geometry` of several layers from one traced forward pass, by layer name."""
    shape = tuple(int(n) for n in input_shape)
    if not shape or any(n < 1 for n in shape):
        raise ValueError(f"input_shape is the shape of one sample without the batch axis, e.g. (1, 28, 28); got {shape}")
    wanted = dict(resolve_layer(model, layer) for layer in layers)
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

    named = [name for name in wanted if name]
    stop_early = "" not in wanted  # the model's own output needs the whole forward pass

    def target_hook(name):
        def hook(_module, _inputs, output):
            if isinstance(output, torch.Tensor) and name not in result:
                result[name] = lookup(output)
                if stop_early and len(result) == len(named):
                    raise _Reached  # later layers cannot change these fields: stop the forward pass

        return hook

    modules = dict(model.named_modules())
    handles = []
    output = None
    with borrowed(model), torch.no_grad():
        try:
            for leaf in leaf_layers(model):
                handles.append(modules[leaf].register_forward_hook(leaf_hook))
            for name in named:
                handles.append(wanted[name].register_forward_hook(target_hook(name)))
            output = run_model(model, x)
        except _Reached:
            pass
        finally:
            for handle in handles:
                handle.remove()
    if "" in wanted:
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"the model returned a {type(output).__name__}, not a tensor")
        result[""] = lookup(output)
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



# --------------------------------------------------------------------------- dataset scans


@dataclass
class TopExamples:
    """The k dataset inputs that most activate one unit, best first.

    ``indices``: positions in the dataset (counting samples across batches for iterables);
    ``values``: the unit's activation (for units with positions: the maximum over positions);
    ``inputs``: the whole inputs; ``positions``: the maximal position per example (``None`` for
    dense units); ``boxes``: the receptive field of that position, ``(k, axes, 2)`` as
    ``[lo, hi)``; ``patches``: the input under that field, zero-filled where the field extends
    past the input (as zero padding would), all of the field's size (the whole inputs for
    dense units). ``scanned``: how many samples were seen.
    """

    layer: str
    unit: int
    indices: torch.Tensor
    values: torch.Tensor
    inputs: torch.Tensor
    positions: Optional[torch.Tensor]
    boxes: torch.Tensor
    patches: torch.Tensor
    scanned: int


@dataclass
class ScanProgress:
    """One step of :func:`scan_top_examples`: samples ``done`` of ``total`` (None when unknown)
    and the best examples so far."""

    done: int
    total: Optional[int]
    result: TopExamples


def _sample_tensor(item) -> torch.Tensor:
    if isinstance(item, (tuple, list)) and item:
        item = item[0]  # (input, label, ...) pairs
    if isinstance(item, torch.Tensor):
        return item
    if isinstance(item, (np.ndarray, np.number, int, float)) and not isinstance(item, bool):
        array = np.asarray(item)
        if np.issubdtype(array.dtype, np.number) or array.dtype == bool:
            return torch.from_numpy(np.ascontiguousarray(array))
    raise TypeError(
        "dataset items must be tensors, numeric arrays or (input, label) tuples of them; "
        f"got {type(item).__name__}" + (f" of dtype {item.dtype}" if isinstance(item, np.ndarray) else "")
    )


def _map_style(data) -> bool:
    """A torch Dataset read by index (an IterableDataset is read as an iterable of batches)."""
    return (
        isinstance(data, torch.utils.data.Dataset)
        and not isinstance(data, torch.utils.data.IterableDataset)
        and hasattr(data, "__len__")
    )


def _dataset_length(data) -> Optional[int]:
    if isinstance(data, (torch.Tensor, np.ndarray)) or _map_style(data):
        return len(data)
    inner = getattr(data, "dataset", None)  # a DataLoader
    if inner is not None and hasattr(inner, "__len__"):
        return len(inner)
    return None


def iter_batches(data, batch_size: int) -> Iterator[torch.Tensor]:
    """Batches of inputs from a tensor, a numpy array, a map-style torch Dataset (items are
    inputs or (input, label) tuples), or any iterable of batches (a DataLoader, a list of arrays)."""
    if isinstance(data, (torch.Tensor, np.ndarray)):
        if data.ndim < 1 or len(data) == 0:
            raise ValueError(f"the dataset is empty (shape {tuple(data.shape)})")
        for start in range(0, len(data), batch_size):
            yield _sample_tensor(data[start : start + batch_size])
        return
    if _map_style(data):
        for start in range(0, len(data), batch_size):
            items = [_sample_tensor(data[i]) for i in range(start, min(start + batch_size, len(data)))]
            try:
                yield torch.stack([torch.as_tensor(item) for item in items])
            except RuntimeError:
                shapes = sorted({tuple(item.shape) for item in items})
                raise ValueError(f"dataset items must all have one shape; found {shapes[:5]}") from None
        return
    if isinstance(data, (str, bytes, dict)) or not isinstance(data, Iterable):
        raise TypeError(
            "data must be a tensor, a numpy array, a torch Dataset or an iterable of batches, "
            f"not {type(data).__name__}"
        )
    for batch in data:
        yield _sample_tensor(batch)


def _select(name: str, activation: torch.Tensor, unit: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(score, flat argmax position or None) per sample for a unit; NaN scores rank last."""
    values = activation[:, unit]
    if values.dim() == 1:
        score, where = values, None
    else:
        score, where = values.flatten(1).max(1)
    score = torch.nan_to_num(score.float(), nan=-math.inf)
    return score, where


def _patches(inputs: torch.Tensor, boxes: torch.Tensor, geometry: FieldGeometry, positions) -> torch.Tensor:
    if geometry.whole or positions is None:
        return inputs.clone()
    k, channels = inputs.shape[0], inputs.shape[1]
    out = inputs.new_zeros((k, channels) + tuple(geometry.size))
    for i in range(k):
        pos = positions[i].tolist()
        src = [slice(None)]
        dst = [slice(None)]
        for axis, (lo, hi) in enumerate(boxes[i].tolist()):
            offset = lo - (geometry.start[axis] + pos[axis] * geometry.jump[axis])
            src.append(slice(lo, hi))
            dst.append(slice(offset, offset + hi - lo))
        out[i][tuple(dst)] = inputs[i][tuple(src)]
    return out


def scan_top_examples(
    model: nn.Module, layer: LayerRef, unit: int, data, k: int = 9, batch_size: int = 256
) -> Iterator[ScanProgress]:
    """The generator form of :func:`top_examples`: yields a :class:`ScanProgress` after every
    batch (the last one holds the final result). Close it to cancel the scan."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k is the number of examples to keep, a positive integer; got {k!r}")
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    name, _ = resolve_layer(model, layer)
    total = _dataset_length(data)
    best = None  # (values, indices, inputs, flat positions)
    done = 0
    geometry = None
    channel = None
    for batch in iter_batches(data, int(batch_size)):
        x = as_input(batch, model, name="a dataset batch")
        if x.dim() == 0 or len(x) == 0:
            continue
        with borrowed(model), torch.no_grad():
            _, acts = forward_with(model, x, [name])
        activation = acts[name]
        if channel is None:
            channel = check_unit(name or "the model output", activation, unit)
            geometry = field_geometry(model, name, tuple(x.shape[1:]))
        score, where = _select(name, activation, channel)
        indices = torch.arange(done, done + len(x), device=score.device)
        done += len(x)
        if best is not None:
            score = torch.cat([best[0], score])
            indices = torch.cat([best[1], indices])
            x = torch.cat([best[2], x])
            where = None if where is None else torch.cat([best[3], where])
        order = torch.sort(score, descending=True, stable=True).indices[: int(k)]
        best = (score[order], indices[order], x[order], None if where is None else where[order])
        yield ScanProgress(done, total, _result(name, channel, best, geometry, done))
    if best is None:
        raise ValueError("the dataset yielded no samples")


def _result(name: str, unit: int, best, geometry: FieldGeometry, done: int) -> TopExamples:
    values, indices, inputs, where = best
    positions = None
    if where is not None:
        positions = torch.stack(torch.unravel_index(where, geometry.layer_spatial), dim=1)
        boxes = torch.tensor([geometry.box(p) for p in positions.tolist()], dtype=torch.long).reshape(
            len(values), len(geometry.input_spatial), 2
        )
    else:
        boxes = torch.tensor([[[0, n] for n in geometry.input_spatial]] * len(values), dtype=torch.long).reshape(
            len(values), len(geometry.input_spatial), 2
        )
    return TopExamples(
        layer=name,
        unit=unit,
        indices=indices.cpu(),
        values=values,
        inputs=inputs,
        positions=None if positions is None else positions.cpu(),
        boxes=boxes,
        patches=_patches(inputs, boxes, geometry, positions),
        scanned=done,
    )


def top_examples(
    model: nn.Module,
    layer: LayerRef,
    unit: int,
    data,
    k: int = 9,
    batch_size: int = 256,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
) -> TopExamples:
    """The ``k`` inputs of ``data`` that most activate ``unit`` of ``layer``, best first.

    ``data``: a tensor or numpy array of samples, a map-style torch Dataset (items are inputs or
    (input, label) tuples), or an iterable of batches (e.g. a DataLoader). It is read once, in
    batches of ``batch_size``; only ``k`` candidates are kept. Ties keep the earlier sample.
    ``progress(done, total)`` is called after each batch (``total`` is None when unknown).
    """
    last = None
    for step in scan_top_examples(model, layer, unit, data, k=k, batch_size=batch_size):
        last = step
        if progress is not None:
            progress(step.done, step.total)
    return last.result
