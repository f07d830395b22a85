"""Static pictures of the views, drawn in Python with Pillow from the arrays the views hold.

Each display of a view carries one as ``image/png`` (see ``_export.Exportable``): a notebook
saved with its outputs shows it where no widget manager runs (GitHub, nbviewer, nbconvert
without widget state). The colormaps are the browser's (``nbvis/colormaps.json``).
"""

from __future__ import annotations

import io
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["auto_scale", "bars", "caption", "colormap", "fit_zoom", "gray", "mosaic", "png", "row", "stack", "table", "zoomed"]

BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)
MAX_SIDE = 900  # the longer side of a picture, in pixels: keeps a saved notebook small


@lru_cache(maxsize=None)
def _stops() -> dict:
    return json.loads((Path(__file__).resolve().parent.parent / "colormaps.json").read_text())


@lru_cache(maxsize=None)
def _table(name: str) -> np.ndarray:
    points = np.array(_stops()[name], dtype=np.float64)
    t = np.arange(256) / 255.0
    return np.stack([np.interp(t, points[:, 0], points[:, c]) for c in (1, 2, 3)], axis=1).astype(np.uint8)


def colormap(values: np.ndarray, lo: float, hi: float, name: str = "diverging") -> np.ndarray:
    """RGB uint8 (..., 3) of ``values`` on the scale [lo, hi] (NaN and infinities in the views' green)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    t = (values - lo) / (hi - lo) if hi > lo else np.full(values.shape, 0.5)
    index = np.clip(np.round(np.where(finite, t, 0.5) * 255), 0, 255).astype(np.int64)
    out = _table(name)[index]
    out[~finite] = _stops()["bad"]
    return out


def auto_scale(values: np.ndarray) -> tuple[float, float, str]:
    """The views' scale for a set of values: sequential from 0 when none is negative, else diverging around 0."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return -1.0, 1.0, "diverging"
    if finite.min() >= 0:
        return 0.0, float(finite.max()) or 1.0, "sequential"
    m = float(np.abs(finite).max()) or 1.0
    return -m, m, "diverging"


def gray(image: np.ndarray) -> np.ndarray:
    """An image (C, H, W) or (H, W) with any value range as RGB uint8 (H, W, 3), stretched to its range."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        image = image[None]
    if image.shape[0] not in (1, 3):
        image = image.mean(axis=0, keepdims=True)
    finite = image[np.isfinite(image)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scaled = np.clip((np.nan_to_num(image, nan=lo) - lo) / ((hi - lo) or 1.0) * 255, 0, 255).astype(np.uint8)
    return np.repeat(scaled, 3, axis=0).transpose(1, 2, 0) if scaled.shape[0] == 1 else scaled.transpose(1, 2, 0)


def mosaic(tiles: Sequence[np.ndarray], cols: Optional[int] = None, gap: int = 1, zoom: int = 1) -> Image.Image:
    """RGB tiles (H, W, 3) of one size in a grid, ``cols`` per row (near-square by default)."""
    if not len(tiles):
        return Image.new("RGB", (1, 1), BACKGROUND)
    h, w = tiles[0].shape[:2]
    cols = cols or max(1, math.ceil(math.sqrt(len(tiles))))
    rows = math.ceil(len(tiles) / cols)
    canvas = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        y, x = gap + (k // cols) * (h + gap), gap + (k % cols) * (w + gap)
        canvas[y:y + h, x:x + w] = tile
    picture = Image.fromarray(canvas)
    return picture.resize((picture.width * zoom, picture.height * zoom), Image.NEAREST) if zoom > 1 else picture


def fit_zoom(width: int, height: int, target: int = 240) -> int:
    """The integer zoom that brings the longer side near ``target`` pixels (at least 1)."""
    return max(1, target // max(1, width, height))


def zoomed(image: np.ndarray, width: int, height: int, smooth: bool = False) -> Image.Image:
    """An RGB uint8 array (H, W, 3) drawn at ``width`` x ``height`` pixels (bilinear when ``smooth``)."""
    return Image.fromarray(np.ascontiguousarray(image, np.uint8)).resize(
        (max(1, width), max(1, height)), Image.BILINEAR if smooth else Image.NEAREST)


def caption(picture: Image.Image, text: str) -> Image.Image:
    """``picture`` with a line of text above it."""
    out = Image.new("RGB", (max(picture.width, 8 * len(text) + 8), picture.height + 16), BACKGROUND)
    ImageDraw.Draw(out).text((2, 2), text, fill=INK)
    out.paste(picture, (0, 16))
    return out


def row(pictures: Sequence[Image.Image], gap: int = 12) -> Image.Image:
    pictures = [p for p in pictures if p is not None]
    width = sum(p.width for p in pictures) + gap * max(0, len(pictures) - 1)
    out = Image.new("RGB", (max(1, width), max([1] + [p.height for p in pictures])), BACKGROUND)
    x = 0
    for p in pictures:
        out.paste(p, (x, 0))
        x += p.width + gap
    return out


def stack(pictures: Sequence[Image.Image], gap: int = 10) -> Image.Image:
    pictures = [p for p in pictures if p is not None]
    height = sum(p.height for p in pictures) + gap * max(0, len(pictures) - 1)
    out = Image.new("RGB", (max([1] + [p.width for p in pictures]), max(1, height)), BACKGROUND)
    y = 0
    for p in pictures:
        out.paste(p, (0, y))
        y += p.height + gap
    return out


def bars(labels: Sequence[str], values: Sequence[float], errors: Optional[Sequence[float]] = None,
         title: str = "", width: int = 420, color=(76, 120, 168)) -> Image.Image:
    """Horizontal bars with their labels (and error whiskers), as the importance chart draws them."""
    values = np.asarray(values, dtype=np.float64)
    errors = np.zeros_like(values) if errors is None else np.nan_to_num(np.asarray(errors, dtype=np.float64))
    label_w = min(200, 7 * max([1] + [len(str(label)) for label in labels]) + 8)
    height = 18 * len(values) + 30
    out = Image.new("RGB", (label_w + width + 10, height), BACKGROUND)
    draw = ImageDraw.Draw(out)
    finite = values[np.isfinite(values)]
    reach = np.concatenate([np.abs(finite) + errors[np.isfinite(values)], [1e-12]]) if finite.size else np.array([1.0])
    hi = float(reach.max())
    lo = -hi if finite.size and finite.min() < 0 else 0.0
    to_x = lambda v: label_w + (v - lo) / (hi - lo) * (width - 10)  # noqa: E731
    zero = to_x(0.0)
    for k, (label, value) in enumerate(zip(labels, values)):
        y = 4 + 18 * k
        draw.text((2, y + 2), str(label)[:28], fill=INK)
        if not np.isfinite(value):
            continue
        draw.rectangle([min(zero, to_x(value)), y + 2, max(zero, to_x(value)), y + 14], fill=color)
        if errors[k] > 0:
            draw.line([to_x(value - errors[k]), y + 8, to_x(value + errors[k]), y + 8], fill=INK)
    draw.line([zero, 0, zero, height - 26], fill=(136, 136, 136))
    draw.text((label_w, height - 20), title, fill=INK)
    return out


def table(values: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], lo: float, hi: float,
          name: str = "diverging", cell=(40, 18), label_width: int = 40) -> Image.Image:
    """A table of ``values`` (rows, cols): each cell on the colormap, with its value in two decimals
    (white on the dark ends of the scale, as the views write it)."""
    values = np.asarray(values, dtype=np.float64).reshape(len(row_labels), len(col_labels))
    colors = colormap(values, lo, hi, name)
    cw, ch = cell
    out = Image.new("RGB", (label_width + cw * len(col_labels), ch * (len(row_labels) + 1)), BACKGROUND)
    draw = ImageDraw.Draw(out)
    for j, label in enumerate(col_labels):
        draw.text((label_width + j * cw + 3, 3), str(label)[:6], fill=INK)
    for i, label in enumerate(row_labels):
        y = ch * (i + 1)
        draw.text((3, y + 3), str(label)[:6], fill=INK)
        for j in range(len(col_labels)):
            x = label_width + j * cw
            draw.rectangle([x, y, x + cw - 1, y + ch - 1], fill=tuple(int(c) for c in colors[i, j]))
            t = (values[i, j] - lo) / (hi - lo) if hi > lo else 0.5
            dark = np.isfinite(t) and abs(2 * t - 1) > 0.55
            draw.text((x + 3, y + 3), f"{values[i, j]:.2f}", fill=(255, 255, 255) if dark else (34, 34, 34))
    return out


def png(picture: Image.Image) -> bytes:
    """PNG bytes of ``picture`` (128 colours), shrunk so that its longer side is at most ``MAX_SIDE``."""
    if max(picture.size) > MAX_SIDE:
        scale = MAX_SIDE / max(picture.size)
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))), Image.NEAREST)
    # an adaptive palette of 128 colours: smooth colormaps stay smooth, the file shrinks 2-4x.
    # Maximum coverage keeps every colour within a few levels of the original (median cut moved the
    # few pixels of a saturated hue, such as a legend swatch, by up to 90 levels)
    picture = picture.convert("RGB").quantize(colors=128, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
