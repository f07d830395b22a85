"""The run: check the arguments, compute the baseline, then evaluate every perturbation in steps."""

from __future__ import annotations

import inspect
import time
from typing import Callable, Generator, Optional, Union

import numpy as np
import torch
from torch import nn

from nbvis.compute.probe import borrowed, forward_with, model_device, model_dtype
from nbvis.compute.running import model_output

from .chunks import MEMORY_BUDGET, Unit
from .draws import draw_seed, permutations
from .groups import feature_groups as groups_of
from .inputs import check_int, check_progress, names_of, noise_scales, sample_count, table, targets
from .margins import class_margins
from .passes import Passes
from .result import ImportanceResult, ImportanceStep
from .scoring import BUILTIN, SCORINGS, fitting, for_targets, gives_probabilities, metrics_of, mismatch
from .shortcut import Tail, linear_start

__all__ = ["METHODS", "STEP_SECONDS", "iter_permutation_importance", "permutation_importance"]

#: Seconds of work between two steps of :func:`iter_permutation_importance`.
STEP_SECONDS = 0.05

#: Fraction of changed rows above which a unit's items run every row (no row lists).
DENSE = 0.75

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
        if method == "noise" and not self.X.is_floating_point():
            raise ValueError(
                f"method='noise' adds noise to the features, and X holds {self.X.dtype} values (token ids or "
                "categories) that cannot take it; use method='permutation'"
            )
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
        self.perms = torch.from_numpy(np.stack(perms)).to(self.device)  # (R, m)
        self.rows = None if rows is None else torch.from_numpy(rows).to(self.device)

        with borrowed(model), torch.no_grad():
            self.batch = self._batch_rows(batch_size, 4 * self.X[:1].numel() * self.X.element_size())
            base = self._forward_rows(self.X)  # (n, o)
            name, y_full = self._scorer(scoring, base)
            self.fast, row_bytes = self._shortcut(base)
            # rows per forward pass: only the layers after the first one run with the shortcut
            self.batch = self._batch_rows(batch_size, row_bytes)
        self.base_sub = base if self.rows is None else base[self.rows]
        self.Xs = self.X if self.rows is None else self.X[self.rows]
        if self.rows is None:
            self.y_sub = y_full
        else:
            self.y_sub = y_full[self.rows] if isinstance(y_full, torch.Tensor) else y_full[rows]
        if self.callable is None:
            self.base_rows = self.contributions(self.y_sub, self.base_sub)  # (m, q)
            self.base_sum = self.base_rows.sum(dim=0)
            self.total_sub = for_targets(self.total, self.y_sub)  # the scores of sums over those rows
            # the score of the unperturbed rows the perturbations use (all rows, unless subsampled)
            self.sub_score = float(self.total_sub(self.base_sum[None])[0])
        else:
            self.sub_score = float(self._scores(self.y_sub, self.base_sub[None])[0])
        self.baseline = self.sub_score if self.rows is None else float(self._scores(y_full, base[None])[0])
        self.margins = None  # for accuracy: which changed rows provably keep their predicted class
        if scoring == "accuracy" and self.fast:
            self.margins = class_margins(self.fast[0], self.fast[2].modules, self.base_sub, self.probs)
        self.result = ImportanceResult(
            importances=np.full((len(self.groups), self.n_repeats), np.nan),
            baseline_score=self.baseline,
            feature_names=names,
            scoring=name,
            method=method,
            groups=self.groups,
            sample_shape=self.sample_shape,
            scorings=fitting(self.y_np, base.shape[1]),
        )
        if method == "noise":
            self.span = (self.X.amax(dim=0) - self.X.amin(dim=0)).cpu().numpy().astype(np.float64)

    # ---- checks that need the model

    def _row_bytes(self) -> int:
        """Bytes one row takes as input plus every intermediate output."""
        _, acts = forward_with(self.model, self.X[:2].clone().view(2, *self.sample_shape), None)
        return _bytes_per_row([self.X[:2], *acts.values()])

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
            out = model_output(self.model, chunk.view(len(chunk), *self.sample_shape))
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
        probs = self.probs = gives_probabilities(self.model, base)
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
        """``((W^T, first-layer outputs, tail), bytes per row after the first layer)`` when the
        rank-1 update is exact for this model; ``(None, bytes per row of the whole model)`` else."""
        found = linear_start(self.model, self.sample_shape)
        if found is None:
            return None, self._row_bytes()
        linear, tail = found
        hidden = nn.functional.linear(self.X, linear.weight, linear.bias)
        outputs = [hidden[:256].clone()]  # a layer may work in place
        for module in tail:
            outputs.append(module(outputs[-1]))
        check, want = outputs[-1].reshape(len(outputs[0]), -1), base[: len(outputs[0])]
        same = check.shape == want.shape and (torch.equal(check, want) or torch.allclose(check, want, rtol=1e-4, atol=1e-5))
        if not same:
            return None, self._row_bytes()  # the Sequential does something we did not foresee: run the whole model
        weight_t = linear.weight.detach().t().contiguous()
        return (weight_t, hidden if self.rows is None else hidden[self.rows], Tail(tail)), _bytes_per_row(outputs)

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
        if self.margins is not None:  # a row whose predicted class provably stays scores as unchanged
            moves = (new - original).abs_().mul_(self.margins.moves(index))  # (R, m, E)
            moved = torch.zeros_like(counts).index_add_(2, owner, moves.to(counts.dtype))
            rows_changed &= moved > self.margins.margin[None, :, None]
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
            shape = (len(repeats), len(columns), m)  # (R, K, m); the repeats are consecutive
            taken = self.perms[repeats[0] : repeats[-1] + 1, None, :].expand(shape)
            new = torch.gather(columns.expand(shape), 2, taken)
        else:
            original = self.Xs.index_select(1, index)
            new = torch.stack([self._perturbed(r, batch, index, original).t() for r in repeats])
        # zero exactly where the value stays (finite values); the shortcut needs only the changes
        change = new.sub_(columns) if self.fast else new - columns
        if self.margins is not None:  # a row whose predicted class provably stays counts as unchanged
            change.masked_fill_(change.abs() * self.margins.moves(index).t() <= self.margins.margin, 0)
        counts = _nonzero_counts(change).reshape(-1).cpu().numpy()
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

    def steps(self) -> Generator[ImportanceStep, None, ImportanceResult]:
        """Run the :class:`Passes` in slices of about ``STEP_SECONDS``, the model borrowed during each slice;
        return the result."""
        total = len(self.groups) * self.n_repeats
        self.done = 0
        yield ImportanceStep(0, total, self.result)
        work = iter(Passes(self))
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


def _nonzero_counts(values: torch.Tensor) -> torch.Tensor:
    """``torch.count_nonzero(values, dim=-1)`` (int64), summing ones in float where that is exact
    (several times faster on CPU)."""
    if values.shape[-1] >= 1 << 24:
        return torch.count_nonzero(values, dim=-1)
    exact = torch.float64 if values.dtype == torch.float64 else torch.float32
    return values.abs().sign_().sum(dim=-1, dtype=exact).long()


def _bytes_per_row(outputs: list[torch.Tensor]) -> int:
    """The bytes one row of these tensors (rows first) takes together."""
    return sum(a.numel() * a.element_size() for a in outputs) // len(outputs[0])


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
        A result that is not a tensor (a tuple, a ``transformers`` ``ModelOutput``) is read by the
        contract's rule (:mod:`nbvis.compute.units`): its logits, or its first tensor.
    X : numpy array, torch tensor or pandas DataFrame, (n_samples, n_features) or images
        (n_samples, C, H, W). DataFrame column names become feature names. Integer X (token ids)
        is permuted as it is (``method="noise"`` needs floating-point X).
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
        plan = _Plan(  # what iter_permutation_importance runs, its arguments already in hand
            model, X, y, scoring=one, method=method, n_repeats=n_repeats, random_state=random_state,
            feature_groups=feature_groups, feature_names=feature_names, batch_size=batch_size,
            max_samples=max_samples, noise_scale=noise_scale, seed=seed,
        )
        for step in plan.steps():
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
