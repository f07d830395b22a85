"""The run: check the arguments, compute the baseline, then evaluate every perturbation in steps."""

from __future__ import annotations

import inspect
import time
from typing import Callable, Generator, Iterator, Optional, Union

import numpy as np
import torch
from torch import nn

from nbvis.compute.probe import borrowed, forward_with, model_device, model_dtype
from nbvis.compute.running import run_model

from .chunks import MEMORY_BUDGET, Unit, pieces, units
from . import dense
from .dense import dense_passes, group_items, pass_rows
from .draws import draw_seed, permutations
from .groups import feature_groups as groups_of
from .inputs import check_int, check_progress, names_of, noise_scales, sample_count, table, targets
from .result import ImportanceResult, ImportanceStep
from .scoring import BUILTIN, SCORINGS, for_targets, gives_probabilities, metrics_of, mismatch
from .shortcut import Tail, linear_start, run_tail

__all__ = ["METHODS", "STEP_SECONDS", "iter_permutation_importance", "permutation_importance"]

#: Seconds of work between two steps of :func:`iter_permutation_importance`.
STEP_SECONDS = 0.05

#: Fraction of changed rows above which a unit's items run every row (no row lists).
DENSE = 0.75
#: In such a unit, the fraction below which an item runs only the rows it changes.
FEW_ROWS = 0.5

#: Model outputs scored at a time (their float64 contributions are held meanwhile).
SCORE_ELEMENTS = 1 << 18

METHODS = ("permutation", "noise")


class _Plan:
    """Everything checked and precomputed once; :meth:`steps` then evaluates the perturbations."""

    def __init__(
        self, model, X, y, scoring, method, n_repeats, random_state, feature_groups, feature_names,
        batch_size, max_samples, noise_scale, seed=None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch nn.Module, not {type(model).__name__}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
        self.model = model
        self.method = method
        self.n_repeats = check_int("n_repeats", n_repeats, 1)
        self.X, self.sample_shape, columns = table(X, model)
        n, size = self.X.shape
        self.y_np = targets(y, n)
        self.groups, names = groups_of(feature_groups, self.sample_shape, columns)
        if feature_names is not None:
            names = names_of(feature_names, len(self.groups))
        self.device, self.dtype = model_device(model), model_dtype(model)
        m = sample_count(max_samples, n)
        self.noise_scale = noise_scales(noise_scale, size)
        self.seed = draw_seed(random_state) if seed is None else seed  # several scorings share one draw
        rows, perms = permutations(self.seed, n, m, self.n_repeats)
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
            self.total_sub = for_targets(self.total, self.y_sub)  # the scores of sums over those rows
        self.result = ImportanceResult(
            importances=np.full((len(self.groups), self.n_repeats), np.nan),
            baseline_score=self.baseline,
            feature_names=names,
            scoring=name,
            method=method,
            groups=self.groups,
            sample_shape=self.sample_shape,
            scorings=tuple(k for k in SCORINGS if mismatch(k, self.y_np, base.shape[1]) is None),
        )
        if method == "noise":
            self.span = (self.X.amax(dim=0) - self.X.amin(dim=0)).cpu().numpy().astype(np.float64)

    # ---- checks that need the model

    def _row_bytes(self, fast=None) -> int:
        """Bytes one row takes as input plus every intermediate output (after the first layer, for
        the shortcut)."""
        if fast:
            h = fast[1][:2].clone()  # a layer may work in place
            outputs = [h]
            for module in fast[2].modules:
                h = module(h)
                outputs.append(h)
        else:
            _, acts = forward_with(self.model, self.X[:2].clone().view(2, *self.sample_shape), None)
            outputs = [self.X[:2], *acts.values()]
        return sum(a.numel() * a.element_size() for a in outputs) // 2

    @staticmethod
    def _batch_rows(batch_size, row_bytes: int) -> int:
        if batch_size is not None:
            return check_int("batch_size", batch_size, 1)
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
        self.regression = False
        if callable(scoring):
            self.callable = scoring
            return getattr(scoring, "__name__", "score"), self.y_np
        if scoring not in BUILTIN:
            raise ValueError(f"unknown scoring {scoring!r}; expected one of {SCORINGS} or a callable(y_true, y_pred)")
        contributions, self.total, task = BUILTIN[scoring]
        self.regression = task == "regression"
        problem = mismatch(scoring, self.y_np, base.shape[1])
        if problem:
            raise ValueError(problem)
        if task == "regression":
            self.contributions = lambda yy, out: contributions(yy, out, False)
            return scoring, torch.as_tensor(self.y_np.astype(np.float64).reshape(len(self.y_np), -1)).to(self.device)
        probs = gives_probabilities(self.model, base)
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

    def _shortcut(self, base: torch.Tensor):
        """(W^T, first-layer outputs, tail) when the rank-1 update is exact for this model, else None."""
        found = linear_start(self.model, self.sample_shape)
        if found is None:
            return None
        linear, tail = found
        hidden = nn.functional.linear(self.X, linear.weight, linear.bias)
        check = run_tail(tail, hidden[:256].clone()).reshape(min(256, len(hidden)), -1)
        if check.shape != base[: len(check)].shape or not torch.allclose(check, base[: len(check)], rtol=1e-4, atol=1e-5):
            return None  # the Sequential does something we did not foresee: run the whole model
        weight_t = linear.weight.detach().t().contiguous()
        return weight_t, hidden if self.rows is None else hidden[self.rows], Tail(tail)

    # ---- the perturbations

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

    def _unit(self, repeats: list[int], batch: list[int]) -> Unit:
        """Perturb the groups of ``batch`` for ``repeats``; find the rows each perturbation changes."""
        m = len(self.Xs)
        sizes = np.array([len(self.groups[k]) for k in batch])
        index = torch.from_numpy(np.concatenate([self.groups[k] for k in batch])).to(self.device)
        if sizes.max() == 1:
            return self._single_unit(repeats, batch, sizes, index)
        original = self.Xs.index_select(1, index)
        new = torch.stack([self._perturbed(r, batch, index, original) for r in repeats])  # (R, m, E)
        changed = new != original
        owner = torch.from_numpy(np.repeat(np.arange(len(batch)), sizes)).to(self.device)
        counts = torch.zeros((len(repeats), m, len(batch)), device=self.device)
        rows_changed = counts.index_add_(2, owner, changed.float()) > 0
        counts = rows_changed.sum(dim=1).reshape(-1).cpu().numpy()
        r, k, row = rows_changed.transpose(1, 2).contiguous().nonzero(as_tuple=True)  # sorted by r, k, row
        return Unit(
            values=new - original if self.fast else new, item=r * len(batch) + k, row=row,
            offsets=np.concatenate([[0], np.cumsum(counts)]), element=None, value=None,
            repeats=repeats, batch=batch, ends=np.cumsum(sizes), sizes=sizes, index=index, counts=counts,
        )

    def _single_unit(self, repeats: list[int], batch: list[int], sizes: np.ndarray, index: torch.Tensor) -> Unit:
        """:meth:`_unit` for groups of one element each: each changed row has one new value. The
        values are laid out (R, K, m), a perturbation's rows contiguous."""
        m = len(self.Xs)
        if getattr(self, "_columns", None) is None:
            self._columns = self.Xs.t().contiguous()  # (F, m): a feature's values side by side
        columns = self._columns.index_select(0, index)  # (K, m)
        if self.method == "permutation":
            new = torch.stack([columns.index_select(1, self.perms[r]) for r in repeats])  # (R, K, m)
        else:
            original = self.Xs.index_select(1, index)
            new = torch.stack([self._perturbed(r, batch, index, original).t() for r in repeats])
        change = new - columns  # zero exactly where the value stays (finite values)
        counts = torch.count_nonzero(change, dim=2).reshape(-1).cpu().numpy()
        values = change if self.fast else new
        common = dict(repeats=repeats, batch=batch, ends=np.cumsum(sizes), sizes=sizes, index=index, counts=counts)
        if self.fast and counts.sum() >= DENSE * counts.size * m:
            # most rows change: every row of an item goes through, with no row lists to build
            return Unit(values=values.view(-1, m), item=None, row=None, offsets=None, element=None, value=None, **common)
        r, k, row = change.nonzero(as_tuple=True)  # sorted by r, k, row
        return Unit(
            values=values, item=r * len(batch) + k, row=row, offsets=np.concatenate([[0], np.cumsum(counts)]),
            element=index[k], value=values[r, k, row], **common,
        )

    def _changed_rows(self, unit: Unit, items: np.ndarray) -> Unit:
        """The dense unit's ``items`` (the others dropped) with the list of the rows they change."""
        index = torch.from_numpy(items).to(self.device)
        changes = unit.values.index_select(0, index)  # (L, m)
        local, row = changes.nonzero(as_tuple=True)  # sorted by item, row
        item = index[local]
        counts = np.zeros_like(unit.counts)
        counts[items] = unit.counts[items]
        return unit._replace(
            item=item, row=row, offsets=np.concatenate([[0], np.cumsum(counts)]), counts=counts,
            element=unit.index[item % len(unit.batch)], value=changes[local, row],
        )

    def _record(self, unit: Unit, items: np.ndarray, scores) -> None:
        """Store the importances of the unit's ``items`` from their scores."""
        groups = len(unit.batch)
        rows = np.asarray(unit.batch)[items % groups]
        cols = np.asarray(unit.repeats)[items // groups]
        self.result.importances[rows, cols] = self.baseline - np.asarray(scores, dtype=np.float64)
        self.done += len(items)

    def _work(self) -> Iterator[None]:
        """Evaluate every perturbation, pausing (yielding) after each forward pass."""
        m, outputs = self.base_sub.shape
        # buffers allocated once, reused for every chunk
        width = self.fast[0].shape[1] if self.fast else self.X.shape[1]
        rows = self.batch if self.callable is None else max(self.batch, m)
        if self.fast:
            rows = max(rows, pass_rows(m))
        self.rows_buf = torch.empty((rows, width), device=self.device, dtype=self.dtype)
        outs_buf = None
        if self.callable is None:  # per-item sums of the rows' score contributions
            max_items, preds_buf = self.batch, None
        else:  # a callable needs every item's full predictions
            max_items = max(1, MEMORY_BUDGET // (m * outputs * self.base_sub.element_size()))
            preds_buf = torch.empty((max_items, m, outputs), device=self.device, dtype=self.base_sub.dtype)
        for repeats, batch in units(self.groups, self.n_repeats, len(self.Xs)):
            unit = self._unit(repeats, batch)
            unchanged = np.flatnonzero(unit.counts == 0)  # nothing changed: the score of the unperturbed rows
            self._record(unit, unchanged, np.full(len(unchanged), self.sub_score))
            if unit.row is None:
                if outs_buf is None:  # the outputs of the items scored together
                    group = group_items(m, outputs, len(self.groups) * self.n_repeats)
                    outs_buf = torch.empty((group, m, outputs), device=self.device, dtype=self.base_sub.dtype)
                live = np.flatnonzero(unit.counts)
                few = unit.counts[live] < FEW_ROWS * m
                # items that change few rows run only those, when that saves more than a few passes
                if (m - unit.counts[live[few]]).sum() >= 4 * dense.PASS_ROWS:
                    yield from self._sparse(self._changed_rows(unit, live[few]), max_items, preds_buf)
                else:
                    few[:] = False
                record = lambda items, scores, unit=unit: self._record(unit, items, scores)  # noqa: E731
                yield from dense_passes(unit, live[~few], self.fast, self.rows_buf, outs_buf, self._group_scores, record)
                continue
            yield from self._sparse(unit, max_items, preds_buf)

    def _sparse(self, unit: Unit, max_items: int, preds_buf) -> Iterator[None]:
        """Evaluate the changed rows of the unit's items, listed in ``unit.row``, in passes of about
        one batch of rows."""
        m, outputs = self.base_sub.shape
        for first, last in pieces(unit.counts, self.batch, max_items):
            if self.callable is None:
                sums = self.base_sum.expand(last - first, -1).clone()
            else:
                preds = preds_buf[: last - first]
                preds.copy_(self.base_sub.expand(last - first, m, outputs))
            a, b = int(unit.offsets[first]), int(unit.offsets[last])
            for start in range(a, b, self.batch):
                stop = min(b, start + self.batch)
                out = self._evaluate(unit, self.rows_buf[: stop - start], start, stop)
                out = out.reshape(stop - start, outputs)
                rows, local = unit.row[start:stop], unit.item[start:stop] - first
                if self.callable is None:
                    change = self.contributions(self.y_sub[rows], out) - self.base_rows[rows]
                    sums.index_add_(0, local, change)
                else:
                    preds[local, rows] = out
                if stop < b:
                    yield
            scores = self._scores(self.y_sub, preds) if self.callable else self.total_sub(sums).cpu().numpy()
            live = np.arange(first, last)[unit.counts[first:last] > 0]
            self._record(unit, live, scores[live - first])
            yield

    def _group_scores(self, out: torch.Tensor) -> np.ndarray:
        """The scores of a group of items from their outputs (G, m, o)."""
        if self.callable is not None:
            return self._scores(self.y_sub, out)
        count, m, outputs = out.shape
        per = max(1, SCORE_ELEMENTS // (m * outputs))  # items whose float64 contributions are held at a time
        sums = []
        for first in range(0, count, per):
            part = out[first : first + per]
            if self.regression:  # elementwise contributions: y (m, o) broadcasts over the items
                sums.append(self.contributions(self.y_sub, part).sum(dim=1))
                continue
            y = self.y_sub if len(part) == 1 else self._y_repeated(len(part))
            sums.append(self.contributions(y, part.reshape(-1, outputs)).view(len(part), m, -1).sum(dim=1))
        return self.total_sub(sums[0] if len(sums) == 1 else torch.cat(sums)).cpu().numpy()

    def _y_repeated(self, count: int) -> torch.Tensor:
        """The targets of the subsampled rows, repeated ``count`` times (built once, sliced)."""
        m = len(self.y_sub)
        if getattr(self, "_y_rep", None) is None or len(self._y_rep) < count * m:
            self._y_rep = self.y_sub.repeat(count, *([1] * (self.y_sub.dim() - 1)))
        return self._y_rep[: count * m]

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
                if self.fast:
                    self.fast[2].compile()  # the tail's hooks as they are now
                deadline = time.perf_counter() + STEP_SECONDS
                for _ in work:
                    if time.perf_counter() > deadline:
                        break
                else:
                    finished = True
            yield ImportanceStep(self.done, total, self.result)
        return self.result

    def _evaluate(self, unit: Unit, buf: torch.Tensor, start: int, stop: int) -> torch.Tensor:
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
            return self.fast[2](buf)
        return run_model(self.model, buf.view(len(buf), *self.sample_shape))


def iter_permutation_importance(
    model: nn.Module, X, y, *, _seed: Optional[int] = None, **options
) -> Generator[ImportanceStep, None, ImportanceResult]:
    """The steps of :func:`permutation_importance`, for running it piece by piece.

    Takes the keyword arguments of :func:`permutation_importance` but ``progress`` (the steps are
    the progress), with one scoring. The arguments are checked and the baseline is computed when
    this is called (bad input raises here); the returned iterator then yields
    :class:`ImportanceStep` s, each after a bounded amount of work. Every step's ``result`` is the
    same object, filled in as the work goes on; the generator returns it at the end. Stopping early
    is safe: the model is only borrowed while a step runs.
    """
    if "progress" in options:
        raise TypeError("iter_permutation_importance takes no progress: each step it yields says how far it is")
    arguments = _STEP_SIGNATURE.bind(model, X, y, **options)
    arguments.apply_defaults()
    scoring = arguments.arguments["scoring"]
    if metrics_of(scoring) is not None:
        raise TypeError(
            "iter_permutation_importance takes one scoring (a name or a callable); "
            f"for several ({scoring!r}) use permutation_importance"
        )
    return _Plan(**arguments.arguments, seed=_seed).steps()


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
) -> Union[ImportanceResult, dict[str, ImportanceResult]]:
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
        outputs as logits (or probabilities when the model ends with Softmax/Sigmoid). Several
        scorings, as scikit-learn: a list or tuple of names, or a dict of name -> scoring; the
        result is then a dict of results by name, all from the same permutations.
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
    ``importances_std``, ``baseline_score``, ``feature_names`` and ``importance_map()``; for
    several scorings, a dict of them by scoring name.
    """
    check_progress(progress)
    metrics = metrics_of(scoring)
    seed = None if metrics is None else draw_seed(random_state)  # one draw for every scoring, as scikit-learn
    results = {}
    for i, (name, one) in enumerate((metrics or {None: scoring}).items()):
        step = None
        for step in iter_permutation_importance(
            model, X, y, scoring=one, method=method, n_repeats=n_repeats, random_state=random_state,
            feature_groups=feature_groups, feature_names=feature_names, batch_size=batch_size,
            max_samples=max_samples, noise_scale=noise_scale, _seed=seed,
        ):
            if progress is not None:
                count = len(metrics or [None])
                progress(i * step.total + step.done, count * step.total)
        results[name] = step.result
    return results if metrics is not None else results[None]


def _step_signature() -> inspect.Signature:
    """:func:`permutation_importance`'s signature without ``progress``, its options keyword-only:
    what :func:`iter_permutation_importance` takes (and shows to ``help`` and editors)."""
    params = [p for p in inspect.signature(permutation_importance).parameters.values() if p.name != "progress"]
    params = params[:3] + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params[3:]]
    return inspect.Signature(params, return_annotation="Generator[ImportanceStep, None, ImportanceResult]")


_STEP_SIGNATURE = _step_signature()
iter_permutation_importance.__signature__ = _STEP_SIGNATURE
