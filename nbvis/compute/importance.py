"""Permutation and noise feature importance for any torch model, batched and exact.

The importance of a feature (or a group of features, such as an image patch) is the drop in a
score when that feature is perturbed: its values shuffled across the rows (``"permutation"``, as
scikit-learn does) or bumped by uniform noise scaled to the feature's range (``"noise"``).

How it stays fast without changing the numbers:

- A perturbation only changes the rows whose perturbed value differs from the original one; the
  other rows keep their baseline prediction, so only the changed rows go through the model.
- Many (feature, repeat) perturbations are evaluated in one forward pass, in chunks sized to a
  memory budget, through buffers that are allocated once and reused.
- When the model is an ``nn.Sequential`` that starts with a ``Linear`` layer (optionally after
  ``Flatten``), perturbing feature ``j`` changes that layer's output by ``(x'_j - x_j) * W[:, j]``:
  the first layer is computed once and updated, never recomputed per perturbation.

With the same ``random_state`` the permutations are the ones
``sklearn.inspection.permutation_importance`` draws, so the results agree to float rounding.
"""

from __future__ import annotations

import numbers
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Generator, Iterator, NamedTuple, Optional

import numpy as np
import torch
from torch import nn

from nbvis.compute.probe import as_input, borrowed, forward_with, model_device, model_dtype, run_model

__all__ = [
    "MEMORY_BUDGET",
    "STEP_SECONDS",
    "SCORINGS",
    "ImportanceResult",
    "ImportanceStep",
    "iter_permutation_importance",
    "permutation_importance",
]

#: Bytes of activations one forward pass may hold (chunks bigger than this thrash memory).
MEMORY_BUDGET = 8 << 20

#: Seconds of work between two steps of :func:`iter_permutation_importance`.
STEP_SECONDS = 0.05

METHODS = ("permutation", "noise")


# --------------------------------------------------------------------------------------------
# scores: every built-in score is a function of per-row contributions summed over the rows, so a
# perturbation that changes a few rows only needs those rows' new contributions.
#   rows(y (T, ...), out (T, o), probs) -> (T, q) contributions, float64
#   total(sums (K, q), y (m, ...)) -> (K,) scores, higher is better


def _probabilities(out: torch.Tensor, already: bool) -> torch.Tensor:
    """Class probabilities (T, C) in float64 from logits or probabilities (T, o)."""
    out = out.double()
    if out.shape[-1] == 1:  # one output: the positive class of a binary problem
        p = out if already else torch.sigmoid(out)
        return torch.cat([1.0 - p, p], dim=-1)
    return out if already else torch.softmax(out, dim=-1)


def _labels(out: torch.Tensor, already: bool) -> torch.Tensor:
    if out.shape[-1] == 1:
        return (out[:, 0] > (0.5 if already else 0.0)).long()
    return out.max(dim=-1).indices  # the first maximum, as argmax; fast on any memory layout


def _squared(y, out, _probs):
    return (y - out.double()) ** 2


def _absolute(y, out, _probs):
    return (y - out.double()).abs()


def _correct(y, out, probs):
    return (_labels(out, probs) == y).double()[:, None]


def _log_likelihood(y, out, probs):
    eps = torch.finfo(torch.float64).eps  # scikit-learn clips to [eps, 1 - eps]
    return torch.log(_probabilities(out, probs).gather(1, y[:, None]).clamp(eps, 1.0 - eps))


def _r2_total(sums, y):
    spread = ((y - y.mean(dim=0)) ** 2).sum(dim=0)  # (o,)
    # scikit-learn's conventions for a constant target: 1 when predicted exactly, else 0
    scores = torch.where(spread > 0, 1.0 - sums / torch.where(spread > 0, spread, 1.0), (sums == 0).double())
    return scores.mean(dim=1)


def _mean_total(sums, y):
    return sums.mean(dim=1) / len(y)


def _negative_mean_total(sums, y):
    return -sums.mean(dim=1) / len(y)


_BUILTIN = {
    "r2": (_squared, _r2_total, "regression"),
    "neg_mean_squared_error": (_squared, _negative_mean_total, "regression"),
    "neg_mean_absolute_error": (_absolute, _negative_mean_total, "regression"),
    "accuracy": (_correct, _mean_total, "classification"),
    "neg_log_loss": (_log_likelihood, _mean_total, "classification"),
}

#: The scoring names understood (a callable ``score(y_true, y_pred)`` works too).
SCORINGS = tuple(_BUILTIN)


# --------------------------------------------------------------------------------------------
# results


@dataclass
class ImportanceResult:
    """Importances of each feature (or feature group), scikit-learn's names and shapes.

    ``importances[k, r]`` is the baseline score minus the score with feature ``k`` perturbed in
    repeat ``r``; it is NaN while that perturbation has not been evaluated yet.
    """

    importances: np.ndarray
    baseline_score: float
    feature_names: list[str]
    scoring: str
    method: str
    groups: list[np.ndarray] = field(repr=False)
    sample_shape: tuple[int, ...] = ()
    scorings: tuple[str, ...] = ()  # the built-in scorings that fit this model's outputs and y

    @property
    def importances_mean(self) -> np.ndarray:
        """Mean over the repeats evaluated so far (NaN for a feature not reached yet)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(self.importances, axis=1)

    @property
    def importances_std(self) -> np.ndarray:
        """Standard deviation over the repeats (ddof=0, as scikit-learn)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanstd(self.importances, axis=1)

    @property
    def complete(self) -> bool:
        return bool(np.isfinite(self.importances).all())

    def ranking(self) -> np.ndarray:
        """Feature indices from the most to the least important (features not reached yet last)."""
        mean = self.importances_mean
        return np.argsort(-np.nan_to_num(mean, nan=-np.inf), kind="stable")

    def importance_map(self, values: Optional[np.ndarray] = None) -> np.ndarray:
        """``values`` per feature (default: the mean importance) spread over one input sample's shape.

        Every element of a sample gets the value of the group it belongs to (NaN for elements in
        no group; for elements in several groups, the last one). For image inputs with the default
        pixel groups this is an importance image shaped like the input sample.
        """
        values = self.importances_mean if values is None else np.asarray(values, dtype=np.float64)
        if values.shape != (len(self.groups),):
            raise ValueError(f"expected one value per feature ({len(self.groups)}), got shape {values.shape}")
        flat = np.full(int(np.prod(self.sample_shape)), np.nan)
        for index, value in zip(self.groups, values):
            flat[index] = value
        return flat.reshape(self.sample_shape)

    def __repr__(self) -> str:
        order = self.ranking()[:5]
        top = ", ".join(f"{self.feature_names[k]}={self.importances_mean[k]:.4g}" for k in order)
        return (
            f"ImportanceResult({self.method}, scoring={self.scoring!r}, baseline={self.baseline_score:.4g}, "
            f"{len(self.groups)} features x {self.importances.shape[1]} repeats; top: {top})"
        )


class ImportanceStep(NamedTuple):
    """Progress of a running computation: ``done`` of ``total`` (feature, repeat) evaluations.

    ``result`` is updated in place as the work goes on; it is complete when ``done == total``.
    """

    done: int
    total: int
    result: ImportanceResult


# --------------------------------------------------------------------------------------------
# input checks


def _is_frame(x) -> bool:
    return hasattr(x, "columns") and hasattr(x, "dtypes") and hasattr(x, "to_numpy")


def _table(X, model: nn.Module) -> tuple[torch.Tensor, tuple[int, ...], Optional[list[str]]]:
    """X as a (n, F) tensor on the model's device, the shape of one sample, and column names."""
    columns = None
    if _is_frame(X):
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


def _targets(y, n: int) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    elif _is_frame(y):
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


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    return int(value)


def _sample_count(max_samples, n: int) -> int:
    """scikit-learn's reading of ``max_samples``: a count, or a fraction of the rows."""
    if max_samples is None:
        return n
    if isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Real):
        raise TypeError(f"max_samples must be an int (rows) or a float in (0, 1], not {max_samples!r}")
    if isinstance(max_samples, numbers.Integral):
        if not 1 <= max_samples <= n:
            raise ValueError(f"max_samples={max_samples} rows is outside 1..{n} (X has {n} rows)")
        return int(max_samples)
    if not 0.0 < max_samples <= 1.0:
        raise ValueError(f"a fractional max_samples must be in (0, 1], got {max_samples}")
    count = int(max_samples * n)
    if count < 2:
        raise ValueError(f"max_samples={max_samples} of {n} rows leaves {count}; at least 2 are needed")
    return count


def _seed(random_state) -> int:
    """The one seed scikit-learn draws from ``random_state`` for every feature's permutations."""
    if random_state is None:
        rng = np.random.mtrand._rand
    elif isinstance(random_state, np.random.RandomState):
        rng = random_state
    elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        rng = np.random.RandomState(int(random_state))
    else:
        raise TypeError(f"random_state must be None, an int or a numpy RandomState, not {random_state!r}")
    return int(rng.randint(np.iinfo(np.int32).max + 1))


def _subsample(rng: np.random.RandomState, n: int, m: int) -> np.ndarray:
    """scikit-learn's ``sample_without_replacement(n, m)`` with method "auto", draw for draw."""
    ratio = m / n
    if 0.01 < ratio < 0.99:
        return rng.permutation(n)[:m]
    if ratio < 0.2:  # tracking selection
        selected: set[int] = set()
        out = np.empty(m, dtype=np.int64)
        for i in range(m):
            j = rng.randint(n)
            while j in selected:
                j = rng.randint(n)
            selected.add(j)
            out[i] = j
        return out
    out = np.arange(m, dtype=np.int64)  # reservoir sampling
    for i in range(m, n):
        j = rng.randint(0, i + 1)
        if j < m:
            out[j] = i
    return out


def _permutations(seed: int, n: int, m: int, n_repeats: int) -> tuple[Optional[np.ndarray], list[np.ndarray]]:
    """The rows scikit-learn keeps and, per repeat, the row each kept row takes its value from.

    scikit-learn shuffles one index array in place and permutes the already permuted column again
    at every repeat, so repeat ``r`` reads the original column through the composition of the
    shuffles; every feature starts from the same seed, so they all share these permutations.
    """
    rng = np.random.RandomState(seed)
    rows = _subsample(rng, n, m) if m < n else None
    shuffle = np.arange(m)
    composed = np.arange(m)
    perms = []
    for _ in range(n_repeats):
        rng.shuffle(shuffle)
        composed = composed[shuffle]
        perms.append(composed)
    return rows, perms


# --------------------------------------------------------------------------------------------
# feature groups


def _grid_names(prefix: str, shape: tuple[int, ...]) -> list[str]:
    return [f"{prefix} ({', '.join(map(str, idx))})" for idx in np.ndindex(*shape)]


def _groups(spec, sample_shape: tuple[int, ...], columns: Optional[list[str]]) -> tuple[list[np.ndarray], list[str]]:
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


# --------------------------------------------------------------------------------------------
# model structure: the rank-1 shortcut


def _has_hooks(module: nn.Module) -> bool:
    return any(getattr(module, d, None) for d in ("_forward_hooks", "_forward_pre_hooks"))


def _sequence(model: nn.Module) -> Optional[list[nn.Module]]:
    """The modules a plain (possibly nested) ``nn.Sequential`` runs in order; None otherwise."""
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward or _has_hooks(model):
        return None
    out = []
    for child in model:
        if isinstance(child, nn.Sequential):
            inner = _sequence(child)
            if inner is None:
                return None
            out.extend(inner)
        else:
            out.append(child)
    return out


def _linear_start(model: nn.Module, sample_shape: tuple[int, ...]):
    """``(linear, tail)`` when the model is Sequential(Flatten*, Linear, *tail) on flat samples."""
    global_hooks = (nn.modules.module._global_forward_hooks, nn.modules.module._global_forward_pre_hooks)
    modules = _sequence(model)
    if modules is None or any(global_hooks):
        return None
    i = 0
    while i < len(modules) and type(modules[i]) in (nn.Flatten, nn.Identity):
        if isinstance(modules[i], nn.Flatten) and (modules[i].start_dim, modules[i].end_dim) != (1, -1):
            return None
        i += 1
    if i == len(modules) or type(modules[i]) is not nn.Linear or any(_has_hooks(m) for m in modules[: i + 1]):
        return None
    flattened = len(sample_shape) == 1 or any(isinstance(m, nn.Flatten) for m in modules[:i])
    linear = modules[i]
    if not flattened or linear.in_features != int(np.prod(sample_shape)):
        return None
    return linear, modules[i + 1 :]


# Activations the shortcut may apply in place to a tensor it owns (same kernels, same numbers).
_IN_PLACE = {
    nn.ReLU: lambda m, h: torch.relu_(h),
    nn.Sigmoid: lambda m, h: torch.sigmoid_(h),
    nn.Tanh: lambda m, h: torch.tanh_(h),
    nn.LeakyReLU: lambda m, h: nn.functional.leaky_relu_(h, m.negative_slope),
}
# Modules whose output is a new tensor that nothing else keeps.
_FRESH = (nn.Linear, nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Softplus)


def _run_tail(tail: list[nn.Module], h: torch.Tensor) -> torch.Tensor:
    """The layers after the first one; activations run in place while the tensor is ours."""
    owned = True  # h starts as the caller's scratch buffer
    for module in tail:
        in_place = _IN_PLACE.get(type(module))
        if owned and in_place is not None and not _has_hooks(module):
            h = in_place(module, h)
        elif type(module) is nn.Linear and module.out_features <= 16 and h.dim() == 2 and not _has_hooks(module):
            # a few outputs (class scores): W @ h^T is about twice as fast as h @ W^T on CPU
            bias = module.bias[:, None] if module.bias is not None else torch.zeros(1, 1, device=h.device, dtype=h.dtype)
            h = torch.addmm(bias, module.weight, h.t()).t()
            owned = True
        else:
            h = module(h)
            owned = type(module) in _FRESH and not _has_hooks(module)
    return h


# --------------------------------------------------------------------------------------------
# the computation


def _mismatch(scoring: str, y: np.ndarray, outputs: int) -> Optional[str]:
    """Why the built-in ``scoring`` cannot score ``outputs`` model outputs per sample against y (None: it can)."""
    if _BUILTIN[scoring][2] == "regression":
        targets = 1 if y.ndim == 1 else y.shape[1]
        if targets != outputs:
            hint = " (for class scores use scoring='accuracy' or 'neg_log_loss')" if targets == 1 else ""
            return f"the model gives {outputs} output(s) per sample but y has {targets} target(s){hint}"
        return None
    if y.ndim != 1 or (np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y))):
        return f"scoring={scoring!r} needs y as class indices of shape (n_samples,); got {y.dtype} of shape {y.shape}"
    classes = max(outputs, 2)
    if y.min() < 0 or y.max() >= classes:
        return (
            f"y holds class indices from {int(y.min())} to {int(y.max())} but the model gives {outputs} output(s) "
            f"per sample (classes 0..{classes - 1})"
        )
    return None


class _Unit(NamedTuple):
    """Some repeats' perturbations of a batch of groups, and the rows they change.

    An item is one (repeat, group) perturbation, numbered ``r * K + k`` for the r-th repeat and
    k-th group of the unit (K groups).
    """

    repeats: list[int]
    batch: list[int]  # group ids
    sizes: np.ndarray  # elements per group
    ends: np.ndarray  # cumulative sizes: group k owns columns ends[k]-sizes[k]:ends[k] of index/values
    index: torch.Tensor  # (E,) the groups' element indices, concatenated
    values: torch.Tensor  # (R, m, E) perturbed values (for the shortcut: perturbed minus original)
    item: torch.Tensor  # (T,) the item of each changed row, sorted
    row: torch.Tensor  # (T,) the changed rows
    counts: np.ndarray  # changed rows per item
    offsets: np.ndarray  # where each item's changed rows start in item/row
    element: Optional[torch.Tensor]  # (T,) for one-element groups: the element each changed row perturbs
    value: Optional[torch.Tensor]  # (T,) and its value (for the shortcut: its change)

    def owner(self, j: int) -> tuple[int, int]:
        """(repeat, group id) of item j."""
        return self.repeats[j // len(self.batch)], self.batch[j % len(self.batch)]


class _Plan:
    """Everything checked and precomputed once; :meth:`steps` then evaluates the perturbations."""

    def __init__(
        self, model, X, y, scoring, method, n_repeats, random_state, feature_groups, feature_names,
        batch_size, max_samples, noise_scale,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch nn.Module, not {type(model).__name__}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
        self.model = model
        self.method = method
        self.n_repeats = _check_int("n_repeats", n_repeats, 1)
        self.X, self.sample_shape, columns = _table(X, model)
        n, size = self.X.shape
        self.y_np = _targets(y, n)
        self.groups, names = _groups(feature_groups, self.sample_shape, columns)
        if feature_names is not None:
            names = [str(v) for v in feature_names]
            if len(names) != len(self.groups):
                raise ValueError(f"feature_names has {len(names)} names but there are {len(self.groups)} features")
        self.device, self.dtype = model_device(model), model_dtype(model)
        m = _sample_count(max_samples, n)
        self.noise_scale = self._noise_scale(noise_scale, size)
        self.seed = _seed(random_state)
        rows, perms = _permutations(self.seed, n, m, self.n_repeats)
        self.perms = [torch.from_numpy(p).to(self.device) for p in perms]
        self.rows = None if rows is None else torch.from_numpy(rows).to(self.device)

        with borrowed(model), torch.no_grad():
            self.batch = self._batch_rows(batch_size, 4 * self.X[:1].numel() * self.X.element_size())
            base = self._forward_rows(self.X)  # (n, o)
            name, y_full = self._scorer(scoring, base)
            self.fast = self._shortcut(base)
            # rows per forward pass: only the layers after the first one run with the shortcut
            self.batch = self._batch_rows(batch_size, self._row_bytes(self.fast))
        self.base_sub = base if self.rows is None else base[self.rows]
        self.Xs = self.X if self.rows is None else self.X[self.rows]
        if self.rows is None:
            self.y_sub = y_full
        else:
            self.y_sub = y_full[self.rows] if isinstance(y_full, torch.Tensor) else y_full[rows]
        self.baseline = float(self._scores(y_full, base[None])[0])
        # the score of the unperturbed rows the perturbations use (all rows, unless subsampled)
        self.sub_score = self.baseline if self.rows is None else float(self._scores(self.y_sub, self.base_sub[None])[0])
        if self.callable is None:
            self.base_rows = self.contributions(self.y_sub, self.base_sub)  # (m, q)
            self.base_sum = self.base_rows.sum(dim=0)
        self.result = ImportanceResult(
            importances=np.full((len(self.groups), self.n_repeats), np.nan),
            baseline_score=self.baseline,
            feature_names=names,
            scoring=name,
            method=method,
            groups=self.groups,
            sample_shape=self.sample_shape,
            scorings=tuple(k for k in SCORINGS if _mismatch(k, self.y_np, base.shape[1]) is None),
        )
        if method == "noise":
            self.span = (self.X.amax(dim=0) - self.X.amin(dim=0)).cpu().numpy().astype(np.float64)

    # ---- checks that need the model

    @staticmethod
    def _noise_scale(noise_scale, size: int) -> np.ndarray:
        try:
            scale = np.asarray(noise_scale, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"noise_scale must be a number or an array of numbers, not {noise_scale!r}") from None
        if scale.ndim == 0:
            scale = np.full(size, float(scale))
        if scale.shape != (size,) or not np.isfinite(scale).all():
            raise ValueError(f"noise_scale must be a finite number or one per input element ({size}); got shape {scale.shape}")
        return scale

    def _row_bytes(self, fast=None) -> int:
        """Bytes one row takes as input plus every intermediate output (after the first layer, for
        the shortcut)."""
        if fast:
            h = fast[1][:2].clone()  # a layer may work in place
            outputs = [h]
            for module in fast[2]:
                h = module(h)
                outputs.append(h)
        else:
            _, acts = forward_with(self.model, self.X[:2].clone().view(2, *self.sample_shape), None)
            outputs = [self.X[:2], *acts.values()]
        return sum(a.numel() * a.element_size() for a in outputs) // 2

    @staticmethod
    def _batch_rows(batch_size, row_bytes: int) -> int:
        if batch_size is not None:
            return _check_int("batch_size", batch_size, 1)
        return max(256, MEMORY_BUDGET // max(1, row_bytes))

    def _forward_rows(self, x: torch.Tensor) -> torch.Tensor:
        """The model's outputs, flattened per row (n, o), computed in batches."""
        outs = []
        for start in range(0, len(x), self.batch):
            chunk = x[start : start + self.batch].clone()  # a model may change its input in place
            out = run_model(self.model, chunk.view(len(chunk), *self.sample_shape))
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"the model must return a tensor, not {type(out).__name__}")
            outs.append(out.reshape(len(chunk), -1))
            self.out_shape = tuple(out.shape[1:])
        return torch.cat(outs)

    def _scorer(self, scoring, base: torch.Tensor) -> tuple[str, object]:
        """Set up the score for this model's outputs; return its name and y in the form it needs."""
        self.contributions = self.total = self.callable = None
        if callable(scoring):
            self.callable = scoring
            return getattr(scoring, "__name__", "score"), self.y_np
        if scoring not in _BUILTIN:
            raise ValueError(f"unknown scoring {scoring!r}; expected one of {SCORINGS} or a callable(y_true, y_pred)")
        contributions, self.total, task = _BUILTIN[scoring]
        problem = _mismatch(scoring, self.y_np, base.shape[1])
        if problem:
            raise ValueError(problem)
        if task == "regression":
            self.contributions = lambda yy, out: contributions(yy, out, False)
            return scoring, torch.as_tensor(self.y_np.astype(np.float64).reshape(len(self.y_np), -1)).to(self.device)
        probs = self._gives_probabilities(base)
        self.contributions = lambda yy, out: contributions(yy, out, probs)
        return scoring, torch.as_tensor(self.y_np.astype(np.int64)).to(self.device)

    def _scores(self, y, outputs: torch.Tensor) -> np.ndarray:
        """The score of each set of outputs (K, m, o) against y."""
        if self.callable is None:
            sums = torch.stack([self.contributions(y, out).sum(dim=0) for out in outputs])
            return self.total(sums, y).cpu().numpy()
        shape = () if int(np.prod(self.out_shape)) == 1 else self.out_shape  # (m,) for one output per sample
        scores = []
        for out in outputs.detach().cpu().numpy():
            value = self.callable(y, out.reshape(len(y), *shape))
            try:
                scores.append(float(value))
            except (TypeError, ValueError):
                raise TypeError(f"the scoring callable must return one number, got {value!r}") from None
        return np.asarray(scores)

    def _gives_probabilities(self, base: torch.Tensor) -> bool:
        """Whether the outputs are already probabilities (a final Softmax or Sigmoid layer)."""
        last = None
        for module in self.model.modules():
            if not any(True for _ in module.children()):
                last = module
        if isinstance(last, (nn.Softmax, nn.Sigmoid)):
            return True
        if base.shape[1] > 1 and bool((base >= 0).all()):
            return bool(torch.allclose(base.double().sum(dim=1), torch.ones(1, dtype=torch.float64, device=base.device), atol=1e-5))
        return False

    def _shortcut(self, base: torch.Tensor):
        """(W^T, first-layer outputs, tail) when the rank-1 update is exact for this model, else None."""
        found = _linear_start(self.model, self.sample_shape)
        if found is None:
            return None
        linear, tail = found
        hidden = nn.functional.linear(self.X, linear.weight, linear.bias)
        check = _run_tail(tail, hidden[:256].clone()).reshape(min(256, len(hidden)), -1)
        if check.shape != base[: len(check)].shape or not torch.allclose(check, base[: len(check)], rtol=1e-4, atol=1e-5):
            return None  # the Sequential does something we did not foresee: run the whole model
        weight_t = linear.weight.detach().t().contiguous()
        return weight_t, hidden if self.rows is None else hidden[self.rows], tail

    # ---- the perturbations

    def _units(self) -> Iterator[tuple[list[int], list[int]]]:
        """(repeats, groups) batches, repeats first, each holding a bounded number of values."""
        m = len(self.Xs)
        # a unit holds values and index arrays for up to elements x repeats x m entries
        budget = max(1, MEMORY_BUDGET // (4 * m))  # elements x repeats per unit
        batches: list[list[int]] = [[]]
        elements = 0
        for k, g in enumerate(self.groups):
            if batches[-1] and elements + len(g) > budget:
                batches.append([])
                elements = 0
            batches[-1].append(k)
            elements += len(g)
        widest = max(sum(len(self.groups[k]) for k in batch) for batch in batches)
        per_unit = max(1, budget // widest)
        for first in range(0, self.n_repeats, per_unit):
            repeats = list(range(first, min(self.n_repeats, first + per_unit)))
            for batch in batches:
                yield repeats, batch

    def _perturbed(self, r: int, batch: list[int], index: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        """The perturbed values (m, E) of the elements ``index`` of the groups in ``batch``."""
        if self.method == "permutation":
            return original.index_select(0, self.perms[r])
        m = len(original)
        noise = np.empty((m, len(index)))
        start = 0
        for k in batch:
            size = len(self.groups[k])
            rng = np.random.default_rng([self.seed, r, k])
            noise[:, start : start + size] = rng.random((m, size)) - 0.5
            start += size
        elements = index.cpu().numpy()
        noise *= self.noise_scale[elements] * self.span[elements]
        return original + torch.from_numpy(noise).to(device=self.device, dtype=self.dtype)

    def _unit(self, repeats: list[int], batch: list[int]) -> _Unit:
        """Perturb the groups of ``batch`` for ``repeats``; find the rows each perturbation changes."""
        m = len(self.Xs)
        sizes = np.array([len(self.groups[k]) for k in batch])
        index = torch.from_numpy(np.concatenate([self.groups[k] for k in batch])).to(self.device)
        original = self.Xs.index_select(1, index)
        new = torch.stack([self._perturbed(r, batch, index, original) for r in repeats])  # (R, m, E)
        changed = new != original
        if sizes.max() == 1:
            rows_changed = changed
        else:
            owner = torch.from_numpy(np.repeat(np.arange(len(batch)), sizes)).to(self.device)
            counts = torch.zeros((len(repeats), m, len(batch)), device=self.device)
            rows_changed = counts.index_add_(2, owner, changed.float()) > 0
        r, k, row = rows_changed.transpose(1, 2).contiguous().nonzero(as_tuple=True)  # sorted by r, k, row
        counts = rows_changed.sum(dim=1).reshape(-1).cpu().numpy()
        values = new - original if self.fast else new
        single = sizes.max() == 1  # then each changed row has one new value: gather them all now
        return _Unit(
            repeats=repeats,
            batch=batch,
            ends=np.cumsum(sizes),
            sizes=sizes,
            index=index,
            values=values,
            item=r * len(batch) + k,
            row=row,
            counts=counts,
            offsets=np.concatenate([[0], np.cumsum(counts)]),
            element=index[k] if single else None,
            value=values[r, row, k] if single else None,
        )

    def _work(self) -> Iterator[None]:
        """Evaluate every perturbation, pausing (yielding) after each forward pass."""
        m, outputs = self.base_sub.shape
        # buffers allocated once, reused for every chunk
        width = self.fast[0].shape[1] if self.fast else self.X.shape[1]
        rows_buf = torch.empty((self.batch, width), device=self.device, dtype=self.dtype)
        if self.callable is None:  # per-item sums of the rows' score contributions
            max_items = self.batch
        else:  # a callable needs every item's full predictions
            max_items = max(1, MEMORY_BUDGET // (m * outputs * self.base_sub.element_size()))
            preds_buf = torch.empty((max_items, m, outputs), device=self.device, dtype=self.base_sub.dtype)
        importances = self.result.importances
        for repeats, batch in self._units():
            unit = self._unit(repeats, batch)
            for j in np.flatnonzero(unit.counts == 0):  # nothing changed: the score of the unperturbed rows
                r, k = unit.owner(j)
                importances[k, r] = self.baseline - self.sub_score
                self.done += 1
            for first, last in self._pieces(unit.counts, max_items):
                if self.callable is None:
                    sums = self.base_sum.expand(last - first, -1).clone()
                else:
                    preds = preds_buf[: last - first]
                    preds.copy_(self.base_sub.expand(last - first, m, outputs))
                a, b = int(unit.offsets[first]), int(unit.offsets[last])
                for start in range(a, b, self.batch):
                    stop = min(b, start + self.batch)
                    out = self._evaluate(unit, rows_buf[: stop - start], start, stop)
                    out = out.reshape(stop - start, outputs)
                    rows, local = unit.row[start:stop], unit.item[start:stop] - first
                    if self.callable is None:
                        change = self.contributions(self.y_sub[rows], out) - self.base_rows[rows]
                        sums.index_add_(0, local, change)
                    else:
                        preds[local, rows] = out
                    if stop < b:
                        yield
                scores = self._scores(self.y_sub, preds) if self.callable else self.total(sums, self.y_sub).cpu().numpy()
                for j, score in zip(range(first, last), scores):
                    if unit.counts[j]:
                        r, k = unit.owner(j)
                        importances[k, r] = self.baseline - score
                self.done += int((unit.counts[first:last] > 0).sum())
                yield

    def steps(self) -> Generator[ImportanceStep, None, ImportanceResult]:
        """Run :meth:`_work` in slices of about ``STEP_SECONDS``, the model borrowed during each slice;
        return the result."""
        total = len(self.groups) * self.n_repeats
        self.done = 0
        yield ImportanceStep(0, total, self.result)
        work = self._work()
        finished = False
        while not finished:
            with borrowed(self.model), torch.no_grad():
                deadline = time.perf_counter() + STEP_SECONDS
                for _ in work:
                    if time.perf_counter() > deadline:
                        break
                else:
                    finished = True
            yield ImportanceStep(self.done, total, self.result)
        return self.result

    def _pieces(self, counts: np.ndarray, max_items: int) -> Iterator[tuple[int, int]]:
        """Consecutive runs of items with changed rows, about one batch of rows each."""
        first = None
        rows = 0
        for j, c in enumerate(counts):
            if c == 0:
                continue
            if first is not None and (rows + c > self.batch or j - first >= max_items):
                yield first, j
                first = None
            if first is None:
                first, rows = j, 0
            rows += c
        if first is not None:
            yield first, len(counts)

    def _evaluate(self, unit: _Unit, buf: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Model outputs for the changed rows ``start:stop`` of the unit."""
        rows = unit.row[start:stop]
        torch.index_select(self.fast[1] if self.fast else self.Xs, 0, rows, out=buf)
        groups = len(unit.batch)
        if unit.element is not None and not self.fast:  # one element per group: every row in one go
            buf[torch.arange(len(rows), device=buf.device), unit.element[start:stop]] = unit.value[start:stop]
        else:
            j = int(np.searchsorted(unit.offsets, start, side="right")) - 1
            while j < len(unit.counts) and unit.offsets[j] < stop:
                s, e = max(start, int(unit.offsets[j])), min(stop, int(unit.offsets[j + 1]))
                if e > s:
                    k = j % groups
                    if unit.element is not None:  # first layer output += delta * W[:, element], one element per item
                        weights = self.fast[0][int(self.groups[unit.batch[k]][0])]
                        buf[s - start : e - start].addcmul_(unit.value[s:e, None], weights)
                    else:
                        lo, hi = int(unit.ends[k] - unit.sizes[k]), int(unit.ends[k])
                        values = unit.values[j // groups, :, lo:hi].index_select(0, rows[s - start : e - start])
                        if self.fast:  # first layer output += delta @ W[:, group]^T
                            buf[s - start : e - start].addmm_(values, self.fast[0][unit.index[lo:hi]])
                        else:
                            buf[s - start : e - start, unit.index[lo:hi]] = values
                j += 1
        if self.fast:
            return _run_tail(self.fast[2], buf)
        return run_model(self.model, buf.view(len(buf), *self.sample_shape))


def iter_permutation_importance(
    model: nn.Module,
    X,
    y,
    *,
    scoring="r2",
    method: str = "permutation",
    n_repeats: int = 10,
    random_state=0,
    feature_groups=None,
    feature_names=None,
    batch_size: Optional[int] = None,
    max_samples=None,
    noise_scale=1.0,
) -> Generator[ImportanceStep, None, ImportanceResult]:
    """The steps of :func:`permutation_importance`, for running it piece by piece.

    The arguments are checked and the baseline is computed when this is called (bad input raises
    here); the returned iterator then yields :class:`ImportanceStep` s, each after a bounded amount
    of work. Every step's ``result`` is the same object, filled in as the work goes on; the
    generator returns it at the end. Stopping early is safe: the model is only borrowed while a
    step runs.
    """
    plan = _Plan(
        model, X, y, scoring, method, n_repeats, random_state, feature_groups, feature_names,
        batch_size, max_samples, noise_scale,
    )
    return plan.steps()


def permutation_importance(
    model: nn.Module,
    X,
    y,
    scoring="r2",
    method: str = "permutation",
    n_repeats: int = 10,
    random_state=0,
    feature_groups=None,
    feature_names=None,
    batch_size: Optional[int] = None,
    max_samples=None,
    noise_scale=1.0,
    progress: Optional[Callable[[int, int], None]] = None,
) -> ImportanceResult:
    """How much the score drops when each feature (or feature group) is perturbed.

    Parameters
    ----------
    model : the torch model; it is borrowed and left exactly as it was (mode, parameters, hooks).
    X : numpy array, torch tensor or pandas DataFrame, (n_samples, n_features) or images
        (n_samples, C, H, W). DataFrame column names become feature names.
    y : targets, (n_samples,) or (n_samples, n_targets); class indices for classification scores.
    scoring : "r2", "neg_mean_squared_error", "neg_mean_absolute_error", "accuracy", "neg_log_loss",
        or a callable ``score(y_true, y_pred) -> float`` (higher is better) that receives the model's
        outputs as numpy, shape (m,) for one output per sample. Classification scores read the
        outputs as logits (or probabilities when the model ends with Softmax/Sigmoid).
    method : "permutation" shuffles a feature's values across rows (as scikit-learn); "noise" adds
        ``noise_scale * (max - min) * (U(0, 1) - 0.5)`` to it.
    n_repeats : how many times each feature is perturbed.
    random_state : int, numpy RandomState or None; the same value gives scikit-learn's permutations.
    feature_groups : perturb features together. None: each column, or each pixel (all channels) of
        an image; "channels"; a patch size ``p`` or ``(ph, pw)``; an integer mask of group ids shaped
        like one sample (or like its H x W); a list of index lists (column names allowed); a dict of
        name -> indices.
    feature_names : a name per feature (group), overriding the defaults.
    batch_size : rows per forward pass; by default sized to a few MB of activations.
    max_samples : rows drawn (without replacement) for the perturbed scores, an int or a fraction,
        as scikit-learn's ``max_samples``.
    noise_scale : the noise amplitude as a fraction of each feature's range (a number or one per
        input element).
    progress : called as ``progress(done, total)`` after each step.

    Returns
    -------
    ImportanceResult with ``importances`` (n_features, n_repeats), ``importances_mean``,
    ``importances_std``, ``baseline_score``, ``feature_names`` and ``importance_map()``.
    """
    step = None
    for step in iter_permutation_importance(
        model, X, y, scoring=scoring, method=method, n_repeats=n_repeats, random_state=random_state,
        feature_groups=feature_groups, feature_names=feature_names, batch_size=batch_size,
        max_samples=max_samples, noise_scale=noise_scale,
    ):
        if progress is not None:
            progress(step.done, step.total)
    return step.result
