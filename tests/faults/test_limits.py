"""Limits the browser cannot lift, messages that stay under the websocket's ceiling, and the
small findings: refused nonsense, lazy modules, the live throttle, demo models without .grad."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from torch import nn

import nbvis
from nbvis._arrays import unpack
from faultkit import assert_same, full_state

MAX_MESSAGE = 8 * 2**20


def record_messages(widget) -> list[int]:
    """Sizes of every message the widget sends from now on (JSON plus its binary buffers)."""
    sizes = []
    send = widget.comm.send

    def recording(data=None, metadata=None, buffers=None):
        sizes.append(len(json.dumps(data, default=str)) + sum(len(memoryview(b).cast("B")) for b in buffers or ()))
        return send(data=data, metadata=metadata, buffers=buffers)

    widget.comm.send = recording
    return sizes


def test_the_view_cannot_lift_limits_or_write_what_python_computes(figures):
    model = nn.Sequential(nn.Linear(4, 3))
    view = nbvis.ActivationHeatmap(model, torch.rand(4))
    limit = view.upload_max_bytes
    refused = []
    for name, value in [("upload_max_bytes", 2**40), ("webcam_fps", 1000.0), ("can_draw", True),
                        ("dataset_size", 10**9), ("_seq_done", 99)]:
        view.set_state({name: value})  # what a front end's sync does
        assert getattr(view, name) != value, name
        assert f"cannot set {name}" in view.error
        refused.append(name)
    assert view.upload_max_bytes == limit
    view.set_state({"wrt": "input"})  # what the view may set still works
    assert view.wrt == "input"
    grid = nbvis.WeightGrid(model, "0")
    grid.set_state({"n_units": 0, "page": 0})
    assert grid.n_units == 3 and "cannot set n_units" in grid.error
    chart = nbvis.FeatureImportance(nn.Linear(4, 1), torch.randn(30, 4), torch.randn(30), n_repeats=1, autostart=False)
    chart.set_state({"state": "done"})
    assert chart.state == "idle"
    figures.add("limits and kernel-computed traits refused from the view", "ActivationHeatmap", ", ".join(refused))
    figures.add("limits and kernel-computed traits refused from the view", "WeightGrid, FeatureImportance", "n_units, state")
    for w in (view, grid, chart):
        w.close()


@pytest.mark.parametrize("layer", [nn.Conv2d(512, 512, 7), nn.Linear(250_000, 300)], ids=["conv512x512x7", "linear250000"])
def test_no_message_over_8_mb_for_a_big_layer(layer, figures):
    model = nn.Sequential(layer)
    grid = nbvis.WeightGrid(model, "0", page_size=100)
    sizes = record_messages(grid)
    grid.page = 1
    grid.sort_by = "norm"
    grid.refresh()
    state_bytes = sum(len(b) for b in _buffers(grid))
    biggest = max(sizes + [state_bytes])
    figures.add("largest message (limit 8 MB)", f"WeightGrid {type(layer).__name__} {tuple(layer.weight.shape)}",
                f"{biggest / 2**20:.1f} MB, {grid.units_per_page} tiles a page, {grid.n_pages} pages")
    assert biggest <= MAX_MESSAGE and grid.n_pages * grid.units_per_page >= grid.n_units
    tiles = grid.tiles()
    assert len(tiles) == grid.n_units  # every unit is still reachable, page by page
    grid.close()


def test_no_message_over_8_mb_from_a_heatmap_of_big_conv_maps(figures):
    """Three layers of 64 maps of 224 x 224 (38 MB of activations): the maps are sent averaged
    down, the view says by how much, and every message stays under the limit."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1)).eval()
    x = torch.rand(3, 224, 224)
    view = nbvis.ActivationHeatmap(model, x)
    sizes = record_messages(view)
    view.input = torch.rand(3, 224, 224)  # a new input: the update the view gets
    state_bytes = sum(len(b) for b in _buffers(view))  # what a new view of it gets at once
    biggest = max(sizes + [state_bytes])
    layout = {entry["name"]: entry for entry in view._layout[1:]}
    assert biggest <= MAX_MESSAGE and len(sizes) >= 1
    assert all(layout[name].get("pooled", 1) > 1 for name in ("0", "1", "2")), layout
    sent = unpack(view._acts["2"])
    k = layout["2"]["pooled"]
    assert sent.shape == (64, 224 // k, 224 // k) and layout["2"]["maps"] == [224 // k, 224 // k]
    # the receptive fields stay per position of the layer (the view outlines a block's together)
    field = layout["2"]["field"]
    # two 3 x 3 convs with padding 1: position y sees rows y - 2 .. y + 2, clipped to the input
    assert len(field["lo"][0]) == 224 and field["lo"][0][:4] == [0, 0, 0, 1] and field["hi"][0][:3] == [3, 4, 5]
    # the sent maps are the true ones averaged over k x k blocks
    true = view.activations["2"]  # (64, 224, 224), in Python as it is
    np.testing.assert_allclose(sent, true.reshape(64, 224 // k, k, 224 // k, k).mean(axis=(2, 4)), rtol=1e-4, atol=1e-5)
    figures.add("largest message (limit 8 MB)", "ActivationHeatmap 3 x (64, 224, 224)",
                f"{biggest / 2**20:.1f} MB, maps averaged {k}x{k}")
    view.close()


def _largest(view, change) -> tuple[int, int]:
    """(largest message, message count) of the update ``change()`` makes, and of a new view's state."""
    sizes = record_messages(view)
    change()
    return max(sizes + [sum(len(b) for b in _buffers(view))]), len(sizes)


def test_no_message_over_8_mb_from_a_heatmap_of_a_huge_dense_layer(figures):
    """4 000 000 units (16 MB as float32): sent in runs of k units averaged, the view says so, and the
    selected unit's map over that layer goes averaged the same way beside it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4_000_000), nn.ReLU(), nn.Linear(4_000_000, 3)).eval()
    view = nbvis.ActivationHeatmap(model, torch.rand(4))
    biggest, count = _largest(view, lambda: setattr(view, "input", torch.rand(4)))
    layout = {entry["name"]: entry for entry in view._layout[1:]}
    k = layout["0"]["pooled"]
    assert biggest <= MAX_MESSAGE and count >= 1 and k > 1
    assert layout["0"]["units"] == 4_000_000 and layout["0"]["shape"] == [4_000_000 // k]
    true = view.activations["0"]  # every unit, in Python
    assert true.shape == (4_000_000,)
    np.testing.assert_allclose(unpack(view._acts["0"]), true.reshape(-1, k).mean(axis=1), rtol=1e-4, atol=1e-6)
    with_map, _ = _largest(view, lambda: (setattr(view, "selected", ("2", 1)), setattr(view, "wrt", "0")))
    k2 = {e["name"]: e for e in view._layout[1:]}["0"]["pooled"]
    assert with_map <= MAX_MESSAGE and view.gradient_map.shape == (4_000_000,)
    np.testing.assert_allclose(unpack(view._grad), view.gradient_map.reshape(-1, k2).mean(axis=1), rtol=1e-4, atol=1e-7)
    figures.add("largest message (limit 8 MB)", "ActivationHeatmap Linear(4, 4000000)",
                f"{max(biggest, with_map) / 2**20:.1f} MB, units averaged in runs of {k} ({k2} with its why map)")
    view.close()


def test_no_message_over_8_mb_from_a_heatmap_of_a_flattened_huge_conv(figures):
    """A Flatten of 64 maps of 256 x 256 (16 MB): drawn as those maps, averaged down like them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Flatten(), nn.Linear(64 * 256 * 256, 2)).eval()
    view = nbvis.ActivationHeatmap(model, torch.rand(3, 256, 256))
    biggest, _ = _largest(view, lambda: setattr(view, "input", torch.rand(3, 256, 256)))
    flat = {entry["name"]: entry for entry in view._layout[1:]}["1"]
    k = flat["pooled"]
    assert biggest <= MAX_MESSAGE and k > 1
    assert flat["fold"] == [64, 256 // k, 256 // k] and flat["full"] == [64, 256, 256] and flat["units"] == 64 * 256 * 256
    true = view.activations["1"].reshape(64, 256 // k, k, 256 // k, k).mean(axis=(2, 4)).reshape(-1)
    np.testing.assert_allclose(unpack(view._acts["1"]), true, rtol=1e-4, atol=1e-5)
    figures.add("largest message (limit 8 MB)", "ActivationHeatmap Flatten of (64, 256, 256)",
                f"{biggest / 2**20:.1f} MB, drawn as its maps averaged {k}x{k}")
    view.close()


def test_no_message_over_8_mb_from_a_heatmap_of_a_huge_input_and_its_why_map(figures):
    """A 3 x 2048 x 2048 input (48 MB as float32) and the gradient over it: both go averaged down
    by the same factor (the view draws, outlines and hovers them at that size, in input pixels);
    Python keeps both whole; drawing on such an input is off, and said so."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 64, stride=64), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 32 * 32, 3)).eval()
    x = torch.rand(3, 2048, 2048)
    view = nbvis.ActivationHeatmap(model, x)
    biggest, count = _largest(view, lambda: setattr(view, "selected", ("3", 1)))
    entry = view._layout[0]
    k = entry["pooled"]
    assert biggest <= MAX_MESSAGE and count >= 1 and k > 1
    assert entry["image"] == [3, 2048 // k, 2048 // k] and entry["full"] == [3, 2048, 2048]
    blocks = lambda a: a.reshape(3, 2048 // k, k, 2048 // k, k).mean(axis=(2, 4))
    np.testing.assert_allclose(unpack(view._input), blocks(x.numpy()), rtol=1e-4, atol=1e-5)
    assert view.gradient_map.shape == (3, 2048, 2048)  # whole in Python
    np.testing.assert_allclose(unpack(view._grad), blocks(view.gradient_map), rtol=1e-4, atol=1e-8)
    # the receptive fields the view outlines stay in input pixels (it scales them by k to draw)
    field = {e["name"]: e for e in view._layout[1:]}["0"]["field"]
    assert field["lo"][0][:3] == [0, 64, 128] and field["hi"][0][:3] == [64, 128, 192]
    assert not view.can_draw
    view._handle_custom_msg({"type": "input", "source": "draw", "seq": 1, "shape": [256, 256, 1]}, [memoryview(bytes(256 * 256))])
    assert "cannot be drawn on" in view.error and view._seq_done == 1
    np.testing.assert_array_equal(view.input.numpy(), x.numpy())  # the input is as it was
    figures.add("largest message (limit 8 MB)", "ActivationHeatmap of a 3 x 2048 x 2048 input and its why map",
                f"{biggest / 2**20:.1f} MB, input and map averaged {k}x{k}")
    view.close()


@pytest.mark.parametrize("view_class", ["NeuronGroups", "SemanticDictionary"])
def test_no_message_over_8_mb_from_a_building_block_view_of_a_huge_image(view_class, figures):
    """A 3 x 1024 x 1024 input (12 MB as float32): the view gets it averaged down, drawn the same."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 8, stride=8), nn.ReLU()).eval()
    x = torch.rand(3, 1024, 1024)
    view = getattr(nbvis, view_class)(model, x, icons=False)
    sizes = record_messages(view)
    view.input = torch.rand(3, 1024, 1024)
    biggest = max(sizes + [sum(len(b) for b in _buffers(view))])
    assert biggest <= MAX_MESSAGE and len(sizes) >= 1
    sent = unpack(view._input)
    k = 1024 // sent.shape[1]
    assert k > 1 and sent.shape == (3, 1024 // k, 1024 // k)
    truth = view.input.numpy()  # the whole input stays in Python
    np.testing.assert_allclose(sent, truth.reshape(3, 1024 // k, k, 1024 // k, k).mean(axis=(2, 4)), rtol=1e-4, atol=1e-5)
    figures.add("largest message (limit 8 MB)", f"{view_class} of a 3 x 1024 x 1024 input",
                f"{biggest / 2**20:.1f} MB, input averaged {k}x{k}")
    view.close()


def test_no_message_over_8_mb_from_an_optimization_of_huge_images(figures):
    """4 starts of 3 x 1024 x 1024 (12 MB of uint8 frames): each frame goes averaged down k x k,
    the view says so (hover names the block and its mean); ``images`` and the run stay whole."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 64, stride=64), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 3)).eval()
    view = nbvis.OptimizationViewer(model, ("3", 1), (3, 1024, 1024), steps=2, starts=4, autostart=False)
    biggest, count = _largest(view, lambda: view.start().wait())
    k = view.frame_pooled
    assert biggest <= MAX_MESSAGE and count >= 1 and k > 1
    whole = view.images
    assert whole.shape == (4, 1024, 1024, 3) and view.run.inputs.shape == (4, 3, 1024, 1024)
    sent = unpack(view._frame)
    assert sent.shape == (4, 1024 // k, 1024 // k, 3) and sent.dtype == np.uint8
    means = whole.astype(np.float64).reshape(4, 1024 // k, k, 1024 // k, k, 3).mean(axis=(2, 4))
    assert np.abs(sent.astype(np.float64) - means).max() <= 0.5 + 1e-6  # each block's mean, rounded
    figures.add("largest message (limit 8 MB)", "OptimizationViewer 4 starts of 3 x 1024 x 1024",
                f"{biggest / 2**20:.1f} MB, frames averaged {k}x{k}")
    view.close()


def _buffers(widget):
    from ipywidgets.widgets.widget import _remove_buffers

    return _remove_buffers(widget.get_state())[2]


def test_nonsense_arguments_are_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    grid = nbvis.WeightGrid(model, "0", input_shape=(4, 4))
    for k in (-1, 0, 2.5, True):
        with pytest.raises(ValueError, match=r"k is how many units to return, an integer of at least 1"):
            grid.top_units(1, k=k)
    assert len(grid.top_units(1, k=3)) == 3
    with pytest.raises(Exception, match="live_interval"):
        grid.live_interval = -1
    grid.close()


def test_an_uninitialized_lazy_module_is_refused_clearly_and_left_as_it_was():
    model = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 2))
    for call in (lambda: nbvis.capture(model, torch.rand(2, 5)),
                 lambda: nbvis.gradient(model, torch.rand(1, 5), of=("2", 0))):
        with pytest.raises(ValueError, match=r"uninitialized lazy modules: 0 \(LazyLinear\).*call the model once"):
            call()
        assert isinstance(model[0], nn.LazyLinear) and model[0].has_uninitialized_params()
    model(torch.rand(1, 5))  # once initialized, it works
    before = full_state(model)
    assert nbvis.capture(model, torch.rand(2, 5))["0"].shape == (2, 4)
    assert_same(model, before)


def test_live_interval_throttles_refreshes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.rand(8, 16), torch.randint(0, 3, (8,))

    def refreshes(interval, seconds=0.6):
        grid = nbvis.WeightGrid(model, "0", input_shape=(4, 4), live=True, live_interval=interval)
        count = [0]
        grid.observe(lambda _c: count.__setitem__(0, count[0] + 1), names=["_tiles"])
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            time.sleep(0.005)
        grid.close()
        return count[0]

    fast, slow = refreshes(0.0), refreshes(10.0)
    assert slow == 1 and fast > 5  # the first step after the start, then none within 10 s


def test_demo_models_keep_no_grad(tmp_path, monkeypatch):
    monkeypatch.setenv("NBVIS_CACHE", str(tmp_path))  # an empty cache: trained here, now
    model = nbvis.demo.digits_mlp()
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
