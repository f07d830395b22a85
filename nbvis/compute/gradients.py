"""Ask a unit why: gradients of any unit with respect to the input or an earlier layer.

* :func:`gradient` -- d(unit)/d(input), or d(unit)/d(activation of an earlier layer).
* :func:`loss_gradient` -- d(loss)/d(input): how sensitive the error is to each input value.
* :func:`guided_backprop` and :func:`deconvnet` -- the same backward pass with the ReLU rule
  changed (Springenberg et al. 2015; Zeiler & Fergus 2014).

Layers, units and samples follow :mod:`nbvis.compute.units`. ``of=(layer, unit)`` names a layer
(a dotted name, the module itself, ``""``/``None`` for the model's output, ``"relu#2"`` for a
second call, ``"attn[1]"`` for a part of a tuple result) and a unit of its output: an ``int``
along the feature axis (a channel is reduced over its positions with ``reduce``, ``"mean"`` by
default, or ``"sum"``/``"max"``), or a tuple for one element (``(c, y, x)``, Captum's neuron
form); ``(layer, c, (y, x))`` is the same element. ``wrt`` is ``"input"`` or a layer, named the
same way (tuple-returning modules included).

``x`` is a batch (first axis = samples) or one sample. Each sample's unit depends only on that
sample (the model runs in eval mode), so the result holds one map per sample, with the shape of
``x`` (or of the ``wrt`` layer's activation; without the batch axis for one sample). Values are
read when their layer produces them, so later in-place operations change nothing. Results are
detached tensors on the model's device. The model is borrowed: its parameters,
``requires_grad``, modes and hooks are unchanged afterwards and no ``.grad`` is written.

Guided backpropagation and the deconvnet map change the backward rule of every ReLU that runs:
``nn.ReLU`` modules (in-place or not) and the functional forms ``F.relu``, ``torch.relu``,
``Tensor.relu`` and their in-place variants. Other activations (sigmoid, GELU, LeakyReLU, ...)
keep their ordinary gradient; a model in which no ReLU runs is refused with a ``ValueError``.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from . import interrupts, turns, units
from .probe import LayerRef, as_input, borrowed, forward_with
from .running import model_output

__all__ = ["METHODS", "deconvnet", "element_maps", "gradient", "guided_backprop", "loss_gradient", "select_unit"]



def select_unit(name: str, activation: torch.Tensor, unit, reduce: str = units.DEFAULT_REDUCE, axis=None) -> torch.Tensor:
    """One value per sample: ``unit`` (an int along the feature axis, or an element tuple) of a
    layer's ``activation``; see :func:`nbvis.compute.units.select`."""
    return units.select(units.parse_unit((name, unit)), name, activation, axis, reduce)


class _ReluRule(TorchFunctionMode):
    """Run every ReLU call through :class:`_ModifiedReLU` and count the calls."""

    _OUT_OF_PLACE = (F.relu, torch.relu, torch.Tensor.relu)
    _IN_PLACE = (F.relu_, torch.relu_, torch.Tensor.relu_)

    def __init__(self, rule: str):
        super().__init__()
        self.rule = rule
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._OUT_OF_PLACE or func in self._IN_PLACE:
            x = args[0] if args else kwargs["input"]
            inplace = func in self._IN_PLACE or bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
            if isinstance(x, torch.Tensor) and x.requires_grad and x.is_floating_point():
                self.calls += 1
                out = _ModifiedReLU.apply(x, self.rule)
                return x.copy_(out) if inplace else out
        return func(*args, **kwargs)


class _ModifiedReLU(torch.autograd.Function):
    """ReLU forward; backward passes only positive gradients (deconvnet), and only where the
    forward input was positive as well (guided backpropagation)."""

    @staticmethod
    def forward(ctx, x, rule):
        out = x.clamp(min=0)
        ctx.rule = rule
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        positive = grad.clamp(min=0)
        if ctx.rule == "guided":
            positive = positive * (out > 0).to(positive.dtype)
        return positive, None


def _check_grad_possible() -> None:
    if torch.is_inference_mode_enabled():
        raise RuntimeError("gradients cannot be computed inside torch.inference_mode(); call this outside it")


def _backprop(model: nn.Module, x, of, wrt, reduce: str, rule: str | None, elements=None) -> torch.Tensor:
    return turns.again_if_weights_change(model, lambda: _backprop_once(model, x, of, wrt, reduce, rule, elements))


def _backprop_once(model: nn.Module, x, of, wrt, reduce: str, rule: str | None, elements=None) -> torch.Tensor:
    _check_grad_possible()
    units.check_reduce(reduce)
    unit = units.parse_unit(of, what="`of`")
    of_layer = units.parse_layer(model, unit.layer)
    wrt_layer = None
    if not (isinstance(wrt, str) and wrt == "input"):
        if wrt is None:
            raise TypeError("wrt is 'input' or a layer (a dotted name or a module of the model), not None")
        wrt_layer = units.parse_layer(model, wrt)
        if wrt_layer.is_output:
            raise ValueError("wrt must be 'input' or a layer that runs before the unit's layer, not the model's output")
        if wrt_layer.name == of_layer.name:
            raise ValueError(f"wrt layer {wrt_layer.name!r} is the unit's own layer; it must be an earlier layer or 'input'")
    tensor = as_input(x, model)
    if wrt_layer is None and not tensor.is_floating_point():
        raise ValueError(
            "the model's input is token ids (integers), which have no gradient; ask wrt= the embedding layer instead"
        )
    batch, single = units.split_sample(model, tensor)
    with borrowed(model), torch.enable_grad():
        start = batch.clone().requires_grad_(wrt_layer is None)
        mode = _ReluRule(rule) if rule else contextlib.nullcontext()
        # torch's stack of function modes breaks when a Ctrl-C lands inside its own bookkeeping
        # (every op passes through it): the pass under the mode runs to its end, then the Ctrl-C
        if rule:
            interrupts.enter()
        try:
            with mode:  # a copy of the input: a first in-place layer cannot touch the leaf
                _, acts = forward_with(model, start.clone() if start.requires_grad else start, [of_layer], detach=False, leaf=wrt_layer)
        finally:
            if rule:
                interrupts.leave()
        if rule and mode.calls == 0:
            raise ValueError(
                f"{'guided backpropagation' if rule == 'guided' else 'the deconvnet map'} changes the backward "
                "rule of ReLUs, and no ReLU ran in this model (nn.ReLU, F.relu or torch.relu); "
                "use nbvis.gradient for models with other activations"
            )
        target = start if wrt_layer is None else acts.leaf
        activation = acts[of_layer.name]
        if elements is None:
            objective = units.select(unit, of_layer.name, activation, acts.axis(of_layer.name), reduce)
        else:  # sample i's own element: one backward pass for the batch (the samples are independent)
            objective = _pick_elements(of_layer.name, activation, elements)
        grad = None
        if objective.requires_grad:
            (grad,) = torch.autograd.grad(objective.sum(), target, allow_unused=True)
        if grad is None:
            if wrt_layer is None:
                grad = torch.zeros_like(target)
            else:
                raise ValueError(
                    f"{unit.describe(of_layer.name)} does not depend on layer {wrt_layer.name!r}: "
                    "wrt must be a layer that runs before it and feeds into it"
                )
    grad = grad.detach()
    return grad[0] if single else grad


def gradient(model: nn.Module, x, of, wrt: LayerRef = "input", reduce: str = units.DEFAULT_REDUCE) -> torch.Tensor:
    """d(unit)/d(input) or d(unit)/d(activation of the earlier layer ``wrt``), per sample.

    ``of=(layer, unit)``: see the module docstring (a channel is summed over its positions,
    or averaged with ``reduce="mean"``; ``(channel, i, j)`` picks one position).
    ``wrt="input"`` gives a tensor shaped like ``x``; a layer name gives one shaped like that
    layer's activation. ``wrt`` must run before ``of`` and feed into it, else ``ValueError``.
    """
    return _backprop(model, x, of, wrt, reduce, None)


def guided_backprop(model: nn.Module, x, of, wrt: LayerRef = "input", reduce: str = units.DEFAULT_REDUCE) -> torch.Tensor:
    """Guided backpropagation: the gradient with every ReLU passing back only positive gradients
    where its input was positive. Same arguments and result shape as :func:`gradient`."""
    return _backprop(model, x, of, wrt, reduce, "guided")


def deconvnet(model: nn.Module, x, of, wrt: LayerRef = "input", reduce: str = units.DEFAULT_REDUCE) -> torch.Tensor:
    """The deconvnet map (Zeiler & Fergus): every ReLU passes back the positive part of the
    gradient, whatever its forward input was. Same arguments and result shape as :func:`gradient`."""
    return _backprop(model, x, of, wrt, reduce, "deconvnet")


# the maps of a unit by the name the views use
METHODS = {"gradient": gradient, "guided": guided_backprop, "deconvnet": deconvnet}
_RULES = {"gradient": None, "guided": "guided", "deconvnet": "deconvnet"}


def element_maps(model: nn.Module, x, layer: LayerRef, elements, method: str = "gradient") -> torch.Tensor:
    """``method``'s map over the input of a different element of ``layer`` for each sample of the
    batch ``x``: ``elements[i]`` (indices into one sample's activation, ``(c, y, x)`` of a conv
    layer) for sample ``i``. The same maps as one call per sample with ``of=(layer, elements[i])``,
    in one backward pass. Raises ``ValueError`` for an element out of range, saying the layer's shape."""
    if method not in METHODS:
        raise ValueError(f"method is one of {sorted(METHODS)}, not {method!r}")
    batch = as_input(x, model)
    index = torch.as_tensor(elements, dtype=torch.long).reshape(len(batch), -1)
    if len(batch) == 0:
        return batch.detach().clone()
    first = tuple(int(i) for i in index[0])
    return _backprop(model, batch, (layer, first), "input", units.DEFAULT_REDUCE, _RULES[method], index)


def _pick_elements(name: str, activation: torch.Tensor, elements: torch.Tensor) -> torch.Tensor:
    """``activation[i][elements[i]]`` for every sample ``i``, each element checked against the layer's shape."""
    sample = tuple(activation.shape[1:])
    top = torch.tensor(sample, dtype=torch.long)
    if elements.shape[1] != len(sample) or bool((elements < 0).any()) or bool((elements >= top).any()):
        raise ValueError(
            f"each element of layer {units.layer_label(name)!r} has {len(sample)} indices, in 0..{tuple(n - 1 for n in sample)} "
            f"(one sample has shape {sample}); got {elements.tolist()}"
        )
    rows = torch.arange(len(activation), device=activation.device)
    return activation[(rows, *elements.to(activation.device).unbind(1))]


def _class_targets(target, output: torch.Tensor) -> torch.Tensor:
    if output.dim() != 2:
        raise ValueError(f"cross_entropy needs outputs of shape (N, classes); the model returned {tuple(output.shape)}")
    n, classes = output.shape
    values = torch.as_tensor(target, device=output.device)
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        if not (values.is_floating_point() and torch.equal(values, values.round())):
            raise TypeError(f"cross_entropy targets are class indices (integers), got dtype {values.dtype}")
    values = values.long()
    if values.dim() == 0:
        values = values.expand(n)
    if tuple(values.shape) != (n,):
        raise ValueError(f"cross_entropy targets: one class index per sample, shape ({n},); got {tuple(values.shape)}")
    bad = (values < 0) | (values >= classes)
    if bool(bad.any()):
        raise ValueError(
            f"target class {int(values[bad][0])} is out of range: the model has {classes} classes (0..{classes - 1})"
        )
    return values


def _regression_targets(target, output: torch.Tensor) -> torch.Tensor:
    values = torch.as_tensor(target, device=output.device, dtype=output.dtype)
    if values.dim() == 0:
        return values.expand_as(output)
    if values.numel() != output.numel():
        raise ValueError(
            f"mse targets must match the output of shape {tuple(output.shape)}; got shape {tuple(values.shape)}"
        )
    return values.reshape(output.shape)


_LOSSES = ("cross_entropy", "mse")


def loss_gradient(
    model: nn.Module,
    x,
    target,
    loss: Union[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = "cross_entropy",
) -> torch.Tensor:
    """d(loss)/d(input): how sensitive each sample's loss is to each input value.

    ``loss``: ``"cross_entropy"`` (``target`` = a class index, or one per sample; the output
    is read as logits), ``"mse"`` (``target`` shaped like the output, or a scalar), or a callable
    ``loss(output, target) -> scalar tensor``. The built-in losses sum over the batch, so each
    sample's map is the gradient of its own loss; a callable that averages scales the maps by 1/N.
    Returns a tensor shaped like ``x``.
    """
    _check_grad_possible()
    if not callable(loss) and loss not in _LOSSES:
        raise ValueError(f"loss must be one of {_LOSSES} or a callable(output, target), not {loss!r}")
    tensor = as_input(x, model)
    with borrowed(model), torch.enable_grad():
        start = tensor.clone().requires_grad_(True)
        output = model_output(model, start.clone())  # a copy, as in _backprop
        if loss == "cross_entropy":
            value = F.cross_entropy(output, _class_targets(target, output), reduction="sum")
        elif loss == "mse":
            value = F.mse_loss(output, _regression_targets(target, output), reduction="sum")
        else:
            value = loss(output, target)
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                raise TypeError(f"the loss callable must return a scalar tensor, not {type(value).__name__}")
            value = value.reshape(())
        if not value.requires_grad:
            return torch.zeros_like(start).detach()
        (grad,) = torch.autograd.grad(value, start, allow_unused=True)
    return (torch.zeros_like(start) if grad is None else grad).detach()
