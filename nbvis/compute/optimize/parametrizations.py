"""Parametrizations: what the optimizer moves, pixels themselves or a decorrelated Fourier spectrum."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["Fourier", "Pixels"]

# The square root of ImageNet's colour covariance (Lucid), scaled to unit column norm.
_COLOR_SQRT = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float64)
_COLOR_SQRT = _COLOR_SQRT / np.linalg.norm(_COLOR_SQRT, axis=0).max()


class Pixels:
    """The input itself is the parameter."""

    name = "pixel"

    def __init__(self, init: torch.Tensor):
        self.param = init.clone().requires_grad_(True)

    def image(self) -> torch.Tensor:
        return self.param

    def snapshot(self, image: torch.Tensor) -> torch.Tensor:
        return image.detach().clone()  # the parameter changes in place at the update


class Fourier:
    """Decorrelated Fourier coefficients (Olah et al. 2017): 1/f-scaled spectrum, then colours
    decorrelated (3 channels), then a sigmoid into ``value_range``."""

    name = "fourier"

    def __init__(self, shape, starts, generator, device, dtype, value_range):
        channels, h, w = (1, *shape) if len(shape) == 2 else shape
        self.shape = (starts, *shape)
        fy = np.fft.fftfreq(h)[:, None]
        fx = np.fft.rfftfreq(w)[None, :]
        freqs = np.sqrt(fx * fx + fy * fy)
        scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w))
        self.scale = torch.as_tensor(scale, dtype=dtype, device=device)[None, None, :, :, None]
        self.size = (h, w)
        spectrum = torch.randn((starts, channels, *freqs.shape, 2), generator=generator, dtype=torch.float64) * 0.01
        self.param = spectrum.to(device=device, dtype=dtype).requires_grad_(True)
        self.color = (
            torch.as_tensor(_COLOR_SQRT.T, dtype=dtype, device=device) if channels == 3 else None
        )
        low, high = value_range if value_range is not None else (0.0, 1.0)
        self.low, self.span = low, high - low

    def image(self) -> torch.Tensor:
        spectrum = torch.view_as_complex((self.scale * self.param).contiguous())
        image = torch.fft.irfftn(spectrum, s=self.size, norm="ortho") / 4.0
        if self.color is not None:
            image = torch.einsum("nchw,cd->ndhw", image, self.color)
        image = self.low + self.span * torch.sigmoid(image)
        return image.reshape(self.shape)

    def snapshot(self, image: torch.Tensor) -> torch.Tensor:
        return image.detach()
