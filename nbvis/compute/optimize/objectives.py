"""Objectives: what activation maximization drives up, computed from one forward pass's activations.

:func:`unit` (a neuron, a conv channel's mean or one element, as in :mod:`nbvis.compute.units`), :func:`logit` (a class output),
:func:`objective` (any function of the activations), and sums / negatives of these;
:func:`as_objective` turns every accepted spelling into an :class:`Objective`.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from nbvis.compute import units
from nbvis.compute.probe import LayerRef, resolve_layer

__all__ = ["Objective", "as_objective", "logit", "objective", "unit"]


class Objective:
    """A quantity to maximize, computed from the activations of one forward pass.

    Calling an objective on ``{layer name: activation}`` (the model's output under ``""``)
    gives one value per start, shape ``(starts,)``. Objectives combine with ``+``, ``-``,
    unary ``-`` and multiplication by a number.
    """

    #: dotted names (or modules) whose activations the objective reads; None means every leaf layer
    layers: tuple[LayerRef, ...] | None = ()
    description = "objective"

    def __call__(self, activations: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def bind(self, model: nn.Module) -> "Objective":
        """The same objective with layer references resolved to names of ``model`` (ValueError if unknown)."""
        return self

    def __add__(self, other):
        other = as_objective(other)
        return _Sum([(1.0, self), (1.0, other)])

    def __radd__(self, other):
        if isinstance(other, (int, float)) and other == 0:  # so that sum([...]) works
            return self
        return as_objective(other) + self

    def __sub__(self, other):
        return self + (-1.0) * as_objective(other)

    def __rsub__(self, other):
        return as_objective(other) + (-1.0) * self

    def __neg__(self):
        return (-1.0) * self

    def __mul__(self, weight):
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            return NotImplemented
        return _Sum([(float(weight), self)])

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"Objective({self.description})"


class _Unit(Objective):
    """One unit of a layer (see :mod:`nbvis.compute.units`): an int along the feature axis
    (a channel reduced over its positions, by its mean unless ``reduce`` says otherwise) or one element."""

    def __init__(self, layer: LayerRef, index, position: Sequence[int] | None = None, reduce: str = units.DEFAULT_REDUCE):
        spec = (layer, index) if position is None else (layer, index, position)
        self.unit = units.parse_unit(spec, what="a unit objective")
        self.reduce = units.check_reduce(reduce)
        self.layer = layer
        self.layers = (layer,)
        name = layer if isinstance(layer, str) or layer is None else type(layer).__name__
        self.description = self.unit.describe(name or units.OUTPUT)

    def bind(self, model):
        bound = _Unit.__new__(_Unit)
        bound.__dict__.update(self.__dict__)
        bound.layer = units.parse_layer(model, self.layer).name
        if bound.layer == units.OUTPUT and self.unit.index is not None and self.unit.position is None:
            logits = _pre_softmax(model)
            if logits is not None:  # a class objective reads the logits, not the probabilities
                bound.layer, bound.logit_of = logits, self.unit.index
        bound.layers = (bound.layer,)
        bound.description = self.unit.describe(bound.layer)
        return bound

    def __call__(self, activations):
        name = self.layer
        act = activations[name]
        axes = getattr(activations, "axes", {})
        return units.select(self.unit, name, act, axes.get(name), self.reduce)


def _pre_softmax(model: nn.Module) -> str | None:
    """The layer before a final ``nn.Softmax`` / ``nn.LogSoftmax`` of a Sequential model, else None."""
    if not isinstance(model, nn.Sequential) or len(model) < 2:
        return None
    if not isinstance(model[-1], (nn.Softmax, nn.LogSoftmax)):
        return None
    return list(model._modules)[-2]


class _Sum(Objective):
    def __init__(self, terms: list[tuple[float, Objective]]):
        flat: list[tuple[float, Objective]] = []
        for weight, term in terms:
            if isinstance(term, _Sum):
                flat.extend((weight * w, t) for w, t in term.terms)
            else:
                flat.append((weight, term))
        self.terms = flat
        layers: list = []
        for _, term in flat:
            if term.layers is None:
                layers = None
                break
            layers.extend(ref for ref in term.layers if not any(ref is r or ref == r for r in layers))
        self.layers = None if layers is None else tuple(layers)
        text = ""
        for weight, term in flat:
            size = abs(weight)
            part = term.description if size == 1 else f"{size:g}*{term.description}"
            sign = "-" if weight < 0 else "+"
            text += (f" {sign} " if text else ("-" if weight < 0 else "")) + part
        self.description = text

    def bind(self, model):
        return _Sum([(w, t.bind(model)) for w, t in self.terms])

    def __call__(self, activations):
        total = None
        for weight, term in self.terms:
            value = term(activations)
            value = value if weight == 1 else weight * value
            total = value if total is None else total + value
        return total


class _Callable(Objective):
    def __init__(self, fn: Callable, layers: Iterable[LayerRef] | None = None, description: str | None = None):
        if not callable(fn):
            raise TypeError(f"an objective function must be callable, not {type(fn).__name__}")
        self.fn = fn
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        self.layers = None if layers is None else tuple(layers)
        self.description = description or getattr(fn, "__name__", type(fn).__name__)

    def bind(self, model):
        if self.layers is None:
            return self
        names = [resolve_layer(model, ref)[0] for ref in self.layers]
        return _Callable(self.fn, names, self.description)

    def __call__(self, activations):
        return self.fn(activations)


def unit(layer: LayerRef, index, position: Sequence[int] | None = None, reduce: str = units.DEFAULT_REDUCE) -> Objective:
    """Unit ``index`` of ``layer``, as everywhere in nbvis (:mod:`nbvis.compute.units`): an int
    along the feature axis (a neuron, or a conv channel counted as the mean over its positions,
    or with ``reduce="sum"``/``"max"``), or a tuple for one element such as ``(c, y, x)``;
    ``unit(layer, c, (y, x))`` is the same element.
    """
    return _Unit(layer, index, position, reduce)


def logit(index: int) -> Objective:
    """Output ``index`` of the model itself (a class logit for a classifier)."""
    return _Unit("", index)


def objective(fn: Callable, layers: Iterable[LayerRef] | None = None, description: str | None = None) -> Objective:
    """An objective from a function of ``{layer name: activation}`` returning ``(starts,)`` values.

    ``layers`` names the layers the function reads (default: every leaf layer, plus the model's
    output under the key ``""``).
    """
    return _Callable(fn, layers, description)


def as_objective(spec) -> Objective:
    """Turn any accepted objective form into an :class:`Objective`.

    Accepted: an :class:`Objective`; ``(layer, unit)`` or ``(layer, unit, (y, x))``; an int (a
    class logit of the model's output); a string ``"layer:unit"`` (``"-layer:unit"`` to minimize);
    a callable on the activations dict; a list of these (their sum).
    """
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, bool):
        raise TypeError("an objective cannot be a bool")
    if isinstance(spec, (int, np.integer)):
        return logit(int(spec))
    if isinstance(spec, tuple):
        if len(spec) in (2, 3) and (spec[0] is None or isinstance(spec[0], (str, nn.Module))):
            return unit(*spec)
        raise TypeError(
            f"an objective tuple is (layer, unit), (layer, (c, y, x)) or (layer, unit, (y, x)); got {spec!r}"
        )
    if isinstance(spec, str):
        text = spec.strip()
        sign = 1.0
        if text.startswith("-"):
            sign, text = -1.0, text[1:].strip()
        layer, sep, index = text.rpartition(":")
        if not sep:
            raise ValueError(f"an objective string is 'layer:unit' (for example 'conv2:5'); got {spec!r}")
        try:
            number = int(index)
        except ValueError:
            raise ValueError(f"the unit in objective {spec!r} must be an integer, not {index!r}") from None
        term = unit(layer.strip(), number)
        return term if sign > 0 else -term
    if isinstance(spec, list):
        if not spec:
            raise ValueError("an empty list is not an objective; give at least one term")
        return sum((as_objective(s) for s in spec), start=0)
    if callable(spec):
        return _Callable(spec)
    raise TypeError(
        "an objective is (layer, unit), (layer, unit, (y, x)), a class index (int), 'layer:unit', "
        f"a callable on the activations dict, an Objective, or a list of these; got {type(spec).__name__}"
    )
