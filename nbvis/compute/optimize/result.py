"""What a run gives back: each :class:`Step`, the final :class:`Result`, and uint8 images of inputs."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .transforms import as_images

__all__ = ["Result", "Step", "to_uint8"]


def to_uint8(inputs, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Inputs ``(starts, *input_shape)`` as uint8 images ``(starts, H, W, C)``.

    ``(N, C, H, W)`` becomes ``(N, H, W, C)``; ``(N, H, W)`` becomes ``(N, H, W, 1)``; vectors
    ``(N, D)`` become ``(N, 1, D, 1)``. Each start is scaled on its own from its minimum (0) to
    its maximum (255), or from ``value_range`` when given (values outside are clipped).
    """
    x = inputs.detach() if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
    if x.dim() < 2 or x.dim() > 4:
        raise ValueError(f"expected inputs of shape (starts, D), (starts, H, W) or (starts, C, H, W), got {tuple(x.shape)}")
    x = as_images(x.float())
    if value_range is None:
        flat = x.reshape(x.shape[0], -1)
        low = flat.amin(dim=1)[:, None, None, None]
        span = flat.amax(dim=1)[:, None, None, None] - low
    else:
        low = torch.tensor(float(value_range[0]), device=x.device)
        span = torch.tensor(float(value_range[1]) - float(value_range[0]), device=x.device)
    scaled = (x - low) * (255.0 / span.clamp_min(1e-12))
    images = scaled.clamp_(0, 255).round_().to(torch.uint8).permute(0, 2, 3, 1)
    return images.contiguous().cpu().numpy()  # (torch lays out the uint8 pixels faster than numpy)


class Step:
    """One update of a run: ``index`` (1 for the first), ``inputs`` (the inputs this step
    evaluated, ``(starts, *input_shape)``), ``values`` (their objective, ``(starts,)``) and
    ``images`` (uint8 ``(starts, H, W, C)``, computed on first access)."""

    __slots__ = ("index", "_inputs", "_values", "_value_range", "_images")

    def __init__(self, index: int, inputs, values: torch.Tensor, value_range):
        # inputs: a tensor, or a function that makes it on first access (what a consumer that
        # never reads them does not pay for)
        self.index = index
        self._inputs = inputs
        self._values = values
        self._value_range = value_range
        self._images = None

    @property
    def inputs(self) -> torch.Tensor:
        if callable(self._inputs):
            self._inputs = self._inputs()
        return self._inputs

    @property
    def values(self) -> np.ndarray:
        return self._values.float().cpu().numpy().astype(np.float64)

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = to_uint8(self.inputs, self._value_range)
        return self._images

    def __repr__(self) -> str:
        return f"Step({self.index}, values={np.array2string(self.values, precision=4)})"


class _Fields(NamedTuple):
    inputs: torch.Tensor
    history: np.ndarray


class Result(_Fields):
    """What :func:`maximize` returns: the final ``inputs`` ``(starts, *input_shape)`` and the
    objective ``history`` ``(steps, starts)`` (it unpacks as ``inputs, history``), with the
    ``objective`` and the ``value_range`` of the run."""

    def __new__(cls, inputs, history, objective=None, value_range=None):
        self = super().__new__(cls, inputs, history)
        self.objective = objective
        self.value_range = value_range
        return self

    @property
    def images(self) -> np.ndarray:
        """The final inputs as uint8 images ``(starts, H, W, C)``, scaled from the run's
        ``value_range`` when it has one, else each start from its own minimum to maximum."""
        return to_uint8(self.inputs, self.value_range)

    def evaluate(self, model, data=None, **options):
        """How meaningful the images are: see :func:`nbvis.compute.optimize.quality.evaluate`."""
        from .quality import evaluate

        if self.objective is None:
            raise ValueError("this Result has no objective to evaluate; build it with Result(inputs, history, objective)")
        return evaluate(model, self.objective, self.inputs, data=data, **options)
