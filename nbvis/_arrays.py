"""The one place arrays become binary buffers for the browser (and back).

A packed array is ``{"dtype": str, "shape": [int, ...], "data": bytes}``. ipywidgets sends the
``bytes`` as a binary websocket buffer (it arrives in JavaScript as a ``DataView``); nothing is
encoded as JSON lists. ``js/src/lib/arrays.js`` decodes it.

Base64 fallback: Colab's widget manager drops binary buffers (googlecolab/colab-cdn-widget-manager#33).
Where :func:`base64_transport` is true (automatically in Colab, or forced by the environment
variable ``NBVIS_BASE64=1``; ``NBVIS_BASE64=0`` forces binary), ``data`` is the same bytes as a
base64 string instead, and the same JavaScript helper decodes it.
"""

from __future__ import annotations

import base64
import os
import sys

import numpy as np

try:  # torch is a dependency, but this module must not need it to import
    import torch
except ImportError:  # pragma: no cover
    torch = None

__all__ = ["BASE64_ENV", "DTYPES", "base64_transport", "message_bytes", "pack", "unpack"]

DTYPES = ("float32", "uint8", "int32")
BASE64_ENV = "NBVIS_BASE64"
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off", "")


def base64_transport() -> bool:
    """True when arrays travel as base64 text instead of binary buffers: ``NBVIS_BASE64`` set to
    1/true/yes/on, or (with the variable unset) inside Google Colab."""
    value = os.environ.get(BASE64_ENV)
    if value is None:
        return "google.colab" in sys.modules
    value = value.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"{BASE64_ENV} must be one of {_ON + _OFF[:-1]} (or unset for automatic), not {value!r}")


def message_bytes(content: dict, buffers) -> bytes | None:
    """The payload of a message from the view: its first binary buffer, or its ``data64`` base64
    text (what the view sends where binary buffers are dropped); None when it carries neither."""
    if buffers:
        return bytes(buffers[0])
    text = content.get("data64") if isinstance(content, dict) else None
    if isinstance(text, str):
        return base64.b64decode(text)
    return None


def _to_numpy(array) -> np.ndarray:
    if torch is not None and isinstance(array, torch.Tensor):
        tensor = array.detach()
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
            tensor = tensor.float()
        return tensor.cpu().numpy()
    return np.asarray(array)


def pack(array, dtype: str = "float32") -> dict:
    """Pack an array (numpy or torch, any device) as a C-contiguous little-endian binary buffer
    (base64 text where :func:`base64_transport` says so)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    values = _to_numpy(array)
    if dtype == "uint8" and values.dtype != np.uint8:
        if values.size and (np.nanmin(values) < 0 or np.nanmax(values) > 255):
            raise ValueError("uint8 images must hold values in 0..255; scale them first")
    out = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    data = out.tobytes()
    if base64_transport():
        return {"dtype": dtype, "shape": [int(n) for n in out.shape], "data": base64.b64encode(data).decode("ascii")}
    return {"dtype": dtype, "shape": [int(n) for n in out.shape], "data": data}


def unpack(packed: dict) -> np.ndarray:
    """The numpy array inside a packed dict (a read-only view of its bytes)."""
    try:
        dtype, shape, data = packed["dtype"], packed["shape"], packed["data"]
    except (KeyError, TypeError):
        raise ValueError("a packed array is a dict with 'dtype', 'shape' and 'data'") from None
    if dtype not in DTYPES:
        raise ValueError(f"unknown packed dtype {dtype!r}; expected one of {DTYPES}")
    if isinstance(data, str):
        data = base64.b64decode(data)
    elif not isinstance(data, bytes):
        data = bytes(data)
    return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
