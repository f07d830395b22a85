"""Find layers by name, run a model with hooks on them, and borrow a model without changing it.

Every function here leaves the model exactly as it found it: parameters, their
``requires_grad``, every module's train/eval mode, and its hooks, even when the
forward pass raises.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Iterable, Iterator, Sequence, Union

import numpy as np
import torch
from torch import nn

LayerRef = Union[str, nn.Module]

__all__ = [
    "LayerRef",
    "as_input",
    "borrowed",
    "capture",
    "check_unit",
    "first_tensor",
    "forward_with",
    "layer_names",
    "leaf_layers",
    "model_device",
    "model_dtype",
    "resolve_layer",
    "run_model",
]

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def layer_names(model: nn.Module) -> list[str]:
    """Dotted names of every submodule, in definition order (the model itself is left out)."""
    return [name for name, _ in model.named_modules() if name]


def leaf_layers(model: nn.Module) -> list[str]:
    """Dotted names of the modules that have no children."""
    return [name for name, m in model.named_modules() if name and not any(True for _ in m.children())]


def _list_names(names: Sequence[str], limit: int = 60) -> str:
    if not names:
        return "(the model has no submodules)"
    shown = ", ".join(repr(n) for n in names[:limit])
    more = len(names) - limit
    return shown + (f", ... and {more} more" if more > 0 else "")


def resolve_layer(model: nn.Module, layer: LayerRef) -> tuple[str, nn.Module]:
    """Turn a dotted name or a module object into ``(name, module)``.

    Raises ``ValueError`` listing the available names when the layer is not in the model.
    The model itself resolves to the name ``""``.
    """
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise ValueError(
            f"the module {type(layer).__name__} is not part of this model; "
            f"its layers are: {_list_names(layer_names(model))}"
        )
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer in modules:
            return layer, modules[layer]
        raise ValueError(f"unknown layer {layer!r}; the model's layers are: {_list_names(layer_names(model))}")
    raise TypeError(f"a layer is a dotted name (str) or an nn.Module of the model, not {type(layer).__name__}")


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's first floating parameter (float32 when it has none)."""
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def as_input(x, model: nn.Module, name: str = "x") -> torch.Tensor:
    """A new floating tensor on the model's device from a numpy array, list or tensor.

    Always a copy: a model that starts with an in-place op (``nn.ReLU(inplace=True)``) must not
    change the caller's data.
    """
    device, dtype = model_device(model), model_dtype(model)
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"{name} must be real-valued; got a {x.dtype} tensor")
        return x.detach().to(device=device, dtype=dtype, copy=True)
    try:
        array = np.asarray(x)
    except Exception as err:  # ragged lists and the like
        raise TypeError(f"{name} must be a tensor or an array of numbers, not {type(x).__name__}") from err
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must hold numbers; got an array of dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise TypeError(f"{name} must be real-valued; got an array of dtype {array.dtype}")
    return torch.tensor(array, device=device, dtype=dtype)  # copies (read-only arrays too)


def describe_input(model: nn.Module) -> str:
    """A short sentence on what the model's first layer expects, for error messages."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            return f"its first layer {name!r} is Linear and expects {module.in_features} features"
        if isinstance(module, nn.modules.conv._ConvNd):
            return f"its first layer {name!r} is {type(module).__name__} and expects {module.in_channels} channels"
    return "see the model's first layer for the shape it expects"


def run_model(model: nn.Module, x: torch.Tensor):
    """Call the model; a failure of the model on this input becomes a ValueError that names the shape."""
    try:
        return model(x)
    except torch.OutOfMemoryError:
        raise  # not a problem with the input's shape
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"the model could not run on an input of shape {tuple(x.shape)} ({describe_input(model)}): {first}"
        ) from None


def borrowed(model: nn.Module, *, eval: bool = True, freeze: bool = True) -> "_Borrow":
    """Use the model and give it back exactly as it was.

    Inside: eval mode (when ``eval``), parameters with ``requires_grad=False`` (when ``freeze``,
    so no gradient lands in ``.grad``). On exit, even after an exception: every module's mode,
    every parameter's ``requires_grad``, and every module's hook dictionaries are restored.
    Borrows of one model from different threads take turns; nested borrows on one thread nest.

    The restore completes even when a ``KeyboardInterrupt`` (Ctrl-C, or any exception a signal
    handler raises) lands in the middle of it; the interrupt is raised once the model is back.
    A model with uninitialized lazy modules (``nn.LazyLinear`` before its first call) is refused:
    running it would initialize, that is change, it.
    """
    return _Borrow(model, eval=eval, freeze=freeze)


_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _lock_of(model: nn.Module) -> threading.RLock:
    """One re-entrant lock per model: borrows from different threads take turns, nested ones nest."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def _check_initialized(model: nn.Module) -> None:
    lazy = [name for name, module in model.named_modules() if isinstance(module, nn.modules.lazy.LazyModuleMixin)
            and module.has_uninitialized_params()]
    if lazy:
        shown = ", ".join(f"{name or 'the model'} ({type(dict(model.named_modules())[name]).__name__})" for name in lazy[:5])
        raise ValueError(
            f"the model has uninitialized lazy modules: {shown}; call the model once on a real input "
            "(that sets their shapes) before looking inside it"
        )


class _Borrow:
    """The context manager of :func:`borrowed` (a class, not a generator: no frame between the
    block and the restore where an interrupt could skip it)."""

    __slots__ = ("model", "eval", "freeze", "_lock", "_modules", "_modes", "_params", "_grads", "_hooks", "_done",
                 "_grad_mode")

    def __init__(self, model: nn.Module, *, eval: bool, freeze: bool):
        self.model, self.eval, self.freeze = model, eval, freeze

    def __enter__(self) -> nn.Module:
        _check_initialized(self.model)
        lock = _lock_of(self.model)
        lock.acquire()
        self._lock = lock
        try:
            self._snapshot()
        except BaseException:
            lock.release()
            raise
        try:
            if self.eval:
                self.model.eval()
            if self.freeze:
                for p in self._params:
                    p.requires_grad_(False)
        except BaseException:  # an interrupt halfway: give everything back first
            self.__exit__(None, None, None)
            raise
        return self.model

    def _snapshot(self) -> None:
        modules = list(self.model.modules())
        self._modes = [m.training for m in modules]
        self._params = list(self.model.parameters())
        self._grads = [p.requires_grad for p in self._params]
        self._hooks = [{d: set(getattr(m, d, {}).keys()) for d in _HOOK_DICTS} for m in modules]
        self._modules = modules
        # the thread's grad mode too: a `with borrowed(m), torch.no_grad():` whose no_grad exit is
        # cut short by an interrupt must not leave gradients off for the caller
        self._grad_mode = torch.is_grad_enabled()

    def __exit__(self, *_exc) -> bool:
        pending = None
        self._done = 0
        while True:
            try:
                self._restore()
                break
            except Exception:
                raise
            except BaseException as interrupt:  # KeyboardInterrupt or a signal handler's exception
                if pending is None:
                    pending = interrupt
        self._lock.release()
        if pending is not None:
            raise pending
        return False

    def _restore(self) -> None:
        """Go on restoring from item ``self._done``: every item is idempotent, so the one an
        interrupt cut short is simply done again."""
        modes, grads, hooks = self._modes, self._grads, self._hooks
        n_modules, n_params = len(self._modules), len(self._params)
        while self._done < n_modules:
            self._modules[self._done].training = modes[self._done]
            self._done += 1
        while self._done < n_modules + n_params:
            i = self._done - n_modules
            self._params[i].requires_grad_(grads[i])
            self._done += 1
        while self._done < 2 * n_modules + n_params:
            i = self._done - n_modules - n_params
            module = self._modules[i]
            for d, keys in hooks[i].items():
                current = getattr(module, d, None)
                if current is not None:
                    for key in [k for k in current if k not in keys]:
                        del current[key]
            self._done += 1
        torch.set_grad_enabled(self._grad_mode)


def first_tensor(output):
    """The tensor a layer returned, or the first of a tuple/list of them (None otherwise)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def forward_with(
    model: nn.Module,
    x: torch.Tensor,
    layers: Iterable[LayerRef] | None,
    *,
    detach: bool = True,
    inputs: bool = False,
) -> tuple[object, dict[str, torch.Tensor]]:
    """Run ``model(x)`` with forward hooks on ``layers``; return ``(output, activations)``.

    With ``inputs=True`` each layer's (first) input is captured instead of its output.

    ``layers=None`` means every leaf module whose output is a tensor, in execution order.
    With ``detach=False`` the activations stay in the autograd graph (for gradients with
    respect to a layer). Hooks are removed before returning, whatever happens. The caller
    decides grad mode and model mode (see :func:`borrowed`).
    """
    if layers is None:
        modules = dict(model.named_modules())
        wanted = [(name, modules[name]) for name in leaf_layers(model)]
        explicit = False
    else:
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        wanted = [resolve_layer(model, layer) for layer in layers]
        explicit = True
    seen: dict[str, torch.Tensor] = {}
    skipped: dict[str, str] = {}

    def make_hook(name: str):
        def hook(_module, args, output):
            tensor = first_tensor(args if inputs else output)
            if tensor is None:
                skipped[name] = type(output).__name__
                return
            # clone: a later in-place op (nn.ReLU(inplace=True)) would change a detached view.
            seen[name] = tensor.detach().clone() if detach else tensor

        return hook

    handles = []
    try:
        for name, module in wanted:
            if name == "":
                continue  # the model itself: its output is the return value
            handles.append(module.register_forward_hook(make_hook(name)))
        output = run_model(model, x)
    finally:
        for handle in handles:
            handle.remove()
    if any(name == "" for name, _ in wanted):
        tensor = x if inputs else first_tensor(output)
        if tensor is not None:
            seen[""] = tensor.detach() if detach else tensor
    if not explicit:
        return output, seen
    result = {}
    for name, _ in wanted:
        if name in seen:
            result[name] = seen[name]
        elif name in skipped:
            raise ValueError(f"layer {name!r} returned a {skipped[name]}, not a tensor, so it cannot be shown")
        else:
            raise ValueError(f"layer {name!r} did not run when the model was called on this input")
    return output, result


def capture(
    model: nn.Module, x, layers: Iterable[LayerRef] | None = None, *, inputs: bool = False
) -> dict[str, torch.Tensor]:
    """Activations of ``layers`` (default: every leaf layer) for the input batch ``x``.

    Returns a dict from dotted layer name to the detached output tensor (the layer's input with
    ``inputs=True``), in execution order when ``layers`` is None, in the given order otherwise.
    The model runs in eval mode without gradients and is left exactly as it was.
    """
    tensor = as_input(x, model)
    with borrowed(model), torch.no_grad():
        _, activations = forward_with(model, tensor, layers, inputs=inputs)
    return activations


def check_unit(name: str, activation: torch.Tensor, unit) -> int:
    """Validate a unit index into a layer's output (a channel for conv layers); return it as int."""
    if activation.dim() < 2:
        raise ValueError(f"layer {name!r} has an output of shape {tuple(activation.shape)}: no unit axis")
    count = activation.shape[1]
    try:
        index = int(unit)
    except (TypeError, ValueError):
        raise TypeError(f"a unit is an integer index, not {unit!r}") from None
    if index != unit or not -count <= index < count:
        raise ValueError(f"unit {unit!r} is out of range for layer {name!r}: it has {count} units (0..{count - 1})")
    return index % count
