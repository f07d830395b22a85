"""Image operations of the priors and transforms: blur, pixel masks, total variation, zoom/rotation."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["affine_resample", "as_images", "blur", "gaussian_kernel", "small_pixel_mask", "total_variation", "zero_pixels"]


def as_images(x: torch.Tensor) -> torch.Tensor:
    """View a batch of inputs as ``(N, C, H, W)``: vectors as ``(N, 1, 1, D)``, maps as ``(N, 1, H, W)``."""
    if x.dim() == 2:
        return x[:, None, None, :]
    if x.dim() == 3:
        return x[:, None]
    return x


def gaussian_kernel(sigma: float, radius: int) -> torch.Tensor:
    """A normalized 1-D Gaussian of standard deviation ``sigma`` over ``2 * radius + 1`` taps."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def blur(images: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Gaussian blur of ``(N, C, H, W)`` images, each channel alone, mirrored at the edges.

    Matches ``scipy.ndimage.gaussian_filter(image, sigma, mode="mirror", truncate=truncate)`` per
    channel where the image is larger than the kernel.
    """
    n, c, h, w = images.shape
    radius = int(truncate * sigma + 0.5)
    out = images.reshape(n * c, h, w)
    for axis, size in ((1, h), (2, w)):
        r = min(radius, size - 1)
        if r <= 0:
            continue
        weights = _taps(sigma, r)
        padded = F.pad(out[:, None], (0, 0, r, r) if axis == 1 else (r, r, 0, 0), mode="reflect")[:, 0]
        # the taps as shifted views, summed in place (a one-channel convolution is much slower on CPUs)
        out = padded.narrow(axis, 0, size) * weights[0]
        for tap in range(1, 2 * r + 1):
            out.add_(padded.narrow(axis, tap, size), alpha=weights[tap])
    return out.reshape(n, c, h, w)


@functools.lru_cache(maxsize=64)
def _taps(sigma: float, radius: int) -> tuple[float, ...]:
    """:func:`gaussian_kernel`'s weights as floats (the same for every blur of one width)."""
    return tuple(gaussian_kernel(sigma, radius).tolist())


def small_pixel_mask(score: torch.Tensor, percentile: float) -> torch.Tensor:
    """The pixels of each start whose score ranks below ``percentile``; ``score`` is ``(N, H, W)``.

    The percentile falls between the ranks ``k`` and ``k + 1`` (``k`` its position rounded down):
    the mask holds the values at ranks up to ``k`` (those below the value at ``k`` when it falls
    on ``k``). That is ``score < numpy.percentile(score, percentile)`` wherever the values at
    ``k`` and ``k + 1`` differ; where they tie (as zeroed pixels do), the tied values are in the
    mask, which numpy's strict ``<`` would leave out. It takes the value at one rank, and gives
    the same mask for any increasing function of the scores.
    """
    flat = score.reshape(score.shape[0], -1)
    position = percentile / 100.0 * (flat.shape[1] - 1)
    rank = math.floor(position)
    value = _ranked(flat, rank)
    mask = flat <= value if position > rank else flat < value
    return mask.reshape(score.shape)


def _ranked(flat: torch.Tensor, rank: int) -> torch.Tensor:
    """The value at ``rank`` (0 for the smallest) of each row of ``flat``, ``(N, 1)``; NaN ranks last.

    On the CPU numpy's vectorized sort finds it three to ten times faster than ``kthvalue``,
    ties or not (a selection, ``numpy.partition``, is slower still where many pixels tie at the
    rank, as the zeroed ones do); the value is the same.
    """
    if flat.device.type == "cpu" and flat.dtype in (torch.float32, torch.float64):
        rows = np.sort(flat.detach().numpy(), axis=1)
        return torch.from_numpy(rows[:, rank : rank + 1])
    return flat.kthvalue(rank + 1, dim=1, keepdim=True).values


#: the integers of the float types' width, through which :func:`zero_pixels` clears floats bit by bit
_SAME_WIDTH = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def zero_pixels(images: torch.Tensor, mask: torch.Tensor) -> None:
    """``images.masked_fill_(mask[:, None], 0.0)``: set the pixels of ``mask`` ``(N, H, W)`` to 0
    in every channel of ``images`` ``(N, C, H, W)``, in place.

    The floats' bits are and-ed with all ones (kept) or zeros (a 0.0): the same values, in one
    vectorized pass; ``masked_fill_`` branches on each element, which is slow on CPUs when the
    mask is as random as a percentile's. Images in an autograd graph get ``masked_fill_`` itself
    (autograd does not see through the integers).
    """
    bits = _SAME_WIDTH.get(images.dtype)
    if bits is None or (images.requires_grad and torch.is_grad_enabled()):
        images.masked_fill_(mask[:, None], 0.0)
        return
    keep = mask[:, None].to(bits).sub_(1)  # True -> 0, False -> -1 (every bit set)
    images.view(bits).bitwise_and_(keep)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between vertical and horizontal neighbours, per start: ``(N,)``."""
    dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().flatten(1)
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().flatten(1)
    parts = [d.mean(dim=1) for d in (dy, dx) if d.shape[1]]
    return sum(parts) if parts else images.new_zeros(images.shape[0])


def affine_resample(images: torch.Tensor, zoom: float, degrees: float) -> torch.Tensor:
    """Zoom by ``zoom`` and rotate by ``degrees`` about the centre, keeping the size (edges reflected).

    The sampling grid is ``F.affine_grid``'s, to the last bit in float32 and float64 (in half
    precision torch takes the products with the Python numbers in float32): with ``cos`` and
    ``sin`` of the angle over the zoom, each pixel centre ``(x, y)`` times ``cos`` plus ``(-y, x)``
    times ``sin``, from centres made once per image size (two products and a sum over the grid, several times
    cheaper than ``affine_grid``'s product of a ``(h * w, 3)`` grid with the matrix, or than
    broadcasting rows and columns into the grid's pairs); every image of the batch gets the same
    transform, so the batch is sampled as the channels of one image (the same values; the weights
    of each point are found once for all the starts).
    """
    angle = math.radians(degrees)
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    n, c, h, w = images.shape
    centres, turned = _centres(h, w, images.dtype, images.device)
    grid = (centres * cos).add_(turned * sin).view(1, h, w, 2)
    channels = images.reshape(1, n * c, h, w)
    return F.grid_sample(channels, grid, mode="bilinear", padding_mode="reflection", align_corners=False).view(n, c, h, w)


@functools.lru_cache(maxsize=16)
def _centres(h: int, w: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixel centres ``(x, y)`` in ``[-1, 1]`` as ``F.affine_grid`` (``align_corners=False``)
    makes them, and the same turned a quarter, ``(-y, x)``: two ``(h, w, 2)`` grids."""
    def centres(size):
        steps = torch.linspace(-1.0, 1.0, size, dtype=dtype, device=device)
        return steps * (size - 1) / size if size > 1 else steps * 0

    with torch.inference_mode(False):  # (made once, used in every mode)
        x, y = centres(w).expand(h, w), centres(h)[:, None].expand(h, w)
        return torch.stack([x, y], dim=-1), torch.stack([-y, x], dim=-1)
