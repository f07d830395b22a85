"""Feature groups: which elements of one sample are perturbed together, and their names."""

from __future__ import annotations

import numbers
from typing import Optional

import numpy as np
import torch

__all__ = ["feature_groups"]


def _grid_names(prefix: str, shape: tuple[int, ...]) -> list[str]:
    return [f"{prefix} ({', '.join(map(str, idx))})" for idx in np.ndindex(*shape)]


def feature_groups(spec, sample_shape: tuple[int, ...], columns: Optional[list[str]]) -> tuple[list[np.ndarray], list[str]]:
    """Flat element indices (into one sample) of each feature, and the feature names."""
    size = int(np.prod(sample_shape))
    flat = np.arange(size).reshape(sample_shape)
    ndim = len(sample_shape)
    if spec is None or (isinstance(spec, str) and spec in ("pixels", "features")):
        if ndim >= 3:  # (C, H, W, ...): one feature per position, all channels together
            groups = list(flat.reshape(sample_shape[0], -1).T)
            return groups, _grid_names("pixel", sample_shape[1:])
        groups = list(flat.reshape(-1, 1))
        if ndim == 1:
            return groups, columns or [f"x{j}" for j in range(size)]
        return groups, _grid_names("pixel" if ndim == 2 else "x", sample_shape)
    if isinstance(spec, str):
        if spec == "channels":
            if ndim < 2:
                raise ValueError(f"feature_groups='channels' needs image inputs (n, C, H, W); one sample has shape {sample_shape}")
            return list(flat.reshape(sample_shape[0], -1)), [f"channel {c}" for c in range(sample_shape[0])]
        raise ValueError(
            f"unknown feature_groups {spec!r}; expected 'pixels', 'channels', a patch size p or (ph, pw), "
            "a mask of group ids shaped like a sample, a list of index lists, or a dict of name -> indices"
        )
    if isinstance(spec, numbers.Integral) or (
        isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(v, numbers.Integral) for v in spec)
    ):
        ph, pw = (int(spec), int(spec)) if isinstance(spec, numbers.Integral) else (int(spec[0]), int(spec[1]))
        if ndim < 2:
            raise ValueError(f"patches need image inputs (n, [C,] H, W); one sample has shape {sample_shape}")
        if ph < 1 or pw < 1:
            raise ValueError(f"a patch size must be positive, got {spec!r}")
        height, width = sample_shape[-2:]
        groups, names = [], []
        for top in range(0, height, ph):
            for left in range(0, width, pw):
                groups.append(flat[..., top : top + ph, left : left + pw].ravel())
                names.append(f"patch ({top}:{min(top + ph, height)}, {left}:{min(left + pw, width)})")
        return groups, names
    if isinstance(spec, (np.ndarray, torch.Tensor)) and np.ndim(spec) >= 1 and not isinstance(spec, dict):
        mask = spec.detach().cpu().numpy() if isinstance(spec, torch.Tensor) else np.asarray(spec)
        if mask.shape in (sample_shape, sample_shape[1:]) and np.issubdtype(mask.dtype, np.integer):
            mask = np.broadcast_to(mask, sample_shape).ravel()
            ids = np.unique(mask)
            return [np.flatnonzero(mask == i) for i in ids], [f"group {i}" for i in ids]
        if mask.ndim == 2 or mask.dtype == object or mask.shape == sample_shape:
            raise ValueError(
                f"a feature_groups mask must be an integer array of shape {sample_shape}"
                + (f" or {sample_shape[1:]}" if len(sample_shape) > 1 else "")
                + f"; got {mask.dtype} of shape {mask.shape}"
            )
        spec = list(mask)
    if isinstance(spec, dict):
        names, members = [str(k) for k in spec], list(spec.values())
    elif isinstance(spec, (list, tuple)):
        members = list(spec)
        names = None
    else:
        raise TypeError(f"feature_groups must be a string, a patch size, a mask or a list of index lists, not {type(spec).__name__}")
    if not members:
        raise ValueError("feature_groups is empty")
    groups = []
    for member in members:
        items = [member] if isinstance(member, (str, numbers.Integral)) else list(np.asarray(member).ravel())
        index = []
        for item in items:
            if isinstance(item, str):
                if columns is None or item not in columns:
                    known = f"the columns are {columns}" if columns else "X has no column names"
                    raise ValueError(f"unknown feature {item!r} in feature_groups; {known}")
                index.append(columns.index(item))
            elif isinstance(item, numbers.Integral) and -size <= int(item) < size:
                index.append(int(item) % size)
            else:
                raise ValueError(f"feature index {item!r} in feature_groups is outside 0..{size - 1}")
        if not index:
            raise ValueError("every group in feature_groups needs at least one feature")
        groups.append(np.unique(np.asarray(index, dtype=np.int64)))
    if names is None:
        labels = columns or [f"x{j}" for j in range(size)]
        names = ["+".join(labels[j] for j in g) if len(g) <= 4 else f"group {i}" for i, g in enumerate(groups)]
    return groups, names
