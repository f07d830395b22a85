"""Checks of the arguments that need no model run: X, y, counts and noise scales."""

from __future__ import annotations

import numbers
from typing import Optional

import numpy as np
import torch
from torch import nn

from nbvis.compute.probe import as_input

__all__ = ["check_int", "check_progress", "is_frame", "names_of", "noise_scales", "sample_count", "table", "targets"]


def is_frame(x) -> bool:
    return hasattr(x, "columns") and hasattr(x, "dtypes") and hasattr(x, "to_numpy")


def table(X, model: nn.Module) -> tuple[torch.Tensor, tuple[int, ...], Optional[list[str]]]:
    """X as a (n, F) tensor on the model's device, the shape of one sample, and column names."""
    columns = None
    if is_frame(X):
        from pandas.api.types import is_bool_dtype, is_numeric_dtype  # X is a DataFrame: pandas is there

        bad = [str(c) for c, dt in zip(X.columns, X.dtypes) if not (is_numeric_dtype(dt) or is_bool_dtype(dt))]
        if bad:
            raise TypeError(f"X must hold numbers; the columns {', '.join(map(repr, bad))} do not")
        columns = [str(c) for c in X.columns]
        X = X.to_numpy(dtype=np.float64, copy=True)
    tensor = as_input(X, model, name="X")
    if tensor.dim() < 2:
        raise ValueError(f"X must have one row per sample, shape (n_samples, ...); got shape {tuple(tensor.shape)}")
    n = tensor.shape[0]
    if n < 2:
        raise ValueError(f"X needs at least 2 rows to permute, got {n}")
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        bad = (~finite).reshape(n, -1)
        row, col = (int(v) for v in bad.nonzero()[0])
        raise ValueError(
            f"X contains {int(bad.sum())} NaN or infinite value(s) (the first in row {row}, feature {col}); "
            "impute or drop them first"
        )
    return tensor.reshape(n, -1).contiguous(), tuple(tensor.shape[1:]), columns


def targets(y, n: int) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    elif is_frame(y):
        y = y.to_numpy()
    try:
        y = np.asarray(y)
    except Exception as err:
        raise TypeError(f"y must be an array of targets, not {type(y).__name__}") from err
    if y.ndim == 0 or y.ndim > 2:
        raise ValueError(f"y must have shape (n_samples,) or (n_samples, n_targets); got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"X has {n} rows but y has {len(y)}: they must match")
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise TypeError(f"y must hold numbers (class indices for classification); got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise ValueError(f"y contains {int((~np.isfinite(y)).sum())} NaN or infinite value(s)")
    return y


def check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    return int(value)


def sample_count(max_samples, n: int) -> int:
    """scikit-learn's reading of ``max_samples``: a count, or a fraction of the rows."""
    if max_samples is None:
        return n
    if isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Real):
        raise TypeError(f"max_samples must be an int (rows) or a float in (0, 1], not {max_samples!r}")
    if isinstance(max_samples, numbers.Integral):
        if not 2 <= max_samples <= n:
            # one row has nothing to be permuted with: its score would not move (scikit-learn gives NaN)
            raise ValueError(f"max_samples={max_samples} rows is outside 2..{n}: permuting needs at least 2 rows (X has {n})")
        return int(max_samples)
    if not 0.0 < max_samples <= 1.0:
        raise ValueError(f"a fractional max_samples must be in (0, 1], got {max_samples}")
    count = int(max_samples * n)
    if count < 2:
        raise ValueError(f"max_samples={max_samples} of {n} rows leaves {count}; at least 2 are needed")
    return count



def noise_scales(noise_scale, size: int) -> np.ndarray:
    """``noise_scale`` as one finite amplitude per input element."""
    try:
        scale = np.asarray(noise_scale, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"noise_scale must be a number or an array of numbers, not {noise_scale!r}") from None
    if scale.ndim == 0:
        scale = np.full(size, float(scale))
    if scale.shape != (size,) or not np.isfinite(scale).all():
        raise ValueError(f"noise_scale must be a finite number or one per input element ({size}); got shape {scale.shape}")
    if (scale < 0).any():
        raise ValueError(f"noise_scale must be at least 0 (a fraction of each feature's range); got {scale.min():g}")
    return scale


def names_of(feature_names, count: int) -> list[str]:
    """``feature_names`` as one string per feature (group)."""
    if isinstance(feature_names, (str, bytes)) or not hasattr(feature_names, "__len__"):
        raise TypeError(f"feature_names must be a list of {count} names, not {type(feature_names).__name__} {feature_names!r}")
    names = [str(v) for v in feature_names]
    if len(names) != count:
        raise ValueError(f"feature_names has {len(names)} names but there are {count} features")
    return names


def check_progress(progress) -> None:
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be None or a callable(done, total), not {type(progress).__name__}")
