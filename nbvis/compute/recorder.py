"""Record the values of chosen layers during forward passes, with their feature axes (see
:mod:`nbvis.compute.units`): :func:`nbvis.compute.probe.forward_with` for one pass,
:class:`Recorder` for many through a model that does not change meanwhile.

Hooks are removed before returning, whatever happens; the caller decides grad mode and model mode
(see :func:`nbvis.compute.borrow.borrowed`).
"""

from __future__ import annotations

import threading
from typing import Iterable, Optional

import torch
from torch import nn

from . import units, walk
from .running import run_model, this_thread_only
from .units import LayerRef

__all__ = ["Activations", "Recorder"]


class Activations(dict):
    """``{layer name: tensor}`` from one forward pass, plus ``axes``: each layer's feature axis
    (counting the batch axis; see :mod:`nbvis.compute.units`), and ``leaf``: the tensor that
    replaced the ``leaf`` layer's value, when one was asked for."""

    def __init__(self, *args, axes=None, leaf=None, output_of=None, output_axis=None):
        super().__init__(*args)
        #: the feature axis of the model's own output (None when no pass needed to trace it: a
        #: pass that records only layers whose modules state their axes, through a model whose
        #: output has more than two axes)
        self.output_axis: Optional[int] = output_axis
        self.axes: dict[str, int] = dict(axes or {})
        self.leaf: Optional[torch.Tensor] = leaf
        #: the last recorded layer whose value is the model's output itself (None when none is)
        self.output_of: Optional[str] = output_of

    def axis(self, name: str) -> Optional[int]:
        return self.axes.get(name)


class _Axes:
    """Feature axes of the tensors of one forward pass, carried from module to module."""

    def __init__(self):
        self.by_id: dict[int, int] = {}
        self.keep: list[torch.Tensor] = []  # keeps ids unique while the pass runs
        self.history: list[tuple[tuple, int]] = []

    def note(self, tensor: torch.Tensor, axis: int) -> None:
        self.keep.append(tensor)
        self.by_id[id(tensor)] = axis
        self.history.append((tuple(tensor.shape), axis))

    def of(self, tensor: torch.Tensor) -> Optional[int]:
        axis = self.by_id.get(id(tensor))
        if axis is not None:
            return axis
        shape = tuple(tensor.shape)
        for seen, axis in reversed(self.history):  # produced by an operation outside a module
            if seen == shape:
                return axis
        return None

    def axis(self, tensor: torch.Tensor) -> int:
        found = self.of(tensor)
        return units.default_axis(tensor) if found is None else found

    def hook(self, module, args, output):
        out = units.resolve_output(output)
        if out is None or out.dim() == 0:
            return
        inp = units.resolve_output(args)
        inherited = self.of(inp) if isinstance(inp, torch.Tensor) and inp.dim() == out.dim() else None
        axis = units.feature_axis_of(module, out, inherited)
        self.note(out, units.default_axis(out) if axis is None else axis)


class Recorder:
    """:func:`nbvis.compute.probe.forward_with` prepared once for many passes:
    ``record = Recorder(model, layers)``, then ``output, acts = record(x)`` as often as needed.

    The layers are looked up once. Used as a context manager (``with Recorder(...) as record:``),
    its hooks stay on the model from the first pass until the block ends instead of being added
    and removed around every pass. With ``reuse_axes`` (the default), the feature axes are traced
    (a hook on every leaf layer) on the first pass of each input shape only and reused for later
    passes of that shape while each layer's value keeps its shape; a value whose shape changed is
    traced again on the next pass. Layers whose module states its own feature axis (a Linear, a
    convolution, a norm or a pooling layer: :func:`nbvis.compute.units.states_axis`) need no
    tracing at all, nor does the model's output unless it is recorded and has more than two axes
    (one pass runs the model once). Use it only while the model does not change (for example within one :func:`~nbvis.compute.borrow.borrowed` block).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Iterable[LayerRef] | None,
        *,
        detach: bool = True,
        inputs: bool = False,
        leaf: LayerRef | None = None,
        reuse_axes: bool = True,
    ):
        self.model, self.detach, self.inputs, self.reuse_axes = model, detach, inputs, reuse_axes
        self.layers = layers  # as given
        self.explicit = layers is not None
        modules = dict(model.named_modules())
        self._structure = list(modules.items())  # (name, module) pairs, for fits()
        if self.explicit:
            if isinstance(layers, (str, nn.Module)):
                layers = [layers]
            self.wanted = [units.parse_layer(model, layer, modules) for layer in layers]
        else:
            self.wanted = []
        self.leaf_layer = None if leaf is None else units.parse_layer(model, leaf)
        if self.leaf_layer is not None and self.leaf_layer.is_output:
            raise ValueError("the model's output cannot be replaced by a leaf: name an earlier layer")
        self._leaves: Optional[list] = None  # the leaf modules, looked up when a pass traces
        self.every = {id(m) for m in self.leaves} if not self.explicit else set()
        self.by_module: dict[int, list] = {}
        for layer in self.wanted + ([self.leaf_layer] if self.leaf_layer is not None else []):
            if not layer.is_output:
                self.by_module.setdefault(id(layer.module), []).append(layer)
        self.outputs = [layer for layer in self.wanted if layer.is_output]
        self.names = {id(module): name for name, module in modules.items()}
        by_id = {id(module): module for module in modules.values()}
        self.hooked = [by_id[key] for key in set(self.by_module) | self.every]
        # input shape -> ({layer name: (value shape, axis)}, (output shape, axis), {layer name: axis})
        # of a traced pass
        self._axes: dict[tuple, tuple[dict, tuple, dict]] = {}
        # the passes whose axes are known need no more than the values of the layers asked for
        self._quick = self.explicit and self.leaf_layer is None and not inputs
        # ... nor do passes whose layers' modules state their axes (the output's is read off its shape)
        self._untraced = self._quick and all(
            layer.is_output or (not layer.pick and units.states_axis(layer.module)) for layer in self.wanted
        )
        self._open = False
        # the thread of the pass running now: the hooks record only its passes (not another
        # thread's forward through the same modules meanwhile)
        self._running: Optional[int] = None
        # whether the quick passes give downstream modules copies of the values they record (only
        # once an in-place operation changed one; a recorded value is otherwise the model's own)
        self._copies = detach
        self._handles: list = []  # the recording hooks while they are on the model
        self._handles_kind = None  # which hook they call: "traced" (self._hook) or "quick"

    @property
    def leaves(self) -> list:
        """The model's leaf modules (every one gets a tracer's hook on a traced pass)."""
        if self._leaves is None:
            modules = dict(self._structure)
            self._leaves = [modules[name] for name in units.leaf_layers(self.model)]
        return self._leaves

    def fits(self, model: nn.Module, named: Optional[list] = None) -> bool:
        """Whether this recorder still describes ``model``: the same module objects under the same
        names (a module added, removed, renamed or replaced since it was made says no). ``named``:
        the model's ``(name, module)`` pairs, when already listed."""
        if model is not self.model:
            return False
        found, structure = walk.named_modules(model) if named is None else named, self._structure
        return len(found) == len(structure) and all(
            module is kept and name == kept_name for (name, module), (kept_name, kept) in zip(found, structure)
        )

    def __enter__(self) -> "Recorder":
        self._open = True
        return self

    def __exit__(self, *exc) -> bool:
        self._open = False
        self._unhook()
        return False

    def _unhook(self) -> None:
        handles, self._handles, self._handles_kind = self._handles, [], None
        for handle in handles:
            handle.remove()

    def __call__(self, x: torch.Tensor) -> tuple[object, Activations]:
        known = self._axes.get(x.shape) if self.reuse_axes else None
        if self._quick and (known is not None or self._untraced):
            found = self._quick_pass(x, known)
            if found is not None:
                return found
            known = None  # an output with more than two axes: only a traced pass tells its axis
        tracer = self._tracer = _Axes() if known is None else None
        self._known = known
        self._seen: dict[str, torch.Tensor] = {}
        self._found_axes: dict[str, int] = {}
        self._shapes: dict[str, tuple] = {}
        self._skipped: dict[str, str] = {}
        self._calls: dict[int, int] = {}
        self._found_leaf: list[torch.Tensor] = []
        self._produced: dict[int, tuple[str, int]] = {}
        self._keep: list[torch.Tensor] = []  # keeps the ids in _produced unique while the pass runs
        self._stale = False
        return self._finish(x, self._run(x, "traced", tracer))

    def _run(self, x: torch.Tensor, kind: str, tracer: Optional["_Axes"] = None):
        """The model's output on ``x``, with the recording hooks of ``kind`` on it (``"traced"``:
        :meth:`_hook`, ``"quick"``: :meth:`_quick_hook`) and the ``tracer``'s hooks before them."""
        tracing = []
        try:
            if tracer is not None or self._handles_kind != kind:
                # the tracer's hooks first, then the recording ones (these see the axes noted)
                self._unhook()
                if tracer is not None:
                    tracing = [module.register_forward_hook(this_thread_only(tracer.hook)) for module in self.leaves]
                    tracer.note(x, units.default_axis(x)) if x.dim() > 0 else None
                hook = self._hook if kind == "traced" else self._quick_hook
                self._handles = [module.register_forward_hook(hook) for module in self.hooked]
                self._handles_kind = kind
            self._running = threading.get_ident()
            return run_model(self.model, x)
        finally:
            self._running = None
            for handle in tracing:
                handle.remove()
            if not self._open:
                self._unhook()

    def _quick_pass(self, x: torch.Tensor, known: Optional[tuple]):
        """A pass that records the layers' values only (the same result as a traced pass): with
        ``known`` axes, or (``known`` None) axes the modules state. None when a recorded output's
        axis needs a traced pass after all (it has more than two axes)."""
        self._seen, self._calls, self._skipped, self._produced = {}, {}, {}, {}
        self._keep = []
        output = self._run(x, "quick")
        seen, produced = self._seen, self._produced
        self._keep, self._produced, self._seen = [], {}, {}
        if not self._copies and any(produced[id(v)][1] != v._version for v in seen.values()):
            # a later operation changed a recorded value in place: from now on downstream gets copies
            self._copies = True
            return self._quick_pass(x, known)
        final = units.resolve_output(output)
        for layer in self.outputs:
            value = units.resolve_output(output, layer.pick)
            if value is not None:
                seen[layer.name] = value.detach() if self.detach else value
        found = None if final is None else produced.get(id(final))
        output_of = found[0] if found is not None and found[1] == final._version else None
        if known is None:
            return self._untraced_result(x, output, final, seen, output_of)
        entries, (out_shape, output_axis), axes = known
        # a value whose shape changed gets the default axis, as in a traced pass's fallback, and
        # the next pass of this input shape traces again
        stale = final is not None and final.dim() > 0 and out_shape != final.shape
        if stale:
            output_axis = units.default_axis(final)
        result = Activations(axes=axes, leaf=None, output_of=output_of, output_axis=output_axis)
        for layer in self.wanted:
            value = seen.get(layer.name)
            if value is None:
                raise ValueError(_missing(layer, self._skipped, self._calls, "layer"))
            if entries[layer.name][0] != value.shape:
                result.axes[layer.name] = units.default_axis(value)
                stale = True
            result[layer.name] = value
        if stale:
            self._axes.pop(x.shape, None)
        return output, result

    def _untraced_result(self, x, output, final, seen: dict, output_of) -> Optional[tuple]:
        """The activations of a quick pass with no known axes: each layer's module states its axis;
        an output of at most two axes has the default one (what tracing gives such a tensor)."""
        def outer_axis(value):
            return units.default_axis(value) if value.dim() <= 2 else None

        output_axis = None if final is None or final.dim() == 0 else outer_axis(final)
        if final is not None and final.dim() > 0 and output_axis is None and self.outputs:
            return None  # the output is recorded: its axis takes a traced pass (it is not needed otherwise)
        result = Activations(leaf=None, output_of=output_of, output_axis=output_axis)
        axes = result.axes
        for layer in self.wanted:
            value = seen.get(layer.name)
            if value is None:
                if layer.is_output:
                    self._skipped[layer.name] = type(output).__name__
                raise ValueError(_missing(layer, self._skipped, self._calls, "layer"))
            axis = outer_axis(value) if layer.is_output else units.feature_axis_of(layer.module, value, None)
            if axis is None:
                return None
            axes[layer.name] = axis
            result[layer.name] = value
        if self.reuse_axes:
            entries = {name: (tuple(result[name].shape), axis) for name, axis in axes.items()}
            out_entry = (None if final is None else tuple(final.shape), output_axis)
            self._axes[tuple(x.shape)] = (entries, out_entry, dict(axes))
        return output, result

    def _quick_hook(self, module, args, output):
        if self._running != threading.get_ident():
            return None
        key = id(module)
        call = self._calls[key] = self._calls.get(key, 0) + 1
        changed = output
        for layer in self.by_module[key]:
            if layer.call != call:
                continue
            value = output if not layer.pick and isinstance(output, torch.Tensor) else units.resolve_output(output, layer.pick)
            if value is None:
                self._skipped.setdefault(layer.name, type(output).__name__)
                continue
            self._keep.append(value)
            self._produced[id(value)] = (layer.name, value._version)
            if self.detach:
                self._seen[layer.name] = value.detach().clone()
                continue
            self._seen[layer.name] = value
            if not self._copies:  # (a value changed in place downstream makes the pass run again with copies)
                continue
            copy = value.clone()  # downstream in-place operations act on this copy
            self._produced[id(copy)] = (layer.name, copy._version)
            changed = units.replace_output(changed, layer.pick, copy)
        return None if changed is output else changed

    def _axis(self, name: str, value: torch.Tensor) -> int:
        if self._tracer is not None:
            return self._tracer.axis(value)
        entry = self._known[0].get(name)
        if entry is not None and entry[0] == tuple(value.shape):
            return entry[1]
        self._stale = True  # traced again on the next pass of this input shape
        return units.default_axis(value)

    def _record(self, name: str, value: torch.Tensor) -> torch.Tensor:
        axis = self._found_axes[name] = self._axis(name, value)
        self._shapes[name] = tuple(value.shape)
        self._keep.append(value)
        self._produced[id(value)] = (name, value._version)
        if self.detach:
            self._seen[name] = value.detach().clone()
            return value
        self._seen[name] = value
        copy = value.clone()  # downstream in-place operations act on this copy
        if self._tracer is not None:
            self._tracer.note(copy, axis)
        self._produced[id(copy)] = (name, copy._version)
        return copy

    def _hook(self, module, args, output):
        if self._running != threading.get_ident():
            return None
        key = id(module)
        call = self._calls[key] = self._calls.get(key, 0) + 1
        source = args if self.inputs else output
        changed = output
        targets = [layer for layer in self.by_module.get(key, ()) if layer.call == call]
        if key in self.every:
            name = self.names[key]
            targets.append(units.Layer(name + (f"#{call}" if call > 1 else ""), name, module, call))
        for layer in targets:
            value = units.resolve_output(source, layer.pick)
            if value is None:
                self._skipped.setdefault(layer.name, type(source).__name__)
                continue
            if layer is self.leaf_layer:
                new = value.detach().requires_grad_(True)
                self._found_leaf.append(new)
                copy = new.clone()
                if self._tracer is not None:
                    self._tracer.note(copy, self._tracer.axis(value))
                changed = units.replace_output(changed, layer.pick, copy)
                continue
            copy = self._record(layer.name, value)
            if copy is not value and not self.inputs:
                changed = units.replace_output(changed, layer.pick, copy)
        return None if changed is output else changed

    def _finish(self, x: torch.Tensor, output) -> tuple[object, Activations]:
        """The activations of the pass that just ran (and its axes remembered)."""
        seen, axes, skipped, calls = self._seen, self._found_axes, self._skipped, self._calls
        final = units.resolve_output(output)
        tracer, self._tracer = self._tracer, None
        for layer in self.outputs:
            value = x if self.inputs else units.resolve_output(output, layer.pick)
            if value is not None:
                axes[layer.name] = self._axis(layer.name, value) if tracer is None else tracer.axis(value)
                self._shapes[layer.name] = tuple(value.shape)
                seen[layer.name] = value.detach() if self.detach else value
            else:
                skipped[layer.name] = type(output).__name__
        leaf_value = self._found_leaf[0] if self._found_leaf else None
        if self.leaf_layer is not None and leaf_value is None:
            raise ValueError(_missing(self.leaf_layer, skipped, calls, "wrt layer"))
        found = None if final is None else self._produced.get(id(final))
        output_of = found[0] if found is not None and found[1] == final._version else None
        known = self._known
        if final is None or final.dim() == 0:
            output_axis = None
        elif tracer is not None:
            output_axis = tracer.axis(final)
        elif known[1][0] == tuple(final.shape):
            output_axis = known[1][1]
        else:
            output_axis = units.default_axis(final)
            self._stale = True
        if self.reuse_axes:
            if tracer is not None:
                entries = {name: (self._shapes[name], axis) for name, axis in axes.items()}
                out_entry = (None if final is None else tuple(final.shape), output_axis)
                self._axes[tuple(x.shape)] = (entries, out_entry, dict(axes))
            elif self._stale:
                self._axes.pop(tuple(x.shape), None)
        self._keep, self._produced, self._seen = [], {}, {}
        if not self.explicit:
            return output, Activations(seen, axes=axes, leaf=leaf_value, output_of=output_of, output_axis=output_axis)
        result = Activations(axes=axes, leaf=leaf_value, output_of=output_of, output_axis=output_axis)
        for layer in self.wanted:
            if layer.name in seen:
                result[layer.name] = seen[layer.name]
            else:
                raise ValueError(_missing(layer, skipped, calls, "layer"))
        return output, result


def _missing(layer, skipped: dict, calls: dict, what: str) -> str:
    label = units.layer_label(layer.name)
    if layer.name in skipped:
        return f"{what} {label!r} returned a {skipped[layer.name]} with no tensor in it, so it cannot be read"
    count = calls.get(id(layer.module), 0)
    if count and layer.call > count:
        return f"{what} {label!r} is call {layer.call} of {layer.path!r}, which ran {count} time(s) on this input"
    return f"{what} {label!r} did not run when the model was called on this input"
