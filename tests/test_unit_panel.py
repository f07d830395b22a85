"""The selected unit's panel: one position (c, y, x) selected, top examples of a saturated unit
ranked by its pre-activation (the quantity the Explorer maximizes), and each top example's
guided-backprop / deconvnet map beside it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbvis
from nbvis.compute import structure
from nbvis.compute.dataset import as_samples, top_examples
from nbvis.compute.example_maps import example_maps
from nbvis.compute.fields import field_geometry


@pytest.fixture(scope="module")
def saturated(digits_data):
    """An MLP whose hidden sigmoid saturates: many digits give exactly 1.0 in float32 for one unit."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.Sigmoid(), nn.Linear(16, 10)).eval()
    with torch.no_grad():
        model[1].weight.mul_(60)
    images = digits_data[0]
    with torch.no_grad():
        pre = model[1](images.flatten(1))
    ones = (torch.sigmoid(pre) == 1.0).sum(0)
    unit = int(ones.argmax())
    assert ones[unit] >= 50  # the ties the ranking must break
    return model, unit, pre[:, unit]


def test_top_examples_of_a_saturated_sigmoid_are_ranked_by_its_preactivation(saturated, digits_data, unchanged):
    model, unit, pre = saturated
    images, labels = digits_data
    with unchanged(model):
        view = nbvis.ActivationHeatmap(model, dataset=(images, labels))
        view.selected = ("2", unit)
        view.top_job.wait()
    top = view.top
    expected = pre.topk(9)  # by hand: the Linear layer's output, computed directly
    assert top.layer == "1" and top.unit == unit
    assert top.indices.tolist() == expected.indices.tolist()
    np.testing.assert_allclose(top.values.numpy(), expected.values.numpy(), rtol=1e-5)
    assert (top.values[:-1] > top.values[1:]).all()  # strictly ranked: no ties left
    assert view._top["ranked_by"] == f"1[{unit}]" and view._top["of"] == f"2[{unit}]"
    # ranked by the unit itself (rank="unit"), all nine are the same 1.000: arbitrary ties
    view.rank = "unit"
    view.top_job.wait()
    assert view.top.layer == "2" and (view.top.values == 1.0).all()
    view.close()


def test_the_explorer_ranks_and_maximizes_the_same_quantity(saturated, digits_data):
    model, unit, _ = saturated
    explorer = nbvis.Explorer(model, digits_data, selected=("2", unit), steps=2, starts=1)
    try:
        explorer.heatmap.top_job.wait()
        assert explorer.optimizer.objective_text == f"1[{unit}]"
        assert explorer.heatmap.top.layer == "1"
        assert f"preferred input and top examples by <code>1[{unit}]</code>" in explorer._caption.value
    finally:
        explorer.close()


def test_a_relu_channel_keeps_its_own_ranking(digits_cnn, digits_data):
    images, labels = digits_data
    view = nbvis.ActivationHeatmap(digits_cnn, dataset=(images, labels), top_k=6)
    assert view.ranked_unit("relu2", 3) == ("relu2", 3)  # no ties at the top of a ReLU
    assert view.preactivation("relu2", 3) == ("conv2", 3)
    view.close()


def test_preactivation_and_saturation_along_the_chain(digits_cnn, digits_mlp, digits_data):
    x = digits_data[0][:1]
    cnn = structure.trace(digits_cnn, x)
    assert structure.preactivation(cnn, "relu2", 5) == "conv2"
    assert structure.preactivation(cnn, "pool2", 5) == "conv2"
    assert structure.preactivation(cnn, "relu2", (5, 3, 4)) == "conv2"
    assert structure.preactivation(cnn, "pool2", (5, 1, 1)) is None  # the same element is not in conv2's maps
    assert structure.preactivation(cnn, "conv2", 5) is None
    assert not structure.saturates(cnn, "conv2", "relu2")
    mlp = structure.trace(digits_mlp, x)
    assert structure.preactivation(mlp, "sigmoid", 3) == "fc1" and structure.saturates(mlp, "fc1", "sigmoid")


def test_a_position_selected_has_its_own_localized_why_map(digits_cnn, digits_data, unchanged):
    images, labels = digits_data
    with unchanged(digits_cnn):
        view = nbvis.ActivationHeatmap(digits_cnn, dataset=(images, labels))
        view.selected = ("relu2", [5, 3, 4])
        view.top_job.wait()
    assert view.selected == ("relu2", (5, 3, 4))
    expected = nbvis.gradient(digits_cnn, images[0], of=("relu2", (5, 3, 4))).numpy()
    np.testing.assert_allclose(view.gradient_map, expected, rtol=1e-5, atol=1e-8)
    (top, bottom), (left, right) = field_geometry(digits_cnn, "relu2", (1, 28, 28)).box((3, 4))
    outside = np.ones((28, 28), bool)
    outside[top:bottom, left:right] = False
    assert np.abs(view.gradient_map[0][outside]).max() == 0 and np.abs(view.gradient_map).max() > 0
    assert view.grad_caption == "gradient of relu2[5, 3, 4] over the input"
    # its top examples are those of that one position
    assert view.top.unit == (5, 3, 4) and view.top.positions.tolist() == [[3, 4]] * 9
    with pytest.raises(Exception, match=r"a position \(c, y, x\) is a unit of a layer of channel maps"):
        view.selected = ("fc", (1, 0, 0))
    with pytest.raises(Exception, match="out of range"):
        view.selected = ("relu2", (5, 14, 0))
    view.close()


def test_the_explorer_follows_a_selected_position(digits_cnn, digits_data):
    explorer = nbvis.Explorer(digits_cnn, digits_data, selected=("relu2", (5, 3, 4)), steps=2, starts=1)
    try:
        assert explorer.grid.layer == "conv2" and explorer.grid.selected == 5  # its channel's filter
        assert explorer.optimizer.objective_text == "conv2[5, 3, 4]"
        assert explorer.blocks.dictionary.selected == ("relu2", 5)
        assert "selected: relu2[5, 3, 4]" in explorer._caption.value
    finally:
        explorer.close()


def test_each_top_example_has_its_guided_backprop_and_deconvnet_maps(digits_cnn, digits_data):
    samples, _ = as_samples(digits_data)
    top = top_examples(digits_cnn, "conv2", 5, samples, k=4)
    for method, run in (("guided", nbvis.guided_backprop), ("deconvnet", nbvis.deconvnet)):
        passes = []
        hook = digits_cnn.conv1.register_forward_hook(lambda *_: passes.append(1))
        try:
            maps = example_maps(digits_cnn, top, method)
        finally:
            hook.remove()
        assert len(passes) == 1  # one pass for the examples together, each at its own position
        assert maps.shape == top.patches.shape
        for i in range(4):  # by hand: the map of that example's own strongest position, cut to its box
            y, x = top.positions[i].tolist()
            full = run(digits_cnn, top.inputs[i], of=("conv2", (5, y, x)))
            (r0, r1), (c0, c1) = top.boxes[i].tolist()
            size = top.geometry.size
            oy, ox = r0 - (top.geometry.start[0] + y * top.geometry.jump[0]), c0 - (top.geometry.start[1] + x * top.geometry.jump[1])
            expected = torch.zeros((1, *size))
            expected[:, oy:oy + r1 - r0, ox:ox + c1 - c0] = full[:, r0:r1, c0:c1]
            torch.testing.assert_close(maps[i], expected)
    # a model without ReLUs: guided backprop means nothing, the view falls back to the gradient
    mlp = nbvis.demo.digits_mlp()
    view = nbvis.ActivationHeatmap(mlp, dataset=digits_data)
    view.selected = ("fc2", 3)
    view.top_job.wait()
    assert set(view._top) >= {"gradient"} and "guided" not in view._top
    dense = top_examples(mlp, "fc2", 3, samples, k=9)
    torch.testing.assert_close(example_maps(mlp, dense, "gradient"), nbvis.gradient(mlp, dense.inputs, of=("fc2", 3)))
    view.close()


def test_a_scan_cache_serves_the_next_unit_of_the_layer_until_the_weights_change(digits_data):
    from nbvis.compute.dataset import scan_top_examples

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 3)).eval()
    samples, _ = as_samples(digits_data)
    calls = []
    model[0].register_forward_hook(lambda *_: calls.append(1))

    def scan(unit, cache):
        *_, last = scan_top_examples(model, "1", unit, samples, k=5, cache=cache)
        return last.result

    cache: dict = {}
    first = scan(0, cache)
    ran = len(calls)
    assert ran > 0 and list(cache) == ["1"]
    for unit in (1, 2):  # other channels of the same layer: read from the cache, the model does not run
        cached, fresh = scan(unit, cache), scan(unit, None)
        assert len(calls) == ran + (unit) * ran  # only the uncached scans ran the model
        assert cached.indices.tolist() == fresh.indices.tolist()
        torch.testing.assert_close(cached.values, fresh.values)
        torch.testing.assert_close(cached.patches, fresh.patches)
    assert first.indices.tolist() == scan(0, None).indices.tolist()
    # an in-place change of the weights (as a training step makes): the cache is not used
    with torch.no_grad():
        model[0].weight[1].neg_()
    before = len(calls)
    changed = scan(1, cache)
    assert len(calls) > before
    assert changed.indices.tolist() == scan(1, None).indices.tolist()
