"""The run: :class:`OptimizationRun` (resumable), :func:`iter_maximize`, :func:`maximize`, and what they give back.

The model is borrowed only while the run steps (once for all the steps of one ``run(n)`` or
``advance(n, seconds)`` call): between such calls (while a run is paused) it is exactly as its
owner left it, in train or eval mode, with its parameters' ``requires_grad`` untouched.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from typing import Iterator

import numpy as np
import torch
from torch import nn

from nbvis.compute.probe import as_input, model_device, model_dtype
from nbvis.compute.turns import again_if_weights_change

from .arguments import (
    check_diversity, check_lr, check_optimizer, check_parametrization, check_seconds, check_shape, positive_int,
)
from .data import check_range, data_statistics, whitenable
from .diversity import diversity_penalty
from .objectives import as_objective
from .optimizers import ASCENTS, Ascent, ascent_of
from .overrides import REDIRECT_STEPS, Redirect, redirected_relus
from .parametrizations import Fourier, Pixels, Whitened, noise
from .priors import after_update
from .regularizers import Regularizers, auto_preset, fit_regularizers
from .result import Result, Step, to_uint8
from .session import Session
from .transforms import affine_resample, as_images, total_variation

__all__ = ["REDIRECT_STEPS", "STREAM_SECONDS", "OptimizationRun", "iter_maximize", "maximize"]

#: the steps a streamed run does in one borrow of the model, in seconds (one step at least): its
#: consumer (the OptimizationViewer, the icons of the building blocks), a stop and the owner's
#: ``nbvis.exclusive`` get their turn between such runs of steps
STREAM_SECONDS = 0.1


def _rolled(images: torch.Tensor, shifts: tuple[int, int], shape):
    """A function that gives ``images`` rolled by ``shifts`` as ``shape`` (a step's inputs, made
    only when read)."""
    return lambda: torch.roll(images, shifts, (2, 3)).reshape(shape)


@dataclasses.dataclass
class _FirstPass:
    """The first step's forward pass, made when the run is made (it checks the objective)."""

    inputs: tuple  # (image, seen, before) as OptimizationRun._inputs gives them
    values: torch.Tensor
    acts: dict | None  # (kept only for the diversity penalty)
    draws: tuple  # the transforms' random stream before the pass drew from it
    regularizers: Regularizers
    autocast: tuple  # the thread's autocast state (see _autocast)
    model: object  # the model's Fingerprint


def _autocast(device: torch.device) -> tuple:
    """Whether this thread computes under ``torch.autocast`` for ``device``'s type, and in which
    dtype (a pass made under it computes in that dtype)."""
    kind = device.type
    if hasattr(torch, "get_autocast_dtype"):  # torch 2.4 and later
        return torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind)
    if kind == "cpu":
        return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
    return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()


class OptimizationRun:
    """A resumable activation-maximization run.

    It holds the synthetic inputs, the optimizer state and the random streams, and borrows the
    model only while it steps. ``run.step()`` does one update; ``run.iter(n)`` yields ``n`` steps;
    ``run.advance(n, seconds)`` does up to ``n`` in one borrow (for about ``seconds`` at most);
    ``run.inputs``, ``run.images`` and ``run.history`` read the current state. Running 10 steps
    and then 10 more gives exactly the same result as running 20 at once.

    Making the run checks the objective with the first step's forward pass (a bad objective fails
    here), which the first step then uses instead of a pass of its own: its activations are held
    until then. The first step makes its own pass if the regularizers, the model's device or
    dtype, its modules, hooks, parameters or buffers (see :class:`nbvis.compute.borrow.Fingerprint`)
    or the thread's autocast changed in between.

    ``steps`` is the run's planned length (``run.planned``, settable; default: the preset's): an
    optimizer that anneals its rate (the ``"smooth"`` preset's) does so over the last of these steps.
    """

    def __init__(
        self,
        model: nn.Module,
        objective,
        input_shape,
        *,
        starts: int = 1,
        regularizers=None,
        parametrization: str | None = None,
        seed: int = 0,
        lr: float | None = None,
        optimizer: str | None = None,
        value_range: tuple[float, float] | None = None,
        dataset=None,
        diversity: float | None = None,
        redirect: int = REDIRECT_STEPS,
        init=None,
        steps: int | None = None,
        _check: bool = True,
    ):
        # _check=False: the objective is checked by the first step instead (for maximize, which
        # steps right away)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        self.model = model
        self.input_shape = check_shape(input_shape)
        self.starts = positive_int("starts", starts)
        self.seed = positive_int("seed", seed, minimum=0)
        self.redirect = positive_int("redirect", redirect, minimum=0)
        lr = check_lr(lr)
        optimizer = check_optimizer(optimizer)
        stats = None if dataset is None else data_statistics(dataset)
        if value_range is None and stats is not None:
            value_range = (stats.low, stats.high)
        self.value_range = check_range(value_range)
        whitened = whitenable(stats, self.input_shape)
        if isinstance(regularizers, str) and regularizers == "auto":
            regularizers = auto_preset(self.value_range, whitened)
        if isinstance(regularizers, str) and regularizers not in ASCENTS:
            fit_regularizers(regularizers, self.input_shape)  # raises the unknown preset's error
        #: the optimizer (the preset's unless ``optimizer`` or ``lr`` are given; ``optimizer`` may be an Ascent)
        if isinstance(optimizer, Ascent):
            self.ascent = ascent_of(None, None, lr, base=optimizer)
        else:
            self.ascent = ascent_of(regularizers, optimizer, lr)
        #: the run's planned length, over which the optimizer's rate schedule runs (default: the preset's)
        self.planned = self.ascent.steps if steps is None else positive_int("steps", steps, minimum=0)
        parametrization = check_parametrization(parametrization, self.ascent.parametrization, self.input_shape, stats, whitened, init)
        self.parametrization = parametrization
        self._diversity = check_diversity(diversity)
        self.regularizers = regularizers  # validated by the setter
        self.objective = as_objective(objective).bind(model)
        self._layers = None if self.objective.layers is None else list(self.objective.layers)

        device, dtype = model_device(model), model_dtype(model)
        self._generator = torch.Generator().manual_seed(self.seed)
        self._draws: random.Random | None = None  # the transforms' stream, see _random
        if parametrization == "pixel":
            self._param = Pixels(self._initial_pixels(init, device, dtype))
        elif parametrization == "data":
            pixels = None if init is None else self._initial_pixels(init, device, dtype)
            self._param = Whitened(stats, self.input_shape, self.starts, self._generator, device, dtype, self.value_range, pixels)
        else:
            self._param = Fourier(self.input_shape, self.starts, self._generator, device, dtype, self.value_range)
        self.lr = self.ascent.rate(self.value_range)
        self._optimizer = self.ascent.make([self._param.param], self.value_range)
        self._device, self._dtype = device, dtype
        self._count = 0
        self._pending: list[torch.Tensor] = []  # objective values not yet copied into _history
        self._history = np.zeros((0, self.starts))
        self._history_lock = threading.Lock()  # steps may run on another thread than the reader
        self._checked = False  # whether the objective has been checked (by the constructor or a step)
        self._redirect = Redirect(self.redirect)  # (a start whose unit is off redirects the first steps)
        self._kept: dict = {}  # what one session leaves for the next (see Session)
        self._first: _FirstPass | None = None  # the constructor's pass, kept for the first step
        if _check:
            self._check_objective()

    # -- set-up ---------------------------------------------------------------------------

    @property
    def _random(self) -> random.Random:
        """The random stream of the transforms, seeded by ``seed`` (made at its first use)."""
        if self._draws is None:
            self._draws = random.Random(self.seed)
        return self._draws

    @property
    def regularizers(self) -> Regularizers:
        """The regularizers (settable: a preset name, dict or Regularizers; used from the next step)."""
        return self._regularizers

    @regularizers.setter
    def regularizers(self, spec):
        regs = fit_regularizers(spec, self.input_shape, self.parametrization)
        if self._diversity is not None and regs.diversity != self._diversity:
            regs = dataclasses.replace(regs, diversity=self._diversity)
        self._regularizers = regs
        # whether anything happens after an update (else the step skips after_update)
        pixel_priors = regs.blur_every or regs.norm_pct or regs.contribution_pct or self.value_range is not None
        self._priors = bool(regs.decay or (self.parametrization != "fourier" and pixel_priors))

    def _initial_pixels(self, init, device, dtype) -> torch.Tensor:
        shape = (self.starts, *self.input_shape)
        if init is not None:
            x = as_input(init, self.model, name="init")
            if tuple(x.shape) == self.input_shape:
                x = x.expand(shape)
            if tuple(x.shape) != shape:
                raise ValueError(f"init must have shape {self.input_shape} or {shape}, not {tuple(x.shape)}")
            return x.clone()
        drawn = noise(shape, self._generator, dtype)
        if self.value_range is None:
            x = 0.1 * drawn
        else:
            low, high = self.value_range
            x = ((low + high) / 2 + 0.1 * (high - low) * drawn).clamp(low, high)
        return x.to(device=device, dtype=dtype)

    def _session(self, grad: bool = True) -> Session:
        """The model borrowed for the run's passes (the recorder kept from one session to the next)."""
        return Session(self.model, self._layers, grad=grad, keep=self._kept)

    def _check_objective(self) -> None:
        """The first step's forward pass, so that bad objectives fail before the first step; it is
        kept for that step, which then makes no pass of its own (see :meth:`_first_pass`)."""
        draws = self._random.getstate()
        session = self._session()
        with session as forward:
            inputs, values, acts = self._checking_pass(forward)
            self._first = _FirstPass(inputs, values, acts, draws, self._regularizers, _autocast(self._device),
                                     session.fingerprint())

    def _checking_pass(self, forward) -> tuple:
        """The run's first pass, on the first step's inputs: ``(inputs, values, acts)`` as the step
        uses them. It checks the objective and tells whether the first step redirects the ReLU
        gradients (a unit that is off on this very input)."""
        inputs = self._inputs(snapshot=True)
        acts = {} if self._diverse else None
        values = self._evaluate(forward, inputs[1], acts)
        self._depends_on_input(values)
        self._redirect.note(values, 0)
        return inputs, values, acts

    @property
    def _diverse(self) -> bool:
        """Whether the steps add the diversity penalty (which reads the activations of the pass)."""
        return bool(self._regularizers.diversity) and self.starts > 1

    def _first_pass(self, session: Session) -> "_FirstPass | None":
        """The constructor's pass, for the first step (taken: used once) if that step would make
        the same one: the same regularizers and autocast, and the model's modules, hooks,
        parameters and buffers unchanged since (their data's device and dtype too). Else None
        (see :meth:`_forget_first_pass`)."""
        first = self._first
        if first is None:
            return None
        if (first.regularizers == self._regularizers and first.autocast == _autocast(self._device)
                and first.model == session.fingerprint()):
            self._first = None
            return first
        self._forget_first_pass()
        return None

    def _forget_first_pass(self) -> None:
        """Let go of the constructor's pass and the activations it holds (a run that waits, as an
        OptimizationViewer's before its start): the first step makes its own, on the same
        transforms (the random stream goes back to where the pass began)."""
        first, self._first = self._first, None
        if first is not None:
            self._random.setstate(first.draws)

    def _depends_on_input(self, values: torch.Tensor) -> None:
        if not values.requires_grad:
            raise ValueError(
                f"the objective {self.objective.description} does not depend on the input (no gradient reaches it)"
            )
        self._checked = True

    def _evaluate(self, forward, inputs: torch.Tensor, acts_out: dict | None = None) -> torch.Tensor:
        output, acts = forward(inputs)
        if acts_out is not None:
            acts_out.update(acts)
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
        for name, value in vars(self._param).items():  # the parametrization's constants
            if isinstance(value, torch.Tensor) and value is not param:
                setattr(self._param, name, moved(value))
        for state in self._optimizer.state.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.dim() > 0:
                    state[key] = moved(value)
        with self._history_lock:
            self._pending = [v.to(device) for v in self._pending]
        self._device, self._dtype = device, dtype

    # -- running --------------------------------------------------------------------------

    def _inputs(self, snapshot: bool):
        """``(image, seen, before)`` of a step: the image (None when the Fourier parametrization gave
        it shifted right away), what the model sees (the random transforms applied) and, with
        ``snapshot``, a copy of the image for the :class:`Step`."""
        regs, shape = self._regularizers, (self.starts, *self.input_shape)
        if not (regs.jitter or regs.scale or regs.rotate or regs.tv):
            image = self._param.image()
            return image, image, self._param.snapshot(image) if snapshot else None
        dy = dx = 0
        if regs.jitter:
            dy = self._random.randint(-regs.jitter, regs.jitter)
            dx = self._random.randint(-regs.jitter, regs.jitter)
        if (dy or dx) and self._param.shifts and not regs.tv:  # (the penalty reads the image itself)
            image, moved = None, as_images(self._param.image((dy, dx)))
            before = _rolled(moved.detach(), (-dy, -dx), shape) if snapshot else None
        else:
            image = self._param.image()
            before = self._param.snapshot(image) if snapshot else None
            moved = as_images(image)
            if dy or dx:
                moved = torch.roll(moved, shifts=(dy, dx), dims=(2, 3))
        if regs.scale or regs.rotate:
            zoom = 1.0 + self._random.uniform(-regs.scale, regs.scale)
            degrees = self._random.uniform(-regs.rotate, regs.rotate)
            moved = affine_resample(moved, zoom, degrees)
        return image, moved.reshape(shape), before

    def step(self) -> Step:
        """One gradient-ascent update of every start; the model is borrowed only meanwhile (done
        again if the owner's training, on another thread, updated a weight in place meanwhile)."""
        return self.advance(1)

    def advance(self, steps: int, seconds: float | None = None) -> Step | None:
        """Do up to ``steps`` further steps with the model borrowed once; return the last one's
        :class:`Step` (None for no steps).

        With ``seconds``, the call returns after the first step that ends ``seconds`` or more
        after the call began (one step at least): a caller that streams the run, as the
        OptimizationViewer does, pays for the borrow once a frame instead of once a step and
        still gets control back every ``seconds`` and a step. Each step is done again, as in
        :meth:`step`, if the owner's training on another thread updated a weight in place during it.
        """
        steps = positive_int("steps", steps, minimum=0)
        seconds = check_seconds(seconds)
        return self._steps(steps, seconds, snapshot=True) if steps else None

    def _steps(self, steps: int, seconds: float | None, snapshot: bool) -> Step | None:
        """The stepping loop of :meth:`advance` and :meth:`run`: ``steps`` steps (fewer when
        ``seconds`` are up) in one borrow, each in eval mode and done again if the owner's
        training on another thread updated a weight in place during it."""
        self._follow_device()
        began = time.perf_counter()
        session = self._session()
        step = None
        with session as forward:
            for _ in range(steps):
                step = again_if_weights_change(
                    self.model, lambda: self._step_of(session, forward, snapshot), session.parameters
                )
                if seconds is not None and time.perf_counter() - began >= seconds:
                    break
        return step

    def _step_of(self, session: Session, forward, snapshot: bool) -> Step | None:
        # the owner's thread may have switched the model's mode since the last step (outside
        # nbvis.exclusive): every step runs in eval mode all the same (no Dropout, no BatchNorm
        # statistics taken from synthetic inputs)
        session.in_eval()
        return self._step(forward, snapshot, self._first_pass(session))

    def _step(self, forward, snapshot: bool, first: "_FirstPass | None" = None) -> Step | None:
        """One update (``first``: the constructor's pass, made on this step's inputs). The first
        step's pass is the run's checking pass; if it tells that this step redirects the ReLU
        gradients, the pass is made again with them redirected."""
        regs = self._regularizers
        diverse = self._diverse
        if first is not None:
            inputs, values, acts = first.inputs, first.values, first.acts
        elif self._count == 0:
            inputs, values, acts = self._checking_pass(forward)
        else:
            inputs, values, acts = self._inputs(snapshot), None, {} if diverse else None
        image, seen, before = inputs
        if self._redirect.due(self._count):  # (the forward pass records the redirected ReLUs into the graph)
            with redirected_relus(self.model):
                values = self._evaluate(forward, seen, acts)
        elif values is None:
            values = self._evaluate(forward, seen, acts)
        # the gradient of the input only: the model's parameters get none, frozen or not (a
        # borrow from a background thread leaves their requires_grad as the owner set it)
        param = self._param.param
        if regs.tv or diverse:
            loss = -values.sum()
            if regs.tv:
                loss = loss + regs.tv * total_variation(as_images(image)).sum()
            if diverse:
                layer = acts.get(self._layers[0]) if self._layers else None
                loss = loss + diversity_penalty(regs.diversity, values, layer, seen)
            (param.grad,) = torch.autograd.grad(loss, [param])
        else:  # the gradient of -sum(values), with -1 as the gradient of each value (two fewer operations)
            (param.grad,) = torch.autograd.grad(values, [param], values.new_full(values.shape, -1.0))
        factor = self.ascent.factor(self._count, self.planned)
        if self.ascent.anneal:
            self._optimizer.param_groups[0]["lr"] = self.lr * factor
        self._optimizer.step()
        if self._priors:
            after_update(self._param, self._regularizers, self.value_range, self._count, factor)
        self._count += 1
        values = values.detach()
        self._redirect.note(values, self._count)
        with self._history_lock:
            self._pending.append(values)
        return Step(self._count, before, values, self.value_range) if snapshot else None

    def iter(self, steps: int) -> Iterator[Step]:
        """Yield ``steps`` further steps (``steps`` is checked at the call, not at the first step)."""
        steps = positive_int("steps", steps, minimum=0)
        return (self.step() for _ in range(steps))

    def run(self, steps: int) -> "OptimizationRun":
        """Do ``steps`` further steps; return the run.

        The model is borrowed once for all of them (no code of the caller runs in between), and
        given back as it was when the call returns or raises; the steps are :meth:`advance`'s
        (each in eval mode, done again if the owner's training on another thread updated a weight
        in place during it), without a :class:`Step` made of each.
        """
        steps = positive_int("steps", steps, minimum=0)
        if not steps:
            if not self._checked:  # (maximize with no steps still checks the objective)
                self._follow_device()
                self._check_objective()
            return self
        self._steps(steps, None, snapshot=False)
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
                new = torch.stack(pending).to(torch.float64).cpu().numpy()
                self._history = np.concatenate([self._history, new])
            return self._history.copy()  # the caller may edit it; the run keeps its own

    def evaluate(self) -> np.ndarray:
        """The objective of the current inputs, without transforms: ``(starts,)``."""
        with self._session(grad=False) as forward:
            return self._evaluate(forward, self.inputs).float().cpu().numpy().astype(np.float64)

    def result(self) -> Result:
        return Result(self.inputs, self.history, self.objective, self.value_range)

    def __repr__(self) -> str:
        return (
            f"OptimizationRun({self.objective.description}, input_shape={self.input_shape}, "
            f"starts={self.starts}, steps={self._count}, {self.parametrization})"
        )


def iter_maximize(model: nn.Module, objective, input_shape, steps: int | None = None, starts: int = 1, **options) -> Iterator[Step]:
    """Like :func:`maximize`, but yields a :class:`Step` after every update.

    Arguments are checked at the call, before the first step.
    """
    run = OptimizationRun(model, objective, input_shape, starts=starts, steps=steps, **options)
    return run.iter(run.planned)


def maximize(
    model: nn.Module,
    objective,
    input_shape,
    steps: int | None = None,
    starts: int = 1,
    regularizers=None,
    parametrization: str | None = None,
    seed: int = 0,
    lr: float | None = None,
    **options,
) -> Result:
    """Synthesize inputs that maximize ``objective``; return ``(inputs, history)``.

    model: any ``nn.Module``; it is used in eval mode, without gradients on its parameters, and
        left exactly as it was.
    objective: ``(layer, unit)`` (a neuron, or a conv channel's mean), ``(layer, unit, (y, x))``
        (one position), an int (a class logit of the output), ``"layer:unit"``, a callable on
        ``{layer name: activation}``, or sums and negatives of :func:`unit` / :func:`logit` objectives.
    input_shape: one input without the batch axis, e.g. ``(3, 64, 64)``, ``(28, 28)`` or ``(20,)``.
    steps, starts: updates to do (default: the preset's, else 256), and random starts optimized
        together in one batch.
    regularizers: None (no priors), a preset name (see :data:`PRESETS`; a preset brings its
        optimizer, see :data:`~nbvis.compute.optimize.optimizers.ASCENTS`), a dict of
        :class:`Regularizers` fields, or a Regularizers.
    parametrization: ``"pixel"``, ``"fourier"`` (decorrelated, sigmoid-bounded into ``value_range``)
        or ``"data"`` (pixels whitened by the covariance of ``dataset=``'s samples, see
        :class:`~nbvis.compute.optimize.parametrizations.Whitened`); default: the preset's (the
        ``"data"`` preset's is ``"pixel"`` without the data's covariance), else ``"pixel"``.
    seed: seeds the starts and the random transforms: the same seed gives the same result.
    lr: learning rate (default: the preset's, scaled to the input range; else Adam at 0.05).
    options: ``optimizer`` (``"adam"`` or ``"sgd"``, plain gradient ascent), ``value_range=(low, high)``
        or ``dataset=`` (the inputs stay in the data's range: pixels are clipped into it, the
        Fourier image is sigmoid-bounded into it; with ``dataset=`` the default ``"auto"`` preset
        is ``"data"``), ``diversity`` (weight of the penalty that keeps
        the starts apart; default: the regularizers'), ``redirect`` (steps with redirected ReLU
        gradients, 16), ``init`` (starting pixels, ``input_shape`` or ``(starts, *input_shape)``).
        A preset whose optimizer anneals its rate does so over the last steps of ``steps``.

    Returns a :class:`Result`: ``inputs`` ``(starts, *input_shape)`` on the model's device and
    ``history`` ``(steps, starts)``, the objective at each step; ``result.images`` and
    ``result.evaluate(model, data)`` (see :func:`~nbvis.compute.optimize.quality.evaluate`).
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
        steps=steps,
        _check=False,
        **options,
    )
    return run.run(run.planned).result()
