"""The priors that act on the inputs after each update (Yosinski et al. 2015): L2 decay, a blur
every few steps, and the pixels of small norm or small contribution set to zero, then the
clipping into the input's range."""

from __future__ import annotations

import math

import torch

from .regularizers import Regularizers
from .transforms import as_images, blur, small_pixel_mask, zero_pixels

__all__ = ["after_update"]


@torch.no_grad()
def after_update(param, regs: Regularizers, value_range, count: int, factor: float = 1.0) -> None:
    """The priors after update ``count`` of the parametrization ``param``; the blur falls on
    steps 1, 1 + k, 1 + 2k, ... as in the paper.

    While the rate anneals (``factor`` < 1) the decay and the blur shrink with it: the decay by
    ``factor``, the blur's variance (its diffusion time) by ``factor``, so that the priors keep
    their balance with the smaller gradient steps instead of wearing the image away.
    """
    values = param.param
    if regs.decay:
        values.mul_(1.0 - regs.decay * factor)
    if param.name == "fourier":
        return
    whitened = param.name == "data"
    # the whitened parametrization's pixel priors act on its image, which is then mapped back
    x = as_images(param.image().clone() if whitened else values)
    if regs.blur_every and count % regs.blur_every == 0 and factor > 0:
        x.copy_(blur(x, regs.blur_width * math.sqrt(factor)))
    if regs.norm_pct:
        zero_pixels(x, small_pixel_mask((x * x).sum(dim=1), regs.norm_pct))
    if regs.contribution_pct and values.grad is not None:
        contribution = (x * as_images(values.grad)).sum(dim=1).abs()
        zero_pixels(x, small_pixel_mask(contribution, regs.contribution_pct))
    if value_range is not None:
        x.clamp_(*value_range)
    if whitened:
        param.set_pixels(x)
