"""What a run returns: the importances, and the progress of a run piece by piece."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np

__all__ = ["ImportanceResult", "ImportanceStep"]


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
