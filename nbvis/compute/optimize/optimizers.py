"""Optimizers: how each step moves the parameters, and the optimizer that goes with each preset.

Yosinski et al. 2015 use plain gradient ascent, ``x <- x + lr * d objective / dx``, with one of
two learning-rate rules of the Deep Visualization Toolbox (``optimize_image.py``):

- ``"constant"``: a fixed ``lr``;
- ``"progress"``: per start, ``lr = min(max_lr, desired_progress / |grad|^2)``, the rate at which
  a linear objective would rise by ``desired_progress`` in one step.

The paper's values are for pixels in 0..255. In an input range of width ``span`` the gradient is
``255 / span`` times larger and a step moves ``span / 255`` times fewer units, so a learning rate
scales by ``(span / 255) ** 2`` (:func:`scaled_lr`); ``desired_progress`` is in objective units
and stays. Lucid and the Feature Visualization article use Adam at 0.05.

A preset may also anneal the rate: over the last ``anneal`` share of its steps the rate falls
along a half cosine to ``floor`` times its value (and stays there for steps beyond), so that the
images settle instead of wandering with the random transforms of each step.
"""

from __future__ import annotations

import dataclasses
import math

import torch

__all__ = ["ASCENTS", "Ascent", "GradientAscent", "ascent_of", "scaled_lr"]

PAPER_SPAN = 255.0


@dataclasses.dataclass(frozen=True)
class Ascent:
    """An optimizer: ``kind`` ``"adam"`` or ``"sgd"`` (plain gradient ascent), its ``lr``, the
    ``policy`` (``"constant"`` or ``"progress"``, with ``desired_progress``), ``steps`` to run,
    whether ``lr`` is given for 0..255 pixels (``paper_units``, see :func:`scaled_lr`), and the
    share of the steps at the end over which the rate anneals to ``floor`` x ``lr`` (see :meth:`factor`)."""

    kind: str = "adam"
    lr: float = 0.05
    policy: str = "constant"
    desired_progress: float = 0.0
    steps: int = 256
    paper_units: bool = False
    parametrization: str = "pixel"
    anneal: float = 0.0
    floor: float = 0.0

    def __post_init__(self):
        if self.kind not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd' (plain gradient ascent), not {self.kind!r}")
        if self.policy not in ("constant", "progress"):
            raise ValueError(f"lr_policy must be 'constant' or 'progress', not {self.policy!r}")
        if self.policy == "progress" and self.kind != "sgd":
            raise ValueError("the 'progress' learning-rate rule is for plain gradient ascent (optimizer='sgd')")
        if not (0.0 <= self.anneal <= 1.0 and 0.0 <= self.floor <= 1.0):
            raise ValueError(f"anneal and floor are shares in [0, 1], not {self.anneal!r} and {self.floor!r}")

    def factor(self, step: int, total: int) -> float:
        """The rate of update ``step + 1`` (``step`` updates done) of a ``total``-step run, relative
        to ``lr``: 1, then along a half cosine from 1 to ``floor`` over the last ``anneal`` x ``total``
        updates, then ``floor``."""
        length = self.anneal * total
        if length <= 0:
            return 1.0
        into = (step + 1 - (total - length)) / length
        if into <= 0:
            return 1.0
        if into >= 1:
            return self.floor
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * into))

    def rate(self, value_range) -> float:
        """The learning rate for inputs in ``value_range`` (a width of 1 when unknown)."""
        return scaled_lr(self.lr, value_range) if self.paper_units else self.lr

    def make(self, params, value_range) -> torch.optim.Optimizer:
        lr = self.rate(value_range)
        if self.kind == "adam":
            return torch.optim.Adam(params, lr=lr)
        return GradientAscent(params, lr=lr, desired_progress=self.desired_progress if self.policy == "progress" else 0.0)


def scaled_lr(lr: float, value_range) -> float:
    """A learning rate given for pixels in 0..255, for inputs in ``value_range`` (width 1 if None)."""
    span = 1.0 if value_range is None else float(value_range[1]) - float(value_range[0])
    return lr * (span / PAPER_SPAN) ** 2


class GradientAscent(torch.optim.Optimizer):
    """Plain gradient steps on the loss (``-objective``): ``p <- p - lr * grad``.

    With ``desired_progress > 0`` the rate of each start (the first axis) is
    ``min(lr, desired_progress / |grad of that start|^2)``, the toolbox's ``"progress"`` rule.
    """

    def __init__(self, params, lr: float, desired_progress: float = 0.0):
        super().__init__(params, dict(lr=float(lr), desired_progress=float(desired_progress)))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, progress = group["lr"], group["desired_progress"]
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if not progress:
                    p.add_(grad, alpha=-lr)
                    continue
                squared = grad.reshape(grad.shape[0], -1).square().sum(dim=1)
                rate = (progress / squared.clamp_min(torch.finfo(grad.dtype).tiny)).clamp_(max=lr)
                p.sub_(grad * rate.view(-1, *([1] * (grad.dim() - 1))))
        return None


#: The optimizer of each preset. The four Yosinski et al. 2015 sets as the toolbox's README gives
#: them for Table 1 (iterations 500 / 750 / 1000 / 1000; "progress" at max_lr 100 and desired
#: progress 2 for sets 1 and 4, a constant 100 for sets 2 and 3); Lucid's and the article's Adam
#: at 0.05 for 512 steps (render_vis's default), the article in the decorrelated Fourier space.
ASCENTS: dict[str, Ascent] = {
    "none": Ascent(),
    "yosinski2015-1": Ascent("sgd", 100.0, "progress", 2.0, steps=500, paper_units=True),
    "yosinski2015-2": Ascent("sgd", 100.0, "constant", steps=750, paper_units=True),
    "yosinski2015-3": Ascent("sgd", 100.0, "constant", steps=1000, paper_units=True),
    "yosinski2015-4": Ascent("sgd", 100.0, "progress", 2.0, steps=1000, paper_units=True),
    "lucid": Ascent("adam", 0.05, steps=512),
    "distill2017": Ascent("adam", 0.05, steps=512, parametrization="fourier"),
    "smooth": Ascent("adam", 0.05, steps=512, anneal=1.0),
    "data": Ascent("adam", 0.05, steps=512, anneal=1.0, parametrization="data"),
}
ASCENTS["yosinski2015"] = ASCENTS["yosinski2015-3"]


def ascent_of(regularizers, optimizer=None, lr=None, steps=None, base: Ascent | None = None) -> Ascent:
    """The optimizer for a run: ``base``, or the preset's (when ``regularizers`` names one), else
    Adam at 0.05, with ``optimizer``, ``lr`` and ``steps`` overriding what they give."""
    if base is None:
        base = ASCENTS.get(regularizers, ASCENTS["none"]) if isinstance(regularizers, str) else ASCENTS["none"]
    changes = {}
    if optimizer is not None and optimizer != base.kind:
        changes.update(kind=optimizer, policy="constant", paper_units=False, lr=0.05 if lr is None else lr)
    if lr is not None:
        changes.update(lr=lr, paper_units=False)
    if steps is not None:
        changes.update(steps=steps)
    return dataclasses.replace(base, **changes) if changes else base
