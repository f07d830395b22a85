"""The NeuronGroups and SemanticDictionary widgets in Python: traits, inputs, icons, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import traitlets
from ipywidgets.widgets.widget import _remove_buffers
from PIL import Image

import nbvis
from nbvis._arrays import unpack
from nbvis.compute.blocks import FeatureCache


def memory_cache(model, steps=8):
    return FeatureCache(model, (1, 28, 28), steps=steps, every=4)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_groups_view_holds_the_compute_result(digits_cnn, digits_data, unchanged):
    images, labels = digits_data
    with unchanged(digits_cnn):
        view = nbvis.NeuronGroups(digits_cnn, images[0], layer="relu2", k=4, labels=nbvis.demo.DIGIT_LABELS,
                                  icons=memory_cache(digits_cnn))
        view.wait_icons(60)
    reference = nbvis.neuron_groups(digits_cnn, images[0], "relu2", k=4)
    np.testing.assert_array_equal(view.groups.spatial, reference.spatial)
    assert view.layer == "relu2" and "relu2" in view.layers and "conv2" in view.layers and "fc" not in view.layers
    assert view.hues == nbvis.widgets.neuron_groups.group_hues(4) and len(set(view.hues)) == 4
    assert view.r2 == pytest.approx(reference.r2)
    assert view.class_labels == [str(c) for c in reference.classes]
    # what the browser gets: binary buffers with the normalized maps and the attribution
    state = view.get_state()
    _, _, buffers = _remove_buffers(state)
    assert len(buffers) >= 3
    maps = unpack(view._maps)
    np.testing.assert_allclose(maps, reference.normalized_maps(), rtol=1e-6)
    assert maps.max() == pytest.approx(1.0) and maps.min() >= 0
    np.testing.assert_allclose(unpack(view._attribution), reference.attribution, rtol=1e-5)
    assert view.attribution_scale == pytest.approx(np.abs(reference.attribution).max(), rel=1e-5)
    # icons: one per group, finished
    assert view._icon_state == ["done"] * 4 and view.icons_ready == 4
    assert unpack(view._icons).shape == (4, 28, 28, 1)


def test_groups_view_k_layer_selection_and_direction(digits_cnn, digits_data):
    images, _ = digits_data
    view = nbvis.NeuronGroups(digits_cnn, images[1], layer="relu2", k=3, icons=False)
    assert view.direction is None
    view.selected = 2
    layer, vector = view.direction
    assert layer == "relu2" and np.array_equal(vector, view.groups.channels[2])
    view.k = 5
    assert view.groups.k == 5 and len(view.hues) == 5 and view.selected is None
    view.layer = "pool1"
    assert view.groups.layer == "pool1" and view.groups.spatial.shape == (5, 14, 14)
    with pytest.raises(traitlets.TraitError, match="0..4"):
        view.selected = 7
    with pytest.raises(traitlets.TraitError, match="1..12"):
        view.k = 0
    with pytest.raises(traitlets.TraitError, match="layers are"):
        view.layer = "fc"


def test_groups_view_new_input_from_python_dataset_and_upload(digits_cnn, digits_data):
    images, labels = digits_data
    view = nbvis.NeuronGroups(digits_cnn, layer="relu2", k=3, dataset=(images, labels), icons=False)
    assert torch.equal(view.input, images[0]) and view.input_caption == f"dataset #0 (label {int(labels[0])})"
    view.index = 9
    assert torch.equal(view.input, images[9]) and view.input_caption == f"dataset #9 (label {int(labels[9])})"
    np.testing.assert_array_equal(view.groups.spatial, nbvis.neuron_groups(digits_cnn, images[9], "relu2", k=3).spatial)
    view.input = images[4]
    assert torch.equal(view.input, images[4])
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255  # a white stroke on black: a "1"
    view._handle_custom_msg({"type": "input", "source": "upload", "seq": 3, "name": "one.png"}, [memoryview(png(digit))])
    assert view._seq_done == 3 and view.input_caption == "uploaded one.png" and view.error == ""
    assert view.input.shape == (1, 28, 28) and float(view.input.max()) > 0.9
    # a bad upload is shown in the view; the input stays
    before = view.input
    view._handle_custom_msg({"type": "input", "source": "upload", "seq": 4}, [memoryview(b"not an image")])
    assert view.error and view._seq_done == 4 and torch.equal(view.input, before)
    with pytest.raises(ValueError, match="shape"):
        view.input = torch.zeros(1, 14, 14)


def test_groups_view_refuses_a_negative_layer_with_a_hint(digits_cnn, digits_data):
    images, _ = digits_data
    with pytest.raises(ValueError, match="'relu2'"):
        nbvis.NeuronGroups(digits_cnn, images[0], layer="conv2", icons=False)
    with pytest.warns(UserWarning):
        view = nbvis.NeuronGroups(digits_cnn, images[0], layer="conv2", negative="clip", icons=False)
    assert "clipped" in view.note
    with pytest.raises(TypeError, match="unexpected keyword"):
        nbvis.NeuronGroups(digits_cnn, images[0], colour="red")
    with pytest.raises(TypeError, match="needs an input"):
        nbvis.NeuronGroups(digits_cnn)


def test_dictionary_view_starts_at_the_maximum_and_selects(digits_cnn, digits_data, unchanged):
    images, _ = digits_data
    with unchanged(digits_cnn):  # checked once the background icons are done too
        view = nbvis.SemanticDictionary(digits_cnn, images[2], layer="relu2", k=5, dataset=images, icons=memory_cache(digits_cnn))
        states, icons = list(view._icon_state), unpack(view._icons)
        view.wait_icons(120)
    reference = nbvis.semantic_dictionary(digits_cnn, images[2], "relu2", k=5)
    assert tuple(view.position) == reference.start and view.grid == [14, 14]
    assert view.maximum == pytest.approx(reference.maximum)
    np.testing.assert_array_equal(unpack(view._channels), reference.channels)
    np.testing.assert_allclose(unpack(view._values), reference.values)
    assert view.entries() == reference.at(*reference.start)
    # every channel has an icon slot; until it is computed, its top dataset example stands in
    assert len(states) == 16 and set(states) <= {"example", "running", "done"} and "example" in states
    assert icons.shape == (16, 28, 28, 1) and icons.max() > 0
    assert view._icon_state == ["done"] * 16 and view.icons_ready == 16
    view.selected = ("relu2", 3)
    assert view.selected == ("relu2", 3)
    with pytest.raises(traitlets.TraitError, match="0..15"):
        view.selected = ("relu2", 16)
    with pytest.raises(traitlets.TraitError, match="14x14"):
        view.position = [14, 0]
    view.position = [2, 3]
    assert view.entries() == reference.at(2, 3)
    view.layer = "pool2"
    assert view.grid == [7, 7] and view.selected is None


def test_views_share_the_cache_and_reopening_recomputes_nothing(digits_cnn, digits_data):
    images, _ = digits_data
    cache = memory_cache(digits_cnn)
    first = nbvis.SemanticDictionary(digits_cnn, images[0], layer="relu2", icons=cache)
    first.wait_icons(120)
    computed = cache.computed
    assert computed == 16
    first.close()
    again = nbvis.SemanticDictionary(digits_cnn, images[5], layer="relu2", icons=cache)
    assert again._icon_state == ["done"] * 16 and cache.computed == computed
    assert not cache.pending


def test_icons_follow_a_change_of_the_weights(digits_data):
    images, _ = digits_data
    model = nbvis.demo.digits_cnn()  # a copy of its own: its weights change here
    cache = memory_cache(model, steps=4)
    view = nbvis.SemanticDictionary(model, images[0], layer="relu2", icons=cache)
    view.wait_icons(60)
    old = unpack(view._icons).copy()
    with torch.no_grad():
        model.conv1.weight.mul_(-1.0)
    view.refresh()
    assert cache.generation == 1
    view.wait_icons(60)
    assert view._icon_state == ["done"] * 16 and cache.computed == 32
    assert not np.array_equal(unpack(view._icons), old)


def test_explorer_links_its_selection_and_input_to_the_building_blocks(digits_cnn, digits_data):
    images, labels = digits_data
    explorer = nbvis.Explorer(digits_cnn, (images, labels), labels=nbvis.demo.DIGIT_LABELS, steps=2, starts=1)
    try:
        panel = explorer.blocks
        # shown below the dashboard, in a fold of its own
        assert panel is not None and any(panel in getattr(child, "children", ()) for child in explorer.children)
        groups, dictionary = panel.groups, panel.dictionary
        assert torch.equal(groups.input, explorer.heatmap.input)
        # a unit selected in the Explorer at a conv layer is selected in the dictionary
        explorer.selected = ("relu2", 5)
        assert dictionary.layer == "relu2" and dictionary.selected == ("relu2", 5)
        # a channel clicked in the dictionary is selected in the Explorer
        dictionary.selected = ("relu2", 9)
        assert explorer.selected == ("relu2", 9) and explorer.optimizer is not None
        # the heatmap's input is the groups' input
        explorer.heatmap.index = 12
        assert torch.equal(groups.input, images[12]) and torch.equal(dictionary.input, images[12])
        np.testing.assert_array_equal(groups.groups.spatial, nbvis.neuron_groups(digits_cnn, images[12], groups.layer, k=4).spatial)
        # picking a sample in a building-block view picks it in the heatmap
        groups.index = 30
        assert explorer.heatmap.index == 30 and torch.equal(dictionary.input, images[30])
    finally:
        explorer.close()
    assert nbvis.Explorer(nbvis.demo.digits_mlp(), images, steps=2, starts=1).blocks is None
