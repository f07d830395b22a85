"""What NeuronGroups and SemanticDictionary share: the input (set, picked from a dataset, uploaded),
the layer picker, and icons fed by the shared feature-visualization cache."""

from __future__ import annotations

import threading
import weakref
from typing import Callable, Optional

import numpy as np
import torch
import traitlets
from torch import nn

from .._arrays import message_bytes, unpack
from ..compute.blocks import FeatureCache, IconUpdate, feature_cache, top_direction_examples
from ..compute.blocks.layer import conv_layers, default_layer, one_sample
from ..compute.dataset import as_samples, sample_tensor
from ..compute.images import DEFAULT_MAX_BYTES, decode_image
from ..compute.optimize import to_uint8
from ..compute.probe import resolve_layer
from ._base import NbvisWidget
from ._dataset_input import DatasetInput
from ._jobs import Job, Throttle
from ._traits import Array
from ._heatmap_layout import image_layout_of as _image_layout

__all__ = ["BlocksView", "IconFeed"]

EXAMPLE_LIMIT = 4096  # dataset samples read to find each icon's stand-in example


class IconFeed:
    """Drives one FeatureCache in the background (one Job at a time) and passes each IconUpdate
    to the views that listen to it."""

    _feeds: "weakref.WeakKeyDictionary[FeatureCache, IconFeed]" = weakref.WeakKeyDictionary()
    _guard = threading.Lock()

    def __init__(self, cache: FeatureCache):
        self.cache = cache
        self.job: Optional[Job] = None
        self._listeners: "weakref.WeakSet" = weakref.WeakSet()

    @classmethod
    def of(cls, cache: FeatureCache) -> "IconFeed":
        with cls._guard:
            feed = cls._feeds.get(cache)
            if feed is None:
                feed = cls._feeds[cache] = cls(cache)
            return feed

    def listen(self, view) -> None:
        self._listeners.add(view)

    def forget(self, view) -> None:
        self._listeners.discard(view)
        if not self._listeners and self.job is not None and self.job.running:
            self.job.stop()  # nobody is looking: unfinished icons wait for the next request

    def start(self) -> Optional[Job]:
        """Start computing what was asked for, unless a job already does (it picks new requests up)."""
        if self.job is not None and self.job.running:
            return self.job
        if not self.cache.pending:
            return None
        self.job = Job(self.cache.work(), on_step=self._step, on_done=self._done, on_error=self._error)
        return self.job.start()

    def _each(self, fn: Callable) -> None:
        for view in list(self._listeners):
            try:
                fn(view)
            except Exception as exc:  # one broken view must not stop the icons of the others
                view._report(exc)

    def _step(self, update: IconUpdate) -> None:
        self._each(lambda view: view._on_icons(update))

    def _done(self, _result) -> None:
        self._each(lambda view: view._on_icons(None))

    def _error(self, exc: BaseException) -> None:
        self._each(lambda view: view._report(exc))


class BlocksView(DatasetInput, NbvisWidget):
    """Base of the building-block views (see NeuronGroups and SemanticDictionary)."""

    layer = traitlets.Unicode("").tag(sync=True)
    layers = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    index = traitlets.Int(0).tag(sync=True)
    dataset_size = traitlets.Int(0, read_only=True).tag(sync=True)
    input_caption = traitlets.Unicode("").tag(sync=True)
    upload_max_bytes = traitlets.Int(DEFAULT_MAX_BYTES).tag(sync=True)
    icons_ready = traitlets.Int(0, read_only=True).tag(sync=True)
    _input = Array()  # float32 (C, H, W): the input
    _icons = Array("uint8")  # (n, h, w, c): one icon per slot
    _icon_state = traitlets.List().tag(sync=True)  # per slot: "done" | "running" | "example" | "none"
    _icon_step = traitlets.List().tag(sync=True)  # per slot: optimization steps reached
    _seq_done = traitlets.Int(0).tag(sync=True)

    _feed: Optional[IconFeed] = None

    def __init__(self, model: nn.Module, x, layer, dataset, preprocess, icons, icon_steps, value_range, **kwargs):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        if preprocess is not None and not callable(preprocess):
            raise TypeError(f"preprocess must be a callable(PIL.Image) -> array, not {type(preprocess).__name__}")
        self.model = model
        self._preprocess = preprocess
        self._dataset, self._targets = as_samples(dataset)
        start = int(kwargs.get("index", 0))
        from_dataset = x is None
        if from_dataset:
            if self._dataset is None:
                raise TypeError(f"{type(self).__name__} needs an input x (one image), or a dataset to pick from")
            x = sample_tensor(self._dataset[start])
        self._batch = one_sample(model, x)
        names = conv_layers(model, self._batch)
        if not names:
            raise ValueError("the model has no layer with (channels, height, width) maps of at least 2x2 for this input")
        name = default_layer(model, self._batch) if layer is None else resolve_layer(model, layer)[0]
        if name not in names:
            raise ValueError(f"layer {name!r} has no (channels, height, width) maps for this input; such layers: {names}")
        self._icon_keys: list = []
        self._examples: Optional[np.ndarray] = None
        self._icon_throttle = Throttle(0.25)
        self._cache: Optional[FeatureCache] = None
        if icons:
            shape = tuple(self._batch.shape[1:])
            self._cache = icons if isinstance(icons, FeatureCache) else feature_cache(
                model, shape, steps=int(icon_steps), value_range=value_range, directory=True)
            self._feed = IconFeed.of(self._cache)
            self._feed.listen(self)
        super().__init__(**kwargs)
        self.set_trait("layers", names)
        self.set_trait("dataset_size", 0 if self._dataset is None else len(self._dataset))
        self.layer = name
        self.input_caption = f"dataset #{start}{self._target_text(start)}" if from_dataset else ""
        self.observe(self._on_index, names=["index"])
        self.observe(self._on_layer, names=["layer"])
        self.on_msg(self._on_input_msg)

    # ----- to be provided by the views ---------------------------------------------------------

    def _recompute(self) -> None:
        """Compute the view's result for the current input and layer and publish it."""
        raise NotImplementedError

    def _icon_items(self) -> tuple[list, np.ndarray, list]:
        """(the icons' items to ask the cache for: units or directions, their directions (n, C),
        the items to compute first, in order)."""
        raise NotImplementedError

    # ----- public ---------------------------------------------------------------------------------

    @property
    def icons(self) -> Optional[np.ndarray]:
        """The icons drawn, uint8 (slots, h, w, c): one per group or channel (a feature
        visualization, or the top dataset example standing in for it; see ``_icon_state``), or None."""
        return None if self._icons is None else unpack(self._icons).copy()

    @property
    def cache(self) -> Optional[FeatureCache]:
        """The feature-visualization cache the icons come from (shared by every view of the model)."""
        return self._cache

    @property
    def icon_job(self) -> Optional[Job]:
        """The background job computing icons (``icon_job.wait()`` finishes them), or None."""
        return None if self._feed is None else self._feed.job

    def wait_icons(self, timeout: Optional[float] = None) -> None:
        """Block until every icon of this view is finished."""
        job = self.icon_job
        if job is not None:
            job.wait(timeout)
        self._publish_icons()

    def refresh(self) -> None:
        """Recompute for the model as it is now (after training, the icons of changed weights are redone)."""
        with self._guard():
            self._recompute()
            self._request_icons()

    def close(self):
        if self._feed is not None:
            self._feed.forget(self)
        super().close()

    # ----- pictures (see _picture.py) -----------------------------------------------------------

    def _input_rgb(self, dim: float = 1.0) -> np.ndarray:
        """The input as the views draw it (lib/blocks.js drawInput): RGB for 3 channels, else the
        channel mean in gray; on [0, 1] when the values lie in it, else on their own range."""
        x = self._batch[0].detach().cpu().float().numpy()
        x = x.reshape(-1, *x.shape[-2:])

        def unit(values):
            finite = values[np.isfinite(values)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            if lo >= 0 and hi <= 1:
                lo, hi = 0.0, 1.0
            return np.clip(np.nan_to_num((values - lo) / ((hi - lo) or 1.0)), 0, 1)

        planes = unit(x) if x.shape[0] == 3 else np.repeat(unit(x.mean(axis=0))[None], 3, axis=0)
        return (255 * dim * planes).astype(np.uint8).transpose(1, 2, 0)

    def _icon_picture(self, slot: int, size: int):
        """Icon ``slot`` as a PIL image ``size`` px wide (blank when there is none yet)."""
        from ._picture import BACKGROUND, zoomed

        icons = self.icons
        if icons is None or not 0 <= slot < len(icons) or self._icon_state[slot] == "none":
            from PIL import Image

            return Image.new("RGB", (size, size), BACKGROUND)
        icon = icons[slot]
        icon = np.repeat(icon[..., :1], 3, axis=2) if icon.shape[2] != 3 else icon
        return zoomed(icon, size, round(size * icon.shape[0] / icon.shape[1]))

    # ----- input ------------------------------------------------------------------------------

    def _set_input(self, x, caption: str, seq: Optional[int] = None) -> None:
        with self._guard():
            batch = one_sample(self.model, x)
            if batch.shape != self._batch.shape:
                raise ValueError(f"the input has shape {tuple(batch.shape[1:])}; this view shows inputs of shape {tuple(self._batch.shape[1:])}")
            old = self._batch
            self._batch = batch
            try:
                with self.hold_sync():
                    self._recompute()
                    self.input_caption = caption
                    if seq is not None:
                        self._seq_done = seq
            except Exception:
                self._batch = old
                raise

    def _decode(self, data) -> np.ndarray:
        shape = tuple(self._batch.shape[1:])
        if _image_layout(shape) is None and self._preprocess is None:
            raise ValueError(f"the model's input of shape {shape} is not an image; pass preprocess= to map images to it")
        return decode_image(data, shape, self._preprocess, invert="auto", max_bytes=self.upload_max_bytes)

    def _on_input_msg(self, _widget, content, buffers) -> None:
        if not isinstance(content, dict) or content.get("type") != "input":
            return
        seq = int(content.get("seq", 0))
        try:
            with self._guard():
                data = message_bytes(content, buffers)  # a binary buffer, or base64 text (Colab, NBVIS_BASE64=1)
                if data is None:
                    raise ValueError("the view sent no data")
                self._set_input(self._decode(data), f"uploaded {content.get('name', 'image')}", seq)
        except Exception:
            self.set_trait("_seq_done", seq)

    @traitlets.validate("layer")
    def _check_layer(self, proposal):
        value = proposal["value"]
        if value not in self.layers:
            raise traitlets.TraitError(f"layer {value!r} has no (channels, height, width) maps; the layers are {self.layers}")
        return value

    def _on_layer(self, _change) -> None:
        with self._guard():
            self._recompute()

    # ----- icons ------------------------------------------------------------------------------

    def _request_icons(self) -> None:
        """Ask the cache for this view's icons (computed in the background) and show what exists."""
        if self._cache is None:
            self._icon_keys = []
            self._examples = None
            self._publish_icons()
            return
        items, directions, first = self._icon_items()
        self._icon_keys = self._cache.request(self.layer, items)
        self._cache.request(self.layer, first, first=True)
        self._examples = None
        if self._dataset is not None:
            indices, _ = top_direction_examples(self.model, self.layer, directions, self._dataset, limit=EXAMPLE_LIMIT)
            samples = torch.stack([one_sample(self.model, sample_tensor(self._dataset[int(i)]))[0] for i in indices])
            low, high = float(self._batch.min()), float(self._batch.max())
            value_range = self._cache.value_range or ((0.0, 1.0) if low >= 0 and high <= 1 else None)
            self._examples = to_uint8(samples, value_range)
        self._publish_icons()
        self._feed.start()

    def _publish_icons(self) -> None:
        keys = self._icon_keys
        if not keys:
            self._icons, self._icon_state, self._icon_step = None, [], []
            self.set_trait("icons_ready", 0)
            return
        images, states, steps = [], [], []
        shape = None
        for slot, key in enumerate(keys):
            image = self._cache.image(key)
            state = self._cache.state(key)
            if image is None and self._examples is not None:
                image, state = self._examples[slot], "example"
            elif image is None:
                state = "none"
            images.append(image)
            states.append(state)
            steps.append(self._cache.progress(key))
            shape = shape or (None if image is None else image.shape)
        if shape is None:
            shape = (*self._batch.shape[2:], 1 if self._batch.shape[1] != 3 else 3)
        stacked = np.stack([np.zeros(shape, np.uint8) if im is None else im for im in images])
        with self.hold_sync():
            self._icons = stacked
            self._icon_state = states
            self._icon_step = steps
            self.set_trait("icons_ready", sum(s == "done" for s in states))

    def _on_icons(self, update: Optional[IconUpdate]) -> None:
        if update is not None:
            if not set(update.keys) & set(self._icon_keys):
                return
            if not update.done and not self._icon_throttle.ready():
                return
        self._publish_icons()
