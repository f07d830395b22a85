"""The checks of a run's arguments: each bad value gets an error that says what is expected."""

from __future__ import annotations

import math

import numpy as np

from .data import MAX_WHITENED
from .optimizers import Ascent

__all__ = ["check_diversity", "check_lr", "check_optimizer", "check_parametrization", "check_shape", "positive_int"]


def check_shape(input_shape) -> tuple[int, ...]:
    """One input's shape without the batch axis: ``(features,)``, ``(H, W)`` or ``(C, H, W)``."""
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


def positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return int(value)


def _number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def check_lr(lr) -> float | None:
    if lr is None:
        return None
    if not _number(lr) or not lr > 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be a positive number, not {lr!r}")
    return float(lr)


def check_optimizer(optimizer):
    if optimizer is not None and not isinstance(optimizer, Ascent) and optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd' (plain gradient ascent), not {optimizer!r}")
    return optimizer


def _optional_at_least_zero(name: str, value) -> float | None:
    if value is None:
        return None
    if not _number(value) or not value >= 0:  # (NaN too)
        raise ValueError(f"{name} must be a number >= 0, not {value!r}")
    return float(value)


def check_diversity(diversity) -> float | None:
    return _optional_at_least_zero("diversity", diversity)


def check_seconds(seconds) -> float | None:
    """None (no limit) or a number of seconds >= 0 (``math.inf``: no limit either)."""
    return _optional_at_least_zero("seconds", seconds)


def check_parametrization(parametrization, preset: str, input_shape, stats, whitened: bool, init) -> str:
    """The run's parametrization: ``parametrization``, or (None) the ``preset``'s, whose ``"data"``
    falls back to ``"pixel"`` without the data's covariance (``whitened``)."""
    if parametrization is None:
        parametrization = preset
        if parametrization == "data" and not whitened:
            parametrization = "pixel"
    if parametrization not in ("pixel", "fourier", "data"):
        raise ValueError(f"parametrization must be 'pixel', 'fourier' or 'data', not {parametrization!r}")
    if parametrization == "data" and not whitened:
        raise ValueError(
            "the 'data' parametrization needs dataset= with samples of the input's size "
            f"(at most {MAX_WHITENED} values each); the input has {math.prod(input_shape)}"
            + ("" if stats is None else f", the dataset's samples {stats.size or 'more than the limit'}")
        )
    if parametrization == "fourier" and len(input_shape) == 1:
        raise ValueError("the Fourier parametrization needs an image input_shape, (H, W) or (C, H, W)")
    if parametrization == "fourier" and init is not None:
        raise ValueError("init sets pixel values: use it with parametrization='pixel'")
    return parametrization
