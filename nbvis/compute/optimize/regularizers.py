"""Regularizers: the priors applied while optimizing, their presets, and how a spec fits an input."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

__all__ = ["PRESETS", "SIZED_PRESETS", "auto_preset", "Regularizers", "fit_regularizers", "resolve_regularizers", "sized"]

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
    diversity: weight of the diversity penalty between the starts (Olah et al. 2017): the mean
        cosine similarity of each pair of starts' Gram matrices at the objective's layer (of the
        centred inputs when that layer has no channels and positions), so that the starts show
        different facets of what the unit responds to. It acts only with several starts.
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
    diversity: float = 0.0

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
        number("diversity", 0.0)
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
#: third, used for most of the paper's images, is also "yosinski2015"), Lucid's transforms
#: ("lucid"), the Feature Visualization article's recipe ("distill2017", with the Fourier
#: parametrization), and "none" (plain gradient ascent, which makes fooling images). The
#: optimizer and step count that go with each are in :data:`~nbvis.compute.optimize.optimizers.ASCENTS`.
#: "smooth", the default when the data's range is known, adds to Lucid's transforms a light L2
#: decay (towards 0, a dark background) and a light blur; its random shifts reach 16 px at 224 px
#: (Lucid's two ``jitter(8)``), 2 px on a 28 px digit, so that its class images keep their class
#: when shifted by as much, and its optimizer anneals the rate along a cosine so that the images
#: settle. "data", the default when the dataset's samples are known, is "smooth" in the pixel
#: space whitened by the data's covariance (the "data" parametrization: the images keep to the
#: ways the dataset's samples vary, which makes them look like its samples and keep their class
#: when shifted); there the diversity weight is 0.3, which spreads the starts about as far apart
#: as a class's samples are (mean 1 - correlation 0.14-0.30 on the digits) while each start keeps
#: >= 80% of the best start's objective (a larger weight spreads them further at the cost of the
#: objective and of the class's probability under shifts: 0.6 pushes starts out of their class). "lucid", "distill2017", "smooth" and "data" give their transforms for 224-pixel inputs:
#: :func:`fit_regularizers` scales them to the input's size; they keep the starts apart with a
#: diversity penalty.
PRESETS: dict[str, Regularizers] = {
    "none": Regularizers(),
    "yosinski2015-1": Regularizers(blur_width=0.5, blur_every=4, norm_pct=50),
    "yosinski2015-2": Regularizers(decay=0.3, norm_pct=20),
    "yosinski2015-3": Regularizers(decay=1e-4, blur_width=1.0, blur_every=4),
    "yosinski2015-4": Regularizers(blur_width=0.5, blur_every=4, contribution_pct=90),
    "lucid": Regularizers(jitter=8, scale=0.1, rotate=10, diversity=0.3),
    "distill2017": Regularizers(jitter=8, scale=0.1, rotate=10, diversity=0.3),
    "smooth": Regularizers(decay=0.02, blur_width=0.5, blur_every=8, jitter=16, scale=0.1, rotate=10, diversity=0.15),
    "data": Regularizers(decay=0.02, blur_width=0.5, blur_every=8, jitter=16, scale=0.1, rotate=10, diversity=0.3),
}
PRESETS["yosinski2015"] = PRESETS["yosinski2015-3"]

#: The presets whose transforms are given for this input size and scaled to the actual one.
SIZED_PRESETS = ("lucid", "distill2017", "smooth", "data")
REFERENCE_SIZE = 224


def sized(regs: Regularizers, input_shape: Sequence[int]) -> Regularizers:
    """Transforms given for 224-pixel inputs, scaled to ``input_shape``'s larger side.

    Jitter shrinks in proportion to the size (at least 1 pixel); zoom and rotation with the square
    root of the ratio: a 28-pixel digit moves by a pixel and turns by 3.5 degrees.
    """
    if len(input_shape) < 2:
        return regs
    ratio = min(1.0, max(input_shape[-2:]) / REFERENCE_SIZE)
    soft = math.sqrt(ratio)
    return dataclasses.replace(
        regs,
        jitter=max(1, round(regs.jitter * ratio)) if regs.jitter else 0,
        scale=round(regs.scale * soft, 4),
        rotate=round(regs.rotate * soft, 2),
    )


def auto_preset(value_range, whitened: bool = False) -> str:
    """``regularizers="auto"``: ``"data"`` when the data's covariance is known for this input
    (``whitened``, see :func:`~nbvis.compute.optimize.data.whitenable`), else ``"smooth"``
    (transforms, diversity, light decay and blur, inputs clipped into the data's range) when the
    range is known, else ``"yosinski2015"``."""
    if whitened:
        return "data"
    return "smooth" if value_range is not None else "yosinski2015"


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
    norm and contribution clipping) not to the Fourier parametrization, contribution clipping (it
    reads the pixels' gradient) not to the whitened ``"data"`` one: asked for explicitly they raise
    a ValueError; a preset drops them.
    """
    regs = resolve_regularizers(spec)
    if isinstance(spec, str) and spec in SIZED_PRESETS:
        regs = sized(regs, input_shape)
    drop = []
    if len(input_shape) == 1:
        drop += [name for name in _SPATIAL if getattr(regs, name)]
    if parametrization == "fourier":
        drop += [name for name in _PIXEL_ONLY if getattr(regs, name) and name not in drop]
    if parametrization == "data" and regs.contribution_pct:
        drop.append("contribution_pct")  # it reads the pixels' gradient, which this parametrization has not
    if not drop:
        return regs
    if not isinstance(spec, str):
        why = "act on images, and this input is a vector" if len(input_shape) == 1 else "act on pixels: use parametrization='pixel'"
        raise ValueError(f"regularizer(s) {', '.join(drop)} {why}")
    if "blur_every" in drop:
        drop.append("blur_width")
    return dataclasses.replace(regs, **{name: type(getattr(regs, name))(0) for name in drop})
