"""Borrow a model and give it back exactly as it was: every module's train/eval mode, every
parameter's ``requires_grad``, every module's hooks, and the thread's grad mode, even when the
work inside raises or a Ctrl-C lands in the middle of the give-back."""

from __future__ import annotations

import threading
from typing import Optional

import torch
from torch import nn

from . import turns, walk

__all__ = ["borrowed"]


def borrowed(model: nn.Module, *, eval: bool = True, freeze: bool = True, grad: Optional[bool] = None) -> "_Borrow":
    """Use the model and give it back exactly as it was.

    Inside: eval mode (when ``eval``), parameters with ``requires_grad=False`` (when ``freeze``,
    so no gradient lands in ``.grad``; on the main thread only, see below), gradients on or off
    for this thread as ``grad`` says (None: as they are). On exit, even after an exception: every module's mode,
    every parameter's ``requires_grad``, and every module's hook dictionaries are restored.
    Borrows of one model from different threads take turns; nested borrows on one thread nest.
    A borrow from another thread than the main one (a background job outside a kernel) leaves
    ``requires_grad`` as it is: the owner may be training the model meanwhile.

    The restore completes even when a ``KeyboardInterrupt`` (Ctrl-C, or any exception a signal
    handler raises) lands in the middle of it; the interrupt is raised once the model is back.
    A model with uninitialized lazy modules (``nn.LazyLinear`` before its first call) is refused:
    running it would initialize, that is change, it.
    """
    return _Borrow(model, eval=eval, freeze=freeze, grad=grad)


_MODULE_SETATTR = nn.Module.__setattr__


def _set_mode(module: nn.Module, training: bool) -> None:
    """``module.training = training`` without ``nn.Module.__setattr__``, which looks the name up
    among the module's parameters, buffers and children first (twenty times slower: on a model of a
    few hundred modules, ``model.eval()`` and the way back cost milliseconds a borrow); where the
    module's class makes ``training`` a property, its setter runs. A class with a ``__setattr__`` of
    its own gets the plain assignment (a TorchScript module keeps its mode in its C++ object)."""
    if type(module).__setattr__ is _MODULE_SETATTR:
        object.__setattr__(module, "training", training)
    else:
        module.training = training


def _hook_dicts(module: nn.Module) -> tuple:
    """The module's forward, forward-pre, backward and backward-pre hook dictionaries (None where
    it has none), read from its ``__dict__`` (where ``nn.Module`` keeps them; a plain dictionary lookup
    is cheaper than an attribute lookup through the module's classes)."""
    get = module.__dict__.get
    return get("_forward_hooks"), get("_forward_pre_hooks"), get("_backward_hooks"), get("_backward_pre_hooks")


def _hook_keys(module: nn.Module) -> Optional[tuple]:
    """The keys of each of the module's hook dictionaries (None for an empty one), or None when
    all are empty (most modules)."""
    dicts = _hook_dicts(module)
    if not (dicts[0] or dicts[1] or dicts[2] or dicts[3]):
        return None
    return tuple(set(h) if h else None for h in dicts)


def _shared_here() -> bool:
    """Borrows from threads other than the main one leave ``requires_grad`` alone: the owner may
    train the model meanwhile. Their work keeps gradients off the parameters by itself (no
    gradients, or ``torch.autograd.grad`` with respect to inputs only)."""
    return threading.current_thread() is not threading.main_thread()


def _check_initialized(model: nn.Module, modules: Optional[list] = None) -> None:
    """Refuse a model with uninitialized lazy modules (``modules``: its modules, when already listed)."""
    lazy_type = nn.modules.lazy.LazyModuleMixin
    if not any(isinstance(m, lazy_type) for m in (model.modules() if modules is None else modules)):
        return
    lazy = [name for name, module in model.named_modules() if isinstance(module, lazy_type)
            and module.has_uninitialized_params()]
    if lazy:
        shown = ", ".join(f"{name or 'the model'} ({type(dict(model.named_modules())[name]).__name__})" for name in lazy[:5])
        raise ValueError(
            f"the model has uninitialized lazy modules: {shown}; call the model once on a real input "
            "(that sets their shapes) before looking inside it"
        )


class Fingerprint:
    """What a pass through a model depends on besides its input: the modules, their hooks, and
    each parameter and buffer with its version (which every change in place moves on: an
    optimizer's step, ``load_state_dict``, a BatchNorm's statistics) and its data's place, dtype
    and strides (``model.half()``, ``.to(memory_format=...)`` and the like give a parameter new data
    without a new version). Two fingerprints are equal when none of these was replaced or changed
    in between. Not seen: a plain attribute set on a module, a method replaced, and a change
    through ``tensor.data`` in place, which autograd does not see either. A model with a tensor
    that keeps no version (made under ``torch.inference_mode``) is never equal to itself."""

    __slots__ = ("_objects", "_hooks", "_state", "_storages")

    def __init__(self, modules: list, hooks: list, tensors: list):
        self._objects = (*modules, *tensors)  # (held: an id cannot pass to a new object meanwhile)
        self._hooks = list(hooks)
        try:
            self._state = [(t._version, t.data_ptr(), t.dtype, t.device, t.stride()) for t in tensors]
            # (held: no new data can come to lie where these lie meanwhile)
            self._storages = [t.untyped_storage() for t in tensors]
        except RuntimeError:  # an inference tensor has no version; a sparse one no single data pointer
            self._state = self._storages = None

    def __eq__(self, other) -> bool:
        if not isinstance(other, Fingerprint):
            return NotImplemented
        return (
            self._state is not None
            and self._state == other._state
            and len(self._objects) == len(other._objects)
            and all(a is b for a, b in zip(self._objects, other._objects))
            and self._hooks == other._hooks
        )

    __hash__ = None


class _Borrow(turns.Hold):
    """The context manager of :func:`borrowed`: the model's lock (:class:`~nbvis.compute.turns.Hold`:
    taking and giving back are critical sections a Ctrl-C cannot cut short), then the borrow."""

    __slots__ = ("eval", "freeze", "grad", "named", "_modules", "_modes", "_params", "_grads", "_hooks", "_done",
                 "_grad_mode")

    def __init__(self, model: nn.Module, *, eval: bool, freeze: bool, grad: Optional[bool]):
        super().__init__(model)
        self.eval, self.freeze, self.grad = eval, freeze, grad

    def _before_lock(self) -> None:
        #: the model's ``(name, module)`` pairs as the borrow found them (for the borrower's own checks)
        self.named = walk.named_modules(self.model)
        self._modules = [module for _, module in self.named]
        _check_initialized(self.model, self._modules)

    def _use(self) -> None:
        self._snapshot(self._modules)
        if self.eval and any(self._modes):  # (the snapshot tells a model already in eval mode)
            self._all_in_eval()
        if self.freeze and not _shared_here():
            for p, grad in zip(self._params, self._grads):
                if grad:
                    p.requires_grad_(False)
        if self.grad is not None:
            torch.set_grad_enabled(self.grad)

    def in_eval(self) -> None:
        """Eval mode again, where the borrow puts the model in it, if a module left it meanwhile
        (a long borrow: the owner's thread may switch modes between its steps)."""
        if self.eval:
            self._all_in_eval()

    def _all_in_eval(self) -> None:
        """Every module in eval mode, as ``model.eval()`` leaves them (a module already in it is left alone)."""
        for module in self._modules:
            if module.training:
                _set_mode(module, False)

    @property
    def parameters(self) -> list:
        """The model's parameters as the borrow found them (once it holds the model)."""
        return self._params

    def fingerprint(self) -> "Fingerprint":
        """The model as the borrow found it (once it holds the model), for a borrower that keeps a
        pass made in one borrow for the next: see :class:`Fingerprint`."""
        buffers = [b for m in self._modules for b in m._buffers.values() if b is not None]
        return Fingerprint(self._modules, self._hooks, [*self._params, *buffers])

    def _used(self) -> bool:
        return hasattr(self, "_grad_mode")  # the snapshot was taken

    def _snapshot(self, modules: list) -> None:
        self._modes = [m.training for m in modules]
        self._params = params = walk.parameters(self.model, modules)
        self._grads = [p.requires_grad for p in params]
        self._hooks = [_hook_keys(m) for m in modules]
        self._modules = modules
        # the thread's grad mode too: a `with borrowed(m), torch.no_grad():` whose no_grad exit is
        # cut short by an interrupt must not leave gradients off for the caller
        self._grad_mode = torch.is_grad_enabled()

    def _give_back_model(self) -> None:
        pending = None
        self._done = 0
        while True:
            try:
                self._restore()
                break
            except Exception:
                raise
            except BaseException as interrupt:  # the exception of another signal's handler: finish first
                if pending is None:
                    pending = interrupt
        if pending is not None:
            raise pending

    def _restore(self) -> None:
        """Go on restoring from item ``self._done``: every item is idempotent, so the one an
        interrupt cut short is simply done again."""
        modes, grads, hooks = self._modes, self._grads, self._hooks
        n_modules, n_params = len(self._modules), len(self._params)
        while self._done < n_modules:
            module = self._modules[self._done]
            if module.training != modes[self._done]:
                _set_mode(module, modes[self._done])
            self._done += 1
        while self._done < n_modules + n_params:
            i = self._done - n_modules
            if self._params[i].requires_grad != grads[i]:
                self._params[i].requires_grad_(grads[i])
            self._done += 1
        while self._done < 2 * n_modules + n_params:
            i = self._done - n_modules - n_params
            kept = hooks[i]
            for j, current in enumerate(_hook_dicts(self._modules[i])):
                if current:
                    keys = None if kept is None else kept[j]
                    for key in [k for k in current if keys is None or k not in keys]:
                        del current[key]
            self._done += 1
        torch.set_grad_enabled(self._grad_mode)
