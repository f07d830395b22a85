"""Parametrizations: what the optimizer moves, pixels themselves or a decorrelated Fourier spectrum."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["Fourier", "Pixels", "noise"]

# The square root of ImageNet's colour covariance (Lucid), scaled to unit column norm.
_COLOR_SQRT = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float64)
_COLOR_SQRT = _COLOR_SQRT / np.linalg.norm(_COLOR_SQRT, axis=0).max()


def noise(shape, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Standard normal values on the CPU from ``generator``, in float64 for a float64 model and in
    float32 otherwise (the same values on every device)."""
    return torch.randn(shape, generator=generator, dtype=torch.float64 if dtype == torch.float64 else torch.float32)


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
        if dy or dx:  # roll(image, (dy, dx)): the spectrum times exp(-2 pi i (fy dy + fx dx))
            factor = torch.polar(self.scale, self.turn_y * dy + self.turn_x * dx)
        else:
            factor = self.scale
        image = torch.fft.irfftn(coefficients * factor, s=self.size, norm="ortho")
        n, c = image.shape[:2]
        if self.color is not None:
            image = (self.color @ image.reshape(n, c, -1)).reshape(image.shape)
        image = torch.sigmoid(image)
        if self.span != 1.0:
            image = image * self.span
        if self.low != 0.0:
            image = image + self.low
        return image.reshape(self.shape)

    def snapshot(self, image: torch.Tensor) -> torch.Tensor:
        return image.detach()
