"""Ask a unit why: gradients of any unit with respect to the input or an earlier layer.

* :func:`gradient` -- d(unit)/d(input), or d(unit)/d(activation of an earlier layer).
* :func:`loss_gradient` -- d(loss)/d(input): how sensitive the error is to each input value.
* :func:`guided_backprop` and :func:`deconvnet` -- the same backward pass with the ReLU rule
  changed (Springenberg et al. 2015; Zeiler & Fergus 2014).

What a unit is. ``of=(layer, unit)`` names a layer (a dotted name from ``model.named_modules()``,
the module itself, or ``""``/``None`` for the model's output) and a unit of its output:

* an ``int`` is an index along axis 1: a dense unit, or a conv channel. For a channel with
  spatial positions the objective is the **sum** of the channel over all positions
  (``reduce="mean"`` takes the mean instead, which only scales the map).
* a tuple ``(channel, i, j, ...)`` is one position of one channel.

Every function takes a batch ``x`` (first axis = samples). Each sample's unit depends only on
that sample (the model runs in eval mode), so the result holds one map per sample, with the
shape of ``x`` (or of the ``wrt`` layer's activation). Results are detached tensors on the
model's device. The model is borrowed: its parameters, ``requires_grad``, modes and hooks are
unchanged afterwards and no ``.grad`` is written.

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

from .probe import LayerRef, as_input, borrowed, check_unit, first_tensor, resolve_layer, run_model

__all__ = ["deconvnet", "gradient", "guided_backprop", "loss_gradient", "select_unit"]

Unit = Union[int, tuple]
_REDUCTIONS = ("sum", "mean")


def _parse_of(of) -> tuple[LayerRef, Unit]:
    if not isinstance(of, (tuple, list)) or len(of) != 2:
        raise TypeError(f"`of` is a pair (layer, unit), e.g. ('fc2', 3); got {of!r}")
    layer, unit = of
    return ("" if layer is None else layer), unit


def select_unit(name: str, activation: torch.Tensor, unit: Unit, reduce: str = "sum") -> torch.Tensor:
    """One value per sample: the unit ``unit`` of a layer's ``activation`` (shape ``(N, C, ...)``).

    ``unit`` is a channel index (reduced over positions with ``reduce``) or a tuple
    ``(channel, *position)``. Raises ``ValueError`` for units or positions out of range.
    """
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce must be one of {_REDUCTIONS}, not {reduce!r}")
    if isinstance(unit, (tuple, list)):
        if not unit:
            raise ValueError("a unit tuple starts with the channel: (channel, *position)")
        channel = check_unit(name, activation, unit[0])
        spatial = tuple(activation.shape[2:])
        position = tuple(unit[1:])
        if len(position) != len(spatial):
            raise ValueError(
                f"layer {name!r} has positions of shape {spatial}: a unit there is (channel, then "
                f"{len(spatial)} position indices); got {tuple(unit)!r}"
            )
        index = []
        for axis, (p, size) in enumerate(zip(position, spatial)):
            try:
                p_int = int(p)
            except (TypeError, ValueError):
                raise TypeError(f"a position index is an integer, not {p!r}") from None
            if p_int != p or not 0 <= p_int < size:
                raise ValueError(
                    f"position {tuple(position)!r} is out of range for layer {name!r}, whose positions "
                    f"have shape {spatial} (axis {axis}: 0..{size - 1})"
                )
            index.append(p_int)
        return activation[(slice(None), channel, *index)]
    channel = check_unit(name, activation, unit)
    values = activation[:, channel]
    if values.dim() == 1:
        return values
    values = values.flatten(1)
    return values.sum(1) if reduce == "sum" else values.mean(1)


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


@contextlib.contextmanager
def _traced(model: nn.Module, of_module: nn.Module | None, wrt_module: nn.Module | None):
    """Hooks for one backward question: record ``of_module``'s output, and replace
    ``wrt_module``'s output by a fresh leaf so that gradients stop there.

    The recorded output is handed downstream as a copy, so that in-place operations after the
    layer (``ReLU(inplace=True)``) cannot change it. Only the first call of each module counts.
    Yields a dict that gets ``"of"`` and ``"wrt"``; hooks are removed on exit.
    """
    seen: dict[str, torch.Tensor] = {}
    handles = []

    def record(_module, _inputs, output):
        if "of" in seen or not isinstance(output, torch.Tensor):
            return None
        seen["of"] = output
        return output.clone()

    def substitute(_module, _inputs, output):
        if "wrt" in seen or not isinstance(output, torch.Tensor):
            return None
        leaf = output.detach().requires_grad_(True)
        seen["wrt"] = leaf
        return leaf.clone()

    try:
        if of_module is not None:
            handles.append(of_module.register_forward_hook(record))
        if wrt_module is not None:
            handles.append(wrt_module.register_forward_hook(substitute))
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _output_tensor(output) -> torch.Tensor:
    tensor = first_tensor(output)
    if tensor is None:
        raise ValueError(f"the model returned a {type(output).__name__}, not a tensor")
    return tensor


def _check_grad_possible() -> None:
    if torch.is_inference_mode_enabled():
        raise RuntimeError("gradients cannot be computed inside torch.inference_mode(); call this outside it")


def _backprop(model: nn.Module, x, of, wrt, reduce: str, rule: str | None) -> torch.Tensor:
    _check_grad_possible()
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce must be one of {_REDUCTIONS}, not {reduce!r}")
    layer, unit = _parse_of(of)
    of_name, of_module = resolve_layer(model, layer)
    wrt_name = wrt_module = None
    if not (isinstance(wrt, str) and wrt == "input"):
        if wrt is None:
            raise TypeError("wrt is 'input' or a layer (a dotted name or a module of the model), not None")
        wrt_name, wrt_module = resolve_layer(model, wrt)
        if wrt_name == "":
            raise ValueError("wrt must be 'input' or a layer that runs before the unit's layer, not the whole model")
        if wrt_name == of_name:
            raise ValueError(f"wrt layer {wrt_name!r} is the unit's own layer; it must be an earlier layer or 'input'")
    tensor = as_input(x, model)
    label = of_name or "the model output"
    with borrowed(model), torch.enable_grad():
        start = tensor.clone().requires_grad_(wrt_module is None)
        mode = _ReluRule(rule) if rule else contextlib.nullcontext()
        with _traced(model, of_module if of_name else None, wrt_module) as seen, mode:
            output = run_model(model, start.clone())  # a copy: a first in-place layer cannot touch the leaf
        if of_name:
            if "of" not in seen:
                raise ValueError(f"layer {of_name!r} did not run (or returned no tensor) when the model was called")
            activation = seen["of"]
        else:
            activation = _output_tensor(output)
        if rule and mode.calls == 0:
            raise ValueError(
                f"{'guided backpropagation' if rule == 'guided' else 'the deconvnet map'} changes the backward "
                "rule of ReLUs, and no ReLU ran in this model (nn.ReLU, F.relu or torch.relu); "
                "use nbvis.gradient for models with other activations"
            )
        if wrt_module is not None and "wrt" not in seen:
            raise ValueError(f"wrt layer {wrt_name!r} did not run (or returned no tensor) when the model was called")
        target = start if wrt_module is None else seen["wrt"]
        objective = select_unit(label, activation, unit, reduce)
        grad = None
        if objective.requires_grad:
            (grad,) = torch.autograd.grad(objective.sum(), target, allow_unused=True)
        if grad is None:
            if wrt_module is None:
                return torch.zeros_like(target).detach()
            raise ValueError(
                f"unit {unit!r} of {label!r} does not depend on layer {wrt_name!r}: "
                "wrt must be a layer that runs before it and feeds into it"
            )
    return grad.detach()


def gradient(model: nn.Module, x, of, wrt: LayerRef = "input", reduce: str = "sum") -> torch.Tensor:
    """d(unit)/d(input) or d(unit)/d(activation of the earlier layer ``wrt``), per sample.

    ``of=(layer, unit)``: see the module docstring (a channel is summed over its positions,
    or averaged with ``reduce="mean"``; ``(channel, i, j)`` picks one position).
    ``wrt="input"`` gives a tensor shaped like ``x``; a layer name gives one shaped like that
    layer's activation. ``wrt`` must run before ``of`` and feed into it, else ``ValueError``.
    """
    return _backprop(model, x, of, wrt, reduce, None)


def guided_backprop(model: nn.Module, x, of, wrt: LayerRef = "input", reduce: str = "sum") -> torch.Tensor:
    """Guided backpropagation: the gradient with every ReLU passing back only positive gradients
    where its input was positive. Same arguments and result shape as :func:`gradient`."""
    return _backprop(model, x, of, wrt, reduce, "guided")


def deconvnet(model: nn.Module, x, of, wrt: LayerRef = "input", reduce: str = "sum") -> torch.Tensor:
    """The deconvnet map (Zeiler & Fergus): every ReLU passes back the positive part of the
    gradient, whatever its forward input was. Same arguments and result shape as :func:`gradient`."""
    return _backprop(model, x, of, wrt, reduce, "deconvnet")


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
        output = _output_tensor(run_model(model, start.clone()))  # a copy, as in _backprop
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
