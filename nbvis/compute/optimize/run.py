"""The run: :class:`OptimizationRun` (resumable), :func:`iter_maximize`, :func:`maximize`, and what they give back.

The model is borrowed for each step only: between steps (while a run is paused) it is exactly
as its owner left it, in train or eval mode, with its parameters' ``requires_grad`` untouched.
"""

from __future__ import annotations

import math
import random
import threading
from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch import nn

from nbvis.compute.probe import as_input, borrowed, forward_with, model_device, model_dtype
from nbvis.compute.units import resolve_output

from .objectives import as_objective
from .parametrizations import Fourier, Pixels
from .regularizers import Regularizers, fit_regularizers
from .transforms import affine_resample, as_images, blur, small_pixel_mask, total_variation

__all__ = ["OptimizationRun", "Result", "Step", "iter_maximize", "maximize", "to_uint8"]


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
        span = (flat.amax(dim=1) - flat.amin(dim=1))[:, None, None, None]
    else:
        low = torch.tensor(float(value_range[0]), device=x.device)
        span = torch.tensor(float(value_range[1]) - float(value_range[0]), device=x.device)
    scaled = (x - low) * (255.0 / span.clamp_min(1e-12))
    images = scaled.clamp_(0, 255).round_().to(torch.uint8).permute(0, 2, 3, 1)
    return np.ascontiguousarray(images.cpu().numpy())


class Step:
    """One update of a run: ``index`` (1 for the first), ``inputs`` (the inputs this step
    evaluated, ``(starts, *input_shape)``), ``values`` (their objective, ``(starts,)``) and
    ``images`` (uint8 ``(starts, H, W, C)``, computed on first access)."""

    __slots__ = ("index", "inputs", "_values", "_value_range", "_images")

    def __init__(self, index: int, inputs: torch.Tensor, values: torch.Tensor, value_range):
        self.index = index
        self.inputs = inputs
        self._values = values
        self._value_range = value_range
        self._images = None

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


class _Pair(NamedTuple):
    inputs: torch.Tensor
    history: np.ndarray


class Result(_Pair):
    """What :func:`maximize` returns: the final ``inputs`` ``(starts, *input_shape)`` and the
    objective ``history`` ``(steps, starts)``; it unpacks as ``inputs, history``."""

    value_range: tuple[float, float] | None = None  # the run's, for :attr:`images`

    @property
    def images(self) -> np.ndarray:
        """The final inputs as uint8 images ``(starts, H, W, C)`` (see :func:`to_uint8`)."""
        return to_uint8(self.inputs, self.value_range)


def _check_shape(input_shape) -> tuple[int, ...]:
    if isinstance(input_shape, (int, np.integer)) and not isinstance(input_shape, bool):
        input_shape = (int(input_shape),)
    try:
        shape = tuple(int(s) for s in input_shape)
        ok = all(s == d for s, d in zip(shape, input_shape))
    except (TypeError, ValueError):
        ok = False
    if not ok or not 1 <= len(shape) <= 3 or min(shape) < 1:
        raise ValueError(
            "input_shape is the shape of one input without the batch axis: (features,), (H, W) or "
            f"(C, H, W) with positive sizes; got {input_shape!r}"
        )
    return shape


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return int(value)


class OptimizationRun:
    """A resumable activation-maximization run.

    It holds the synthetic inputs, the optimizer state and the random streams, and borrows the
    model only inside :meth:`step`. ``run.step()`` does one update; ``run.iter(n)`` yields ``n``
    steps; ``run.inputs``, ``run.images`` and ``run.history`` read the current state. Running 10
    steps and then 10 more gives exactly the same result as running 20 at once.
    """

    def __init__(
        self,
        model: nn.Module,
        objective,
        input_shape,
        *,
        starts: int = 1,
        regularizers=None,
        parametrization: str = "pixel",
        seed: int = 0,
        lr: float = 0.05,
        optimizer: str = "adam",
        value_range: tuple[float, float] | None = None,
        init=None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        self.model = model
        self.input_shape = _check_shape(input_shape)
        self.starts = _positive_int("starts", starts)
        self.seed = _positive_int("seed", seed, minimum=0)
        if parametrization not in ("pixel", "fourier"):
            raise ValueError(f"parametrization must be 'pixel' or 'fourier', not {parametrization!r}")
        if parametrization == "fourier" and len(self.input_shape) == 1:
            raise ValueError("the Fourier parametrization needs an image input_shape, (H, W) or (C, H, W)")
        if parametrization == "fourier" and init is not None:
            raise ValueError("init sets pixel values: use it with parametrization='pixel'")
        self.parametrization = parametrization
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or not math.isfinite(lr):
            raise ValueError(f"lr must be a positive number, not {lr!r}")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd' (plain gradient ascent), not {optimizer!r}")
        if value_range is not None:
            try:
                low, high = (float(v) for v in value_range)
            except (TypeError, ValueError):
                raise TypeError(f"value_range is a pair (low, high), not {value_range!r}") from None
            if not low < high:
                raise ValueError(f"value_range needs low < high, got {value_range!r}")
            value_range = (low, high)
        self.value_range = value_range
        self.regularizers = regularizers  # validated by the setter
        self.objective = as_objective(objective).bind(model)
        self._layers = None if self.objective.layers is None else list(self.objective.layers)

        device, dtype = model_device(model), model_dtype(model)
        self._generator = torch.Generator().manual_seed(self.seed)
        self._random = random.Random(self.seed)
        if parametrization == "pixel":
            self._param = Pixels(self._initial_pixels(init, device, dtype))
        else:
            self._param = Fourier(self.input_shape, self.starts, self._generator, device, dtype, value_range)
        self._optimizer_name, self.lr = optimizer, float(lr)
        self._optimizer = self._make_optimizer()
        self._device, self._dtype = device, dtype
        self._count = 0
        self._pending: list[torch.Tensor] = []  # objective values not yet copied into _history
        self._history = np.zeros((0, self.starts))
        self._history_lock = threading.Lock()  # steps may run on another thread than the reader
        self._check_objective()

    # -- set-up ---------------------------------------------------------------------------

    @property
    def regularizers(self) -> Regularizers:
        """The regularizers (settable: a preset name, dict or Regularizers; used from the next step)."""
        return self._regularizers

    @regularizers.setter
    def regularizers(self, spec):
        self._regularizers = fit_regularizers(spec, self.input_shape, self.parametrization)

    def _make_optimizer(self):
        params = [self._param.param]
        if self._optimizer_name == "adam":
            return torch.optim.Adam(params, lr=self.lr)
        return torch.optim.SGD(params, lr=self.lr)

    def _initial_pixels(self, init, device, dtype) -> torch.Tensor:
        shape = (self.starts, *self.input_shape)
        if init is not None:
            x = as_input(init, self.model, name="init")
            if tuple(x.shape) == self.input_shape:
                x = x.expand(shape)
            if tuple(x.shape) != shape:
                raise ValueError(f"init must have shape {self.input_shape} or {shape}, not {tuple(x.shape)}")
            return x.clone()
        noise = torch.randn(shape, generator=self._generator, dtype=torch.float64)
        if self.value_range is None:
            x = 0.1 * noise
        else:
            low, high = self.value_range
            x = ((low + high) / 2 + 0.1 * (high - low) * noise).clamp(low, high)
        return x.to(device=device, dtype=dtype)

    def _check_objective(self):
        """One forward pass on the starting inputs, so bad objectives fail before the first step."""
        with borrowed(self.model), torch.enable_grad():
            values = self._evaluate(self._param.image())
        if not values.requires_grad:
            raise ValueError(
                f"the objective {self.objective.description} does not depend on the input (no gradient reaches it)"
            )

    def _evaluate(self, inputs: torch.Tensor) -> torch.Tensor:
        output, acts = forward_with(self.model, inputs, self._layers, detach=False)
        final = resolve_output(output)
        if self._layers is None and final is not None:
            acts[""] = final
        values = self.objective(acts)
        if not isinstance(values, torch.Tensor):
            raise TypeError(
                f"the objective {self.objective.description} must return a tensor of shape ({self.starts},), "
                f"not {type(values).__name__}"
            )
        if values.dim() == 0:
            values = values.expand(self.starts)
        if tuple(values.shape) != (self.starts,):
            raise ValueError(
                f"the objective {self.objective.description} must give one value per start, shape "
                f"({self.starts},); it gave shape {tuple(values.shape)}"
            )
        if not values.is_floating_point():
            raise TypeError(f"the objective must give floating values, not {values.dtype}")
        return values

    def _follow_device(self):
        """Move the run to the model's device and dtype if the model moved while the run was paused."""
        device, dtype = model_device(self.model), model_dtype(self.model)
        if (device, dtype) == (self._device, self._dtype):
            return

        def moved(value):
            return value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)

        param = self._param.param
        param.data = moved(param.data)
        for name in ("scale", "color"):
            value = getattr(self._param, name, None)
            if isinstance(value, torch.Tensor):
                setattr(self._param, name, moved(value))
        for state in self._optimizer.state.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.dim() > 0:
                    state[key] = moved(value)
        with self._history_lock:
            self._pending = [v.to(device) for v in self._pending]
        self._device, self._dtype = device, dtype

    # -- running --------------------------------------------------------------------------

    def _transform(self, images: torch.Tensor) -> torch.Tensor:
        regs = self._regularizers
        if regs.jitter:
            dy = self._random.randint(-regs.jitter, regs.jitter)
            dx = self._random.randint(-regs.jitter, regs.jitter)
            if dy or dx:
                images = torch.roll(images, shifts=(dy, dx), dims=(2, 3))
        if regs.scale or regs.rotate:
            zoom = 1.0 + self._random.uniform(-regs.scale, regs.scale)
            degrees = self._random.uniform(-regs.rotate, regs.rotate)
            images = affine_resample(images, zoom, degrees)
        return images

    @torch.no_grad()
    def _regularize(self):
        """The priors after an update; the blur falls on steps 1, 1 + k, 1 + 2k, ... as in the paper."""
        regs, param, count = self._regularizers, self._param.param, self._count
        if regs.decay:
            param.mul_(1.0 - regs.decay)
        if self.parametrization != "pixel":
            return
        x = as_images(param)
        if regs.blur_every and count % regs.blur_every == 0:
            x.copy_(blur(x, regs.blur_width))
        if regs.norm_pct:
            x.masked_fill_(small_pixel_mask((x * x).sum(dim=1), regs.norm_pct)[:, None], 0.0)
        if regs.contribution_pct and param.grad is not None:
            contribution = (x * as_images(param.grad)).sum(dim=1).abs()
            x.masked_fill_(small_pixel_mask(contribution, regs.contribution_pct)[:, None], 0.0)
        if self.value_range is not None:
            param.clamp_(*self.value_range)

    def step(self) -> Step:
        """One gradient-ascent update of every start; the model is borrowed only meanwhile."""
        self._follow_device()
        regs = self._regularizers
        with borrowed(self.model), torch.enable_grad():
            image = self._param.image()
            snapshot = self._param.snapshot(image)
            seen = image
            if regs.jitter or regs.scale or regs.rotate or regs.tv:
                pictures = as_images(image)
                moved = self._transform(pictures)
                seen = moved.reshape(image.shape)
            values = self._evaluate(seen)
            loss = -values.sum()
            if regs.tv:
                loss = loss + regs.tv * total_variation(as_images(image)).sum()
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._optimizer.step()
            self._regularize()
            self._count += 1
        values = values.detach()
        with self._history_lock:
            self._pending.append(values)
        return Step(self._count, snapshot, values, self.value_range)

    def iter(self, steps: int) -> Iterator[Step]:
        """Yield ``steps`` further steps (``steps`` is checked at the call, not at the first step)."""
        steps = _positive_int("steps", steps, minimum=0)
        return (self.step() for _ in range(steps))

    def run(self, steps: int) -> "OptimizationRun":
        """Do ``steps`` further steps; return the run."""
        for _ in self.iter(steps):
            pass
        return self

    # -- state ----------------------------------------------------------------------------

    @property
    def step_count(self) -> int:
        return self._count

    @property
    def inputs(self) -> torch.Tensor:
        """The current inputs ``(starts, *input_shape)``, detached."""
        with torch.no_grad():
            return self._param.snapshot(self._param.image())

    @property
    def images(self) -> np.ndarray:
        """The current inputs as uint8 images ``(starts, H, W, C)``."""
        return to_uint8(self.inputs, self.value_range)

    @property
    def history(self) -> np.ndarray:
        """Objective values so far, ``(steps, starts)`` float64."""
        with self._history_lock:
            pending, self._pending = self._pending, []
            if pending:
                new = torch.stack(pending).float().cpu().numpy().astype(np.float64)
                self._history = np.concatenate([self._history, new])
            return self._history.copy()  # the caller may edit it; the run keeps its own

    def evaluate(self) -> np.ndarray:
        """The objective of the current inputs, without transforms: ``(starts,)``."""
        with borrowed(self.model), torch.no_grad():
            return self._evaluate(self.inputs).float().cpu().numpy().astype(np.float64)

    def result(self) -> Result:
        result = Result(self.inputs, self.history)
        result.value_range = self.value_range
        return result

    def __repr__(self) -> str:
        return (
            f"OptimizationRun({self.objective.description}, input_shape={self.input_shape}, "
            f"starts={self.starts}, steps={self._count}, {self.parametrization})"
        )


def iter_maximize(model: nn.Module, objective, input_shape, steps: int = 256, starts: int = 1, **options) -> Iterator[Step]:
    """Like :func:`maximize`, but yields a :class:`Step` after every update.

    Arguments are checked at the call, before the first step.
    """
    run = OptimizationRun(model, objective, input_shape, starts=starts, **options)
    return run.iter(steps)


def maximize(
    model: nn.Module,
    objective,
    input_shape,
    steps: int = 256,
    starts: int = 1,
    regularizers=None,
    parametrization: str = "pixel",
    seed: int = 0,
    lr: float = 0.05,
    **options,
) -> Result:
    """Synthesize inputs that maximize ``objective``; return ``(inputs, history)``.

    model: any ``nn.Module``; it is used in eval mode, without gradients on its parameters, and
        left exactly as it was.
    objective: ``(layer, unit)`` (a neuron, or a conv channel's mean), ``(layer, unit, (y, x))``
        (one position), an int (a class logit of the output), ``"layer:unit"``, a callable on
        ``{layer name: activation}``, or sums and negatives of :func:`unit` / :func:`logit` objectives.
    input_shape: one input without the batch axis, e.g. ``(3, 64, 64)``, ``(28, 28)`` or ``(20,)``.
    steps, starts: updates to do, and random starts optimized together in one batch.
    regularizers: None (plain gradient ascent), a preset name (see :data:`PRESETS`), a dict of
        :class:`Regularizers` fields, or a Regularizers.
    parametrization: ``"pixel"`` or ``"fourier"`` (decorrelated, sigmoid-bounded into ``value_range``).
    seed: seeds the starts and the random transforms: the same seed gives the same result.
    lr: learning rate of the optimizer (``optimizer="adam"`` by default, ``"sgd"`` for plain ascent).
    options: ``optimizer``, ``value_range=(low, high)`` (pixel values are clipped into it),
        ``init`` (starting pixels, ``input_shape`` or ``(starts, *input_shape)``).

    Returns a :class:`Result`: ``inputs`` ``(starts, *input_shape)`` on the model's device and
    ``history`` ``(steps, starts)``, the objective at each step.
    """
    run = OptimizationRun(
        model,
        objective,
        input_shape,
        starts=starts,
        regularizers=regularizers,
        parametrization=parametrization,
        seed=seed,
        lr=lr,
        **options,
    )
    return run.run(steps).result()
