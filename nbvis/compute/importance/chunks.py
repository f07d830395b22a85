"""The chunk planner: which perturbations are built together and which rows go through the model
together, within a memory budget.

An item is one (repeat, feature group) perturbation. A unit holds some repeats' perturbations of
a batch of groups; its items' changed rows are then evaluated in pieces of about one batch of rows.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Optional

import numpy as np
import torch

__all__ = ["MEMORY_BUDGET", "Unit", "pieces", "units"]

#: Bytes of activations one forward pass may hold (chunks bigger than this thrash memory).
MEMORY_BUDGET = 8 << 20


class Unit(NamedTuple):
    """Some repeats' perturbations of a batch of groups, and the rows they change.

    An item is one (repeat, group) perturbation, numbered ``r * K + k`` for the r-th repeat and
    k-th group of the unit (K groups).
    """

    repeats: list[int]
    batch: list[int]  # group ids
    sizes: np.ndarray  # elements per group
    ends: np.ndarray  # cumulative sizes: group k owns columns ends[k]-sizes[k]:ends[k] of index/values
    index: torch.Tensor  # (E,) the groups' element indices, concatenated
    counts: np.ndarray  # changed rows per item
    # perturbed values (for the shortcut: perturbed minus original), (R, m, E); for one-element
    # groups (R, K, m), and for a dense unit (row is None: every row of an item is evaluated) the
    # changes per item, (items, m)
    values: torch.Tensor
    item: Optional[torch.Tensor]  # (T,) the item of each changed row, sorted
    row: Optional[torch.Tensor]  # (T,) the changed rows
    offsets: Optional[np.ndarray]  # where each item's changed rows start in item/row
    element: Optional[torch.Tensor]  # (T,) for one-element groups: the element each changed row perturbs
    value: Optional[torch.Tensor]  # (T,) and its value (for the shortcut: its change)


def units(groups: list[np.ndarray], n_repeats: int, m: int) -> Iterator[tuple[list[int], list[int]]]:
    """(repeats, groups) batches, repeats first, each holding a bounded number of values."""
    # a unit holds values and index arrays for up to elements x repeats x m entries
    budget = max(1, MEMORY_BUDGET // (4 * m))  # elements x repeats per unit
    batches: list[list[int]] = [[]]
    elements = 0
    for k, g in enumerate(groups):
        if batches[-1] and elements + len(g) > budget:
            batches.append([])
            elements = 0
        batches[-1].append(k)
        elements += len(g)
    widest = max(sum(len(groups[k]) for k in batch) for batch in batches)
    per_unit = max(1, budget // widest)
    for first in range(0, n_repeats, per_unit):
        repeats = list(range(first, min(n_repeats, first + per_unit)))
        for batch in batches:
            yield repeats, batch


def pieces(counts: np.ndarray, batch: int, max_items: int) -> Iterator[tuple[int, int]]:
    """Consecutive runs of items with changed rows (``counts`` per item), about ``batch`` rows each
    and at most ``max_items`` items."""
    first = None
    rows = 0
    for j, c in enumerate(counts):
        if c == 0:
            continue
        if first is not None and (rows + c > batch or j - first >= max_items):
            yield first, j
            first = None
        if first is None:
            first, rows = j, 0
        rows += c
    if first is not None:
        yield first, len(counts)
