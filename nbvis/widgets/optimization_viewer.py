"""OptimizationViewer: watch the input that maximizes a unit form, live, for several random starts."""

from __future__ import annotations

import math
import random
from typing import Sequence

import numpy as np
import torch
import traitlets
from torch import nn

from ..compute.optimize import PRESETS, OptimizationRun, Regularizers, Step, fit_regularizers, resolve_regularizers
from ..compute.optimize.arguments import positive_int
from ..compute.optimize.data import check_range, data_statistics, whitenable
from ..compute.optimize.optimizers import ascent_of
from ..compute.optimize.quality import Quality, evaluate
from ..compute.optimize.regularizers import auto_preset
from ..compute.optimize.run import STREAM_SECONDS
from ._base import STATIC, NbvisWidget
from ._budget import MESSAGE_BUDGET, factors_to_fit, shrunk
from ._jobs import JobView, Throttle
from ._traits import Array

__all__ = ["OptimizationViewer"]

MAX_CURVE_POINTS = 1000


class OptimizationViewer(JobView, NbvisWidget):
    """Activation maximization shown while it runs (Yosinski et al. 2015).

    ``objective``: ``(layer, unit)``, ``(layer, unit, (y, x))``, a class index, ``"layer:unit"``, a
    callable on the activations, or an Objective (see :func:`nbvis.maximize`). ``input_shape``: one
    input without the batch axis. ``starts`` random inputs are optimized together for ``steps``
    steps with ``regularizers`` (a preset name, a dict, or a Regularizers; a preset brings its
    optimizer and step count). ``dataset=`` (samples, an ``(inputs, targets)`` pair or a Dataset) or
    ``value_range=(low, high)`` keeps the inputs inside the data's range, shows that range and each
    hovered pixel's value in data units, and finds each start's nearest top dataset example.
    The default ``regularizers="auto"`` is ``"data"`` (the ``"smooth"`` preset in the pixel space
    whitened by the dataset's covariance) when ``dataset=`` is given and its samples have at most
    1024 values, else ``"smooth"`` (Lucid's transforms scaled to the input, a diversity penalty
    between the starts, light decay and blur) when the range is known, else ``"yosinski2015"``.

    The run goes on in the background (an asyncio task on the kernel's loop, yielding after the
    steps of each frame, 0.1 s of them at most), so the kernel answers other cells meanwhile. In
    the view: start (new random starts), stop, resume; the step counter; the objective curve of
    every start; the current inputs side by side (images, or bar plots for vector inputs), at most
    ``fps`` frames a second; sliders for the regularizers, used from the next start or resume.

    From Python: :meth:`start`, :meth:`stop`, :meth:`resume`, :meth:`wait`; ``images`` (uint8,
    starts x H x W x C), ``inputs`` (the tensor), ``history`` (steps x starts); ``state`` and
    ``autostart`` as in every view that runs in the background (see
    :class:`~nbvis.widgets._jobs.JobView`).
    """

    _esm = STATIC / "optimization_viewer.js"
    _css = STATIC / "optimization_viewer.css"

    objective_text = traitlets.Unicode(read_only=True).tag(sync=True)
    input_kind = traitlets.Enum(("image", "vector"), default_value="image", read_only=True).tag(sync=True)
    parametrization = traitlets.Unicode("pixel", read_only=True).tag(sync=True)
    n_starts = traitlets.Int(1, read_only=True).tag(sync=True)
    steps = traitlets.Int(256, min=1).tag(sync=True)
    seed = traitlets.Int(0, min=0).tag(sync=True)
    step = traitlets.Int(0, read_only=True).tag(sync=True)
    values = traitlets.List(traitlets.Float(), read_only=True).tag(sync=True)
    preset = traitlets.Unicode("yosinski2015").tag(sync=True)
    presets = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    regularizers = traitlets.Dict().tag(sync=True)
    adjustable = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    pending = traitlets.Bool(False, read_only=True).tag(sync=True)
    feature_names = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    value_range = traitlets.List(traitlets.Float(), read_only=True).tag(sync=True)  # [] or [low, high]
    quality_rows = traitlets.List(traitlets.Dict(), read_only=True).tag(sync=True)
    # a narrow layout (the Explorer's column): the priors folded away, the images and the curve
    # fitted to the column's width
    compact = traitlets.Bool(False).tag(sync=True)
    fps = traitlets.Float(10.0)
    frames_sent = traitlets.Int(0, read_only=True)
    # images too big for one message go averaged down over frame_pooled x frame_pooled blocks
    # (``images`` and ``result`` keep them whole)
    frame_pooled = traitlets.Int(1, read_only=True).tag(sync=True)

    _quality_step = -1
    _frame = Array("uint8")  # (starts, H, W, 1 or 3), images
    _vector = Array()  # (starts, D), vector inputs
    _curve = Array()  # (rows, starts), the objective history (thinned to 1000 rows)
    _curve_steps = Array("int32")  # (rows,), the step of each row
    _frame_range = Array()  # (starts, 2), the data values that uint8 0 and 255 stand for

    def __init__(
        self,
        model: nn.Module,
        objective=None,
        input_shape: Sequence[int] | None = None,
        steps: int | None = None,
        starts: int = 4,
        regularizers="auto",
        *,
        parametrization: str | None = None,
        seed: int | None = None,
        lr: float | None = None,
        optimizer: str | None = None,
        value_range: tuple[float, float] | None = None,
        dataset=None,
        diversity: float | None = None,
        feature_names: Sequence[str] | None = None,
        autostart: bool = True,
        **kwargs,
    ):
        if objective is None or input_shape is None:
            raise TypeError("OptimizationViewer needs objective=... and input_shape=... (one input, no batch axis)")
        if steps is not None:
            steps = positive_int("steps", steps)
        self.model = model
        value_range = check_range(value_range)
        # one pass over the data for every run: its range and pixel statistics
        stats = None if dataset is None else data_statistics(dataset)
        if value_range is None and stats is not None:
            value_range = (stats.low, stats.high)
        self._dataset = dataset
        if isinstance(regularizers, str) and regularizers == "auto":
            regularizers = auto_preset(value_range, whitenable(stats, input_shape))
        self._options = dict(
            objective=objective,
            input_shape=input_shape,
            starts=starts,
            parametrization=parametrization,
            lr=lr,
            optimizer=optimizer,
            value_range=value_range,
            dataset=stats,
            diversity=diversity,
        )
        if seed is None:
            seed = _new_seed()
        # Build the first run now: bad arguments raise here, before any view exists.
        self._run = OptimizationRun(model, regularizers=regularizers, seed=seed, **self._options)
        self._chosen = dict(optimizer=optimizer, lr=lr)
        # the optimizer of the last preset chosen stays for later starts, whatever the sliders say
        self._options.update(optimizer=self._run.ascent, lr=None, parametrization=self._run.parametrization)
        steps = self._run.ascent.steps if steps is None else steps
        self._quality: Quality | None = None
        shape = self._run.input_shape
        if feature_names is not None:
            feature_names = [str(n) for n in feature_names]
            if len(shape) != 1 or len(feature_names) != shape[0]:
                raise ValueError(
                    f"feature_names needs one name per input feature; the input shape is {shape}, "
                    f"and {len(feature_names)} names were given"
                )
        self._throttle = Throttle(0.1)
        super().__init__(steps=steps, seed=seed, **kwargs)
        self.set_trait("objective_text", self._run.objective.description)
        self.set_trait("input_kind", "vector" if len(shape) == 1 else "image")
        self.set_trait("parametrization", self._run.parametrization)
        self.set_trait("n_starts", self._run.starts)
        self.set_trait("presets", list(PRESETS))
        self.set_trait("adjustable", self._adjustable())
        self.set_trait("feature_names", feature_names or [])
        self.set_trait("value_range", list(value_range) if value_range is not None else [])
        self.set_trait("regularizers", self._run.regularizers.as_dict())
        self.preset = regularizers if isinstance(regularizers, str) else self._preset_of(self._run.regularizers)
        self._publish()
        self.observe(self._on_regularizers, names=["regularizers"])
        self.observe(self._on_preset, names=["preset"])
        self.observe(self._on_fps, names=["fps"])
        self._seed_chosen = False  # a seed set by the person is used by the next start
        self.observe(self._on_seed, names=["seed"])
        self._on_fps({"new": self.fps})
        if autostart:
            self._launch()
        else:  # a view that waits for its start holds no activations meanwhile
            self._run._forget_first_pass()

    # ----- public API ------------------------------------------------------------------------

    @property
    def run(self) -> OptimizationRun:
        """The current run (its state, objective and regularizers)."""
        return self._run

    @property
    def images(self) -> np.ndarray:
        """The current inputs as uint8 images, ``(starts, H, W, C)`` (vectors: ``(starts, 1, D, 1)``)."""
        return self._run.images

    @property
    def inputs(self) -> torch.Tensor:
        """The current inputs, ``(starts, *input_shape)``, on the model's device."""
        return self._run.inputs

    @property
    def history(self) -> np.ndarray:
        """The objective of every start at every step so far, ``(steps, starts)``."""
        return self._run.history

    def _picture(self):
        """The current inputs of every start side by side, with the objective reached."""
        from ._picture import caption, fit_zoom, gray, mosaic

        images = self._run.images  # (starts, H, W, C) uint8
        if not len(images):
            return None
        tiles = [gray(image.transpose(2, 0, 1)) for image in images]
        h, w = tiles[0].shape[:2]
        picture = mosaic(tiles, cols=len(tiles), gap=4, zoom=fit_zoom(w, h, 96))
        values = ", ".join(f"{v:.3g}" for v in self.values) if self.values else "not started"
        return caption(picture, f"{self.objective_text} \u00b7 step {self.step}: {values}")

    @property
    def quality(self) -> Quality:
        """The :class:`~nbvis.compute.optimize.quality.Quality` figures of the current inputs
        (computed when a run ends, or now)."""
        if self._quality is None or self._quality_step != self._run.step_count:
            self._evaluate()
        return self._quality

    def start(self, seed: int | None = None) -> "OptimizationViewer":
        """Start a new run from fresh random inputs, with the current regularizers.

        The seed is ``seed`` when given, else the ``seed`` trait when it was set since the last
        start (to repeat a run), else a new random one; the ``seed`` trait shows it.
        """
        with self._guard():
            self._halt_job(restart=True)
            if seed is None and not self._seed_chosen:
                seed = _new_seed()
            if seed is not None:
                self._set_seed(seed)
            self._seed_chosen = False
            self._run = OptimizationRun(
                self.model, regularizers=self._regularizers(), seed=self.seed, **self._options
            )
            self._quality = None
            self.set_trait("quality_rows", [])
            self._publish()
            self._launch()
        return self

    def resume(self, steps: int | None = None) -> "OptimizationViewer":
        """Go on with the current run: ``steps`` more steps, or up to ``self.steps`` (another
        ``self.steps`` once that is reached). Regularizer changes take effect here."""
        with self._guard():
            if steps is not None:
                steps = positive_int("steps", steps)
            self._halt_job()
            done = self._run.step_count
            target = done + steps if steps is not None else (self.steps if done < self.steps else done + self.steps)
            self._launch(target)
        return self

    def stop(self) -> "OptimizationViewer":
        """Stop after the steps in progress (those up to the next frame: at most about 0.1 s of
        them, or one step); ``resume()`` goes on from there."""
        return super().stop()

    # ----- running ---------------------------------------------------------------------------

    def _launch(self, target: int | None = None) -> None:
        target = self.steps if target is None else target
        if self._run.step_count == 0 or target > self._run.planned:
            self._run.planned = target  # a rate schedule (the preset's) runs over these steps
        self._run.regularizers = self._regularizers()
        self.set_trait("pending", False)
        self._launch_job(self._steps(self._run, target))

    def _steps(self, run: OptimizationRun, target: int):
        # the steps up to the next frame (STREAM_SECONDS of them at most) in one borrow: a stop,
        # the kernel's other work and nbvis.exclusive get their turn between such runs; on a deep
        # model a borrow and its give-back cost a good part of a step
        while run.step_count < target:
            seconds = min(self._throttle.interval, STREAM_SECONDS)
            yield run.advance(target - run.step_count, seconds=seconds)
        self._figures()  # part of the job: the quality row is there when the state says done

    def _figures(self) -> None:
        try:
            self._evaluate()
        except Exception as exc:  # the figures are extra: a failure shows, the run's state stays
            self._report(exc)

    def _job_step(self, step: Step) -> None:
        if self._throttle.ready():
            self._publish(step)

    def close(self):
        """Stop the run and close the view; the quality figures of a run stopped by closing are
        not computed then (nobody sees them: :attr:`quality` still computes them when asked)."""
        self._closing = True
        super().close()

    def _job_ended(self, state: str) -> None:
        try:
            if state == "stopped" and not getattr(self, "_closing", False):
                self._figures()
        finally:  # an objective that raises an interrupt here too must not leave "running"
            super()._job_ended(state)

    def _evaluate(self) -> None:
        run = self._run
        self._quality = evaluate(self.model, run.objective, run.inputs, data=self._dataset)
        self._quality_step = run.step_count
        self.set_trait("quality_rows", self._quality.rows())

    def _set_seed(self, seed: int) -> None:
        self._setting_seed = True
        try:
            self.seed = int(seed)
        finally:
            self._setting_seed = False

    def _on_seed(self, _change) -> None:
        if not getattr(self, "_setting_seed", False):
            self._seed_chosen = True

    def _publish(self, step: Step | None = None) -> None:
        """Send the step counter, the objective curve and the current inputs to the view."""
        run = self._run
        inputs = run.inputs if step is None else step.inputs
        history = run.history
        with self.hold_sync():
            self.set_trait("step", run.step_count if step is None else step.index)
            if len(history):
                self.set_trait("values", [float(v) for v in history[-1]])
            else:
                self.set_trait("values", [])
            rows = np.arange(len(history))
            if len(rows) > MAX_CURVE_POINTS:
                stride = math.ceil(len(rows) / MAX_CURVE_POINTS)
                rows = np.unique(np.append(rows[::stride], len(history) - 1))
            self._curve = history[rows].reshape(len(rows), run.starts)
            self._curve_steps = rows + 1
            if self.input_kind == "vector":
                self._vector = inputs
            else:
                frames, k = _fitted_frames(_displayable(step.images if step is not None else run.images))
                self._frame = frames
                self.set_trait("frame_pooled", k)
                self._frame_range = _display_range(inputs, run.value_range)
            self.set_trait("frames_sent", self.frames_sent + 1)

    # ----- regularizers ----------------------------------------------------------------------

    def _fit(self, spec) -> Regularizers:
        return fit_regularizers(spec, self._run.input_shape, self._run.parametrization)

    def _adjustable(self) -> list[str]:
        """The regularizers that apply to this input (shown as sliders)."""
        names = list(Regularizers().as_dict())
        if len(self._run.input_shape) == 1:
            names = [n for n in names if n in ("decay", "norm_pct", "contribution_pct")]
        if self._run.parametrization == "fourier":
            names = [n for n in names if n not in ("blur_width", "blur_every", "norm_pct", "contribution_pct")]
        if self._run.parametrization == "data":
            names = [n for n in names if n != "contribution_pct"]
        return names

    def _regularizers(self) -> Regularizers:
        return self._fit(dict(self.regularizers))

    def _preset_of(self, regs: Regularizers) -> str:
        if self.preset in PRESETS and self._fit(self.preset) == regs:
            return self.preset  # several names can mean the same values: keep the chosen one
        return next((name for name in PRESETS if self._fit(name) == regs), "custom")

    @traitlets.validate("regularizers")
    def _check_regularizers(self, proposal):
        try:
            return self._fit(dict(proposal["value"])).as_dict()
        except (TypeError, ValueError) as err:
            raise traitlets.TraitError(str(err)) from None

    @traitlets.validate("preset")
    def _check_preset(self, proposal):
        value = proposal["value"]
        if value != "custom" and value not in PRESETS:
            raise traitlets.TraitError(f"unknown regularizer preset {value!r}; the presets are: {', '.join(PRESETS)}")
        return value

    def _on_preset(self, change) -> None:
        if change["new"] in PRESETS:
            self._options["optimizer"] = ascent_of(change["new"], **self._chosen)
            self.regularizers = self._fit(change["new"]).as_dict()

    def _on_regularizers(self, change) -> None:
        regs = resolve_regularizers(dict(change["new"]))
        self.preset = self._preset_of(regs)
        self.set_trait("pending", self.state == "running" and regs != self._run.regularizers)

    def _on_fps(self, change) -> None:
        fps = float(change["new"])
        self._throttle.interval = 1.0 / fps if fps > 0 else float("inf")

    # ----- commands from the view (start and stop: see JobView) --------------------------------

    def _cmd_resume(self) -> None:
        self.resume()


def _new_seed() -> int:
    return random.SystemRandom().randrange(2**31)


def _display_range(inputs: torch.Tensor, value_range) -> np.ndarray:
    """Per start, the values that the uint8 image's 0 and 255 stand for (see ``to_uint8``)."""
    n = inputs.shape[0]
    if value_range is not None:
        return np.tile(np.asarray(value_range, dtype=np.float32), (n, 1))
    flat = inputs.detach().reshape(n, -1).float()
    return torch.stack([flat.amin(1), flat.amax(1)], dim=1).cpu().numpy()


def _fitted_frames(images: np.ndarray) -> tuple[np.ndarray, int]:
    """uint8 images (starts, H, W, C) within one message, averaged down k x k when too big; and k."""
    n, height, width, channels = images.shape
    k = factors_to_fit({"frames": (n * channels, height, width)}, MESSAGE_BUDGET, itemsize=1).get("frames", 1)
    if k == 1:
        return images, 1
    planes = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).reshape(n * channels, height, width)
    small = shrunk(planes, k).round().clamp(0, 255).to(torch.uint8)
    return small.reshape(n, channels, *small.shape[1:]).permute(0, 2, 3, 1).contiguous().numpy(), k


def _displayable(images: np.ndarray) -> np.ndarray:
    """Images the browser can draw: gray (1 channel) or RGB (3); other channel counts are averaged."""
    if images.shape[-1] in (1, 3):
        return images
    return images.mean(axis=-1, keepdims=True).round().astype(np.uint8)
