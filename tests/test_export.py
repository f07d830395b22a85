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


def test_html_carries_the_manager_compressed(views):
    """The ipywidgets HTML manager (3.6 MB of JavaScript) travels gzip-compressed in base64 and is
    unpacked by the browser: the file is 2.4 MB smaller, and the packed bytes are the manager."""
    import gzip

    from nbvis.widgets._export import ASSETS

    page = views["grid"].to_html()
    manager = (ASSETS / "embed-amd.js").read_text(encoding="utf-8")
    assert manager[:2000] not in page  # not inline as text
    packed = re.search(r'var packed = "([A-Za-z0-9+/=]+)";', page).group(1)
    assert gzip.decompress(base64.b64decode(packed)).decode("utf-8") == manager
    assert "DecompressionStream" in page
    assert len(page.encode()) < len(manager) - 2_000_000 + 600_000  # the grid's own state is about 0.3 MB


def test_html_path_and_chart_carries_plotly(views, tmp_path):
    chart = views["importance"]
    path = chart.to_html(tmp_path / "chart.html", title="importance")
    assert path == tmp_path / "chart.html" and "<title>importance</title>" in path.read_text()
    state = embedded_state(path.read_text())
    assert plotly_library().model_id in state  # the chart's plotly.js travels in its own file
    assert 2_000_000 < path.stat().st_size < 6_000_000  # plotly.js is about 3.5 MB of it


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
        assert len(page.encode()) < 2_500_000  # the target is 5 MB; 4 MB before the manager was compressed
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


# ----- the building-block views ---------------------------------------------------------------


@pytest.fixture(scope="module")
def blocks(digits):
    from nbvis.compute.blocks import FeatureCache

    _mlp, cnn, images, labels = digits
    cache = FeatureCache(cnn, (1, 28, 28), steps=8, every=4)  # in memory: computed in this module
    groups = nbvis.NeuronGroups(cnn, images[0], layer="relu2", k=4, dataset=(images, labels),
                                labels=nbvis.demo.DIGIT_LABELS, icons=cache)
    dictionary = nbvis.SemanticDictionary(cnn, images[0], layer="relu2", k=4, dataset=images, icons=cache)
    groups.wait_icons(120)
    dictionary.wait_icons(120)
    yield groups, dictionary
    groups.close()
    dictionary.close()


def hex_rgb(color: str) -> np.ndarray:
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])


def test_neuron_groups_picture_shows_the_groups_legend_and_table(blocks):
    groups, _ = blocks
    picture = picture_of(groups).astype(int)
    assert picture.shape[0] > 200 and picture.shape[1] > 400
    # the "group maps" panel (224 px, right of the input panel and an 8 px gap, under the title and
    # its caption of 16 px each): each cell's colour is the "lighten" blend of the groups' hues
    # weighted by their maps (the brightest of them per channel), up to the picture's 128-colour
    # palette; the same maps in another order are far off
    maps = groups.maps
    cell = 224 // maps.shape[1]
    panel = picture[32:32 + 224, 232:232 + 224].astype(float)
    centers = panel[cell // 2::cell, cell // 2::cell].reshape(-1, 3)
    hues = np.array([hex_rgb(color) for color in groups.hues], float)
    flat = maps.reshape(len(hues), -1)
    blend = np.max(flat[..., None] * hues[:, None, :], axis=0)
    error = np.abs(centers - blend).max(axis=1).mean()
    shuffled = np.max(flat[:, np.random.default_rng(0).permutation(flat.shape[1])][..., None] * hues[:, None, :], axis=0)
    assert error < 20 < np.abs(centers - shuffled).max(axis=1).mean(), error
    # where one group clearly leads the maps, the cells' colour points toward that group's hue more
    # than toward any other hue
    first, second = np.sort(flat, axis=0)[-1], np.sort(flat, axis=0)[-2]
    leads = (first >= 0.3) & (first >= 1.5 * second)
    assert leads.sum() >= 20  # the groups do lead somewhere
    unit = hues / np.linalg.norm(hues, axis=1, keepdims=True)
    for i, color in enumerate(groups.hues):
        cells = leads & (flat.argmax(axis=0) == i)
        if cells.any():
            mean = centers[cells].mean(axis=0)
            assert ((mean / np.linalg.norm(mean)) @ unit.T).argmax() == i, (color, int(cells.sum()))
    # the attribution table: red cells for the class, blue against, as many as its values have
    table = groups.attribution
    assert (table > 0.3).any() and (table < -0.3).any()
    red = ((picture[..., 0] > picture[..., 2] + 60) & (picture[..., 1] < 200)).sum()
    blue = ((picture[..., 2] > picture[..., 0] + 60) & (picture[..., 1] < 200)).sum()
    assert red > 200 and blue > 200, (red, blue)


def test_semantic_dictionary_picture_shows_the_reticle_and_the_bars(blocks):
    _, dictionary = blocks
    picture = picture_of(dictionary).astype(int)
    yellow = (picture[..., 0] > 200) & (picture[..., 1] > 170) & (picture[..., 2] < 80)
    assert yellow.sum() > 20  # the reticle at the pinned position
    ys, xs = np.nonzero(yellow)
    rows, cols = dictionary.grid
    r, c = dictionary.position
    cell = 224 // 28 * 28 / cols, 224 // 28 * 28 / rows
    assert abs(xs.mean() - (c + 0.5) * cell[0]) < cell[0] and abs(ys.mean() - 16 - (r + 0.5) * cell[1]) < cell[1]
    # one bar per entry, as long as its share of the layer's maximum (120 px for 100 %)
    blue = (np.abs(picture - np.array([67, 147, 195])).max(axis=2) <= 10)
    lengths = [int(n) for n in blue.sum(axis=1) if n]
    runs = sorted({n for n in lengths}, reverse=True)
    expected = [round(share * 120) for _channel, _value, share in dictionary.entries()]
    assert len(runs) == len(expected) and all(abs(a - b) <= 2 for a, b in zip(runs, sorted(expected, reverse=True))), (runs, expected)


def test_blocks_numpy_access_to_what_is_drawn(blocks, digits):
    groups, dictionary = blocks
    _mlp, cnn, images, _labels = digits
    reference = nbvis.neuron_groups(cnn, images[0], "relu2", k=4)
    np.testing.assert_allclose(groups.maps, reference.normalized_maps(), rtol=1e-6)
    np.testing.assert_allclose(groups.attribution, reference.attribution / np.abs(reference.attribution).max(), rtol=1e-5)
    assert np.abs(groups.attribution).max() == pytest.approx(1.0)
    assert groups.icons.shape == (4, 28, 28, 1) and groups.icons.dtype == np.uint8
    assert dictionary.icons.shape == (16, 28, 28, 1)
    groups.icons[:] = 0  # a copy: what the view draws stays
    assert groups.icons.any()


def test_blocks_views_take_uploads_as_base64_text(blocks):
    groups, _ = blocks
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    before = groups.input
    try:
        groups._handle_custom_msg({"type": "input", "source": "upload", "seq": 7, "name": "one.png",
                                   "data64": base64.b64encode(buffer.getvalue()).decode()}, [])
        assert groups.error == "" and groups._seq_done == 7 and groups.input_caption == "uploaded one.png"
        assert float(groups.input[0, 10, 13]) > 0.9 and float(groups.input[0, 10, 3]) < 0.1
    finally:
        groups.input = before


def test_blocks_html_holds_what_they_draw(blocks):
    groups, dictionary = blocks
    for view, arrays in ((groups, ("_maps", "_icons", "_input", "_attribution")), (dictionary, ("_channels", "_values", "_icons"))):
        state = embedded_state(view.to_html())[view.model_id]
        assert state["state"][STATIC_FLAG] is True
        assert {b["path"][0] for b in state["buffers"]} >= set(arrays)


def test_pictures_keep_their_colours(blocks, views):
    """The 128-colour palette of a picture keeps every colour near the original: a legend's hue
    swatch, a colormap's ends."""
    from nbvis.widgets._picture import png

    for view in (blocks[0], views["grid"], views["heatmap"]):
        original = np.asarray(view._picture().convert("RGB")).astype(int)
        if max(original.shape[:2]) > 900:
            continue
        stored = np.asarray(Image.open(io.BytesIO(png(view._picture()))).convert("RGB")).astype(int)
        error = np.abs(stored - original).max(axis=2)
        assert error.max() <= 40, (type(view).__name__, error.max())  # median cut: up to 92


def test_offline_html_writes_the_assets_nbconvert_points_at(tmp_path, capsys):
    from nbvis import offline_html
    from nbvis.widgets._export import ASSETS, _anywidget_frontend

    written = offline_html.write_assets(tmp_path / "out")
    assert [p.name for p in written] == ["require.js", "embed-amd.js", "anywidget.js"]
    for path, source in zip(written, (ASSETS / "require.js", ASSETS / "embed-amd.js", _anywidget_frontend())):
        assert path.read_bytes() == source.read_bytes()
    # the options name the files beside the page, by relative URL
    assert offline_html.nbconvert_options() == ["--HTMLExporter.require_js_url=require.js",
                                                "--HTMLExporter.widget_renderer_url=embed-amd.js"]
    assert offline_html.main([]) == 2 and "python -m nbvis.offline_html" in capsys.readouterr().out
    assert offline_html.main([str(tmp_path / "missing.ipynb")]) == 2
