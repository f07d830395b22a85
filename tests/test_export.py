"""Views out of the notebook, headless: the offline HTML file, the picture in every output,
snapshot() without a front end, and the base64 transport fallback."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re

import ipywidgets
import numpy as np
import pytest
from PIL import Image

import nbvis
from nbvis import _arrays
from nbvis._arrays import message_bytes, pack, unpack
from nbvis.widgets._export import STATIC_FLAG, export_state
from nbvis.widgets.feature_importance import plotly_library


@pytest.fixture(scope="module")
def digits():
    images, labels = nbvis.demo.digits()
    return nbvis.demo.digits_mlp(), nbvis.demo.digits_cnn(), images, labels


@pytest.fixture(scope="module")
def views(digits):
    mlp, cnn, images, labels = digits
    optimizer = nbvis.OptimizationViewer(cnn, ("conv2", 5), input_shape=(1, 28, 28), steps=8, starts=2)
    optimizer.start()
    optimizer.wait()
    chart = nbvis.FeatureImportance(mlp, images[:120], labels[:120], scoring="accuracy", n_repeats=2, feature_groups=7)
    chart.wait()
    return {
        "grid": nbvis.WeightGrid(mlp, "fc1", page_size=16),
        "heatmap": nbvis.ActivationHeatmap(cnn, images[3], labels=nbvis.demo.DIGIT_LABELS),
        "optimizer": optimizer,
        "importance": chart,
    }


def embedded_state(page: str) -> dict:
    match = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))["state"]


def test_html_is_self_contained_and_holds_only_the_view(views):
    grid = views["grid"]
    other = ipywidgets.IntSlider(description="not part of the grid")
    page = grid.to_html()
    assert not re.search(r"<script[^>]+src=", page)  # every script is inline: nothing to fetch
    assert "cdn.jsdelivr" not in page.split("libembed-amd")[0][:200]  # the page itself names no CDN
    state = embedded_state(page)
    assert grid.model_id in state and other.model_id not in state
    assert views["heatmap"].model_id not in state  # not every widget of the kernel
    mine = state[grid.model_id]
    assert mine["state"][STATIC_FLAG] is True and "_esm" in mine["state"]  # defaults kept: the code is in
    paths = [b["path"] for b in mine["buffers"]]
    assert ["_tiles", "data"] in paths  # the arrays as base64 buffers inside the file
    tiles = next(b for b in mine["buffers"] if b["path"] == ["_tiles", "data"])
    np.testing.assert_array_equal(
        np.frombuffer(base64.b64decode(tiles["data"]), "<f4").reshape(unpack(grid._tiles).shape), unpack(grid._tiles)
    )
    view = re.search(r'<script type="application/vnd.jupyter.widget-view\+json">(.*?)</script>', page, re.S)
    assert json.loads(view.group(1))["model_id"] == grid.model_id
    assert page.lower().count("</script") == 5  # the page's five scripts: no early end tag in the inlined code


def test_html_path_and_chart_carries_plotly(views, tmp_path):
    chart = views["importance"]
    path = chart.to_html(tmp_path / "chart.html", title="importance")
    assert path == tmp_path / "chart.html" and "<title>importance</title>" in path.read_text()
    state = embedded_state(path.read_text())
    assert plotly_library().model_id in state  # the chart's plotly.js travels in its own file
    assert 4_000_000 < path.stat().st_size < 8_000_000


def test_explorer_html_under_5_mb(digits):
    mlp, _cnn, images, labels = digits
    explorer = nbvis.Explorer(mlp, (images, labels), labels=nbvis.demo.DIGIT_LABELS, steps=4)
    try:
        explorer.selected = ("fc1", 3)
        explorer.optimizer.wait()
        page = explorer.to_html()
        state = embedded_state(page)
        ids = {explorer.model_id, explorer.heatmap.model_id, explorer.grid.model_id, explorer.optimizer.model_id}
        assert ids <= set(state)
        assert len(page.encode()) < 5_000_000
    finally:
        explorer.close()


def test_closed_view_cannot_be_exported(digits):
    grid = nbvis.WeightGrid(digits[0], "fc1")
    grid.close()
    with pytest.raises(ValueError, match="closed"):
        grid.to_html()


def picture_of(view) -> np.ndarray:
    bundle = view._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data  # the live view is still there
    raw = base64.b64decode(data["image/png"])
    assert len(raw) < 150_000  # a saved notebook stays small
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))


def test_every_output_carries_a_picture_of_the_view(views, digits):
    for name, view in views.items():
        picture = picture_of(view)
        assert picture.shape[0] > 40 and picture.shape[1] > 40, name
        assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 20, name  # not blank


def test_grid_picture_shows_the_tiles_on_the_diverging_scale(views):
    grid = views["grid"]
    picture = picture_of(grid).astype(int)
    tiles = grid.tiles()[:16]
    assert tiles.min() < 0 < tiles.max()
    # negative weights blue, positive red, as in the view (not a grayscale or blank picture)
    blue = (picture[..., 2] > picture[..., 0] + 60).mean()
    red = (picture[..., 0] > picture[..., 2] + 60).mean()
    assert blue > 0.05 and red > 0.05, (blue, red)


def test_explorer_output_carries_a_picture(digits):
    mlp, _cnn, images, labels = digits
    explorer = nbvis.Explorer(mlp, (images, labels), steps=4)
    try:
        explorer.selected = ("fc1", 0)
        explorer.optimizer.wait()
        assert picture_of(explorer).shape[1] > picture_of(explorer.heatmap).shape[1]  # the side column too
    finally:
        explorer.close()


def test_snapshot_without_a_front_end_says_so(views):
    with pytest.raises(RuntimeError, match="no Jupyter kernel"):
        asyncio.run(views["grid"].snapshot(timeout=0.5))


def test_numpy_access_to_what_is_drawn(views):
    chart = views["importance"]
    pixels = chart.importance_map
    assert pixels.shape == (28, 28)
    owner = unpack(chart._owner)
    k = int(owner[10, 10])
    assert pixels[10, 10] == pytest.approx(chart.importances_mean[k])
    assert views["grid"].tiles().shape == (100, 28, 28, 1)
    assert views["optimizer"].images.dtype == np.uint8
    assert set(views["heatmap"].activations) >= {"conv1", "conv2"}


def test_base64_transport_forced_by_environment(monkeypatch):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    monkeypatch.setenv("NBVIS_BASE64", "1")
    packed = pack(a)
    assert isinstance(packed["data"], str) and base64.b64decode(packed["data"]) == a.tobytes()
    np.testing.assert_array_equal(unpack(packed), a)
    monkeypatch.setenv("NBVIS_BASE64", "0")
    assert isinstance(pack(a)["data"], bytes)
    monkeypatch.setenv("NBVIS_BASE64", "maybe")
    with pytest.raises(ValueError, match="NBVIS_BASE64 must be one of"):
        pack(a)


def test_base64_transport_automatic_in_colab(monkeypatch):
    monkeypatch.delenv("NBVIS_BASE64", raising=False)
    assert _arrays.base64_transport() is False
    monkeypatch.setitem(__import__("sys").modules, "google.colab", type(__import__("sys"))("google.colab"))
    assert _arrays.base64_transport() is True


def test_views_tell_the_browser_the_transport(monkeypatch, digits):
    monkeypatch.setenv("NBVIS_BASE64", "1")
    grid = nbvis.WeightGrid(digits[0], "fc1", page_size=4)
    state, buffer_paths, _buffers = ipywidgets.widgets.widget._remove_buffers(grid.get_state())
    assert state["_base64"] is True and ["_tiles", "data"] not in buffer_paths  # text, not a binary buffer
    np.testing.assert_array_equal(unpack(grid._tiles), grid.tiles()[:4])
    grid.close()


def test_message_bytes_reads_buffers_or_base64():
    assert message_bytes({}, [memoryview(b"abc")]) == b"abc"
    assert message_bytes({"data64": base64.b64encode(b"xyz").decode()}, []) == b"xyz"
    assert message_bytes({"type": "input"}, None) is None


def test_export_state_marks_only_anywidget_models(views):
    state = export_state(views["importance"])
    for entry in state.values():
        assert (STATIC_FLAG in entry["state"]) == (entry["model_module"] == "anywidget")
