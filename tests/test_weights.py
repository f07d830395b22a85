"""Weight tiles against hand reshapes of the layer weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from nbvis.compute.weights import (
    channel_grid,
    infer_input_shape,
    input_products,
    layer_tiles,
    readout_weights,
    unit_order,
)


def test_linear_tiles_are_the_rows_reshaped(digits_mlp, unchanged):
    with unchanged(digits_mlp):
        grid = layer_tiles(digits_mlp, "fc1")
    w = digits_mlp.fc1.weight.detach().numpy()
    assert grid.tiles.shape == (100, 28, 28, 1) and grid.kind == "linear"
    for unit in (0, 17, 99):
        np.testing.assert_array_equal(grid.tiles[unit, :, :, 0].numpy(), w[unit].reshape(28, 28))
    np.testing.assert_array_equal(grid.bias.numpy(), digits_mlp.fc1.bias.detach().numpy())


@pytest.mark.parametrize(
    "n, shape", [(784, (1, 28, 28)), (64, (1, 8, 8)), (3 * 32 * 32, (3, 32, 32)), (10, None), (50, None)]
)
def test_infer_input_shape(n, shape):
    assert infer_input_shape(n) == shape


def test_linear_rgb_and_explicit_shapes():
    torch.manual_seed(0)
    rgb = nn.Linear(3 * 4 * 4, 5)
    grid = layer_tiles(rgb, "")
    assert grid.tiles.shape == (5, 4, 4, 3) and grid.reduce == "rgb"
    np.testing.assert_array_equal(grid.tiles[1].numpy(), rgb.weight[1].detach().reshape(3, 4, 4).permute(1, 2, 0).numpy())
    wide = nn.Linear(12, 2)
    assert layer_tiles(wide, "", input_shape=(3, 4)).tiles.shape == (2, 3, 4, 1)
    assert layer_tiles(wide, "", input_shape=(12,)).tiles.shape == (2, 1, 12, 1)
    assert layer_tiles(wide, "").tiles.shape == (2, 2, 2, 3)  # 12 = 3 x 2 x 2: RGB
    with pytest.raises(ValueError, match="cannot infer an image shape for the 10 inputs"):
        layer_tiles(nn.Linear(10, 2), "")
    with pytest.raises(ValueError, match=r"holds 9 values but layer '' has 12 inputs"):
        layer_tiles(wide, "", input_shape=(3, 3))
    with pytest.raises(TypeError, match="tuple of ints"):
        layer_tiles(wide, "", input_shape="3x4")


def test_conv_tiles_rgb_channels_and_reductions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.Conv1d(4, 2, 3))
    first = layer_tiles(model, "0")
    w = model[0].weight.detach()
    assert first.tiles.shape == (6, 5, 5, 3) and first.reduce == "rgb"
    np.testing.assert_array_equal(first.tiles[2].numpy(), w[2].permute(1, 2, 0).numpy())

    deep = layer_tiles(model, "2")  # 6 input channels side by side: 3 columns x 2 rows of 3x3 with gaps
    w2 = model[2].weight.detach()
    assert deep.tiles.shape == (4, 2 * 4 - 1, 3 * 4 - 1, 1) and deep.reduce == "channels"
    t = deep.tiles[1, :, :, 0]
    for c in range(6):
        r, q = divmod(c, 3)
        np.testing.assert_array_equal(t[r * 4 : r * 4 + 3, q * 4 : q * 4 + 3].numpy(), w2[1, c].numpy())
    assert torch.isnan(t[3, :]).all() and torch.isnan(t[:, 3]).all()

    np.testing.assert_allclose(layer_tiles(model, "2", reduce="mean").tiles[..., 0].numpy(), w2.mean(1).numpy())
    np.testing.assert_allclose(layer_tiles(model, "2", reduce="norm").tiles[..., 0].numpy(), w2.norm(dim=1).numpy())
    np.testing.assert_array_equal(layer_tiles(model, "2", reduce=4).tiles[..., 0].numpy(), w2[:, 4].numpy())
    assert layer_tiles(model, "3").tiles.shape == (2, 1 * 2 + 1, 2 * 4 - 1, 1)  # Conv1d: 4 channels of 1x3
    with pytest.raises(ValueError, match="has 6 input channels"):
        layer_tiles(model, "2", reduce=6)
    with pytest.raises(ValueError, match="needs 3 input channels"):
        layer_tiles(model, "2", reduce="rgb")
    with pytest.raises(ValueError, match="reduce must be one of"):
        layer_tiles(model, "2", reduce="max")
    with pytest.raises(ValueError, match="ReLU; weight tiles need"):
        layer_tiles(model, "1")
    with pytest.raises(ValueError, match="input_shape applies to Linear"):
        layer_tiles(model, "0", input_shape=(5, 5))


def test_channel_grid_layout():
    filters = torch.arange(2 * 5 * 2 * 2, dtype=torch.float32).reshape(2, 5, 2, 2)
    grid = channel_grid(filters)
    cols = math.ceil(math.sqrt(5))
    assert grid.shape == (2, 2 * 3 - 1, cols * 3 - 1, 1)
    assert torch.isnan(grid[0, 3:, 6:, 0]).all()  # the missing sixth slot


def test_sorting_and_top_units_for_a_class(digits_mlp, digits_data):
    grid = layer_tiles(digits_mlp, "fc1")
    name, readout = readout_weights(digits_mlp, "fc1")
    assert name == "fc2" and readout.shape == (10, 100)
    w2 = digits_mlp.fc2.weight.detach()
    order = unit_order(grid, "class", readout=readout, class_index=3)
    assert order[:5].tolist() == torch.argsort(w2[3], descending=True)[:5].tolist()
    assert w2[3, order[0]] == w2[3].max()
    norms = digits_mlp.fc1.weight.detach().norm(dim=1)
    assert unit_order(grid, "norm")[0] == norms.argmax()
    assert unit_order(grid, "bias", descending=False)[0] == digits_mlp.fc1.bias.argmin()
    hidden = torch.rand(100)
    contrib = unit_order(grid, "class", readout=readout, class_index=3, activations=hidden)
    assert contrib[0] == torch.argmax(w2[3] * hidden)
    with pytest.raises(ValueError, match="class 10 is out of range"):
        unit_order(grid, "class", readout=readout, class_index=10)
    with pytest.raises(ValueError, match="sort_by must be"):
        unit_order(grid, "size")
    with pytest.raises(ValueError, match="no Linear layer after 'fc2'"):
        readout_weights(digits_mlp, "fc2")


def test_input_products(digits_mlp, digits_data):
    images, _ = digits_data
    grid = layer_tiles(digits_mlp, "fc1")
    products = input_products(grid, images[5])
    expected = digits_mlp.fc1.weight.detach() * images[5].reshape(1, 784)
    np.testing.assert_allclose(products[..., 0].reshape(100, 784).numpy(), expected.numpy())
    with pytest.raises(ValueError, match="has 784 inputs"):
        input_products(grid, torch.zeros(10))


def test_norm_order_uses_the_incoming_weights_not_the_layout():
    torch.manual_seed(3)
    conv = nn.Conv2d(6, 5, 3)
    grid = layer_tiles(conv, "", reduce="mean")  # the mean hides most of the weights' size
    norms = conv.weight.detach().reshape(5, -1).norm(dim=1)
    assert unit_order(grid, "norm").tolist() == torch.argsort(norms, descending=True).tolist()
