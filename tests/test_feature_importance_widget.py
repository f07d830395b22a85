"""The FeatureImportance widget in Python: traits, binary buffers, background runs, the shared plotly.js."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch
import traitlets
from ipywidgets.widgets.widget import _remove_buffers
from sklearn.datasets import load_diabetes
from torch import nn

import nbvis
from nbvis._arrays import unpack
from nbvis.compute.importance import run as imp_run
from nbvis.widgets.feature_importance import _plotly_js, plotly_library


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X = (X - X.mean()) / X.std()
    y = (y - y.mean()) / y.std()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    Xt, yt = torch.tensor(X.to_numpy(), dtype=torch.float32), torch.tensor(y.to_numpy(), dtype=torch.float32)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.mse_loss(model(Xt)[:, 0], yt).backward()
        opt.step()
    return X, y, model.eval()


def wire_bytes(widget) -> int:
    """What the widget's state costs over the wire: JSON plus binary buffers."""
    state, _paths, buffers = _remove_buffers(widget.get_state())
    return len(json.dumps(state)) + sum(len(b) for b in buffers)


def test_chart_state_is_small_and_plotly_is_shared(diabetes):
    X, y, model = diabetes
    a = nbvis.FeatureImportance(model, X, y, n_repeats=3)
    b = nbvis.FeatureImportance(model, X, y, n_repeats=3, scoring="neg_mean_squared_error")
    a.wait(), b.wait()
    library = plotly_library()
    assert a._library is library and b._library is library  # one copy of plotly.js per kernel
    source = library.source["data"]
    assert library.source["dtype"] == "uint8" and library.source["shape"] == [len(source)]
    assert gzip.decompress(source) == _plotly_js().read_bytes()
    assert 1_000_000 < len(source) < 0.4 * _plotly_js().stat().st_size  # gzipped
    state, paths, buffers = _remove_buffers(a.get_state())
    assert state["_library"] == f"IPY_MODEL_{library.model_id}"  # a reference, not the library
    assert ["_stats", "data"] in paths and len(buffers[paths.index(["_stats", "data"])]) == 10 * 2 * 4
    assert wire_bytes(a) < 40_000  # the view's code and a few numbers; plotly.js is not in there
    _, lib_paths, lib_buffers = _remove_buffers(library.get_state())
    assert lib_paths == [["source", "data"]] and len(lib_buffers[0]) == len(source)  # binary, not JSON


def test_importances_match_the_compute_function(diabetes, unchanged):
    X, y, model = diabetes
    with unchanged(model):
        w = nbvis.FeatureImportance(model, X, y, n_repeats=4, random_state=2)
        result = w.wait()
    ref = nbvis.permutation_importance(model, X, y, n_repeats=4, random_state=2)
    np.testing.assert_allclose(w.importances, ref.importances, atol=1e-12)
    assert w.state == "done" and w.done == w.total == 40 and result is w.result
    assert w.feature_names == list(X.columns)
    assert w.scorings == ["r2", "neg_mean_squared_error", "neg_mean_absolute_error"]
    np.testing.assert_allclose(unpack(w._stats), np.stack([ref.importances_mean, ref.importances_std], 1), rtol=1e-6)
    assert w.baseline == pytest.approx(ref.baseline_score)
    assert w._map is None and w._image is None  # a table: no image


def test_changing_the_metric_restarts_and_bad_values_are_refused(diabetes):
    X, y, model = diabetes
    w = nbvis.FeatureImportance(model, X, y, n_repeats=2)
    w.wait()
    w.scoring = "neg_mean_squared_error"
    w.wait()
    ref = nbvis.permutation_importance(model, X, y, scoring="neg_mean_squared_error", n_repeats=2)
    np.testing.assert_allclose(w.importances, ref.importances, atol=1e-12)
    assert w.result.scoring == "neg_mean_squared_error"
    w.method, w.n_repeats = "noise", 3
    w.wait()
    assert w.result.method == "noise" and w.importances.shape == (10, 3)
    with pytest.raises(traitlets.TraitError, match="scoring 'accuracy' does not fit this model and y"):
        w.scoring = "accuracy"
    with pytest.raises(traitlets.TraitError, match="n_repeats must be at least 1"):
        w.n_repeats = 0
    with pytest.raises(traitlets.TraitError, match="top_k must be 0"):
        w.top_k = -1


def test_click_selects_a_feature(diabetes):
    X, y, model = diabetes
    w = nbvis.FeatureImportance(model, X, y, n_repeats=2, autostart=False)
    assert w.state == "idle" and np.isnan(w.importances).all()
    seen = []
    w.observe(lambda change: seen.append(change["new"]), names=["selected"])
    w.set_state({"selected": 2})  # what the view sends on a bar click
    assert seen == [2] and w.selected_name == "bmi"
    with pytest.raises(traitlets.TraitError, match="selected must be a feature index in 0..9"):
        w.selected = 10
    assert w.selected == 2


def test_cancel_keeps_partial_results_and_run_starts_again(digits_mlp, digits_data, monkeypatch):
    monkeypatch.setattr(imp_run, "STEP_SECONDS", 0.01)
    images, labels = digits_data
    w = nbvis.FeatureImportance(digits_mlp, images, labels, scoring="accuracy", n_repeats=40)
    deadline = time.monotonic() + 30
    while w.done == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
        w._publish()  # outside a kernel the steps run on a thread; publish what it has so far
    w._on_custom_msg(w, {"type": "command", "name": "cancel"}, [])  # the Cancel button
    assert w.state == "stopped"
    filled = np.isfinite(w.importances)
    assert 0 < filled.sum() < filled.size and w.done == filled.sum()
    w._on_custom_msg(w, {"type": "command", "name": "run"}, [])  # the Run button
    assert w.state == "running"
    w.stop()
    assert w.state == "stopped"


def test_a_stop_that_comes_after_the_end_keeps_the_final_status(diabetes):
    X, y, model = diabetes
    w = nbvis.FeatureImportance(model, X, y, n_repeats=2, autostart=False)
    gate = threading.Event()
    steps = w._steps

    def gated():
        gate.wait()
        return (yield from steps)

    w._steps = gated()
    w._launch_job(w._steps)  # outside a kernel: on a thread, held at the gate
    job = w._job
    stop = job.stop

    def stop_after_the_end():
        gate.set()
        job.wait()  # the run ends while the stop is on its way
        stop()

    job.stop = stop_after_the_end
    w.stop()
    assert job.state == "done" and w.state == "done" and np.isfinite(w.importances).all()


def test_errors_show_in_the_view_and_raise_from_wait(diabetes):
    X, y, model = diabetes
    calls = []

    def flaky(y_true, y_pred):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("the metric broke")
        return 0.0

    w = nbvis.FeatureImportance(model, X, y, scoring=flaky, n_repeats=2)
    with pytest.raises(RuntimeError, match="the metric broke"):
        w.wait()
    assert w.state == "error" and "RuntimeError: the metric broke" in w.error
    assert w.scorings == ["flaky"]
    with pytest.raises(ValueError, match="X has 442 rows but y has 3"):
        nbvis.FeatureImportance(model, X, y[:3])
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        nbvis.FeatureImportance(model, X, y, colour="red")


def test_image_map_over_a_sample(digits_mlp, digits_data):
    images, labels = digits_data
    X, y = images[:400], labels[:400]
    w = nbvis.FeatureImportance(digits_mlp, X, y, scoring="accuracy", n_repeats=2, feature_groups=7, sample=5)
    result = w.wait()
    picture = unpack(w._map)
    assert picture.shape == (28, 28) and w.scorings == ["accuracy", "neg_log_loss"]
    np.testing.assert_allclose(picture, result.importance_map()[0], rtol=1e-6)
    owner = unpack(w._owner)
    assert owner[0, 0] == 0 and owner[27, 27] == 15 and len(np.unique(owner)) == 16
    np.testing.assert_array_equal(unpack(w._image), X[5].numpy())
    w.sample = 9
    np.testing.assert_array_equal(unpack(w._image), X[9].numpy())
    with pytest.raises(traitlets.TraitError, match="sample must be a row of X in 0..399"):
        w.sample = 400
    torch.manual_seed(0)
    two = nn.Sequential(nn.Flatten(), nn.Linear(2 * 28 * 28, 10))
    pairs = torch.cat([X, X.flip(-1)], dim=1)  # (400, 2, 28, 28)
    channels = nbvis.FeatureImportance(two, pairs, y, scoring="accuracy", n_repeats=1, feature_groups="channels")
    channels.wait()
    assert channels.feature_names == ["channel 0", "channel 1"]
    assert channels._map is None and channels._image is None  # features split the channels: no single map


def test_the_kernel_stays_free_while_it_runs(digits_mlp, digits_data, unchanged, monkeypatch):
    monkeypatch.setattr(imp_run, "STEP_SECONDS", 0.01)
    images, labels = digits_data

    async def main():
        with unchanged(digits_mlp):
            # log loss runs every changed row (accuracy skips most: too quick to watch)
            w = nbvis.FeatureImportance(digits_mlp, images, labels, scoring="neg_log_loss", n_repeats=3)
            assert w._job._task is not None  # an asyncio task on the kernel's loop, not a thread
            ticks, progress = 0, set()
            while w.state == "running":
                await asyncio.sleep(0)  # the kernel answering other messages meanwhile
                ticks += 1
                progress.add(w.done)
            assert w.state == "done" and ticks > 10 and len(progress) > 2
        return w

    w = asyncio.run(main())
    ref = nbvis.permutation_importance(digits_mlp, images, labels, scoring="neg_log_loss", n_repeats=3)
    np.testing.assert_allclose(w.importances, ref.importances, atol=1e-12)


def test_dataframe_groups_by_name(diabetes):
    X, y, model = diabetes
    w = nbvis.FeatureImportance(model, pd.DataFrame(X), y, n_repeats=2, feature_groups={"body": ["bmi", "bp"], "age": ["age"]})
    w.wait()
    assert w.feature_names == ["body", "age"] and w.importances.shape == (2, 2)


def test_the_former_job_names_still_work_with_a_warning(diabetes):
    X, y, model = diabetes
    with pytest.warns(DeprecationWarning, match="autostart"):
        w = nbvis.FeatureImportance(model, X, y, n_repeats=2, start=False)
    assert w.state == "idle" and w._job is None
    w._on_custom_msg(w, {"type": "command", "name": "run"}, [])  # the former button command
    w.wait()
    with pytest.warns(DeprecationWarning, match="state"):
        assert w.status == "done"
    w.close()
