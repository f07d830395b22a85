"""Turn uploaded image files and raw pixels (a drawing, a webcam frame) into a model input.

Pure Pillow + numpy. The default pipeline: decode, apply the EXIF orientation, flatten any
transparency onto white, convert to grayscale or RGB (by the model's channel count),
optionally invert, fit to the model's height x width, and scale to float32 in [0, 1].
A ``preprocess`` callable replaces the pipeline after decoding: it takes a ``PIL.Image`` and
returns an array or tensor of the input's shape (a torchvision transform works as is).

Safety: the file size is checked before decoding (``max_bytes``), and the pixel count is read
from the header and checked before any pixel is decoded (``max_pixels``, a decompression-bomb
guard that does not depend on Pillow's global setting). Anything that is not a decodable image
raises a ``ValueError`` saying what was received.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from typing import Callable, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "decode_image",
    "image_layout",
    "image_to_input",
    "open_image",
    "pixels_to_input",
]

DEFAULT_MAX_BYTES = 20 * 2**20
DEFAULT_MAX_PIXELS = 40_000_000
_FITS = ("crop", "pad", "stretch")

Preprocess = Callable[[Image.Image], object]


def image_layout(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(channels, height, width)`` of an image model input of shape ``input_shape`` (one sample):
    ``(C, H, W)`` with C of 1 or 3, ``(H, W)`` grayscale, or ``(H*W,)`` with a square grayscale image."""
    shape = tuple(int(n) for n in input_shape)
    if len(shape) == 3 and shape[0] in (1, 3):
        return shape
    if len(shape) == 2:
        return (1,) + shape
    if len(shape) == 1 and shape[0] > 0 and math.isqrt(shape[0]) ** 2 == shape[0]:
        side = math.isqrt(shape[0])
        return (1, side, side)
    raise ValueError(
        f"an image cannot be turned into an input of shape {shape}: expected (1 or 3, H, W), (H, W), "
        "or (N,) with N a square number of grayscale pixels; pass a preprocess callable for other inputs"
    )


def _describe(data: bytes) -> str:
    head = data[:512]
    if not head:
        return "an empty file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(data)} bytes starting with {head[:8]!r}"
    if all(ch.isprintable() or ch.isspace() for ch in text):
        return f"a text file ({text[:40]!r}...)" if len(text) > 40 else f"a text file ({text!r})"
    return f"{len(data)} bytes starting with {head[:8]!r}"


def _read(data, max_bytes: int) -> bytes:
    if isinstance(data, (str, os.PathLike)):
        size = os.path.getsize(data)
        if size > max_bytes:
            raise ValueError(f"the file {os.fspath(data)!r} is {size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.1f} MiB")
        with open(data, "rb") as handle:
            return handle.read()
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if len(raw) > max_bytes:
            raise ValueError(f"the file is {len(raw) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.1f} MiB")
        return raw
    raise TypeError(f"an image file is bytes (or a path to a file), not {type(data).__name__}")


def open_image(
    data: Union[bytes, bytearray, memoryview, str, os.PathLike],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode image file bytes (PNG, JPEG, GIF, BMP, WebP, ...) into a loaded, upright PIL image.

    Raises ``ValueError`` for files over ``max_bytes``, images over ``max_pixels`` (checked from
    the header, before decoding), and anything Pillow cannot decode.
    """
    raw = _read(data, max_bytes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is ours
        try:
            image = Image.open(io.BytesIO(raw))
        except Image.DecompressionBombError:
            raise ValueError(f"the image is far larger than the limit of {max_pixels:,} pixels") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise ValueError(f"this is not an image file Pillow can read: got {_describe(raw)}") from None
        width, height = image.size
        if width * height > max_pixels:
            raise ValueError(
                f"the image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,} "
                "(a guard against decompression bombs)"
            )
        try:
            image.load()
        except Exception as err:  # truncated or corrupt data; Pillow raises many types here
            raise ValueError(f"the image file is damaged or truncated ({type(err).__name__}: {err})") from None
    return ImageOps.exif_transpose(image)


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float images scaled into 8 bits (by their own range), so that convert() keeps detail."""
    if image.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return image
    values = np.asarray(image, dtype=np.float64)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scaled = np.nan_to_num((values - lo) / (hi - lo if hi > lo else 1.0), nan=0.0)
    return Image.fromarray(np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8))


def _flatten_alpha(image: Image.Image) -> Image.Image:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image


def _should_invert(image: Image.Image) -> bool:
    """True when the border is bright: dark content on a light background."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(border.mean()) > 127.5


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Area averaging when shrinking (exact for whole-number factors), bilinear when enlarging."""
    if image.size == size:
        return image
    shrinking = size[0] <= image.size[0] and size[1] <= image.size[1]
    return image.resize(size, Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR)


def _fit(image: Image.Image, size: tuple[int, int], fit: str) -> Image.Image:
    width, height = image.size
    if fit == "stretch":
        return _resize(image, size)
    target = size[0] / size[1]
    if fit == "crop":  # the largest centered box of the target aspect, then resize
        if width / height > target:
            w = max(1, round(height * target))
            box = ((width - w) // 2, 0, (width - w) // 2 + w, height)
        else:
            h = max(1, round(width / target))
            box = (0, (height - h) // 2, width, (height - h) // 2 + h)
        return _resize(image.crop(box), size)
    scale = min(size[0] / width, size[1] / height)  # pad: fit inside, center on black
    inner = _resize(image, (max(1, round(width * scale)), max(1, round(height * scale))))
    canvas = Image.new(image.mode, size, 0)
    canvas.paste(inner, ((size[0] - inner.size[0]) // 2, (size[1] - inner.size[1]) // 2))
    return canvas


def image_to_input(
    image: Image.Image,
    input_shape: Sequence[int],
    *,
    fit: str = "crop",
    invert: Union[bool, str] = False,
) -> np.ndarray:
    """The default pipeline on a decoded image: float32 in [0, 1] of shape ``input_shape``.

    ``fit``: ``"crop"`` (scale the shorter side, crop the center), ``"pad"`` (scale the longer
    side, pad with black), or ``"stretch"``. ``invert``: ``True`` flips brightness (for models
    trained on light strokes on dark, fed dark ink on paper); ``"auto"`` inverts when the image
    border is bright.
    """
    if fit not in _FITS:
        raise ValueError(f"fit must be one of {_FITS}, not {fit!r}")
    if invert not in (True, False, "auto"):
        raise ValueError(f"invert is True, False or 'auto', not {invert!r}")
    channels, height, width = image_layout(input_shape)
    image = _flatten_alpha(_to_8bit(image))
    image = image.convert("L" if channels == 1 else "RGB")
    if invert is True or (invert == "auto" and _should_invert(image)):
        image = ImageOps.invert(image)
    image = _fit(image, (width, height), fit)
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array.reshape(tuple(int(n) for n in input_shape)))


def _apply_preprocess(preprocess: Preprocess, image: Image.Image, input_shape: Sequence[int]) -> np.ndarray:
    shape = tuple(int(n) for n in input_shape)
    result = preprocess(image)
    if hasattr(result, "detach"):  # a torch tensor
        result = result.detach().cpu().numpy()
    try:
        array = np.asarray(result, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(f"preprocess must return an array or tensor of numbers, not {type(result).__name__}") from None
    if array.size != math.prod(shape):
        raise ValueError(f"preprocess returned shape {array.shape}; the model's input has shape {shape}")
    return np.ascontiguousarray(array.reshape(shape))


def decode_image(
    data: Union[bytes, bytearray, memoryview, str, os.PathLike],
    input_shape: Sequence[int],
    preprocess: Optional[Preprocess] = None,
    *,
    fit: str = "crop",
    invert: Union[bool, str] = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Image file bytes -> one model input (float32, shape ``input_shape``, no batch axis).

    With ``preprocess``, the decoded PIL image goes to it instead of the default pipeline
    (:func:`image_to_input` with ``fit`` and ``invert``); its result must have as many values
    as ``input_shape`` holds.
    """
    image = open_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    if preprocess is not None:
        return _apply_preprocess(preprocess, image, input_shape)
    return image_to_input(image, input_shape, fit=fit, invert=invert)


def pixels_to_input(
    pixels,
    input_shape: Sequence[int],
    preprocess: Optional[Preprocess] = None,
    *,
    fit: str = "crop",
    invert: Union[bool, str] = False,
) -> np.ndarray:
    """Raw uint8 pixels (H, W), (H, W, 3) or (H, W, 4), as a canvas or webcam gives them,
    -> one model input, through the same pipeline as :func:`decode_image`."""
    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        raise TypeError(f"pixels must be uint8, got {array.dtype}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))) or 0 in array.shape:
        raise ValueError(f"pixels must have shape (H, W), (H, W, 3) or (H, W, 4); got {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    image = Image.fromarray(np.ascontiguousarray(array))
    if preprocess is not None:
        return _apply_preprocess(preprocess, image, input_shape)
    return image_to_input(image, input_shape, fit=fit, invert=invert)
