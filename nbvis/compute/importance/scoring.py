"""The built-in scores, as sums of per-row contributions.

Every built-in score is a function of per-row contributions summed over the rows, so a
perturbation that changes a few rows only needs those rows' new contributions:

- ``rows(y (T, ...), out (T, o), probs) -> (T, q)`` contributions, float64;
- ``total(sums (K, q), y (m, ...)) -> (K,)`` scores, higher is better.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

__all__ = ["BUILTIN", "SCORINGS", "fitting", "for_targets", "gives_probabilities", "metrics_of", "mismatch"]


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


def _difference(y, out):
    """``y - out`` in float64 (y is float64: out is widened as it is read, with no copy)."""
    return torch.sub(y, out) if y.dtype == torch.float64 else y - out.double()


def _squared(y, out, _probs):
    return _difference(y, out).square_()


def _absolute(y, out, _probs):
    return _difference(y, out).abs_()


def _correct(y, out, probs):
    return (_labels(out, probs) == y).double()[:, None]


def _log_likelihood(y, out, probs):
    eps = torch.finfo(torch.float64).eps  # scikit-learn clips to [eps, 1 - eps]
    return torch.log(_probabilities(out, probs).gather(1, y[:, None]).clamp(eps, 1.0 - eps))


def _r2_parts(y):
    """What r2 needs of y alone: where its spread is positive, and the spread to divide by there."""
    spread = ((y - y.mean(dim=0)) ** 2).sum(dim=0)  # (o,)
    positive = spread > 0
    return positive, torch.where(positive, spread, 1.0)


def _r2_total(sums, y, parts=None):
    positive, spread = _r2_parts(y) if parts is None else parts
    # scikit-learn's conventions for a constant target: 1 when predicted exactly, else 0
    scores = torch.where(positive, 1.0 - sums / spread, (sums == 0).double())
    return scores.mean(dim=1)


def _mean_total(sums, y):
    return sums.mean(dim=1) / len(y)


def _negative_mean_total(sums, y):
    return -sums.mean(dim=1) / len(y)


BUILTIN = {
    "r2": (_squared, _r2_total, "regression"),
    "neg_mean_squared_error": (_squared, _negative_mean_total, "regression"),
    "neg_mean_absolute_error": (_absolute, _negative_mean_total, "regression"),
    "accuracy": (_correct, _mean_total, "classification"),
    "neg_log_loss": (_log_likelihood, _mean_total, "classification"),
}

#: The scoring names understood (a callable ``score(y_true, y_pred)`` works too).
SCORINGS = tuple(BUILTIN)


def for_targets(total, y):
    """``total(sums, y)`` for one y, as a function of the sums only, with what depends on y alone
    computed once (the same numbers)."""
    if total is _r2_total:
        parts = _r2_parts(y)
        return lambda sums: _r2_total(sums, y, parts)
    return lambda sums: total(sums, y)


def mismatch(scoring: str, y: np.ndarray, outputs: int) -> Optional[str]:
    """Why the built-in ``scoring`` cannot score ``outputs`` model outputs per sample against y (None: it can)."""
    if BUILTIN[scoring][2] == "regression":
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


def fitting(y: np.ndarray, outputs: int) -> tuple[str, ...]:
    """The built-in scorings that can score ``outputs`` model outputs per sample against y (each
    task checked once: whether a scoring fits depends only on its task)."""
    fits: dict[str, bool] = {}
    for k in SCORINGS:
        task = BUILTIN[k][2]
        if task not in fits:
            fits[task] = mismatch(k, y, outputs) is None
    return tuple(k for k in SCORINGS if fits[BUILTIN[k][2]])


def gives_probabilities(model: nn.Module, base: torch.Tensor) -> bool:
    """Whether the outputs ``base`` (n, o) are already probabilities (a final Softmax or Sigmoid layer)."""
    last = None
    for module in model.modules():
        if not any(True for _ in module.children()):
            last = module
    if isinstance(last, (nn.Softmax, nn.Sigmoid)):
        return True
    if base.shape[1] > 1 and bool((base >= 0).all()):
        return bool(torch.allclose(base.double().sum(dim=1), torch.ones(1, dtype=torch.float64, device=base.device), atol=1e-5))
    return False


def metrics_of(scoring) -> Optional[dict]:
    """Several scorings as a dict name -> scoring (scikit-learn's list, tuple or dict); None for one."""
    if isinstance(scoring, dict):
        if not scoring:
            raise ValueError("scoring is an empty dict; give at least one name -> scoring")
        for name, one in scoring.items():
            if not isinstance(name, str):
                raise TypeError(f"the names of a scoring dict must be strings, got {name!r}")
            if not (isinstance(one, str) or callable(one)):
                raise TypeError(f"scoring[{name!r}] must be a scoring name or a callable(y_true, y_pred), not {one!r}")
        return dict(scoring)
    if isinstance(scoring, (list, tuple, set, frozenset)):
        names = list(scoring)
        if not names:
            raise ValueError(f"scoring is an empty {type(scoring).__name__}; give at least one of {SCORINGS}")
        if not all(isinstance(n, str) for n in names):
            raise TypeError(
                f"a list of scorings must hold names {SCORINGS}; got {names!r} "
                "(for callables use a dict of name -> callable)"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"scoring lists a name twice: {names!r}")
        return {n: n for n in names}
    return None
