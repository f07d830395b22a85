"""Feature visualizations of units and directions, computed once in the background and shared.

A :class:`FeatureCache` belongs to one model and one set of optimization settings. Views ask it for
the preferred input of a ``(layer, unit)`` or of a direction in a layer's channel space (a neuron
group's channel factor); :meth:`FeatureCache.work` computes what was asked, several icons of one
layer in one batched :class:`~nbvis.compute.optimize.OptimizationRun`, and yields an
:class:`IconUpdate` every few steps so that views can show the icons forming. Finished icons are
kept (in memory, and on disk when ``directory`` is given) and returned at once to every later
request. A change of the model's parameters or buffers (training, ``load_state_dict``) drops them.

:func:`feature_cache` returns the one cache of a model for given settings, so that every view of
that model shares it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import threading
import weakref
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..optimize import OptimizationRun, objective, resolve_regularizers
from ..optimize.run import STREAM_SECONDS
from ..probe import LayerRef, borrowed, forward_with, leaf_layers, model_device, model_dtype, resolve_layer
from ..running import this_thread_only
from ..structure import RISING

__all__ = ["FeatureCache", "IconUpdate", "direction_objective", "feature_cache"]

# Layers that never lower a value when their input rises (structure.RISING): a non-negative direction
# of their output is optimized through the layer that feeds them, whose gradient does not vanish
# where they are flat (a ReLU that is off, a saturated sigmoid).


def direction_objective(layer: str, directions) -> "objective":
    """An objective: the activation of ``layer`` dotted with a direction over its channels, averaged
    over positions (Lucid's ``direction`` objective). ``directions``: ``(C,)`` for every start, or
    ``(starts, C)``, one per start. A one-hot direction is the channel's mean, as ``nbvis.unit``."""
    dirs = torch.as_tensor(np.asarray(directions, dtype=np.float32))
    if dirs.dim() not in (1, 2):
        raise ValueError(f"a direction is (channels,) or (starts, channels), not shape {tuple(dirs.shape)}")

    def value(acts):
        act = acts[layer]
        d = dirs.to(device=act.device, dtype=act.dtype)
        d = d.expand(act.shape[0], -1) if d.dim() == 1 else d
        if d.shape != act.shape[:2]:
            raise ValueError(f"layer {layer!r} gives {tuple(act.shape)}; the directions are {tuple(d.shape)}")
        projected = (act * d.reshape(*d.shape, *([1] * (act.dim() - 2)))).sum(dim=1)
        return projected.reshape(act.shape[0], -1).mean(dim=1)

    return objective(value, layers=[layer], description=f"direction of {layer or 'output'}")


@dataclasses.dataclass
class IconUpdate:
    """Icons that improved: their ``keys``, ``images`` (uint8 ``(n, H, W, C)``), the optimization
    ``step`` reached and whether they are ``done``."""

    keys: list
    images: np.ndarray
    step: int
    done: bool


@dataclasses.dataclass
class _Entry:
    layer: str
    vector: np.ndarray
    state: str = "pending"  # pending | running | done | error
    image: Optional[np.ndarray] = None
    step: int = 0
    error: str = ""


def _fingerprint(model: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is written (in place or replaced)."""
    return tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in itertools.chain(model.parameters(), model.buffers()))


def _content_hash(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class FeatureCache:
    """Preferred inputs of units and directions of one model, each computed once.

    ``input_shape``: one model input without the batch axis. ``steps``, ``regularizers``, ``lr``,
    ``seed``, ``value_range``, ``parametrization``: the optimization (see :func:`nbvis.maximize`).
    ``every``: yield an update every this many steps. ``batch_size``: icons of one layer optimized
    together. ``directory``: keep finished icons on disk there (``True``: under the nbvis cache
    directory, ``$NBVIS_CACHE``); None keeps them in memory only. ``preactivation``: optimize a
    non-negative direction of a ReLU-like layer through the layer that feeds it.
    """

    def __init__(
        self,
        model: nn.Module,
        input_shape: Sequence[int],
        *,
        steps: int = 256,
        regularizers="yosinski2015",
        lr: float = 0.05,
        seed: int = 0,
        value_range=None,
        parametrization: str = "pixel",
        every: int = 8,
        batch_size: int = 32,
        directory: Union[None, bool, str, os.PathLike] = None,
        preactivation: bool = True,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        for label, value in (("steps", steps), ("every", every), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive integer, not {value!r}")
        self.model = model
        self.input_shape = tuple(int(s) for s in input_shape)
        self.steps, self.every, self.batch_size = steps, every, batch_size
        self.value_range = None if value_range is None else (float(value_range[0]), float(value_range[1]))
        self._options = dict(regularizers=resolve_regularizers(regularizers), lr=lr, seed=seed,
                             value_range=self.value_range, parametrization=parametrization)
        self.preactivation = bool(preactivation)
        if directory is True:
            from ...demo import cache_dir

            directory = cache_dir() / "features"
        self.directory = None if directory is None or directory is False else Path(directory)
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._queue: list[str] = []
        self._channels: dict[str, int] = {}
        self._sources: dict[str, str] = {}
        self._weights = _fingerprint(model)
        self._content: Optional[str] = None
        self.computed = 0  # icons optimized to the end by this cache (not loaded from disk)
        self.generation = 0  # rises each time a change of the weights drops the icons

    # ----- keys and requests ----------------------------------------------------------------

    def settings(self) -> dict:
        """The optimization settings, as they name the disk folder."""
        regs = self._options["regularizers"]
        return {"input_shape": list(self.input_shape), "steps": self.steps, "lr": self._options["lr"],
                "seed": self._options["seed"], "value_range": self.value_range,
                "parametrization": self._options["parametrization"], "preactivation": self.preactivation,
                "regularizers": regs.as_dict() if hasattr(regs, "as_dict") else str(regs), "torch": torch.__version__}

    def channels(self, layer: LayerRef) -> int:
        """How many channels (units along axis 1) ``layer`` has."""
        name, _ = resolve_layer(self.model, layer)
        if name not in self._channels:
            probe = torch.zeros((1, *self.input_shape), device=model_device(self.model), dtype=model_dtype(self.model))
            with borrowed(self.model), torch.no_grad():
                _, acts = forward_with(self.model, probe, [name])
            if acts[name].dim() < 2:
                raise ValueError(f"layer {name!r} has an output of shape {tuple(acts[name].shape)}: no unit axis")
            self._channels[name] = int(acts[name].shape[1])
        return self._channels[name]

    def _vector(self, name: str, item) -> np.ndarray:
        count = self.channels(name)
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not 0 <= item < count:
                raise ValueError(f"unit {item} is out of range for layer {name!r}: it has {count} units (0..{count - 1})")
            vector = np.zeros(count, np.float32)
            vector[int(item)] = 1.0
            return vector
        vector = np.asarray(item, dtype=np.float32).reshape(-1)
        if vector.shape != (count,) or not np.isfinite(vector).all():
            raise ValueError(f"a direction of layer {name!r} is {count} finite numbers (one per channel); got {np.shape(item)}")
        return vector

    def key(self, layer: LayerRef, item) -> str:
        """The key of a unit (an int) or a direction (one number per channel) of ``layer``."""
        name, _ = resolve_layer(self.model, layer)
        vector = self._vector(name, item)
        return f"{name}|" + hashlib.sha1(np.round(vector, 6).tobytes()).hexdigest()[:16]

    def request(self, layer: LayerRef, items, *, first: bool = False) -> list[str]:
        """Ask for the icons of ``items`` (units and/or directions) of ``layer``; returns their keys.

        Icons already known (in memory or on disk) are ready at once; the others wait for
        :meth:`work`. ``first``: put these ahead of icons asked for earlier."""
        self.check_weights()
        name, _ = resolve_layer(self.model, layer)
        keys = []
        with self._lock:
            for item in items:
                vector = self._vector(name, item)
                key = self.key(name, vector)
                keys.append(key)
                entry = self._entries.get(key)
                if entry is None:
                    entry = self._entries[key] = _Entry(name, vector)
                    self._load(key, entry)
                if entry.state in ("pending", "error") and key not in self._queue:
                    entry.state = "pending"
                    self._queue.append(key)
            if first:
                waiting = [k for k in keys if k in self._queue]
                self._queue = waiting + [k for k in self._queue if k not in waiting]
        return keys

    def state(self, key: str) -> str:
        entry = self._entries.get(key)
        return "unknown" if entry is None else entry.state

    def image(self, key: str) -> Optional[np.ndarray]:
        """The icon's latest image (uint8 ``(H, W, C)``; forming while it is running), or None."""
        entry = self._entries.get(key)
        return None if entry is None else entry.image

    def progress(self, key: str) -> int:
        entry = self._entries.get(key)
        return 0 if entry is None else entry.step

    @property
    def pending(self) -> bool:
        """Whether some icon asked for is not finished."""
        self.check_weights()
        return bool(self._queue)

    # ----- weights ----------------------------------------------------------------------------

    def check_weights(self) -> bool:
        """Drop every icon if the model's parameters or buffers changed; True when they did."""
        now = _fingerprint(self.model)
        if now == self._weights:
            return False
        with self._lock:
            self._weights = now
            self._content = None
            self.generation += 1
            for key, entry in self._entries.items():
                entry.state, entry.image, entry.step, entry.error = "pending", None, 0, ""
            self._queue = list(self._entries)
        return True

    # ----- disk -------------------------------------------------------------------------------

    def _folder(self) -> Optional[Path]:
        if self.directory is None:
            return None
        if self._content is None:
            self._content = _content_hash(self.model)
        settings = hashlib.sha1(json.dumps(self.settings(), sort_keys=True, default=str).encode()).hexdigest()[:12]
        return self.directory / f"{self._content}-{settings}"

    def _path(self, key: str) -> Optional[Path]:
        folder = self._folder()
        return None if folder is None else folder / (hashlib.sha1(key.encode()).hexdigest()[:20] + ".npy")

    def _load(self, key: str, entry: _Entry) -> None:
        path = self._path(key)
        if path is None or not path.exists():
            return
        try:
            image = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a damaged file: compute it again
            return
        entry.image, entry.state, entry.step = image, "done", self.steps

    def _save(self, key: str, image: np.ndarray) -> None:
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npy")
        np.save(tmp, image, allow_pickle=False)
        os.replace(tmp, path)

    # ----- computing --------------------------------------------------------------------------

    def _source(self, name: str) -> str:
        """The layer whose output feeds the rising layer ``name`` (through any chain of rising layers:
        ``conv2`` for ``pool2`` after ``relu2``); ``name`` itself otherwise."""
        if name in self._sources:
            return self._sources[name]
        modules = dict(self.model.named_modules())
        source = name
        if self.preactivation and isinstance(modules.get(name), RISING):
            produced: dict[int, str] = {}
            fed_by: dict[str, Optional[str]] = {}

            def record(layer):
                def hook(_module, args, output):
                    if layer not in fed_by and args and isinstance(args[0], torch.Tensor):
                        fed_by[layer] = produced.get(id(args[0]))
                    if isinstance(output, torch.Tensor):
                        produced[id(output)] = layer  # an in-place layer returns its input: it takes it over
                return hook

            handles = [modules[n].register_forward_hook(this_thread_only(record(n))) for n in leaf_layers(self.model)]
            probe = torch.zeros((1, *self.input_shape), device=model_device(self.model), dtype=model_dtype(self.model))
            try:
                with borrowed(self.model), torch.no_grad():
                    self.model(probe)
            finally:
                for handle in handles:
                    handle.remove()
            seen = {name}
            while isinstance(modules.get(source), RISING) and fed_by.get(source) not in (None, *seen):
                source = fed_by[source]
                seen.add(source)
        self._sources[name] = source
        return source

    def _next_batch(self) -> list[str]:
        with self._lock:
            if not self._queue:
                return []
            layer = self._entries[self._queue[0]].layer
            batch = [k for k in self._queue if self._entries[k].layer == layer][: self.batch_size]
            self._queue = [k for k in self._queue if k not in batch]
            for key in batch:
                self._entries[key].state = "running"
            return batch

    def work(self) -> Iterator[IconUpdate]:
        """Compute every icon asked for, batch by batch; yield an :class:`IconUpdate` every ``every``
        steps (and at the first and last). Close the generator to stop: unfinished icons wait again."""
        while True:
            self.check_weights()
            batch = self._next_batch()
            if not batch:
                return
            yield from self._run(batch)

    def _run(self, keys: list[str]) -> Iterator[IconUpdate]:
        entries = [self._entries[k] for k in keys]
        layer = entries[0].layer
        vectors = np.stack([e.vector for e in entries])
        target = self._source(layer) if (vectors >= 0).all() else layer
        finished = False
        generation = self.generation
        try:
            run = OptimizationRun(self.model, direction_objective(target, vectors), self.input_shape,
                                  starts=len(keys), **self._options)
            while run.step_count < self.steps:
                # on to the next step that gives an update (the first, every `every`-th, the last)
                # in runs of steps of one borrow each (nbvis.exclusive gets its turn between them)
                done = run.step_count
                upto = 1 if done == 0 else min(self.steps, (done // self.every + 1) * self.every)
                step = run.advance(upto - done, seconds=STREAM_SECONDS)
                index = run.step_count
                if index < upto:
                    continue  # the run's time was up before the update
                last = index == self.steps
                if self.check_weights() or self.generation != generation:
                    return  # the icons are stale: every entry is pending again
                images = step.images if not last else run.images
                with self._lock:
                    for entry, image in zip(entries, images):
                        entry.image, entry.step = image, index
                        if last:
                            entry.state = "done"
                if last:
                    self.computed += len(keys)
                    for key, image in zip(keys, images):
                        self._save(key, image)
                    finished = True
                yield IconUpdate(list(keys), images, index, last)
        except Exception as exc:
            with self._lock:
                for entry in entries:
                    entry.state, entry.error = "error", f"{type(exc).__name__}: {exc}"
            finished = True
            raise
        finally:
            if not finished and self.generation == generation:
                with self._lock:  # stopped early: ask again later
                    for key, entry in zip(keys, entries):
                        if entry.state == "running":
                            entry.state = "pending"
                            if key not in self._queue:
                                self._queue.insert(0, key)


_CACHES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def feature_cache(model: nn.Module, input_shape: Sequence[int], **settings) -> FeatureCache:
    """The shared :class:`FeatureCache` of ``model`` for ``input_shape`` and ``settings`` (made on first use)."""
    key = json.dumps({"shape": [int(s) for s in input_shape], **settings}, sort_keys=True, default=str)
    with _CACHES_LOCK:
        caches = _CACHES.setdefault(model, {})
        cache = caches.get(key)
        if cache is None:
            cache = caches[key] = FeatureCache(model, input_shape, **settings)
        return cache
