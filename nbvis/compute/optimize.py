"""Activation maximization: synthesize the input that a unit responds to most.

Gradient ascent on the input, ``x <- x + lr * d objective / dx`` (Adam by default), for several
random starts at once, with the natural-image priors of Yosinski et al. 2015 (L2 decay, Gaussian
blur every k steps, clipping pixels with small norm or small contribution) plus jitter, random
scale/rotation and total variation, in pixel space or in a decorrelated Fourier space.

Three ways to use it:

- :func:`maximize` runs to the end and returns ``(inputs, history)``;
- :func:`iter_maximize` yields a :class:`Step` after every update, for live views;
- :class:`OptimizationRun` holds a run's state (parameters, optimizer, random streams) and
  advances it one :meth:`~OptimizationRun.step` at a time, so a run can be paused and resumed.

The model is borrowed for each step only: between steps (while a run is paused) it is exactly
as its owner left it, in train or eval mode, with its parameters' ``requires_grad`` untouched.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nbvis.compute.probe import (
    LayerRef,
    as_input,
    borrowed,
    check_unit,
    forward_with,
    model_device,
    model_dtype,
    resolve_layer,
)

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

# --------------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------------


class Objective:
    """A quantity to maximize, computed from the activations of one forward pass.

    Calling an objective on ``{layer name: activation}`` (the model's output under ``""``)
    gives one value per start, shape ``(starts,)``. Objectives combine with ``+``, ``-``,
    unary ``-`` and multiplication by a number.
    """

    #: dotted names (or modules) whose activations the objective reads; None means every leaf layer
    layers: tuple[LayerRef, ...] | None = ()
    description = "objective"

    def __call__(self, activations: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def bind(self, model: nn.Module) -> "Objective":
        """The same objective with layer references resolved to names of ``model`` (ValueError if unknown)."""
        return self

    def __add__(self, other):
        other = as_objective(other)
        return _Sum([(1.0, self), (1.0, other)])

    def __radd__(self, other):
        if isinstance(other, (int, float)) and other == 0:  # so that sum([...]) works
            return self
        return as_objective(other) + self

    def __sub__(self, other):
        return self + (-1.0) * as_objective(other)

    def __rsub__(self, other):
        return as_objective(other) + (-1.0) * self

    def __neg__(self):
        return (-1.0) * self

    def __mul__(self, weight):
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            return NotImplemented
        return _Sum([(float(weight), self)])

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"Objective({self.description})"


class _Unit(Objective):
    """One unit of a layer: a neuron, a conv channel's mean over positions, or one position."""

    def __init__(self, layer: LayerRef, index, position: Sequence[int] | None = None):
        if not isinstance(layer, (str, nn.Module)):
            raise TypeError(f"a layer is a dotted name (str) or an nn.Module of the model, not {type(layer).__name__}")
        if position is not None:
            if isinstance(position, (int, np.integer)):
                position = (position,)
            try:
                position = tuple(int(p) for p in position)
            except (TypeError, ValueError):
                raise TypeError(f"a position is a tuple of integers such as (y, x), not {position!r}") from None
        self.layer = layer
        self.index = index
        self.position = position
        self.layers = (layer,)
        name = layer if isinstance(layer, str) else type(layer).__name__
        where = "" if position is None else ", " + ", ".join(str(p) for p in position)
        self.description = f"{name or 'output'}[{index}{where}]"

    def bind(self, model):
        name, _ = resolve_layer(model, self.layer)
        return _Unit(name, self.index, self.position)

    def __call__(self, activations):
        name = self.layer
        act = activations[name]
        label = name or "output"
        index = check_unit(label, act, self.index)
        channel = act[:, index]
        if self.position is None:
            return channel.reshape(channel.shape[0], -1).mean(dim=1)
        spatial = tuple(channel.shape[1:])
        if len(self.position) != len(spatial):
            raise ValueError(
                f"layer {label!r} has {len(spatial)} position axes (shape {tuple(act.shape)}), "
                f"so a position needs {len(spatial)} indices; got {self.position}"
            )
        for p, size in zip(self.position, spatial):
            if not -size <= p < size:
                raise ValueError(
                    f"position {self.position} is outside layer {label!r}, whose unit maps are {spatial}"
                )
        return channel[(slice(None),) + self.position]


class _Sum(Objective):
    def __init__(self, terms: list[tuple[float, Objective]]):
        flat: list[tuple[float, Objective]] = []
        for weight, term in terms:
            if isinstance(term, _Sum):
                flat.extend((weight * w, t) for w, t in term.terms)
            else:
                flat.append((weight, term))
        self.terms = flat
        layers: list = []
        for _, term in flat:
            if term.layers is None:
                layers = None
                break
            layers.extend(ref for ref in term.layers if not any(ref is r or ref == r for r in layers))
        self.layers = None if layers is None else tuple(layers)
        text = ""
        for weight, term in flat:
            size = abs(weight)
            part = term.description if size == 1 else f"{size:g}*{term.description}"
            sign = "-" if weight < 0 else "+"
            text += (f" {sign} " if text else ("-" if weight < 0 else "")) + part
        self.description = text

    def bind(self, model):
        return _Sum([(w, t.bind(model)) for w, t in self.terms])

    def __call__(self, activations):
        total = None
        for weight, term in self.terms:
            value = term(activations)
            value = value if weight == 1 else weight * value
            total = value if total is None else total + value
        return total


class _Callable(Objective):
    def __init__(self, fn: Callable, layers: Iterable[LayerRef] | None = None, description: str | None = None):
        if not callable(fn):
            raise TypeError(f"an objective function must be callable, not {type(fn).__name__}")
        self.fn = fn
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        self.layers = None if layers is None else tuple(layers)
        self.description = description or getattr(fn, "__name__", type(fn).__name__)

    def bind(self, model):
        if self.layers is None:
            return self
        names = [resolve_layer(model, ref)[0] for ref in self.layers]
        return _Callable(self.fn, names, self.description)

    def __call__(self, activations):
        return self.fn(activations)


def unit(layer: LayerRef, index: int, position: Sequence[int] | None = None) -> Objective:
    """Unit ``index`` of ``layer``: a neuron of a dense layer, or a conv channel.

    A channel counts as the mean over all its positions, or, with ``position=(y, x)``, as the
    activation at that one position.
    """
    return _Unit(layer, index, position)


def logit(index: int) -> Objective:
    """Output ``index`` of the model itself (a class logit for a classifier)."""
    return _Unit("", index)


def objective(fn: Callable, layers: Iterable[LayerRef] | None = None, description: str | None = None) -> Objective:
    """An objective from a function of ``{layer name: activation}`` returning ``(starts,)`` values.

    ``layers`` names the layers the function reads (default: every leaf layer, plus the model's
    output under the key ``""``).
    """
    return _Callable(fn, layers, description)


def as_objective(spec) -> Objective:
    """Turn any accepted objective form into an :class:`Objective`.

    Accepted: an :class:`Objective`; ``(layer, unit)`` or ``(layer, unit, (y, x))``; an int (a
    class logit of the model's output); a string ``"layer:unit"`` (``"-layer:unit"`` to minimize);
    a callable on the activations dict; a list of these (their sum).
    """
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, bool):
        raise TypeError("an objective cannot be a bool")
    if isinstance(spec, (int, np.integer)):
        return logit(int(spec))
    if isinstance(spec, tuple):
        if len(spec) in (2, 3) and isinstance(spec[0], (str, nn.Module)):
            return unit(*spec)
        raise TypeError(
            f"an objective tuple is (layer, unit) or (layer, unit, position); got {spec!r}"
        )
    if isinstance(spec, str):
        text = spec.strip()
        sign = 1.0
        if text.startswith("-"):
            sign, text = -1.0, text[1:].strip()
        layer, sep, index = text.rpartition(":")
        if not sep:
            raise ValueError(f"an objective string is 'layer:unit' (for example 'conv2:5'); got {spec!r}")
        try:
            number = int(index)
        except ValueError:
            raise ValueError(f"the unit in objective {spec!r} must be an integer, not {index!r}") from None
        term = unit(layer.strip(), number)
        return term if sign > 0 else -term
    if isinstance(spec, list):
        if not spec:
            raise ValueError("an empty list is not an objective; give at least one term")
        return sum((as_objective(s) for s in spec), start=0)
    if callable(spec):
        return _Callable(spec)
    raise TypeError(
        "an objective is (layer, unit), (layer, unit, (y, x)), a class index (int), 'layer:unit', "
        f"a callable on the activations dict, an Objective, or a list of these; got {type(spec).__name__}"
    )


# --------------------------------------------------------------------------------------------
# Regularizers
# --------------------------------------------------------------------------------------------

_SPATIAL = ("blur_every", "jitter", "scale", "rotate", "tv")
_PIXEL_ONLY = ("blur_every", "norm_pct", "contribution_pct")


@dataclasses.dataclass(frozen=True)
class Regularizers:
    """Priors applied while optimizing. All default to off.

    decay: L2 decay, ``x <- (1 - decay) * x`` after each update (on the Fourier coefficients for
        ``parametrization="fourier"``).
    blur_width, blur_every: a Gaussian blur of standard deviation ``blur_width`` pixels every
        ``blur_every`` steps.
    norm_pct: pixels whose norm across channels is below this percentile (per start) are set to 0.
    contribution_pct: pixels whose contribution ``|sum_c x * d objective/dx|`` (the linear estimate
        of how much the objective changes if the pixel is set to 0) is below this percentile are set to 0.
    jitter: the input is shifted by a random offset of up to this many pixels (wrapping around)
        before each forward pass.
    scale, rotate: a random zoom by a factor in ``[1 - scale, 1 + scale]`` and a random rotation in
        ``[-rotate, rotate]`` degrees before each forward pass.
    tv: weight of the total variation penalty (mean absolute difference between neighbouring pixels).
    """

    decay: float = 0.0
    blur_width: float = 0.0
    blur_every: int = 0
    norm_pct: float = 0.0
    contribution_pct: float = 0.0
    jitter: int = 0
    scale: float = 0.0
    rotate: float = 0.0
    tv: float = 0.0

    def __post_init__(self):
        def number(name, low, high=math.inf, integer=False, high_open=False):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"regularizer {name} must be a number, not {type(value).__name__}")
            if integer and value != int(value):
                raise ValueError(f"regularizer {name} must be a whole number, not {value!r}")
            above = value < high if high_open else value <= high
            if not (low <= value and above) or math.isnan(value):
                bracket = ")" if high_open else "]"
                raise ValueError(f"regularizer {name} must be in [{low:g}, {high:g}{bracket}, not {value!r}")
            object.__setattr__(self, name, int(value) if integer else float(value))

        number("decay", 0.0, 1.0, high_open=True)
        number("blur_width", 0.0, 100.0)
        number("blur_every", 0, 1_000_000, integer=True)
        number("norm_pct", 0.0, 100.0, high_open=True)
        number("contribution_pct", 0.0, 100.0, high_open=True)
        number("jitter", 0, 10_000, integer=True)
        number("scale", 0.0, 1.0, high_open=True)
        number("rotate", 0.0, 180.0)
        number("tv", 0.0)
        if self.blur_every and not self.blur_width:
            object.__setattr__(self, "blur_every", 0)  # a blur of width 0 is no blur

    def active(self) -> list[str]:
        """Names of the regularizers that are switched on."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) and f.name != "blur_width"]

    def replace(self, **changes) -> "Regularizers":
        """A copy with some values changed."""
        return resolve_regularizers(dataclasses.asdict(self) | changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


#: Named regularizer sets: the four hyperparameter sets of Table 1 in Yosinski et al. 2015 (the
#: third, used for most of the paper's images, is also "yosinski2015"), Lucid's transforms, and
#: "none" (plain gradient ascent, which makes fooling images).
PRESETS: dict[str, Regularizers] = {
    "none": Regularizers(),
    "yosinski2015-1": Regularizers(blur_width=0.5, blur_every=4, norm_pct=50),
    "yosinski2015-2": Regularizers(decay=0.3, norm_pct=20),
    "yosinski2015-3": Regularizers(decay=1e-4, blur_width=1.0, blur_every=4),
    "yosinski2015-4": Regularizers(blur_width=0.5, blur_every=4, contribution_pct=90),
    "lucid": Regularizers(jitter=8, scale=0.1, rotate=10),
}
PRESETS["yosinski2015"] = PRESETS["yosinski2015-3"]


def resolve_regularizers(spec) -> Regularizers:
    """A preset name, a dict of :class:`Regularizers` fields, a Regularizers, or None (no priors)."""
    if spec is None:
        return PRESETS["none"]
    if isinstance(spec, Regularizers):
        return spec
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"unknown regularizer preset {spec!r}; the presets are: {', '.join(PRESETS)}")
        return PRESETS[spec]
    if isinstance(spec, dict):
        known = [f.name for f in dataclasses.fields(Regularizers)]
        unknown = [k for k in spec if k not in known]
        if unknown:
            raise ValueError(f"unknown regularizer(s) {', '.join(map(repr, unknown))}; the regularizers are: {', '.join(known)}")
        return Regularizers(**spec)
    raise TypeError(
        f"regularizers must be a preset name ({', '.join(PRESETS)}), a dict or a Regularizers, not {type(spec).__name__}"
    )


def fit_regularizers(spec, input_shape: Sequence[int], parametrization: str = "pixel") -> Regularizers:
    """Resolve ``spec`` (see :func:`resolve_regularizers`) for inputs of ``input_shape``.

    Image priors (blur, jitter, scale, rotate, tv) do not apply to vectors, and pixel priors (blur,
    norm and contribution clipping) not to the Fourier parametrization: asked for explicitly they
    raise a ValueError; a preset drops them.
    """
    regs = resolve_regularizers(spec)
    drop = []
    if len(input_shape) == 1:
        drop += [name for name in _SPATIAL if getattr(regs, name)]
    if parametrization == "fourier":
        drop += [name for name in _PIXEL_ONLY if getattr(regs, name) and name not in drop]
    if not drop:
        return regs
    if not isinstance(spec, str):
        why = "act on images, and this input is a vector" if len(input_shape) == 1 else "act on pixels: use parametrization='pixel'"
        raise ValueError(f"regularizer(s) {', '.join(drop)} {why}")
    if "blur_every" in drop:
        drop.append("blur_width")
    return dataclasses.replace(regs, **{name: type(getattr(regs, name))(0) for name in drop})


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
    out = images.reshape(n * c, 1, h, w)
    for axis, size in ((2, h), (3, w)):
        r = min(radius, size - 1)
        if r <= 0:
            continue
        kernel = gaussian_kernel(sigma, r).to(images.device, images.dtype)
        if axis == 2:
            out = F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), kernel.view(1, 1, -1, 1))
        else:
            out = F.conv2d(F.pad(out, (r, r, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return out.reshape(n, c, h, w)


def small_pixel_mask(score: torch.Tensor, percentile: float) -> torch.Tensor:
    """``score < numpy.percentile(score, percentile)`` for each start; ``score`` is ``(N, H, W)``.

    The percentile interpolates between the ranks ``k`` and ``k + 1`` around it, so the mask holds
    exactly the values at ranks up to ``k`` (or below it when it falls on ``k``): one selection,
    no sort, and the same mask for any increasing function of the scores.
    """
    flat = score.reshape(score.shape[0], -1)
    position = percentile / 100.0 * (flat.shape[1] - 1)
    rank = math.floor(position)
    value = flat.kthvalue(rank + 1, dim=1, keepdim=True).values
    mask = flat <= value if position > rank else flat < value
    return mask.reshape(score.shape)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between vertical and horizontal neighbours, per start: ``(N,)``."""
    dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().flatten(1)
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().flatten(1)
    parts = [d.mean(dim=1) for d in (dy, dx) if d.shape[1]]
    return sum(parts) if parts else images.new_zeros(images.shape[0])


def affine_resample(images: torch.Tensor, zoom: float, degrees: float) -> torch.Tensor:
    """Zoom by ``zoom`` and rotate by ``degrees`` about the centre, keeping the size (edges reflected)."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    theta = images.new_tensor([[cos, -sin, 0.0], [sin, cos, 0.0]]).expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


# --------------------------------------------------------------------------------------------
# Parametrizations
# --------------------------------------------------------------------------------------------

# The square root of ImageNet's colour covariance (Lucid), scaled to unit column norm.
_COLOR_SQRT = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float64)
_COLOR_SQRT = _COLOR_SQRT / np.linalg.norm(_COLOR_SQRT, axis=0).max()


def _as_images(x: torch.Tensor) -> torch.Tensor:
    """View a batch of inputs as ``(N, C, H, W)``: vectors as ``(N, 1, 1, D)``, maps as ``(N, 1, H, W)``."""
    if x.dim() == 2:
        return x[:, None, None, :]
    if x.dim() == 3:
        return x[:, None]
    return x


class _Pixels:
    """The input itself is the parameter."""

    name = "pixel"

    def __init__(self, init: torch.Tensor):
        self.param = init.clone().requires_grad_(True)

    def image(self) -> torch.Tensor:
        return self.param

    def snapshot(self, image: torch.Tensor) -> torch.Tensor:
        return image.detach().clone()  # the parameter changes in place at the update


class _Fourier:
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


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


def to_uint8(inputs, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Inputs ``(starts, *input_shape)`` as uint8 images ``(starts, H, W, C)``.

    ``(N, C, H, W)`` becomes ``(N, H, W, C)``; ``(N, H, W)`` becomes ``(N, H, W, 1)``; vectors
    ``(N, D)`` become ``(N, 1, D, 1)``. Each start is scaled on its own from its minimum (0) to
    its maximum (255), or from ``value_range`` when given (values outside are clipped).
    """
    x = inputs.detach() if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
    if x.dim() < 2 or x.dim() > 4:
        raise ValueError(f"expected inputs of shape (starts, D), (starts, H, W) or (starts, C, H, W), got {tuple(x.shape)}")
    x = _as_images(x.float())
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
        return self._values.cpu().numpy().astype(np.float64)

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = to_uint8(self.inputs, self._value_range)
        return self._images

    def __repr__(self) -> str:
        return f"Step({self.index}, values={np.array2string(self.values, precision=4)})"


class Result(NamedTuple):
    """What :func:`maximize` returns: the final ``inputs`` ``(starts, *input_shape)`` and the
    objective ``history`` ``(steps, starts)``."""

    inputs: torch.Tensor
    history: np.ndarray

    def images(self, value_range=None) -> np.ndarray:
        """The final inputs as uint8 images ``(starts, H, W, C)`` (see :func:`to_uint8`)."""
        return to_uint8(self.inputs, value_range)


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
            self._param = _Pixels(self._initial_pixels(init, device, dtype))
        else:
            self._param = _Fourier(self.input_shape, self.starts, self._generator, device, dtype, value_range)
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
        if self._layers is None and isinstance(output, torch.Tensor):
            acts = {**acts, "": output}
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
        x = _as_images(param)
        if regs.blur_every and count % regs.blur_every == 0:
            x.copy_(blur(x, regs.blur_width))
        if regs.norm_pct:
            x.masked_fill_(small_pixel_mask((x * x).sum(dim=1), regs.norm_pct)[:, None], 0.0)
        if regs.contribution_pct and param.grad is not None:
            contribution = (x * _as_images(param.grad)).sum(dim=1).abs()
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
                pictures = _as_images(image)
                moved = self._transform(pictures)
                seen = moved.reshape(image.shape)
            values = self._evaluate(seen)
            loss = -values.sum()
            if regs.tv:
                loss = loss + regs.tv * total_variation(_as_images(image)).sum()
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
                new = torch.stack(pending).cpu().numpy().astype(np.float64)
                self._history = np.concatenate([self._history, new])
            return self._history.copy()  # the caller may edit it; the run keeps its own

    def evaluate(self) -> np.ndarray:
        """The objective of the current inputs, without transforms: ``(starts,)``."""
        with borrowed(self.model), torch.no_grad():
            return self._evaluate(self.inputs).cpu().numpy().astype(np.float64)

    def result(self) -> Result:
        return Result(self.inputs, self.history)

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
