"""The schedule of the perturbation passes: which changed rows of which perturbations go through
the model together, evaluated in steps (a generator that yields after each forward pass).

A unit whose items change few rows runs only those rows (:meth:`Passes._sparse`); a dense unit
runs every row of its items through the rank-1 shortcut (:mod:`.dense`), except the items that
change few rows, which go by rows.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from nbvis.compute.running import model_output

from . import dense
from .chunks import MEMORY_BUDGET, Unit, pieces, units
from .dense import dense_passes, group_items, pass_rows

__all__ = ["FEW_ROWS", "SCORE_ELEMENTS", "Passes"]

#: In a unit whose items run every row, the fraction below which an item runs only the rows it changes.
FEW_ROWS = 0.5

#: Model outputs scored at a time (their float64 contributions are held meanwhile).
SCORE_ELEMENTS = 1 << 18


class Passes:
    """Evaluate every perturbation of a plan (see ``run._Plan``), pausing after each forward pass.

    The buffers are allocated once and reused for every pass. Iterating runs the work; the plan
    builds the units and records the scores.
    """

    def __init__(self, plan):
        self.plan = plan
        m, outputs = plan.base_sub.shape
        fast = plan.fast
        width = fast[0].shape[1] if fast else plan.X.shape[1]
        rows = plan.batch if plan.callable is None else max(plan.batch, m)
        if fast:
            rows = max(rows, pass_rows(m))
        # the first layer's outputs with the shortcut, else rows of X (token ids stay integers)
        self.rows_buf = torch.empty((rows, width), device=plan.device, dtype=plan.dtype if fast else plan.X.dtype)
        self.outs_buf = None  # the outputs of the dense items scored together, made when first needed
        if plan.callable is None:  # per-item sums of the rows' score contributions
            self.max_items, self.preds_buf = plan.batch, None
        else:  # a callable needs every item's full predictions
            self.max_items = max(1, MEMORY_BUDGET // (m * outputs * plan.base_sub.element_size()))
            self.preds_buf = torch.empty((self.max_items, m, outputs), device=plan.device, dtype=plan.base_sub.dtype)
        self._y_rep = None

    def __iter__(self) -> Iterator[None]:
        plan = self.plan
        m, outputs = plan.base_sub.shape
        for repeats, batch in units(plan.groups, plan.n_repeats, m):
            unit = plan._unit(repeats, batch)
            unchanged = np.flatnonzero(unit.counts == 0)  # nothing changed: the score of the unperturbed rows
            plan._record(unit, unchanged, np.full(len(unchanged), plan.sub_score))
            if unit.row is not None:
                yield from self._sparse(unit)
                continue
            if self.outs_buf is None:
                group = group_items(m, outputs, len(plan.groups) * plan.n_repeats)
                self.outs_buf = torch.empty((group, m, outputs), device=plan.device, dtype=plan.base_sub.dtype)
            live = np.flatnonzero(unit.counts)
            few = unit.counts[live] < FEW_ROWS * m
            # items that change few rows run only those, when that saves more than a few passes
            if (m - unit.counts[live[few]]).sum() >= 4 * dense.PASS_ROWS:
                yield from self._sparse(plan._changed_rows(unit, live[few]))
            else:
                few[:] = False
            record = lambda items, scores, unit=unit: plan._record(unit, items, scores)  # noqa: E731
            yield from dense_passes(unit, live[~few], plan.fast, self.rows_buf, self.outs_buf, self._group_scores, record)

    def _sparse(self, unit: Unit) -> Iterator[None]:
        """Evaluate the changed rows of the unit's items, listed in ``unit.row``, in passes of about
        one batch of rows."""
        plan = self.plan
        m, outputs = plan.base_sub.shape
        for first, last in pieces(unit.counts, plan.batch, self.max_items):
            if plan.callable is None:
                sums = plan.base_sum.expand(last - first, -1).clone()
            else:
                preds = self.preds_buf[: last - first]
                preds.copy_(plan.base_sub.expand(last - first, m, outputs))
            a, b = int(unit.offsets[first]), int(unit.offsets[last])
            for start in range(a, b, plan.batch):
                stop = min(b, start + plan.batch)
                out = self._evaluate(unit, self.rows_buf[: stop - start], start, stop)
                out = out.reshape(stop - start, outputs)
                rows, local = unit.row[start:stop], unit.item[start:stop] - first
                if plan.callable is None:
                    change = plan.contributions(plan.y_sub[rows], out) - plan.base_rows[rows]
                    sums.index_add_(0, local, change)
                else:
                    preds[local, rows] = out
                if stop < b:
                    yield
            scores = plan._scores(plan.y_sub, preds) if plan.callable else plan.total_sub(sums).cpu().numpy()
            live = np.arange(first, last)[unit.counts[first:last] > 0]
            plan._record(unit, live, scores[live - first])
            yield

    def _evaluate(self, unit: Unit, buf: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Model outputs for the changed rows ``start:stop`` of the unit."""
        plan = self.plan
        fast = plan.fast
        rows = unit.row[start:stop]
        torch.index_select(fast[1] if fast else plan.Xs, 0, rows, out=buf)
        groups = len(unit.batch)
        if unit.element is not None and not fast:  # one element per group: every row in one go
            buf[torch.arange(len(rows), device=buf.device), unit.element[start:stop]] = unit.value[start:stop]
        else:
            j = int(np.searchsorted(unit.offsets, start, side="right")) - 1
            while j < len(unit.counts) and unit.offsets[j] < stop:
                s, e = max(start, int(unit.offsets[j])), min(stop, int(unit.offsets[j + 1]))
                if e > s:
                    k = j % groups
                    if unit.element is not None:  # first layer output += delta * W[:, element], one element per item
                        weights = fast[0][int(plan.groups[unit.batch[k]][0])]
                        buf[s - start : e - start].addcmul_(unit.value[s:e, None], weights)
                    else:
                        lo, hi = int(unit.ends[k] - unit.sizes[k]), int(unit.ends[k])
                        values = unit.values[j // groups, :, lo:hi].index_select(0, rows[s - start : e - start])
                        if fast:  # first layer output += delta @ W[:, group]^T
                            buf[s - start : e - start].addmm_(values, fast[0][unit.index[lo:hi]])
                        else:
                            buf[s - start : e - start, unit.index[lo:hi]] = values
                j += 1
        if fast:
            return fast[2](buf)
        return model_output(plan.model, buf.view(len(buf), *plan.sample_shape))

    def _group_scores(self, out: torch.Tensor) -> np.ndarray:
        """The scores of a group of items from their outputs (G, m, o)."""
        plan = self.plan
        if plan.callable is not None:
            return plan._scores(plan.y_sub, out)
        count, m, outputs = out.shape
        per = max(1, SCORE_ELEMENTS // (m * outputs))  # items whose float64 contributions are held at a time
        sums = []
        for first in range(0, count, per):
            part = out[first : first + per]
            if plan.regression:  # elementwise contributions: y (m, o) broadcasts over the items
                sums.append(plan.contributions(plan.y_sub, part).sum(dim=1))
                continue
            y = plan.y_sub if len(part) == 1 else self._y_repeated(len(part))
            sums.append(plan.contributions(y, part.reshape(-1, outputs)).view(len(part), m, -1).sum(dim=1))
        return plan.total_sub(sums[0] if len(sums) == 1 else torch.cat(sums)).cpu().numpy()

    def _y_repeated(self, count: int) -> torch.Tensor:
        """The targets of the subsampled rows, repeated ``count`` times (built once, sliced)."""
        y = self.plan.y_sub
        m = len(y)
        if self._y_rep is None or len(self._y_rep) < count * m:
            self._y_rep = y.repeat(count, *([1] * (y.dim() - 1)))
        return self._y_rep[: count * m]
