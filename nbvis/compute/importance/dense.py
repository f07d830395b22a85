"""Every row of each perturbation through the rank-1 shortcut, in passes that fit the CPU's caches.

For one-element groups whose perturbation changes most rows, an item's first-layer outputs are
``hidden + delta * W[:, element]`` for all rows: no row lists to build. The passes write the
model's outputs into one buffer; the outputs of a group of items are then scored together.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Iterator

import numpy as np
import torch

from .chunks import Unit

__all__ = ["GROUP_ELEMENTS", "PASS_ROWS", "dense_passes", "group_items", "pass_rows"]

#: Rows per pass through the layers after the first one: a pass's activations stay in the caches
#: (larger passes make the matrix products and the activations wait on memory).
PASS_ROWS = 2048

#: Model outputs held at a time (the items of a group are scored once all their rows are done).
GROUP_ELEMENTS = 1 << 20


def _even(total: int, most: int) -> int:
    """At most ``most`` per part, the parts of ``total`` evened out."""
    parts = -(-total // max(1, most))
    return -(-total // parts)


def dense_passes(
    unit: Unit, live: np.ndarray, fast, scratch: torch.Tensor, outs: torch.Tensor, score: Callable, record: Callable,
) -> Iterator[None]:
    """Evaluate every row of the unit's ``live`` items, yielding after each pass.

    ``fast`` is ``(W^T, first-layer outputs (m, H), tail)``; ``scratch`` a reused buffer of at
    least :func:`pass_rows` x H values; ``outs`` a reused buffer of (G, m, o) model outputs, G
    from :func:`group_items`. ``score(outputs (g, m, o)) -> (g,)`` scores a group of items,
    ``record(items, scores)`` stores them.
    """
    weight_t, hidden, tail = fast
    m, width = hidden.shape
    o = outs.shape[-1]
    groups = len(unit.batch)
    index = torch.from_numpy(live).to(hidden.device)
    everything = len(live) == len(unit.counts)
    deltas = unit.values if everything else unit.values.index_select(0, index)  # (L, m)
    weights = weight_t.index_select(0, unit.index.index_select(0, index % groups))  # (L, H)
    per, span = pass_shape(m)
    items3, weights3 = deltas[:, :, None], weights[:, None, :]
    bound = {}  # items per pass -> (their first-layer outputs (items, m, H), the tail bound to them)
    for g0 in range(0, len(live), len(outs)):
        g1 = min(len(live), g0 + len(outs))
        out = outs[: g1 - g0]
        if per > 1:  # several whole items per pass
            flat = out.view(-1, o)
            for p0 in range(g0, g1, per):
                p1 = min(g1, p0 + per)
                if p1 - p0 not in bound:
                    h = scratch[: (p1 - p0) * m]
                    bound[p1 - p0] = h.view(p1 - p0, m, width), tail.bound(h)
                first, run = bound[p1 - p0]
                torch.addcmul(hidden, items3[p0:p1], weights3[p0:p1], out=first)
                run(flat[(p0 - g0) * m : (p1 - g0) * m])
                yield
        else:  # the rows in passes, each pass through every item of the group (its rows stay in the caches)
            for lo in range(0, m, span):
                hi = min(m, lo + span)
                h = scratch[: hi - lo]
                update, run = partial(torch.addcmul, hidden[lo:hi], out=h), tail.bound(h)
                columns, rows_weights = deltas[g0:g1, lo:hi, None].unbind(0), weights[g0:g1].unbind(0)
                for column, weight, into in zip(columns, rows_weights, out[:, lo:hi].unbind(0)):
                    update(column, weight)  # the first layer's outputs for this item's rows
                    run(into)
                    yield
        record(live[g0:g1], score(out))


def pass_shape(m: int) -> tuple[int, int]:
    """(items per pass, rows of an item per pass) for items of ``m`` rows."""
    if m >= PASS_ROWS // 2:
        return 1, _even(m, PASS_ROWS)
    return PASS_ROWS // m, m


def pass_rows(m: int) -> int:
    """The most rows one pass holds."""
    per, span = pass_shape(m)
    return per * span


def group_items(m: int, o: int, items: int) -> int:
    """Items whose outputs are held together (about :data:`GROUP_ELEMENTS` of them, whole passes),
    at most ``items``."""
    per = pass_shape(m)[0]
    group = max(per, GROUP_ELEMENTS // max(1, m * o) // per * per)
    return max(1, min(items, group))
