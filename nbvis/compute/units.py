"""The contract: which layer, which unit, which sample. Every compute function and view parses it here.

**Layers.** A layer is a dotted name from ``model.named_modules()`` or the module object itself.

* The model's output is ``""`` (:data:`OUTPUT`), the name ``named_modules()`` gives the model
  itself; no submodule can have it, so it never collides with a module (one called ``output``
  included). ``None`` means the same.
* A module called several times in one forward pass (a shared ``self.relu``) exposes each call:
  ``"relu"`` (or ``"relu#1"``) is its first call, ``"relu#2"`` its second, and so on. Every
  function means the same call by the same name. A module whose own name contains ``#`` is
  found by that name first.
* A layer that returns several values (a tuple, a namedtuple, a dict, a ``transformers``
  ``ModelOutput``) is read as one tensor by this rule: a mapping gives its ``"logits"`` entry
  when it has one, else its first tensor value; a sequence gives its first element that
  resolves to a tensor. A suffix overrides the rule: ``"attn[1]"`` is element 1 of ``attn``'s
  result, ``"[hidden_states][2]"`` an entry of the model's own output (keys are ints for
  sequences, names for mappings and attributes).

**Units.** A unit is ``(layer, index)``:

* an ``int`` selects along the layer's **feature axis**: axis 1 after convolutions, batch norm
  and pooling (``(N, C, H, W)``: a channel); the last axis after ``Linear``, ``Embedding``,
  ``LayerNorm``, attention and other modules whose weights act on the last axis (``(N, tokens,
  features)``, channels-last ``(N, H, W, C)``); modules without weights (activations, dropout)
  keep the axis of their input. A unit with other axes left (positions, tokens) is reduced over
  them with ``reduce``: ``"mean"`` by default everywhere, ``"sum"``, ``"max"`` or ``"weighted"``
  on request. ``"weighted"`` weighs each position by the unit's own (positive) activation there,
  held fixed: for values ``a_p(x)`` at positions ``p`` it is ``sum_p a_p(x) w_p`` with
  ``w_p = max(a_p(x0), 0) / sum_q max(a_q(x0), 0)`` read on the same input ``x0`` and not
  differentiated (uniform weights when no position is positive). Its gradient at ``x0`` is the
  gradient of ``sum_p a_p(x) a_p(x0) / sum_p a_p(x0)``: each position's gradient weighted by how
  strongly the unit fires there, which answers "why does this channel fire on this input"
  where the plain sum answers "what would raise it everywhere".
* a ``tuple`` is one element of one sample, in the layer's own axis order (Captum's neuron
  form): ``(c, y, x)`` for a conv layer, ``(token, feature)`` for a sequence.
* ``(layer, c, (y, x))`` is accepted as the same element as ``(layer, (c, y, x))``.

Indices are integers (Python, numpy, or 0-d integer tensors) from 0 to size - 1: a ``bool``
or ``float`` raises ``TypeError``, a negative or too large index ``ValueError`` that says the
range.

**Samples.** Views take one sample; compute functions a batch or one sample (a result for one
sample has no batch axis). Whether ``x`` is one sample is decided by a rule, never by trying
forward passes (:mod:`nbvis.compute.samples`, re-exported here).

**Values at the moment they are produced.** A layer's recorded value is the tensor it returned;
later in-place operations (``ReLU(inplace=True)``, ``out += residual``) act on a copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .samples import consumer, describe_consumer, sample_shape_of, split_sample, to_tensor

__all__ = [
    "OUTPUT",
    "REDUCTIONS",
    "Layer",
    "Unit",
    "activation_weights",
    "check_index",
    "consumer",
    "describe_consumer",
    "feature_axis_of",
    "layer_label",
    "layer_names",
    "leaf_layers",
    "list_names",
    "output_tensor",
    "parse_layer",
    "parse_unit",
    "resolve_output",
    "sample_shape_of",
    "select",
    "split_sample",
    "to_tensor",
    "unit_label",
]

OUTPUT = ""
REDUCTIONS = ("mean", "sum", "max", "weighted")
DEFAULT_REDUCE = "mean"
LayerRef = Union[str, nn.Module, None]

_PICK = re.compile(r"\[([^\[\]]+)\]$")
_CALL = re.compile(r"^(.*)#(\d+)$")


def list_names(names: Sequence[str], limit: int = 60) -> str:
    """``'a', 'b', ... and 12 more`` for error messages."""
    if not names:
        return "(the model has no submodules)"
    shown = ", ".join(repr(n) for n in names[:limit])
    more = len(names) - limit
    return shown + (f", ... and {more} more" if more > 0 else "")


def layer_names(model: nn.Module) -> list[str]:
    """Dotted names of every submodule, in definition order (the model itself is left out)."""
    return [name for name, _ in model.named_modules() if name]


def leaf_layers(model: nn.Module) -> list[str]:
    """Dotted names of the modules that have no children."""
    return [name for name, m in model.named_modules() if name and not any(True for _ in m.children())]


# --------------------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class Layer:
    """One parsed layer: the module at ``path`` ("" = the model), its ``call`` (1 = first) and
    the ``pick`` path into its result (empty: the default rule). ``name`` is the canonical text."""

    name: str
    path: str
    module: nn.Module
    call: int = 1
    pick: tuple = ()

    @property
    def is_output(self) -> bool:
        return self.path == ""

    @property
    def label(self) -> str:
        return layer_label(self.name)


def layer_label(name: str) -> str:
    """How a layer name is shown: the model's output is ``"model output"``."""
    return "model output" if name == OUTPUT else ("model output" + name if name.startswith("[") else name)


def unit_label(name: str, unit) -> str:
    """How a unit is written in the views: ``fc1[12]``, ``relu2[5, 3, 4]`` for one position."""
    index = ", ".join(map(str, unit)) if isinstance(unit, (tuple, list)) else str(unit)
    return f"{layer_label(name)}[{index}]"


def _canonical(path: str, call: int, pick: tuple) -> str:
    return path + (f"#{call}" if call > 1 else "") + "".join(f"[{key}]" for key in pick)


def parse_layer(model: nn.Module, layer: LayerRef, modules: Optional[dict] = None) -> Layer:
    """A layer reference (see the module docstring) as a :class:`Layer`; ``ValueError`` listing
    the model's layers when it names none of them, ``TypeError`` for other types. ``modules``:
    ``dict(model.named_modules())`` when the caller has it already."""
    if layer is None:
        return Layer(OUTPUT, OUTPUT, model)
    if isinstance(layer, Layer):
        return layer
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return Layer(name, name, module)
        raise ValueError(
            f"the module {type(layer).__name__} is not part of this model; its layers are: {list_names(layer_names(model))}"
        )
    if not isinstance(layer, str):
        raise TypeError(
            f"a layer is a dotted name (str), a module of the model, or None for the model's output; not {type(layer).__name__}"
        )
    if modules is None:
        modules = dict(model.named_modules())
    if layer in modules:
        return Layer(layer, layer, modules[layer])
    text, pick = layer, []
    while True:
        match = _PICK.search(text)
        if match is None or text in modules:
            break
        key = match.group(1).strip()
        pick.insert(0, int(key) if re.fullmatch(r"-?\d+", key) else key.strip("'\""))
        text = text[: match.start()]
    call = 1
    match = _CALL.match(text)
    if text not in modules and match is not None and match.group(1) in modules:
        text, call = match.group(1), int(match.group(2))
        if call < 1:
            raise ValueError(f"calls of a layer count from 1 ('{text}' is its first call, '{text}#2' its second); got {layer!r}")
    if text not in modules:
        hint = " (the model's output is '' or None)" if layer.lower() in ("output", "<output>", "logits") else ""
        raise ValueError(f"unknown layer {layer!r}{hint}; the model's layers are: {list_names(layer_names(model))}")
    if text == "" and call > 1:
        raise ValueError("the model's output has one call per forward pass")
    return Layer(_canonical(text, call, tuple(pick)), text, modules[text], call, tuple(pick))


def resolve_output(value, pick: tuple = ()) -> Optional[torch.Tensor]:
    """The tensor a layer's result stands for (the rule in the module docstring), or None."""
    for key in pick:
        try:
            if isinstance(value, dict) or hasattr(value, "keys"):
                value = value[key]
            elif isinstance(key, int):
                value = value[key]
            else:
                value = getattr(value, key)
        except (KeyError, IndexError, AttributeError, TypeError):
            what = f"keys {list(value.keys())}" if hasattr(value, "keys") else f"a {type(value).__name__}"
            raise ValueError(f"the result has no entry [{key}]; it is {what}") from None
    return _default_tensor(value)


def output_tensor(output, pick: tuple = ()) -> torch.Tensor:
    """The tensor the model's result ``output`` stands for (:func:`resolve_output`: a
    ``ModelOutput``'s logits, a tuple's first tensor); a ValueError when it holds none."""
    tensor = resolve_output(output, pick)
    if tensor is None:
        raise ValueError(f"the model returned a {type(output).__name__} with no tensor in it")
    return tensor


def _default_tensor(value, depth: int = 0) -> Optional[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return value
    if depth > 4:
        return None
    if hasattr(value, "keys") and hasattr(value, "__getitem__"):
        keys = list(value.keys())
        if "logits" in keys and isinstance(value["logits"], torch.Tensor):
            return value["logits"]
        for key in keys:
            found = _default_tensor(value[key], depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _default_tensor(item, depth + 1)
            if found is not None:
                return found
    return None


def replace_output(value, pick: tuple, new: torch.Tensor):
    """``value`` with the tensor that :func:`resolve_output` reads replaced by ``new``."""
    if isinstance(value, torch.Tensor):
        return new
    key = pick[0] if pick else _default_key(value)
    rest = pick[1:]
    if hasattr(value, "keys") and hasattr(value, "__setitem__"):
        copy = dict(value) if type(value) is dict else value.__class__(**dict(value))
        copy[key] = replace_output(value[key], rest, new)
        return copy
    if isinstance(value, (tuple, list)):
        items = list(value)
        items[key] = replace_output(items[key], rest, new)
        if hasattr(value, "_make"):
            return value._make(items)
        return type(value)(items)
    raise ValueError(f"cannot replace a part of a {type(value).__name__}")


def _default_key(value):
    if hasattr(value, "keys"):
        keys = list(value.keys())
        if "logits" in keys and isinstance(value["logits"], torch.Tensor):
            return "logits"
        return next(k for k in keys if _default_tensor(value[k]) is not None)
    return next(i for i, item in enumerate(value) if _default_tensor(item) is not None)


# ---------------------------------------------------------------------------------- feature axis

_LAST_AXIS = (nn.Linear, nn.Bilinear, nn.Embedding, nn.EmbeddingBag, nn.LayerNorm, nn.MultiheadAttention)
_CHANNEL_AXIS = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
    nn.Upsample,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
)
if hasattr(nn, "RMSNorm"):
    _LAST_AXIS = _LAST_AXIS + (nn.RMSNorm,)


def states_axis(module: nn.Module) -> bool:
    """Whether ``module`` says its output's feature axis by itself (:func:`feature_axis_of` never
    needs the input's axis for it)."""
    return isinstance(module, _LAST_AXIS) or isinstance(module, _CHANNEL_AXIS)


def feature_axis_of(module: nn.Module, output: torch.Tensor, input_axis: Optional[int]) -> Optional[int]:
    """The feature axis (counting the batch axis) of ``output`` as ``module`` produced it; None
    when the module does not say (the caller then keeps ``input_axis`` or a default)."""
    if output.dim() <= 2:
        return min(1, output.dim() - 1)
    if isinstance(module, _LAST_AXIS):
        return output.dim() - 1
    if isinstance(module, _CHANNEL_AXIS):
        return 1
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() in (1, 2):
        # a Linear-like or norm-like module of another library (transformers' Conv1D, a channels-last norm)
        last, first = output.shape[-1] in weight.shape, output.shape[1] in weight.shape
        if last:
            return output.dim() - 1
        if first:
            return 1
    if input_axis is not None:
        return input_axis
    return None


def default_axis(tensor: torch.Tensor) -> int:
    return min(1, tensor.dim() - 1)


# ------------------------------------------------------------------------------------------ units


@dataclass(frozen=True)
class Unit:
    """A parsed unit: ``layer`` and either ``index`` (an int along the feature axis) or
    ``element`` (one element of a sample), or ``index`` plus ``position`` (the alias form)."""

    layer: LayerRef
    index: Optional[int] = None
    element: Optional[tuple] = None
    position: Optional[tuple] = None

    def describe(self, name: Optional[str] = None) -> str:
        label = layer_label(name if name is not None else (self.layer if isinstance(self.layer, str) else ""))
        if self.element is not None:
            return f"{label}[{', '.join(map(str, self.element))}]"
        where = "" if self.position is None else ", " + ", ".join(map(str, self.position))
        return f"{label}[{self.index}{where}]"


def _integer(value, what: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} is an integer, not a bool ({value!r})")
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or value.is_floating_point() or value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{what} is an integer, not a tensor of shape {tuple(value.shape)} and dtype {value.dtype}")
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    raise TypeError(f"{what} is an integer, not {value!r} ({type(value).__name__})")


def check_index(value, size: int, what: str = "unit", where: str = "", after: str = "") -> int:
    """``value`` as an index into an axis of ``size``: integers 0..size-1 only."""
    index = _integer(value, f"a {what} index")
    if not 0 <= index < size:
        raise ValueError(f"{what} {index} is out of range{where}: it has {size} {what}s (0..{size - 1}){after}")
    return index


def _element(values, what: str) -> tuple:
    if isinstance(values, (int, np.integer, bool, np.bool_)) or isinstance(values, torch.Tensor) and values.dim() == 0:
        values = (values,)
    try:
        items = tuple(values)
    except TypeError:
        raise TypeError(f"{what} is a tuple of integers, not {values!r}") from None
    return tuple(_integer(v, f"an index of {what}") for v in items)


def parse_unit(spec, *, what: str = "a unit") -> Unit:
    """``(layer, int)``, ``(layer, tuple)`` or ``(layer, int, position)`` as a :class:`Unit`
    (indices are checked for type here, for range by :func:`select` against the activation)."""
    if isinstance(spec, Unit):
        return spec
    if not isinstance(spec, (tuple, list)) or len(spec) not in (2, 3):
        raise TypeError(f"{what} is (layer, index), e.g. ('fc2', 3), or (layer, (c, y, x)) for one element; got {spec!r}")
    layer = spec[0]
    if not (layer is None or isinstance(layer, (str, nn.Module, Layer))):
        raise TypeError(f"{what} starts with a layer (a dotted name, a module or None), not {type(layer).__name__}")
    if len(spec) == 3:
        return Unit(layer, index=_integer(spec[1], "a unit index"), position=_element(spec[2], "a position"))
    index = spec[1]
    if isinstance(index, (tuple, list)):
        if not index:
            raise ValueError(f"an element of a layer is a tuple of indices such as (c, y, x); got {index!r}")
        return Unit(layer, element=_element(index, "an element"))
    if isinstance(index, torch.Tensor) and index.dim() == 1:
        return Unit(layer, element=_element(index.tolist(), "an element"))
    return Unit(layer, index=_integer(index, "a unit index"))


def check_reduce(reduce: str) -> str:
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, not {reduce!r}")
    return reduce


def select(unit: Unit, name: str, activation: torch.Tensor, axis: Optional[int] = None, reduce: str = DEFAULT_REDUCE):
    """One value per sample of ``activation`` (``(N, ...)``) for ``unit``: ``(N,)``.

    ``axis`` is the layer's feature axis (counting the batch axis; default 1). Raises
    ``ValueError`` for indices out of range, saying the layer's shape.
    """
    check_reduce(reduce)
    sample = tuple(activation.shape[1:])
    if activation.dim() < 2:  # one value per sample: a single unit, 0
        label = layer_label(name)
        if unit.element not in (None, ()) or unit.position is not None:
            raise ValueError(f"layer {label!r} has one value per sample (shape {tuple(activation.shape)}): its only unit is 0")
        check_index(unit.index, 1, "unit", f" for layer {label!r}", "; it has one value per sample")
        return activation
    axis = default_axis(activation) if axis is None else axis
    if unit.element is not None or unit.position is not None:
        label = layer_label(name)
        element = unit.element
        if element is None:  # (layer, index, position): put the index at the feature axis
            element = list(unit.position)
            element.insert(axis - 1, unit.index)
            element = tuple(element)
        if len(element) != len(sample):
            raise ValueError(
                f"an element of layer {label!r} has {len(sample)} indices (one sample has shape {sample}); got {element!r}"
            )
        for a, (i, n) in enumerate(zip(element, sample)):
            if not 0 <= i < n:
                raise ValueError(
                    f"element {element!r} is out of range for layer {label!r}, whose samples have shape {sample} (axis {a}: 0..{n - 1})"
                )
        return activation[(slice(None),) + element]
    count = activation.shape[axis]
    index = unit.index
    if type(index) is not int or not 0 <= index < count:  # checked (and the message made) only when needed
        index = check_index(unit.index, count, "unit", f" for layer {layer_label(name)!r}", f"; one sample has shape {sample}")
    values = activation.select(axis, index)
    if values.dim() == 1:
        return values
    values = values.flatten(1)
    if reduce == "sum":
        return values.sum(1)
    if reduce == "max":
        return values.max(1).values
    if reduce == "weighted":
        return (values * activation_weights(values)).sum(1)
    return values.mean(1)


def activation_weights(values: torch.Tensor) -> torch.Tensor:
    """The fixed weights of ``reduce="weighted"`` for (N, positions) values: each sample's positive
    part normalized to sum 1 (uniform where no value is positive), detached from the graph."""
    positive = values.detach().clamp(min=0)
    total = positive.sum(1, keepdim=True)
    uniform = torch.full_like(positive, 1.0 / max(1, positive.shape[1]))
    return torch.where(total > 0, positive / torch.where(total > 0, total, torch.ones_like(total)), uniform)


def unit_count(activation: torch.Tensor, axis: Optional[int] = None) -> int:
    """How many units (along the feature axis) one sample of ``activation`` has."""
    if activation.dim() < 2:
        return 1
    return int(activation.shape[default_axis(activation) if axis is None else axis])
