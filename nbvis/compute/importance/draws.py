"""scikit-learn's random draws, reproduced draw for draw.

With the same ``random_state``, the rows kept by ``max_samples`` and the permutation of every
repeat are the ones ``sklearn.inspection.permutation_importance`` draws.
"""

from __future__ import annotations

import numbers
import threading
from typing import Optional

import numpy as np

__all__ = ["draw_seed", "permutations", "subsample"]

_STREAMS = threading.local()

#: scikit-learn draws the seed below this (int32's maximum + 1).
_SEEDS = int(np.iinfo(np.int32).max) + 1


def _seeded(seed: int) -> np.random.RandomState:
    """``np.random.RandomState(seed)``: the same draws, from one generator per thread reseeded
    (making a RandomState costs far more than seeding one)."""
    rng = getattr(_STREAMS, "rng", None)
    if rng is None:
        rng = _STREAMS.rng = np.random.RandomState()
    rng.seed(seed)
    return rng


def draw_seed(random_state) -> int:
    """The one seed scikit-learn draws from ``random_state`` for every feature's permutations."""
    if random_state is None:
        rng = np.random.mtrand._rand
    elif isinstance(random_state, np.random.RandomState):
        rng = random_state
    elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if not 0 <= random_state < 2**32:
            raise ValueError(f"an int random_state must be in 0..2**32 - 1 (a numpy seed), got {random_state}")
        rng = _seeded(int(random_state))
    else:
        raise TypeError(f"random_state must be None, an int or a numpy RandomState, not {random_state!r}")
    return int(rng.randint(_SEEDS))


def subsample(rng: np.random.RandomState, n: int, m: int) -> np.ndarray:
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


def permutations(seed: int, n: int, m: int, n_repeats: int) -> tuple[Optional[np.ndarray], list[np.ndarray]]:
    """The rows scikit-learn keeps and, per repeat, the row each kept row takes its value from.

    scikit-learn shuffles one index array in place and permutes the already permuted column again
    at every repeat, so repeat ``r`` reads the original column through the composition of the
    shuffles; every feature starts from the same seed, so they all share these permutations.
    """
    rng = _seeded(seed)
    rows = subsample(rng, n, m) if m < n else None
    shuffle = np.arange(m)
    composed = np.arange(m)
    perms = []
    for _ in range(n_repeats):
        rng.shuffle(shuffle)
        composed = composed[shuffle]
        perms.append(composed)
    return rows, perms
