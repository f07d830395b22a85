"""Scan a dataset for the inputs that most activate a unit.

:func:`top_examples` / :func:`scan_top_examples` -- a streaming top-k over a dataset, batch by
batch, keeping only k candidates in memory. Units follow :mod:`nbvis.compute.units`: an input's
score is the unit's value with the one reduction of the contract (a channel's mean over its
positions unless ``reduce=`` says otherwise; one element for a tuple unit). For a conv channel
the result also holds the input patch under the receptive field of the channel's maximal
position (or of the element's position). Receptive fields are in :mod:`nbvis.compute.fields`
(re-exported here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from . import units
from .fields import FieldGeometry, field_geometries, field_geometry, receptive_field
from .probe import LayerRef, as_input, borrowed, forward_with

__all__ = [
    "FieldGeometry",
    "as_samples",
    "sample_tensor",
    "ScanProgress",
    "TopExamples",
    "field_geometries",
    "crop_like",
    "field_geometry",
    "receptive_field",
    "scan_top_examples",
    "top_examples",
]


# --------------------------------------------------------------------------- dataset scans


@dataclass
class TopExamples:
    """The k dataset inputs that most activate one unit, best first.

    ``indices``: positions in the dataset (counting samples across batches for iterables);
    ``values``: the unit's score (a channel reduced over its positions with ``reduce``, mean by default);
    ``inputs``: the whole inputs; ``positions``: the maximal position per example (``None`` for
    dense units); ``boxes``: the receptive field of that position, ``(k, axes, 2)`` as
    ``[lo, hi)``; ``patches``: the input under that field, zero-filled where the field extends
    past the input (as zero padding would), all of the field's size (the whole inputs for
    dense units). ``scanned``: how many samples were seen. ``geometry``: the receptive fields of
    the layer, which :func:`crop_like` uses to crop anything shaped like the inputs as the patches.
    """

    layer: str
    unit: object
    indices: torch.Tensor
    values: torch.Tensor
    inputs: torch.Tensor
    positions: Optional[torch.Tensor]
    boxes: torch.Tensor
    patches: torch.Tensor
    scanned: int
    geometry: Optional[FieldGeometry] = None


@dataclass
class ScanProgress:
    """One step of :func:`scan_top_examples`: samples ``done`` of ``total`` (None when unknown)
    and the best examples so far."""

    done: int
    total: Optional[int]
    result: TopExamples


def sample_tensor(item) -> torch.Tensor:
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


def iter_batches(data, batch_size: int, model: Optional[nn.Module] = None) -> Iterator[torch.Tensor]:
    """Batches of inputs from a tensor, a numpy array, a map-style torch Dataset (items are
    inputs or (input, label) tuples), or any iterable of batches (a DataLoader, a list of arrays).
    With ``model``, a tensor or array that is one sample by the sample rule of
    :mod:`nbvis.compute.units` is a dataset of that one sample."""
    if isinstance(data, (torch.Tensor, np.ndarray)):
        if data.ndim < 1 or len(data) == 0:
            raise ValueError(f"the dataset is empty (shape {tuple(data.shape)})")
        if model is not None and units.split_sample(model, torch.as_tensor(data))[1]:
            data = data[None]
        for start in range(0, len(data), batch_size):
            yield sample_tensor(data[start : start + batch_size])
        return
    if _map_style(data):
        for start in range(0, len(data), batch_size):
            items = [sample_tensor(data[i]) for i in range(start, min(start + batch_size, len(data)))]
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
        yield sample_tensor(batch)


def _score(unit: units.Unit, name: str, activation: torch.Tensor, axis: int, reduce: str, spatial: tuple):
    """(score, flat position in ``spatial`` or None) per sample; NaN scores rank last."""
    score = units.select(unit, name, activation, axis, reduce)
    where = None
    if spatial and axis == 1:
        if unit.element is not None:
            flat = int(np.ravel_multi_index(unit.element[1:], spatial))
            where = torch.full((len(activation),), flat, dtype=torch.long, device=activation.device)
        elif unit.position is not None:
            flat = int(np.ravel_multi_index(unit.position, spatial))
            where = torch.full((len(activation),), flat, dtype=torch.long, device=activation.device)
        else:
            where = activation.select(axis, unit.index).flatten(1).argmax(1)
    return torch.nan_to_num(score.float(), nan=-math.inf), where


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


CACHE_BYTES = 256 * 2**20  # the most one layer's activations over a dataset may take in a scan cache


def _fingerprint(model: nn.Module, data) -> tuple:
    """What a cached scan depends on: the data object and every parameter and buffer of the
    model, by identity and version (an in-place update, as an optimizer step, changes it)."""
    tensors = [*model.parameters(), *model.buffers()]
    return (id(data), _dataset_length(data), tuple((id(t), t._version) for t in tensors))


def _layer_batches(model: nn.Module, name: str, data, batch_size: int):
    """(inputs, activation of ``name``, its feature axis) for every batch of ``data``."""
    for batch in iter_batches(data, int(batch_size), model):
        x = as_input(batch, model, name="a dataset batch")
        if x.dim() == 0 or len(x) == 0:
            continue
        with borrowed(model), torch.no_grad():
            _, acts = forward_with(model, x, [name])
        yield x, acts[name], acts.axis(name)


def scan_top_examples(
    model: nn.Module, layer: LayerRef, unit, data, k: int = 9, batch_size: int = 256, *, reduce: str = units.DEFAULT_REDUCE,
    cache: Optional[dict] = None,
) -> Iterator[ScanProgress]:
    """The generator form of :func:`top_examples`: yields a :class:`ScanProgress` after every
    batch (the last one holds the final result). Close it to cancel the scan.

    ``cache``: a dict kept by the caller between scans. A finished scan leaves in it the layer's
    activations over the whole dataset (when they take at most CACHE_BYTES; one layer at a time),
    and a later scan of any unit of that layer reads them instead of running the model, as long
    as the data and the model's parameters and buffers are the same objects, unchanged."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k is the number of examples to keep, a positive integer; got {k!r}")
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    units.check_reduce(reduce)
    parsed = units.parse_unit((layer, unit))
    name = units.parse_layer(model, parsed.layer).name
    total = _dataset_length(data)
    best = None  # (values, indices, inputs, flat positions)
    done = 0
    geometry = None
    key = None if cache is None else _fingerprint(model, data)
    entry = None if cache is None else cache.get(name)
    hit = entry is not None and entry["key"] == key
    kept, size = ([] if cache is not None and not hit else None), 0
    for x, activation, axis in entry["batches"] if hit else _layer_batches(model, name, data, batch_size):
        if kept is not None:
            size += activation.numel() * activation.element_size() + x.numel() * x.element_size()
            if size <= CACHE_BYTES:
                kept.append((x, activation, axis))
            else:
                kept = None
        if geometry is None:
            units.select(parsed, name, activation[:1], axis, reduce)  # a bad unit fails before the geometry is traced
            geometry = entry["geometry"] if hit else field_geometry(model, name, tuple(x.shape[1:]))
        spatial = tuple(geometry.layer_spatial) if tuple(activation.shape[2:]) == tuple(geometry.layer_spatial) else ()
        score, where = _score(parsed, name, activation, axis, reduce, spatial)
        indices = torch.arange(done, done + len(x), device=score.device)
        done += len(x)
        if best is not None:
            score = torch.cat([best[0], score])
            indices = torch.cat([best[1], indices])
            x = torch.cat([best[2], x])
            where = None if where is None else torch.cat([best[3], where])
        order = torch.sort(score, descending=True, stable=True).indices[: int(k)]
        best = (score[order], indices[order], x[order], None if where is None else where[order])
        shown = parsed.index if parsed.element is None and parsed.position is None else (
            parsed.element if parsed.element is not None else (parsed.index, *parsed.position))
        if not hit:  # read from the cache, the whole scan is one step
            yield ScanProgress(done, total, _result(name, shown, best, geometry, done))
    if best is None:
        raise ValueError("the dataset yielded no samples")
    if hit:
        yield ScanProgress(done, total, _result(name, shown, best, geometry, done))
    if kept is not None and _fingerprint(model, data) == key:  # all seen, with the same weights throughout
        cache.clear()
        cache[name] = {"key": key, "batches": kept, "geometry": geometry}


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
        geometry=geometry,
    )


def crop_like(top: TopExamples, values: torch.Tensor) -> torch.Tensor:
    """``values`` shaped like ``top.inputs`` (a map of each example over its input) cropped as
    ``top.patches`` are: under each example's receptive field, zero-filled past the input."""
    if tuple(values.shape) != tuple(top.inputs.shape):
        raise ValueError(f"values to crop have shape {tuple(values.shape)}; the examples' inputs have {tuple(top.inputs.shape)}")
    if top.geometry is None:
        return values.clone()
    return _patches(values, top.boxes, top.geometry, top.positions)


def top_examples(
    model: nn.Module,
    layer: LayerRef,
    unit,
    data,
    k: int = 9,
    batch_size: int = 256,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
    *,
    reduce: str = units.DEFAULT_REDUCE,
) -> TopExamples:
    """The ``k`` inputs of ``data`` that most activate ``unit`` of ``layer``, best first.

    ``data``: a tensor or numpy array of samples, a map-style torch Dataset (items are inputs or
    (input, label) tuples), or an iterable of batches (e.g. a DataLoader). It is read once, in
    batches of ``batch_size``; only ``k`` candidates are kept. Ties keep the earlier sample.
    ``progress(done, total)`` is called after each batch (``total`` is None when unknown).
    ``unit``: an int along the layer's feature axis (a channel is scored by its mean over positions,
    or with ``reduce="max"``/``"sum"``), or a tuple for one element, as everywhere in nbvis.
    """
    last = None
    for step in scan_top_examples(model, layer, unit, data, k=k, batch_size=batch_size, reduce=reduce):
        last = step
        if progress is not None:
            progress(step.done, step.total)
    return last.result


# --------------------------------------------------------------------------- samples to pick from


def as_samples(dataset):
    """(indexable samples, targets or None) from what the user passed as dataset."""
    if dataset is None:
        return None, None
    if isinstance(dataset, tuple) and len(dataset) == 2 and all(hasattr(d, "__len__") for d in dataset):
        inputs, targets = dataset
        if len(inputs) != len(targets):
            raise ValueError(f"dataset=(inputs, targets) needs as many targets as inputs; got {len(inputs)} and {len(targets)}")
        return _indexed(inputs), targets
    if isinstance(dataset, (torch.Tensor, np.ndarray)):
        if dataset.ndim < 2 or len(dataset) == 0:
            raise ValueError(f"dataset must hold samples along its first axis; got shape {tuple(dataset.shape)}")
        return dataset, None
    if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__") and not isinstance(dataset, (str, bytes, dict)):
        if len(dataset) == 0:
            raise ValueError("the dataset is empty")
        return _indexed(dataset), _DatasetTargets(dataset)
    raise TypeError(
        "dataset must be a tensor or array of samples, an (inputs, targets) pair, or a map-style torch Dataset; "
        f"got {type(dataset).__name__}"
    )


def _indexed(samples):
    """``samples`` as something the top-example scan reads one sample per index (it reads any
    other iterable, such as a list, as a sequence of batches)."""
    if isinstance(samples, (torch.Tensor, np.ndarray)) or _map_style(samples):
        return samples
    return _Samples(samples)


class _Samples(torch.utils.data.Dataset):
    """A sequence of samples (or of (input, target) pairs) read by index."""

    def __init__(self, samples):
        self._samples = samples

    def __len__(self):
        return len(self._samples)

    def __getitem__(self, index):
        return self._samples[index]


class _DatasetTargets:
    """The second element of each item of a Dataset of (input, target) pairs, read lazily."""

    def __init__(self, dataset):
        self._dataset = dataset

    def __getitem__(self, index):
        item = self._dataset[index]
        if isinstance(item, (tuple, list)) and len(item) >= 2:
            return item[1]
        return ""
