"""Permutation and noise feature importance for any torch model, batched and exact.

The importance of a feature (or a group of features, such as an image patch) is the drop in a
score when that feature is perturbed: its values shuffled across the rows (``"permutation"``, as
scikit-learn does) or bumped by uniform noise scaled to the feature's range (``"noise"``).

How it stays fast without changing the numbers:

- A perturbation only changes the rows whose perturbed value differs from the original one; the
  other rows keep their baseline prediction, so only the changed rows go through the model.
- Many (feature, repeat) perturbations are evaluated in one forward pass, in chunks sized to a
  memory budget (passes of about 2048 rows, whose activations stay in the CPU's caches, when a
  perturbation changes most rows), through buffers that are allocated once and reused.
- When the model is an ``nn.Sequential`` that starts with a ``Linear`` layer (optionally after
  ``Flatten``), perturbing feature ``j`` changes that layer's output by ``(x'_j - x_j) * W[:, j]``:
  the first layer is computed once and updated, never recomputed per perturbation.
- For accuracy through that shortcut, a changed row whose predicted class provably stays (its
  margin to the next class exceeds what the change can move it, by the layers' Lipschitz bounds)
  keeps its contribution: it is not run.

With the same ``random_state`` the permutations are the ones
``sklearn.inspection.permutation_importance`` draws, so the results agree to float rounding.

The package, one concern a module:

- ``result``: :class:`ImportanceResult` and :class:`ImportanceStep`;
- ``scoring``: the built-in scores as sums of per-row contributions;
- ``draws``: scikit-learn's subsampling and permutations, draw for draw;
- ``groups``: feature groups (columns, pixels, channels, patches, masks, lists) and their names;
- ``shortcut``: the exact rank-1 update through the first Linear layer;
- ``margins``: for accuracy, the changed rows whose predicted class provably stays;
- ``dense``: every row of each perturbation through that shortcut, in passes that fit the caches;
- ``passes``: the schedule of the perturbation passes, evaluated in steps;
- ``chunks``: the chunk planner, within :data:`MEMORY_BUDGET`;
- ``inputs``: checks of the arguments;
- ``run``: the checks, the baseline and the perturbations, :func:`permutation_importance` and :func:`iter_permutation_importance`.
"""

from .chunks import MEMORY_BUDGET
from .result import ImportanceResult, ImportanceStep
from .run import METHODS, STEP_SECONDS, iter_permutation_importance, permutation_importance
from .scoring import SCORINGS

__all__ = [
    "MEMORY_BUDGET",
    "STEP_SECONDS",
    "SCORINGS",
    "ImportanceResult",
    "ImportanceStep",
    "iter_permutation_importance",
    "permutation_importance",
]
