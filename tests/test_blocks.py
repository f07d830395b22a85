"""Neuron groups, the semantic dictionary and the feature-visualization cache (nbvis.compute.blocks)."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
from sklearn.decomposition import NMF
from torch import nn

import nbvis
from nbvis.compute.blocks import FeatureCache, direction_objective, feature_cache, top_direction_examples
from nbvis.compute.blocks.layer import default_layer


def color_model() -> nn.Module:
    """Channels 0 and 1 see red, 2 and 3 see green (3x3 kernels), then ReLU, pooling and a 2-class head."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 1 / 9
        conv.weight[1, 0, 1, 1] = 0.8
        conv.weight[2, 1] = 1 / 9
        conv.weight[3, 1, 1, 1] = 0.6
        conv.bias.fill_(-0.05)
    head = nn.Linear(4, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 1.0, -1.0, -1.0], [-1.0, -1.0, 1.0, 1.0]]))
        head.bias.zero_()
    return nn.Sequential(OrderedDict(conv=conv, relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=head)).eval()


def halves(size: int = 16) -> torch.Tensor:
    """Red on the left half, green on the right, with a little noise."""
    g = torch.Generator().manual_seed(1)
    x = 0.05 * torch.rand(3, size, size, generator=g)
    x[0, :, : size // 2] += 0.9
    x[1, :, size // 2 :] += 0.9
    return x


@pytest.fixture
def cnn(digits_cnn):
    return digits_cnn


@pytest.fixture
def digits(digits_data):
    return digits_data


def test_groups_match_scikit_learn_nmf(cnn, digits):
    images, _ = digits
    groups = nbvis.neuron_groups(cnn, images[3], "relu2", k=5, random_state=7)
    act = nbvis.capture(cnn, images[3:4], ["relu2"])["relu2"][0].double().numpy()
    matrix = act.reshape(act.shape[0], -1).T
    reference = NMF(n_components=5, init="nndsvda", random_state=7, max_iter=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = reference.fit_transform(matrix)
    h = reference.components_
    assert sorted(groups.order.tolist()) == list(range(5))
    np.testing.assert_allclose(groups.spatial.reshape(5, -1), w[:, groups.order].T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(groups.channels, h[groups.order], rtol=1e-5, atol=1e-6)
    # R^2 by hand: 1 - |A - WH|^2 / |A|^2
    r2 = 1 - ((matrix - w @ h) ** 2).sum() / (matrix**2).sum()
    assert groups.r2 == pytest.approx(r2, rel=1e-6)
    assert 0.5 < groups.r2 <= 1
    # ordered left to right by the column of each group's peak
    cols = groups.peaks[:, 1]
    assert list(cols) == sorted(cols)
    # the same seed gives the same groups; another seed may not, but is still a valid factorization
    again = nbvis.neuron_groups(cnn, images[3], "relu2", k=5, random_state=7)
    np.testing.assert_array_equal(again.spatial, groups.spatial)


def test_attribution_is_group_vector_dot_logit_gradient(cnn, digits):
    images, _ = digits
    groups = nbvis.neuron_groups(cnn, images[0], "relu2", k=4, classes=3)
    logits = cnn(images[:1])[0].detach()
    assert groups.classes.tolist() == torch.argsort(logits, descending=True)[:3].tolist()
    np.testing.assert_allclose(groups.logits, logits[groups.classes].numpy(), rtol=1e-5)
    for j, c in enumerate(groups.classes):
        grad = nbvis.gradient(cnn, images[:1], of=("", int(c)), wrt="relu2")[0].numpy()
        expected = (groups.vectors() * grad[None]).reshape(4, -1).sum(axis=1)
        np.testing.assert_allclose(groups.attribution[:, j], expected, rtol=1e-4, atol=1e-5)
    # positive and negative entries both show up for the top classes
    assert (groups.attribution > 0).any() and (groups.attribution < 0).any()
    chosen = nbvis.neuron_groups(cnn, images[0], "relu2", k=4, classes=[9, 0])
    assert chosen.classes.tolist() == [9, 0]


def test_negative_layer_refused_or_clipped(cnn, digits, unchanged):
    images, _ = digits
    with unchanged(cnn), pytest.raises(ValueError, match="negative activations.*'relu2'.*negative='clip'"):
        nbvis.neuron_groups(cnn, images[0], "conv2", k=3)
    with unchanged(cnn), pytest.warns(UserWarning, match="clipped to zero"):
        clipped = nbvis.neuron_groups(cnn, images[0], "conv2", k=3, negative="clip")
    assert clipped.clipped > 0 and (clipped.activation >= 0).all()


def test_bad_arguments_say_what_exists(cnn, digits):
    images, _ = digits
    with pytest.raises(ValueError, match="fc"):
        nbvis.neuron_groups(cnn, images[0], "nope")
    with pytest.raises(ValueError, match=r"\(channels, height, width\).*relu2"):
        nbvis.neuron_groups(cnn, images[0], "fc")
    with pytest.raises(ValueError, match="k <= 16"):
        nbvis.neuron_groups(cnn, images[0], "relu2", k=17)
    with pytest.raises(ValueError, match="positive integer"):
        nbvis.neuron_groups(cnn, images[0], "relu2", k=0)
    with pytest.raises(ValueError, match=r"one image input, \(C, H, W\)"):
        nbvis.neuron_groups(cnn, images[:2], "relu2")
    with pytest.raises(ValueError, match="1..16"):
        nbvis.semantic_dictionary(cnn, images[0], "relu2", k=0)
    with pytest.raises(ValueError, match="negative must be"):
        nbvis.neuron_groups(cnn, images[0], "relu2", negative="abs")


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_a_sequence_model_is_told_that_the_blocks_read_images(kind):
    """(1, 7, 5) looks like one image (C, H, W); the model reads it as a sequence: a clear refusal
    that says how the model reads it, before any forward pass (torch's own errors were an LSTM's
    "Expected input to be 2D or 3D" and attention's AssertionError)."""
    torch.manual_seed(0)
    if kind == "lstm":
        model = nn.Sequential(nn.LSTM(5, 8, batch_first=True))
        expects = r"'0' \(LSTM\), which expects 5 features a step"
    else:
        model = nn.TransformerEncoder(nn.TransformerEncoderLayer(5, 1, 8, batch_first=True), 1, enable_nested_tensor=False).eval()
        expects = r"'[\w.]+', a Linear layer that expects 5 features"
    x = torch.randn(1, 7, 5)
    if kind == "lstm":  # steps of the wrong size: the contract's words on what the LSTM takes, not torch's
        with pytest.raises(ValueError, match=r"\(1, 7, 4\).*which expects 5 features a step"):
            nbvis.neuron_groups(model, x[..., :4], "0")
    for build in (nbvis.neuron_groups, nbvis.semantic_dictionary):
        with pytest.raises(ValueError, match=r"maps of an image model; this model reads x of shape \(1, 7, 5\) as one "
                                             r"sample of shape \(7, 5\) \(its input goes into " + expects):
            build(model, x, "0" if kind == "lstm" else "layers.0.linear1")


class HeadFirst(nn.Module):
    """A conv net whose head is defined before its conv: the sample rule's consumer (the first Linear)
    does not read the input; the building blocks take the image as it is."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4 * 6 * 6, 3)
        self.conv = nn.Conv2d(3, 4, 3)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))


class BareConv(nn.Module):
    """A convolution by a bare parameter: no layer to name the input's shape."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(4, 1, 3, 3, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return torch.relu(nn.functional.conv2d(x, self.weight))


@pytest.mark.parametrize("kind", ["head first", "bare conv"])
def test_image_models_the_sample_rule_cannot_read_keep_their_groups(kind):
    """(C, H, W) images the sample rule cannot place (its consumer is defined before the conv, or
    there is none) are factored as they are, as scikit-learn's NMF factors their maps."""
    if kind == "head first":
        model, layer, x = HeadFirst(), "relu", torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1))
        act = model.relu(model.conv(x[None]))[0].detach()
    else:
        model, layer, x = nn.Sequential(OrderedDict(conv=BareConv())), "conv", torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(1))
        act = model(x[None])[0].detach()
    groups = nbvis.neuron_groups(model, x, layer, k=2)
    assert groups.spatial.shape == (2, 6, 6)
    reference = NMF(2, init="nndsvda", random_state=0, max_iter=2000).fit(act.reshape(4, -1).T.double().numpy())
    explained = 1 - reference.reconstruction_err_ ** 2 / float((act.double() ** 2).sum())
    assert groups.r2 == pytest.approx(explained, abs=0.05)


def test_known_model_groups_separate_the_halves(unchanged):
    model = color_model()
    x = halves()
    with unchanged(model):
        groups = nbvis.neuron_groups(model, x, "relu", k=2)
    truth = np.zeros((16, 16), bool)
    truth[:, :8] = True
    for i, region in enumerate([truth, ~truth]):  # left group first
        mask = groups.spatial[i] > 0.5 * groups.spatial[i].max()
        iou = (mask & region).sum() / (mask | region).sum()
        assert iou >= 0.9, (i, iou)
    # the left group is made of the red channels, the right one of the green channels
    assert set(np.argsort(groups.channels[0])[-2:]) == {0, 1}
    assert set(np.argsort(groups.channels[1])[-2:]) == {2, 3}
    # red drives class 0: the left group attributes positively to it, the right one negatively
    row = list(groups.classes).index(0)
    assert groups.attribution[0, row] > 0 > groups.attribution[1, row]


def test_known_model_dictionary_lists_the_regions_channels_first():
    model = color_model()
    x = halves()
    dictionary = nbvis.semantic_dictionary(model, x, "relu", k=4)
    assert dictionary.channels.shape == (16, 16, 4)
    assert {c for c, _, _ in dictionary.at(8, 2)[:2]} == {0, 1}
    assert {c for c, _, _ in dictionary.at(8, 13)[:2]} == {2, 3}
    act = nbvis.capture(model, x[None], ["relu"])["relu"][0].numpy()
    assert dictionary.maximum == pytest.approx(float(act.max()))
    y, xx = dictionary.start
    assert act[:, y, xx].max() == pytest.approx(float(act.max()))
    entries = dictionary.at(8, 2)
    values = [v for _, v, _ in entries]
    assert values == sorted(values, reverse=True)
    assert entries[0][2] == pytest.approx(values[0] / float(act.max()))
    np.testing.assert_allclose(np.sort(act[:, 8, 2])[::-1], values, rtol=1e-6)


def test_default_layer_is_the_last_non_negative_conv_output(cnn, digits):
    images, _ = digits
    assert default_layer(cnn, images[0]) == "pool2"
    assert default_layer(color_model(), halves()) == "relu"


def test_direction_objective_of_a_one_hot_is_the_unit_objective(cnn, digits):
    images, _ = digits
    acts = {"relu2": nbvis.capture(cnn, images[:3], ["relu2"])["relu2"]}
    one_hot = torch.zeros(3, 16)
    one_hot[:, 5] = 1
    np.testing.assert_allclose(direction_objective("relu2", one_hot)(acts).numpy(), nbvis.unit("relu2", 5)(acts).numpy(), rtol=1e-6)
    d = torch.rand(16)
    expected = (acts["relu2"] * d[None, :, None, None]).sum(1).mean((1, 2))
    np.testing.assert_allclose(direction_objective("relu2", d)(acts).numpy(), expected.numpy(), rtol=1e-5)


def test_top_direction_examples_match_a_brute_force_search(cnn, digits):
    images, _ = digits
    data = images[:300]
    dirs = np.eye(16, dtype=np.float32)[[0, 3, 9]]
    dirs[2] += 0.3
    indices, values = top_direction_examples(cnn, "relu2", dirs, data, batch_size=64)
    act = nbvis.capture(cnn, data, ["relu2"])["relu2"]
    scores = torch.einsum("nchw,dc->ndhw", act, torch.as_tensor(dirs)).flatten(2).amax(2)
    np.testing.assert_array_equal(indices, scores.argmax(0).numpy())
    np.testing.assert_allclose(values, scores.max(0).values.numpy(), rtol=1e-5)


def test_cache_streams_icons_and_computes_each_once(cnn, tmp_path, unchanged):
    cache = FeatureCache(cnn, (1, 28, 28), steps=12, every=4, value_range=(0, 1), directory=tmp_path)
    keys = cache.request("relu2", [0, 1, 2])
    assert [cache.state(k) for k in keys] == ["pending"] * 3
    with unchanged(cnn):
        updates = list(cache.work())
    assert [u.step for u in updates] == [1, 4, 8, 12]  # streamed as it improves
    assert updates[-1].done and not updates[0].done
    assert updates[0].images.shape == (3, 28, 28, 1) and updates[0].images.dtype == np.uint8
    assert not np.array_equal(updates[0].images, updates[-1].images)
    assert [cache.state(k) for k in keys] == ["done"] * 3 and cache.computed == 3
    # asking again (another view) computes nothing
    assert cache.request("relu2", [2, 1]) == keys[2:0:-1]
    assert list(cache.work()) == [] and cache.computed == 3
    # a direction equal to a one-hot vector is the same icon as the unit
    one_hot = np.zeros(16, np.float32)
    one_hot[1] = 1
    assert cache.key("relu2", one_hot) == keys[1]
    # a new cache on the same weights loads them from disk
    fresh = FeatureCache(cnn, (1, 28, 28), steps=12, every=4, value_range=(0, 1), directory=tmp_path)
    again = fresh.request("relu2", [0, 1, 2])
    assert [fresh.state(k) for k in again] == ["done"] * 3 and list(fresh.work()) == [] and fresh.computed == 0
    np.testing.assert_array_equal(fresh.image(again[0]), cache.image(keys[0]))


def test_cache_is_invalidated_when_weights_change(tmp_path):
    model = color_model()
    cache = FeatureCache(model, (3, 8, 8), steps=4, every=2, directory=tmp_path)
    keys = cache.request("relu", [0, 2])
    list(cache.work())
    assert cache.state(keys[0]) == "done"
    with torch.no_grad():
        model.conv.weight[0].mul_(2.0)
    assert cache.pending and cache.state(keys[0]) == "pending" and cache.image(keys[0]) is None
    list(cache.work())
    assert cache.computed == 4 and cache.generation == 1
    # the old weights' icons on disk are not used for the new weights
    fresh = FeatureCache(model, (3, 8, 8), steps=4, every=2, directory=tmp_path)
    assert fresh.state(fresh.request("relu", [1])[0]) == "pending"


def test_cache_stopped_midway_resumes_later():
    model = color_model()
    cache = FeatureCache(model, (3, 8, 8), steps=8, every=2)
    keys = cache.request("relu", [0, 1])
    work = cache.work()
    next(work)
    work.close()
    assert [cache.state(k) for k in keys] == ["pending", "pending"] and cache.pending
    assert list(cache.work())[-1].done


def test_shared_cache_per_model_and_settings(cnn):
    a = feature_cache(cnn, (1, 28, 28), steps=8)
    assert feature_cache(cnn, (1, 28, 28), steps=8) is a
    assert feature_cache(cnn, (1, 28, 28), steps=16) is not a


def test_cache_rejects_bad_requests(cnn):
    cache = FeatureCache(cnn, (1, 28, 28), steps=4)
    with pytest.raises(ValueError, match="0..15"):
        cache.request("relu2", [16])
    with pytest.raises(ValueError, match="16 finite numbers"):
        cache.request("relu2", [np.ones(3)])
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        FeatureCache(cnn, (1, 28, 28), steps=0)


def test_rising_layers_are_optimized_through_the_layer_that_feeds_them(cnn):
    cache = FeatureCache(cnn, (1, 28, 28), steps=2)
    assert cache._source("relu2") == "conv2"
    assert cache._source("pool2") == "conv2"  # through relu2
    assert cache._source("conv2") == "conv2"
    assert FeatureCache(cnn, (1, 28, 28), steps=2, preactivation=False)._source("relu2") == "relu2"
