"""A fitted torch model seen by scikit-learn, for comparing with sklearn.inspection.permutation_importance.

Shared by the tests (the reference numbers) and benchmarks/bench_importance.py (the baseline a
user would write). ``fit`` does nothing: the model is already trained.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin


class TorchRegressor(RegressorMixin, BaseEstimator):
    """A torch regression model as an estimator; ``input_shape`` reshapes flat rows (e.g. images)."""

    def __init__(self, model=None, input_shape=None):
        self.model = model
        self.input_shape = input_shape

    def fit(self, X, y):
        return self

    def _forward(self, X) -> np.ndarray:
        weight = next(self.model.parameters())
        values = np.asarray(X)
        if not values.flags.writeable:  # a DataFrame's values under copy-on-write
            values = values.copy()
        # no copy for float32 arrays on the CPU; integers (token ids) stay integers
        dtype = torch.long if np.issubdtype(values.dtype, np.integer) else weight.dtype
        x = torch.as_tensor(values, dtype=dtype).to(weight.device)
        if self.input_shape is not None:
            x = x.view(len(x), *self.input_shape)
        with torch.no_grad():
            return self.model(x).double().cpu().numpy()

    def predict(self, X):
        out = self._forward(X)
        return out[:, 0] if out.shape[1] == 1 else out


class TorchClassifier(ClassifierMixin, TorchRegressor):
    """Logits (or one binary logit, or probabilities with ``probabilities=True``) as a classifier."""

    def __init__(self, model=None, input_shape=None, probabilities=False):
        super().__init__(model, input_shape)
        self.probabilities = probabilities

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        out = torch.from_numpy(self._forward(X))
        if self.probabilities:
            return out.numpy()
        if out.shape[1] == 1:
            p = torch.sigmoid(out)
            return torch.cat([1 - p, p], dim=1).numpy()
        return torch.softmax(out, dim=1).numpy()

    def predict(self, X):
        out = self._forward(X)  # the largest logit (or probability) is the predicted class
        index = (out[:, 0] > 0).astype(int) if out.shape[1] == 1 and not self.probabilities else out.argmax(axis=1)
        return self.classes_[index]
