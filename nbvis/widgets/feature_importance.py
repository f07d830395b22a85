"""FeatureImportance: permutation or noise importance of every feature as a plotly bar chart."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path
from typing import Sequence

import anywidget
import numpy as np
import torch
import traitlets
from ipywidgets import widget_serialization
from torch import nn

from .._arrays import unpack
from ..compute.importance import METHODS, ImportanceResult, ImportanceStep, iter_permutation_importance
from ._base import STATIC, NbvisWidget
from ._jobs import JobView, Throttle
from ._traits import Array

__all__ = ["FeatureImportance", "PlotlyLibrary", "plotly_library"]


def _plotly_js() -> Path:
    import plotly

    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if not path.exists():
        raise RuntimeError(f"plotly.js is missing from the plotly package ({path}); reinstall plotly")
    return path


class PlotlyLibrary(anywidget.AnyWidget):
    """plotly.js itself, gzipped, sent to the browser once per kernel and shared by every chart.

    Never displayed: each chart refers to it, and the first chart drawn on a page loads the
    library from it; later charts (and charts of other nbvis views) reuse the loaded copy.
    """

    _esm = "export default { render() {} };"
    source = Array("uint8")  # plotly.min.js, gzip-compressed (about 1.4 MB), as bytes
    version = traitlets.Unicode().tag(sync=True)


_LIBRARY: PlotlyLibrary | None = None


def plotly_library() -> PlotlyLibrary:
    """The one :class:`PlotlyLibrary` of this kernel (created on first use)."""
    global _LIBRARY
    if _LIBRARY is None or _LIBRARY.comm is None:  # never made, or closed since
        import plotly

        source = gzip.compress(_plotly_js().read_bytes(), compresslevel=6, mtime=0)
        _LIBRARY = PlotlyLibrary(source=np.frombuffer(source, np.uint8), version=plotly.__version__)
    return _LIBRARY


class FeatureImportance(JobView, NbvisWidget):
    """How much the model's score drops when each feature is perturbed, as a sorted bar chart.

    The computation (:func:`nbvis.permutation_importance`) runs in the background with progress
    and a cancel button; bars fill in as repeats complete. Error bars show the standard deviation
    over repeats; the axis names the metric. With many features the ``top_k`` most important are
    shown and the rest collapsed into one bar (click it to show more). Clicking a bar sets
    ``selected`` (a feature index). For image inputs (N, C, H, W) the importance of every pixel
    (or patch, see ``feature_groups``) is also drawn over sample ``sample`` of ``X``.

    Changing ``scoring``, ``method`` or ``n_repeats`` (in Python or in the view) starts a new run.
    ``state``, :meth:`start`, :meth:`stop`, :meth:`wait` and ``autostart`` work as in every view
    that runs in the background (see :class:`~nbvis.widgets._jobs.JobView`).
    """

    _esm = STATIC / "feature_importance.js"
    _css = STATIC / "feature_importance.css"

    scoring = traitlets.Unicode("r2").tag(sync=True)
    scorings = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    method = traitlets.Enum(METHODS, default_value="permutation").tag(sync=True)
    n_repeats = traitlets.Int(10).tag(sync=True)
    top_k = traitlets.Int(20).tag(sync=True)
    selected = traitlets.Int(None, allow_none=True).tag(sync=True)
    sample = traitlets.Int(0).tag(sync=True)
    done = traitlets.Int(0, read_only=True).tag(sync=True)
    total = traitlets.Int(0, read_only=True).tag(sync=True)
    baseline = traitlets.Float(0.0, read_only=True).tag(sync=True)
    feature_names = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    n_samples = traitlets.Int(0, read_only=True).tag(sync=True)

    _stats = Array()  # (n_features, 2): mean and std over the repeats done so far
    _image = Array()  # the sample drawn under the map, (C, H, W)
    _map = Array()  # mean importance per pixel, (H, W)
    _owner = Array("int32")  # the feature each pixel belongs to, (H, W)
    _library = traitlets.Instance(PlotlyLibrary).tag(sync=True, **widget_serialization)

    def __init__(
        self,
        model: nn.Module,
        X,
        y,
        scoring="r2",
        method: str = "permutation",
        n_repeats: int = 10,
        random_state=0,
        feature_names: Sequence[str] | None = None,
        *,
        feature_groups=None,
        max_samples=None,
        noise_scale=1.0,
        batch_size: int | None = None,
        top_k: int = 20,
        sample: int = 0,
        autostart: bool = True,
        **kwargs,
    ):
        if "start" in kwargs:  # the former name of autostart
            warnings.warn("FeatureImportance(start=...) is deprecated; use autostart=...", DeprecationWarning, stacklevel=2)
            autostart = bool(kwargs.pop("start"))
        self.model = model
        self._X, self._y = X, y
        self._callable = scoring if callable(scoring) else None
        self._options = dict(
            random_state=random_state, feature_groups=feature_groups, feature_names=feature_names,
            batch_size=batch_size, max_samples=max_samples, noise_scale=noise_scale,
        )
        self._throttle = Throttle(0.2)
        # checks every argument (and computes the baseline) before the widget exists
        self._steps = self._iterate(scoring, method, n_repeats)
        name = self._result.scoring
        super().__init__(
            scoring=name, method=method, n_repeats=n_repeats, top_k=top_k, sample=sample,
            _library=plotly_library(), **kwargs,
        )
        self.set_trait("scorings", [name] if self._callable else list(self._result.scorings))
        self.set_trait("n_samples", len(X))
        self._publish()
        self._publish_image()
        self.observe(self._on_settings, names=["scoring", "method", "n_repeats"])
        self.observe(self._on_sample, names=["sample"])
        if autostart:
            self._launch_job(self._steps)

    # ----- public API ----------------------------------------------------------------------------

    @property
    def result(self) -> ImportanceResult:
        """The result so far (complete once ``state == "done"``; NaN where not yet computed)."""
        return self._result

    @property
    def importances(self) -> np.ndarray:
        """(n_features, n_repeats): baseline score minus the score with the feature perturbed."""
        return self._result.importances

    @property
    def importances_mean(self) -> np.ndarray:
        return self._result.importances_mean

    @property
    def importances_std(self) -> np.ndarray:
        return self._result.importances_std

    @property
    def selected_name(self) -> str | None:
        """The name of the selected feature (None when nothing is selected)."""
        return None if self.selected is None else self._result.feature_names[self.selected]

    @property
    def importance_map(self) -> np.ndarray | None:
        """For image inputs, the mean importance of every pixel as drawn over the sample, (H, W)
        (NaN where no feature covers the pixel); None for other inputs."""
        picture = self._picture_arrays(self._result)
        return None if picture is None else picture[0]

    def _picture(self):
        """The sorted bars shown (top ``top_k``, the rest collapsed), and the importance map."""
        from ._picture import bars, colormap, fit_zoom, gray, mosaic, row

        result = self._result
        mean, std = result.importances_mean, result.importances_std
        order = sorted(range(len(mean)), key=lambda i: (-mean[i] if np.isfinite(mean[i]) else np.inf, i))
        k = self.top_k
        shown = order[:k] if k > 0 and len(order) > k + 1 else order
        labels = [result.feature_names[i] for i in shown]
        values, errors = [mean[i] for i in shown], [std[i] for i in shown]
        rest = order[len(shown):]
        if rest:
            labels.append(f"{len(rest)} others (mean)")
            values.append(float(np.nanmean(mean[rest])) if np.isfinite(mean[rest]).any() else np.nan)
            errors.append(0.0)
        chart = bars(labels, values, errors, title=f"decrease in {self.scoring} (baseline {self.baseline:.4g})")
        arrays = self._picture_arrays(result)
        if arrays is None or self._image is None:
            return chart
        values = arrays[0]
        vmax = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
        heat = colormap(values, -(vmax or 1.0), vmax or 1.0)
        under = gray(unpack(self._image))
        alpha = np.clip(np.nan_to_num(np.abs(values) / (vmax or 1.0)), 0, 1)[..., None] * 0.85
        blended = ((1 - alpha) * under + alpha * heat).astype(np.uint8)
        return row([chart, mosaic([blended], gap=0, zoom=fit_zoom(values.shape[1], values.shape[0], 240))])

    def start(self) -> "FeatureImportance":
        """Compute again from the start with the current settings."""
        with self._guard():
            self._halt_job(restart=True)
            self._steps = self._iterate(self.scoring, self.method, self.n_repeats)
            self._publish()
            self._launch_job(self._steps)
        return self

    @property
    def status(self) -> str:
        """Deprecated: ``state`` (whose ``"stopped"`` was called ``"cancelled"`` here)."""
        warnings.warn("FeatureImportance.status is deprecated; use .state", DeprecationWarning, stacklevel=2)
        return "cancelled" if self.state == "stopped" else self.state

    # ----- running -------------------------------------------------------------------------------

    def _iterate(self, scoring, method, n_repeats):
        scoring = self._callable if self._callable is not None else scoring
        steps = iter_permutation_importance(
            self.model, self._X, self._y, scoring=scoring, method=method, n_repeats=n_repeats, **self._options
        )
        first: ImportanceStep = next(steps)  # the empty result, before any work
        self._result = first.result
        return steps

    def _wait_result(self) -> ImportanceResult:
        return self._result

    def _job_step(self, step: ImportanceStep) -> None:
        if self._throttle.ready():
            self._publish(step)

    def _on_sample(self, _change) -> None:
        with self._guard():
            self._publish_image()

    # ----- state -> traits -----------------------------------------------------------------------

    def _publish(self, step: ImportanceStep | None = None) -> None:
        result = self._result
        done = step.done if step is not None else int(np.isfinite(result.importances).sum())
        stats = np.stack([result.importances_mean, result.importances_std], axis=1)
        with self.hold_sync():
            self.set_trait("feature_names", list(result.feature_names))
            self.set_trait("baseline", float(result.baseline_score))
            self.set_trait("total", int(result.importances.size))
            self.set_trait("done", done)
            self._stats = stats
            picture = self._picture_arrays(result)
            self._map, self._owner = (None, None) if picture is None else picture

    @staticmethod
    def _picture_arrays(result: ImportanceResult):
        """(importance per pixel, feature per pixel) for image inputs whose features are pixel areas."""
        shape = result.sample_shape
        if len(shape) not in (2, 3):
            return None
        owner = np.full(int(np.prod(shape)), -1, dtype=np.int32)
        for k, index in enumerate(result.groups):
            owner[index] = k
        owner = owner.reshape(shape)
        if len(shape) == 3:
            if not (owner == owner[:1]).all():  # features split the channels: no single map
                return None
            owner = owner[0]
        mean = result.importances_mean
        values = np.where(owner >= 0, mean[np.maximum(owner, 0)], np.nan)
        return values.astype(np.float32), owner

    def _publish_image(self) -> None:
        shape = self._result.sample_shape
        if len(shape) not in (2, 3) or self._map is None:
            self._image = None
            return
        if not 0 <= self.sample < self.n_samples:
            raise ValueError(f"sample must be a row of X in 0..{self.n_samples - 1}, not {self.sample}")
        row = self._X[self.sample]
        image = row.detach().cpu().numpy() if isinstance(row, torch.Tensor) else np.asarray(row)
        self._image = image.reshape(shape if len(shape) == 3 else (1, *shape))

    # ----- validation and observers --------------------------------------------------------------

    @traitlets.validate("selected")
    def _check_selected(self, proposal):
        value = proposal["value"]
        count = len(self._result.feature_names)
        if value is not None and not 0 <= value < count:
            raise traitlets.TraitError(f"selected must be a feature index in 0..{count - 1}, not {value}")
        return value

    @traitlets.validate("top_k")
    def _check_top_k(self, proposal):
        if proposal["value"] < 0:
            raise traitlets.TraitError(f"top_k must be 0 (all features) or more, not {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("sample")
    def _check_sample(self, proposal):
        value = proposal["value"]
        if self.n_samples and not 0 <= value < self.n_samples:
            raise traitlets.TraitError(f"sample must be a row of X in 0..{self.n_samples - 1}, not {value}")
        return value

    @traitlets.validate("scoring")
    def _check_scoring(self, proposal):
        value = proposal["value"]
        if self.scorings and value not in self.scorings:
            raise traitlets.TraitError(f"scoring {value!r} does not fit this model and y; choose one of {self.scorings}")
        return value

    @traitlets.validate("n_repeats")
    def _check_repeats(self, proposal):
        if proposal["value"] < 1:
            raise traitlets.TraitError(f"n_repeats must be at least 1, not {proposal['value']}")
        return proposal["value"]

    def _on_settings(self, _change) -> None:
        self.start()

    # ----- commands from the view (the former names of start and stop) ---------------------------

    def _cmd_start(self) -> None:
        # The view disables Start while a computation runs; a click that arrives during one comes
        # with a setting typed just before it, whose change has already started that computation.
        if self.state != "running":
            self.start()

    _cmd_run = _cmd_start
    _cmd_cancel = JobView._cmd_stop
