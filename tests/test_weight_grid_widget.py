"""The WeightGrid widget in Python: traits, binary buffers, paging, sorting, live mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ipywidgets.widgets.widget import _remove_buffers
from torch import nn

import nbvis
from nbvis._arrays import unpack


def test_traits_are_binary_buffers(digits_mlp):
    grid = nbvis.WeightGrid(digits_mlp, "fc1")
    state, paths, buffers = _remove_buffers(grid.get_state())
    assert ["_tiles", "data"] in paths and ["_bias", "data"] in paths and ["_units", "data"] in paths
    sizes = {tuple(p): len(b) for p, b in zip(paths, buffers)}
    assert sizes[("_tiles", "data")] == 100 * 784 * 4
    assert sizes[("_bias", "data")] == 100 * 4
    assert state["_tiles"]["shape"] == [100, 28, 28, 1] and state["_tiles"]["dtype"] == "float32"
    for buffer in buffers:
        assert isinstance(buffer, (bytes, memoryview))


def test_tiles_are_what_is_drawn(digits_mlp, unchanged):
    with unchanged(digits_mlp):
        grid = nbvis.WeightGrid(digits_mlp, "fc1", page_size=30)
        grid.sort_by = "norm"
        grid.page = 2
    tiles = grid.tiles()
    order = grid.units()
    w = digits_mlp.fc1.weight.detach().numpy()
    np.testing.assert_array_equal(tiles[:, :, :, 0].reshape(100, 784), w[order])
    norms = np.linalg.norm(w, axis=1)
    assert np.all(np.diff(norms[order]) <= 1e-6)
    assert grid.n_pages == 4
    np.testing.assert_array_equal(unpack(grid._tiles), tiles[60:90])
    np.testing.assert_array_equal(unpack(grid._units), order[60:90])
    np.testing.assert_allclose(unpack(grid._bias), digits_mlp.fc1.bias.detach().numpy()[order[60:90]])
    assert grid.vmax == pytest.approx(np.abs(w).max())


def test_top_k_for_a_class_and_selection(digits_mlp):
    grid = nbvis.WeightGrid(digits_mlp, "fc1", labels=[f"digit {i}" for i in range(10)])
    assert grid.class_labels[3] == "digit 3"
    grid.sort_by, grid.sort_class, grid.top_k = "class", 3, 5
    w2 = digits_mlp.fc2.weight.detach().numpy()
    expected = np.argsort(-w2[3], kind="stable")[:5]
    np.testing.assert_array_equal(grid.units(), expected)
    np.testing.assert_array_equal(grid.top_units(3, 5), expected)
    assert unpack(grid._tiles).shape == (5, 28, 28, 1) and grid.n_pages == 1
    seen = []
    grid.observe(lambda change: seen.append(change["new"]), names=["selected"])
    grid.set_state({"selected": int(expected[0])})  # what the browser sends on a click
    assert grid.selected == expected[0] and seen == [expected[0]]
    with pytest.raises(Exception, match=r"unit 100 is out of range for layer 'fc1': it has 100 units \(0..99\)"):
        grid.selected = 100
    assert grid.selected == expected[0]  # nothing lost
    with pytest.raises(Exception, match="sort_class must be in 0..9"):
        grid.sort_class = 10


def test_products_overlay(digits_mlp, digits_data):
    images, labels = digits_data
    grid = nbvis.WeightGrid(digits_mlp, "fc1", x=images[7], page_size=10)
    assert grid.has_input and grid._products is None
    grid.show_products = True
    products = unpack(grid._products)
    w = digits_mlp.fc1.weight.detach().numpy()
    np.testing.assert_allclose(products[:, :, :, 0].reshape(10, 784), w[:10] * images[7].numpy().reshape(1, 784), rtol=1e-6)
    # With an input, sorting by class ranks units by their contribution to that logit.
    grid.sort_by, grid.sort_class = "class", int(labels[7])
    with torch.no_grad():
        hidden = torch.sigmoid(digits_mlp.fc1(images[7].reshape(1, 784)))[0]
    contribution = digits_mlp.fc2.weight.detach()[labels[7]] * hidden
    assert grid.units()[0] == int(torch.argmax(contribution))
    with pytest.raises(ValueError, match="has 784 inputs"):
        grid.input = torch.zeros(10)
    assert torch.equal(grid.input, images[7])  # the old input is kept
    assert "has 784 inputs" in grid.error
    grid.input = None
    assert not grid.has_input and not grid.show_products


def test_bad_arguments_are_clear(digits_mlp):
    with pytest.raises(ValueError, match="unknown layer 'fc3'; the model's layers are: 'flatten', 'fc1'"):
        nbvis.WeightGrid(digits_mlp, "fc3")
    with pytest.raises(ValueError, match="Sigmoid; weight tiles need"):
        nbvis.WeightGrid(digits_mlp, "sigmoid")
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        nbvis.WeightGrid(digits_mlp, "fc1", colour="red")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        nbvis.WeightGrid("model", "fc1")
    with pytest.raises(Exception, match="needs a Linear layer that reads"):
        nbvis.WeightGrid(digits_mlp, "fc2").sort_by = "class"
    assert nbvis.WeightGrid(digits_mlp).layer == "fc1"  # the first weighted layer by default


def test_thousands_of_units_are_paged():
    torch.manual_seed(0)
    big = nn.Linear(784, 4096)
    grid = nbvis.WeightGrid(big, "", page_size=256)
    state, paths, buffers = _remove_buffers(grid.get_state())
    assert grid.n_pages == 16 and sum(len(b) for b in buffers) < 256 * 784 * 4 + 4096
    grid.page = 15
    np.testing.assert_array_equal(unpack(grid._units), np.arange(15 * 256, 4096))


def test_conv_grid(digits_cnn):
    grid = nbvis.WeightGrid(digits_cnn, "conv1")
    assert grid.kind == "conv" and grid.tiles().shape == (8, 5, 5, 1)
    np.testing.assert_array_equal(grid.tiles()[..., 0], digits_cnn.conv1.weight.detach().numpy()[:, 0])
    deeper = nbvis.WeightGrid(digits_cnn, "conv2", reduce="mean")
    np.testing.assert_allclose(deeper.tiles()[..., 0], digits_cnn.conv2.weight.detach().mean(1).numpy(), rtol=1e-6)


def test_refresh_and_live_mode_follow_training(digits_data):
    images, labels = digits_data
    torch.manual_seed(0)
    model = nbvis.demo._mlp()
    grid = nbvis.WeightGrid(model, "fc1", page_size=10)
    before = unpack(grid._tiles).copy()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(images[:64]), labels[:64]).backward()
        opt.step()

    step()
    np.testing.assert_array_equal(unpack(grid._tiles), before)  # not live: unchanged until refresh()
    grid.refresh()
    after = unpack(grid._tiles)
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after[..., 0].reshape(10, 784), model.fc1.weight.detach().numpy()[:10])

    grid.live = True
    step()  # the optimizer's post-step hook refreshes the grid (the first step is never throttled)
    np.testing.assert_array_equal(unpack(grid._tiles)[..., 0].reshape(10, 784), model.fc1.weight.detach().numpy()[:10])
    grid.live = False
    frozen = unpack(grid._tiles).copy()
    step()
    np.testing.assert_array_equal(unpack(grid._tiles), frozen)
    assert grid._watch_handle is None


def test_turning_live_off_shows_the_final_weights(digits_data):
    images, labels = digits_data
    torch.manual_seed(0)
    model = nbvis.demo._mlp()
    grid = nbvis.WeightGrid(model, "fc1", page_size=4, live=True)
    grid._throttle.interval = 3600.0  # however slow the machine, the later steps are throttled
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(3):  # the first step refreshes; the next ones fall inside the throttle interval
        opt.zero_grad()
        nn.functional.cross_entropy(model(images[:32]), labels[:32]).backward()
        opt.step()
    shown = unpack(grid._tiles)[..., 0].reshape(4, 784)
    assert not np.array_equal(shown, model.fc1.weight.detach().numpy()[:4])  # throttled: stale
    grid.live = False
    np.testing.assert_array_equal(unpack(grid._tiles)[..., 0].reshape(4, 784), model.fc1.weight.detach().numpy()[:4])
    grid.close()


def test_model_unchanged_by_every_call(digits_mlp, digits_data, unchanged):
    images, _ = digits_data
    with unchanged(digits_mlp):
        grid = nbvis.WeightGrid(digits_mlp, "fc1", x=images[0])
        grid.sort_by = "class"
        grid.show_products = True
        grid.refresh()
        grid.tiles()
        grid.live = True
        grid.live = False


def test_live_from_the_constructor(digits_data):
    images, labels = digits_data
    torch.manual_seed(0)
    model = nbvis.demo._mlp()
    grid = nbvis.WeightGrid(model, "fc1", page_size=3, live=True)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    opt.zero_grad()
    nn.functional.cross_entropy(model(images[:8]), labels[:8]).backward()
    opt.step()
    np.testing.assert_array_equal(unpack(grid._tiles)[..., 0].reshape(3, 784), model.fc1.weight.detach().numpy()[:3])
    grid.close()
    assert grid._watch_handle is None


def test_a_model_that_is_one_linear_layer():
    torch.manual_seed(0)
    model = nn.Linear(16, 3)
    grid = nbvis.WeightGrid(model)
    assert grid.layer == "" and grid.tiles().shape == (3, 4, 4, 1)
    grid.close()


def test_live_mode_survives_a_layer_being_replaced(digits_data):
    images, labels = digits_data
    torch.manual_seed(0)
    model = nbvis.demo._mlp()
    grid = nbvis.WeightGrid(model, "fc1", live=True)
    model.fc1 = nn.Identity()
    model.fc2 = nn.Linear(784, 10)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    opt.zero_grad()
    nn.functional.cross_entropy(model(images[:8]), labels[:8]).backward()
    opt.step()  # the post-step hook must not fail the training loop; the view says why
    assert "fc1" in grid.error
    grid.close()


def test_an_out_of_range_page_is_clamped_and_packed_once(digits_mlp, monkeypatch):
    grid = nbvis.WeightGrid(digits_mlp, "fc1", page_size=10)
    grid.page = 9
    packs = []
    import nbvis.widgets._traits as module  # the array traits pack what the grid sets

    real = module.pack
    monkeypatch.setattr(module, "pack", lambda *a, **k: packs.append(1) or real(*a, **k))
    grid.top_k = 25  # three pages now: page 9 becomes page 2
    assert grid.page == 2 and grid.n_pages == 3
    np.testing.assert_array_equal(unpack(grid._units), grid.units()[20:25])
    assert len(packs) == 3  # tiles, units and bias once each


def test_grid_reports_what_a_tile_is_made_of():
    cnn = nbvis.demo.digits_cnn()
    grid = nbvis.WeightGrid(cnn, "conv2")
    assert grid.source_shape == list(cnn.conv2.weight.shape[1:]) and grid.reduction == "channels"
    assert nbvis.WeightGrid(cnn, "conv2", reduce="mean").reduction == "mean"
    assert nbvis.WeightGrid(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3)), "0").reduction == "rgb"
    mlp = nbvis.WeightGrid(nbvis.demo.digits_mlp(), "fc1")
    assert mlp.source_shape == [1, 28, 28]
