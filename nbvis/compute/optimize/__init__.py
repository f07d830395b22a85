"""Activation maximization: synthesize the input that a unit responds to most.

Gradient ascent on the input, ``x <- x + lr * d objective / dx`` (Adam by default), for several
random starts at once, with the natural-image priors of Yosinski et al. 2015 (L2 decay, Gaussian
blur every k steps, clipping pixels with small norm or small contribution) plus jitter, random
scale/rotation and total variation, in pixel space, in a decorrelated Fourier space, or in the
pixel space whitened by the dataset's covariance (the ``"data"`` preset, the default with ``dataset=``).

Three ways to use it:

- :func:`maximize` runs to the end and returns ``(inputs, history)``;
- :func:`iter_maximize` yields a :class:`Step` after every update, for live views;
- :class:`OptimizationRun` holds a run's state (parameters, optimizer, random streams) and
  advances it a :meth:`~OptimizationRun.step`, :meth:`~OptimizationRun.advance` (steps for about
  so many seconds) or :meth:`~OptimizationRun.run` at a time, so a run can be paused and resumed.

The model is borrowed only while the run steps: between those calls (while a run is paused) it
is exactly as its owner left it, in train or eval mode, with its parameters' ``requires_grad``
untouched.

The package follows Lucent's ``optvis`` layout: :mod:`.objectives`, :mod:`.regularizers` (with the
presets), :mod:`.transforms`, :mod:`.parametrizations` and :mod:`.run`.
"""

from .objectives import Objective, as_objective, logit, objective, unit
from .regularizers import PRESETS, Regularizers, fit_regularizers, resolve_regularizers
from .result import Result, Step, to_uint8
from .run import OptimizationRun, iter_maximize, maximize
from .transforms import affine_resample, blur, gaussian_kernel, small_pixel_mask, total_variation

__all__ = [
    "PRESETS",
    "Objective",
    "OptimizationRun",
    "Regularizers",
    "Result",
    "Step",
    "as_objective",
    "fit_regularizers",
    "iter_maximize",
    "logit",
    "maximize",
    "objective",
    "resolve_regularizers",
    "to_uint8",
    "unit",
]
