"""How far to trust a synthesized input: the figures that tell a visualization from a fooling image.

Per start: the objective (no transforms), the model's probability of the class under small
random shifts (for a class objective), the nearest of the unit's top dataset examples and its
correlation, the start's mean distance to the other starts, and the share of its energy at high
spatial frequencies. A fooling image (Nguyen et al. 2015; Yosinski et al. 2015) scores high on
the objective but loses its class when shifted by a pixel or two, resembles no dataset example,
and holds much of its energy at high frequencies.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import torch
from torch import nn

from nbvis.compute.probe import borrowed, forward_with
from nbvis.compute.running import model_output
from nbvis.compute.units import resolve_output

from .data import data_batches
from .diversity import pairwise_distance
from .objectives import Objective, as_objective
from .transforms import as_images

__all__ = ["Quality", "evaluate", "high_frequency_share", "class_of"]

HIGH_FREQUENCY = 0.25  # cycles per pixel: half the Nyquist frequency


@dataclasses.dataclass
class Quality:
    """Figures per start (arrays of length ``starts``; None where they do not apply).

    objective: the objective of each input as it is (no transforms).
    confidence: for a class objective, the model's softmax probability of the class under a
        uniformly random shift of up to ``shift`` pixels on each axis (wrapping around): its mean
        over every such shift (``(2 shift + 1)^2`` of them), or over ``trials`` random ones when
        ``trials`` is given; the softmax of the logits (of the layer before a final softmax, when
        the model has one).
    nearest, similarity: among the ``top`` dataset examples that drive the objective most, the
        index (in the dataset) of the one most correlated with the input, and that correlation.
    diversity: the start's mean ``1 - correlation`` with the other starts; ``mean_diversity``
        over all pairs.
    high_frequency: the share of the input's (mean-removed) energy above a quarter cycle per pixel.
    """

    objective: np.ndarray
    confidence: np.ndarray | None
    nearest: np.ndarray | None
    similarity: np.ndarray | None
    diversity: np.ndarray
    mean_diversity: float
    high_frequency: np.ndarray
    label: int | None = None

    def rows(self) -> list[dict]:
        """One dict per start (plain floats and ints, for a table or the view)."""
        out = []
        for i in range(len(self.objective)):
            row = {"objective": float(self.objective[i]), "diversity": float(self.diversity[i]),
                   "high_frequency": float(self.high_frequency[i])}
            if self.confidence is not None:
                row["confidence"] = float(self.confidence[i])
            if self.nearest is not None:
                row["nearest"] = int(self.nearest[i])
                row["similarity"] = float(self.similarity[i])
            out.append(row)
        return out

    def __repr__(self) -> str:
        parts = [f"objective={np.round(self.objective, 3).tolist()}"]
        if self.confidence is not None:
            parts.append(f"confidence={np.round(self.confidence, 3).tolist()}")
        if self.similarity is not None:
            parts.append(f"nearest={self.nearest.tolist()} similarity={np.round(self.similarity, 3).tolist()}")
        parts.append(f"mean_diversity={self.mean_diversity:.3f}")
        parts.append(f"high_frequency={np.round(self.high_frequency, 3).tolist()}")
        return "Quality(" + ", ".join(parts) + ")"


def class_of(objective: Objective) -> int | None:
    """The class index when ``objective`` is one output of the model (a class logit), else None."""
    parsed = getattr(objective, "unit", None)
    if getattr(objective, "layer", None) == "" and parsed is not None and parsed.index is not None and parsed.position is None:
        return parsed.index
    return getattr(objective, "logit_of", None)


def high_frequency_share(inputs: torch.Tensor) -> np.ndarray:
    """Share of each input's mean-removed spectral energy above :data:`HIGH_FREQUENCY`, ``(starts,)``."""
    x = as_images(inputs.detach().double())
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.rfft2(x).abs().square().sum(dim=1)  # (N, H, W//2+1)
    fy = torch.fft.fftfreq(x.shape[-2], dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(x.shape[-1], dtype=torch.float64)[None, :]
    high = (fy.square() + fx.square()).sqrt() > HIGH_FREQUENCY
    total = power.flatten(1).sum(1)
    share = (power * high).flatten(1).sum(1) / total.clamp_min(1e-300)
    return torch.where(total > 0, share, torch.zeros_like(share)).cpu().numpy()


def _values(model, objective: Objective, x: torch.Tensor) -> torch.Tensor:
    layers = None if objective.layers is None else list(objective.layers)
    output, acts = forward_with(model, x, layers)
    if layers is None:  # the model's output too: a ModelOutput's logits, as the objective read them while optimizing
        tensor = resolve_output(output)
        if tensor is not None:
            acts = {**acts, "": tensor.detach()}
    return objective(acts).detach()


def _class_logits(model, objective: Objective, x: torch.Tensor) -> torch.Tensor:
    """The logits a class objective reads: the layer before a final softmax (whose output is
    already a probability), else the model's output."""
    if getattr(objective, "logit_of", None) is None:
        return model_output(model, x)
    _, acts = forward_with(model, x, [objective.layer])
    return acts[objective.layer]


def _shifts(shift: int, trials: int | None, seed: int) -> list[tuple[int, int]]:
    """Every ``(dy, dx)`` in ``[-shift, shift]^2`` (``trials=None``), or ``trials`` of them drawn at random."""
    if trials is None:
        return [(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)]
    rng = random.Random(seed)
    return [(rng.randint(-shift, shift), rng.randint(-shift, shift)) for _ in range(trials)]


def _shifted_confidence(model, objective, inputs, label, shift, trials, seed) -> np.ndarray:
    """The mean softmax probability of ``label`` over the shifts of :func:`_shifts` (wrapping around)."""
    x = as_images(inputs)
    total = torch.zeros(inputs.shape[0], dtype=torch.float64)
    moves = _shifts(shift, trials, seed)
    for dy, dx in moves:
        moved = torch.roll(x, shifts=(dy, dx), dims=(2, 3)).reshape(inputs.shape)
        logits = _class_logits(model, objective, moved)
        total += torch.softmax(logits.detach().double(), dim=1)[:, label].cpu()
    return (total / len(moves)).numpy()


def _nearest_top(model, objective, inputs, data, top):
    """The ``top`` dataset examples with the largest objective; per start, the best-correlated one."""
    best_values, best_index, best_samples = None, None, None
    offset = 0
    for batch in data_batches(data):
        batch = torch.as_tensor(batch).to(inputs.device, inputs.dtype)
        if batch.shape[1:] != inputs.shape[1:]:
            batch = batch.reshape(batch.shape[0], *inputs.shape[1:])
        values = _values(model, objective, batch)
        index = torch.arange(offset, offset + len(batch))
        offset += len(batch)
        if best_values is not None:
            values = torch.cat([best_values, values])
            index = torch.cat([best_index, index])
            batch = torch.cat([best_samples, batch])
        keep = values.argsort(descending=True)[:top]
        best_values, best_index, best_samples = values[keep], index[keep], batch[keep]
    if best_values is None:
        raise ValueError("the dataset is empty")
    a = best_samples.flatten(1).double()
    b = inputs.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    corr = (b @ a.T) / (b.norm(dim=1, keepdim=True) * a.norm(dim=1)[None]).clamp_min(1e-12)
    which = corr.argmax(dim=1)
    return best_index[which].numpy(), corr.gather(1, which[:, None])[:, 0].cpu().numpy()


def evaluate(
    model: nn.Module,
    objective,
    inputs: torch.Tensor,
    *,
    data=None,
    value_range=None,
    shift: int = 2,
    trials: int | None = None,
    top: int = 16,
    seed: int = 0,
) -> Quality:
    """The :class:`Quality` figures of synthesized ``inputs`` ``(starts, *input_shape)`` for ``objective``.

    ``data`` (samples, an ``(inputs, targets)`` pair or a Dataset) adds the nearest top example.
    The model is borrowed (eval mode, no gradients) and left as it was.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise ValueError(f"trials is None (every shift) or a number of random shifts >= 1, not {trials!r}")
    objective = as_objective(objective).bind(model)
    inputs = torch.as_tensor(inputs).detach()
    label = class_of(objective)
    with borrowed(model), torch.no_grad():
        values = _values(model, objective, inputs).double().cpu().numpy()
        confidence = None
        if label is not None and inputs.dim() >= 3 and shift >= 0:
            confidence = _shifted_confidence(model, objective, inputs, label, shift, trials, seed)
        nearest = similarity = None
        if data is not None:
            nearest, similarity = _nearest_top(model, objective, inputs, data, top)
    distance = pairwise_distance(inputs).cpu().numpy()
    n = len(inputs)
    per_start = distance.sum(1) / max(1, n - 1)
    mean = float(distance.sum() / (n * (n - 1))) if n > 1 else 0.0
    return Quality(values, confidence, nearest, similarity, per_start, mean, high_frequency_share(inputs), label)
