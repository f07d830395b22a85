"""Parametrizations: what the optimizer moves, pixels themselves, a decorrelated Fourier spectrum,
or pixels whitened by the data's covariance."""

from __future__ import annotations

import math

import numpy as np
import torch

from .transforms import blur

__all__ = ["Fourier", "Pixels", "Whitened", "noise", "whitening"]

#: The ``"data"`` parametrization: the data's covariance is shrunk towards a smooth image covariance
#: (white noise blurred by SMOOTH pixels) of SHRINK times its largest eigenvalue, so that what the
#: data never do (edges, noise) is possible but slow; the starts are the mean image plus INIT times
#: the data's own variation.
SHRINK = 0.07
SMOOTH = 1.0
INIT = 0.5

# The square root of ImageNet's colour covariance (Lucid), scaled to unit column norm.
_COLOR_SQRT = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float64)
_COLOR_SQRT = _COLOR_SQRT / np.linalg.norm(_COLOR_SQRT, axis=0).max()


def noise(shape, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Standard normal values on the CPU from ``generator``, in float64 for a float64 model and in
    float32 otherwise (the same values on every device)."""
    return torch.randn(shape, generator=generator, dtype=torch.float64 if dtype == torch.float64 else torch.float32)


def _phase(angle: torch.Tensor) -> torch.Tensor:
    """``exp(i angle)``."""
    return torch.polar(torch.ones_like(angle), angle)


class Pixels:
    """The input itself is the parameter."""

    name = "pixel"
    #: whether :meth:`image` can give the image shifted by whole pixels itself
    shifts = False

    def __init__(self, init: torch.Tensor):
        self.param = init.clone().requires_grad_(True)

    def image(self) -> torch.Tensor:
        return self.param

    def snapshot(self, image: torch.Tensor) -> torch.Tensor:
        return image.detach().clone()  # the parameter changes in place at the update


class Fourier:
    """Decorrelated Fourier coefficients (Olah et al. 2017): 1/f-scaled spectrum, then colours
    decorrelated (3 channels), then a sigmoid into ``value_range``.

    ``image(shift=(dy, dx))`` gives the image rolled by whole pixels (as ``torch.roll``) at no
    cost: the shift is a phase ramp on the spectrum, folded into the 1/f scale.
    """

    name = "fourier"
    shifts = True

    def __init__(self, shape, starts, generator, device, dtype, value_range):
        channels, h, w = (1, *shape) if len(shape) == 2 else shape
        self.shape = (starts, *shape)
        fy = np.fft.fftfreq(h)[:, None]
        fx = np.fft.rfftfreq(w)[None, :]
        freqs = np.sqrt(fx * fx + fy * fy)
        # the 1/f scale and the image's normalization (a quarter) in one factor
        scale = 0.25 / np.maximum(freqs, 1.0 / max(h, w))
        self.scale = torch.as_tensor(scale, dtype=dtype, device=device)
        # -2 pi f of each row and column: the phase of a shift by one pixel
        self.turn_y = torch.as_tensor(-2 * math.pi * fy, dtype=dtype, device=device)
        self.turn_x = torch.as_tensor(-2 * math.pi * fx, dtype=dtype, device=device)
        self.size = (h, w)
        spectrum = noise((starts, channels, *freqs.shape, 2), generator, dtype) * 0.01
        self.param = spectrum.to(device=device, dtype=dtype).requires_grad_(True)
        self.color = torch.as_tensor(_COLOR_SQRT, dtype=dtype, device=device) if channels == 3 else None
        low, high = value_range if value_range is not None else (0.0, 1.0)
        self.low, self.span = float(low), float(high) - float(low)

    def image(self, shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
        coefficients = torch.view_as_complex(self.param)
        dy, dx = shift
        if dy or dx:
            # roll(image, (dy, dx)): the spectrum times exp(-2 pi i fy dy) exp(-2 pi i fx dx), a phase
            # per row times a phase per column (h + w / 2 angles instead of h * w / 2)
            factor = self.scale * (_phase(self.turn_y * dy) * _phase(self.turn_x * dx))
        else:
            factor = self.scale
        image = torch.fft.irfftn(coefficients * factor, s=self.size, norm="ortho")
        n, c = image.shape[:2]
        # the sigmoid overwrites a new tensor that no backward reads (the inverse FFT's output, or
        # the colour product's) instead of allocating another image; not a view of it, which
        # autograd would copy
        if self.color is not None:
            image = torch.sigmoid_(self.color @ image.reshape(n, c, -1)).reshape(image.shape)
        else:
            image = torch.sigmoid_(image)
        if self.span != 1.0:
            image = image * self.span
        if self.low != 0.0:
            image = image + self.low
        return image.reshape(self.shape)

    def snapshot(self, image: torch.Tensor) -> torch.Tensor:
        return image.detach()


def whitening(stats, input_shape) -> tuple[torch.Tensor, torch.Tensor]:
    """``(basis, inverse)``, float64 ``(D, D)``: ``basis @ basis.T`` is the data's covariance
    shrunk towards a smooth one (see :data:`SHRINK`), ``inverse`` its inverse. Kept in ``stats.cache``."""
    key = ("whitening", tuple(input_shape))
    if key not in stats.cache:
        covariance = stats.covariance
        size = covariance.shape[0]
        if len(input_shape) >= 2:
            h, w = input_shape[-2:]
            channels = size // (h * w)
            eye = torch.eye(size, dtype=torch.float64).reshape(size, channels, h, w)
            smoothed = blur(eye, SMOOTH).reshape(size, size)
            prior = smoothed @ smoothed.T
        else:
            prior = torch.eye(size, dtype=torch.float64)
        top = float(torch.linalg.eigvalsh(covariance)[-1])
        prior = prior / float(torch.linalg.eigvalsh(prior)[-1])
        values, vectors = torch.linalg.eigh(covariance + SHRINK * max(top, 1e-12) * prior)
        values = values.clamp_min(1e-6 * max(top, 1e-12)).sqrt()
        stats.cache[key] = (vectors * values, (vectors / values).T.contiguous())
    return stats.cache[key]


class Whitened:
    """Pixels whitened by the data (a prior towards the dataset's pixel statistics): the input is
    ``mean + B z`` with ``B B^T`` the data's covariance (shrunk, see :func:`whitening`), and the
    optimizer moves ``z``. Adam moves every whitened direction alike, so the image changes fast
    along the ways the dataset's samples vary and slowly along the others (Olah et al. 2017's
    decorrelation, with the data's covariance for the 1/f spectrum); L2 decay of ``z`` pulls
    towards the mean image (a Gaussian prior with the data's covariance). The priors that act on
    pixels (clipping into the range, blur) act on the image, which is then mapped back
    (:meth:`set_pixels`)."""

    name = "data"
    shifts = False

    def __init__(self, stats, shape, starts, generator, device, dtype, value_range, init=None):
        basis, inverse = whitening(stats, shape)
        self.shape = (starts, *shape)
        self.mean = stats.mean.to(device=device, dtype=dtype)
        self.basis = basis.to(device=device, dtype=dtype)
        self.inverse = inverse.to(device=device, dtype=dtype)
        self.value_range = value_range
        z = INIT * noise((starts, self.mean.numel()), generator, dtype)
        self.param = z.to(device=device, dtype=dtype).requires_grad_(True)
        if init is not None:
            self.set_pixels(init)

    def image(self) -> torch.Tensor:
        x = (self.mean + self.param @ self.basis.T).reshape(self.shape)
        # clipped (the mapping back after each step keeps it inside up to rounding)
        return x if self.value_range is None else x.clamp(*self.value_range)

    @torch.no_grad()
    def set_pixels(self, pixels: torch.Tensor) -> None:
        """Set ``z`` so that the image is ``pixels`` ``(starts, *shape)``."""
        flat = pixels.reshape(self.shape[0], -1).to(self.param.dtype)
        self.param.copy_((flat - self.mean) @ self.inverse.T)

    def snapshot(self, image: torch.Tensor) -> torch.Tensor:
        return image.detach().clone()
