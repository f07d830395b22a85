"""The one place arrays become binary buffers for the browser (and back).

A packed array is ``{"dtype": str, "shape": [int, ...], "data": bytes}``. ipywidgets sends the
``bytes`` as a binary websocket buffer (it arrives in JavaScript as a ``DataView``); nothing is
encoded as JSON lists or base64. ``js/src/lib/arrays.js`` decodes it.
"""

from __future__ import annotations

import numpy as np

try:  # torch is a dependency, but this module must not need it to import
    import torch
except ImportError:  # pragma: no cover
    torch = None

__all__ = ["DTYPES", "pack", "unpack"]

DTYPES = ("float32", "uint8", "int32")


def _to_numpy(array) -> np.ndarray:
    if torch is not None and isinstance(array, torch.Tensor):
        tensor = array.detach()
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
            tensor = tensor.float()
        return tensor.cpu().numpy()
    return np.asarray(array)


def pack(array, dtype: str = "float32") -> dict:
    """Pack an array (numpy or torch, any device) as a C-contiguous little-endian binary buffer."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    values = _to_numpy(array)
    if dtype == "uint8" and values.dtype != np.uint8:
        if values.size and (np.nanmin(values) < 0 or np.nanmax(values) > 255):
            raise ValueError("uint8 images must hold values in 0..255; scale them first")
    out = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": dtype, "shape": [int(n) for n in out.shape], "data": out.tobytes()}


def unpack(packed: dict) -> np.ndarray:
    """The numpy array inside a packed dict (a read-only view of its bytes)."""
    try:
        dtype, shape, data = packed["dtype"], packed["shape"], packed["data"]
    except (KeyError, TypeError):
        raise ValueError("a packed array is a dict with 'dtype', 'shape' and 'data'") from None
    if dtype not in DTYPES:
        raise ValueError(f"unknown packed dtype {dtype!r}; expected one of {DTYPES}")
    return np.frombuffer(bytes(data) if not isinstance(data, bytes) else data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
