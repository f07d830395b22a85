"""Trait types that carry arrays to the browser: validated on assignment, packed by themselves.

``view._tiles = tensor`` checks and packs the value (see :func:`nbvis._arrays.pack`): the trait
holds the packed dict, which ipywidgets sends as a binary buffer. A new value that packs to
the same bytes as the old one sends nothing and notifies no observer.
"""

from __future__ import annotations

import numpy as np
import traitlets

from .._arrays import DTYPES, pack

__all__ = ["Array", "ArrayDict"]


def _is_packed(value) -> bool:
    return isinstance(value, dict) and set(value) == {"dtype", "shape", "data"}


def _pack_value(trait: traitlets.TraitType, obj, value, dtype: str, where: str = ""):
    if _is_packed(value):
        return value
    try:
        return pack(value, dtype)
    except (TypeError, ValueError) as err:
        name = f"{type(obj).__name__}.{trait.name}{where}"
        raise traitlets.TraitError(
            f"{name} takes a numpy array or torch tensor of {dtype} values (or None); "
            f"got {type(value).__name__}: {err}"
        ) from None


def _same(old, new) -> bool:
    """Equal packed values (or nested dicts of them): compares bytes, never array truth values."""
    if type(old) is not type(new):
        return False
    if isinstance(old, dict):
        return old.keys() == new.keys() and all(_same(old[k], new[k]) for k in old)
    if isinstance(old, np.ndarray):  # pragma: no cover - packed values hold bytes
        return bool(np.array_equal(old, new))
    try:
        return bool(old == new)
    except Exception:
        return False


class _Packed(traitlets.TraitType):
    """Common base: notify (and sync) only on a real change."""

    def __init__(self, **kwargs):
        super().__init__(default_value=None, allow_none=True, **kwargs)
        self.tag(sync=True, from_view=False)

    def set(self, obj, value):
        new = self._validate(obj, value)
        old = obj._trait_values.get(self.name, self.default_value)
        obj._trait_values[self.name] = new
        if not _same(old, new):
            obj._notify_trait(self.name, old, new)


class Array(_Packed):
    """A synced array (numpy or torch, any device) packed as ``dtype``, or None."""

    info_text = "a numpy array or torch tensor (or None)"

    def __init__(self, dtype: str = "float32", **kwargs):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
        self.dtype = dtype
        super().__init__(**kwargs)

    def validate(self, obj, value):
        if value is None:
            return None
        return _pack_value(self, obj, value, self.dtype)


class ArrayDict(_Packed):
    """A synced dict whose array values are packed: as ``dtypes[key]`` when the key is listed,
    else as ``dtype``; other values (names, numbers) go as they are. Or None."""

    info_text = "a dict of arrays (or None)"

    def __init__(self, dtype: str = "float32", dtypes: dict[str, str] | None = None, **kwargs):
        self.dtype = dtype
        self.dtypes = dict(dtypes or {})
        super().__init__(**kwargs)

    def validate(self, obj, value):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise traitlets.TraitError(f"{type(obj).__name__}.{self.name} takes a dict of arrays, not {type(value).__name__}")
        out = {}
        for key, item in value.items():
            if isinstance(item, (str, int, float, bool)) or item is None:
                out[key] = item
            else:
                out[key] = _pack_value(self, obj, item, self.dtypes.get(key, self.dtype), f"[{key!r}]")
        return out
