"""Gradients of units: against Captum, finite differences and hand computation."""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbvis
from nbvis.compute.gradients import deconvnet, gradient, guided_backprop, loss_gradient

captum_attr = pytest.importorskip("captum.attr")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def captum(method, model, x, target):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns that it sets requires_grad and hooks
        if method == "saliency":
            return captum_attr.Saliency(model).attribute(x.clone(), target=target, abs=False)
        if method == "guided":
            return captum_attr.GuidedBackprop(model).attribute(x.clone(), target=target)
        return captum_attr.Deconvolution(model).attribute(x.clone(), target=target)


OURS = {"saliency": gradient, "guided": guided_backprop, "deconv": deconvnet}


class UpTo(nn.Module):
    """The first ``n`` layers of a Sequential, with each channel summed (or one position picked)."""

    def __init__(self, model: nn.Sequential, n: int, position=None):
        super().__init__()
        self.body = model[:n]
        self.position = position

    def forward(self, x):
        out = self.body(x)
        if self.position is not None:
            return out[(slice(None), slice(None)) + self.position]
        return out.flatten(2).sum(2)


@pytest.fixture
def cnn(digits_cnn):
    return copy.deepcopy(digits_cnn).to(torch.float64)


@pytest.fixture
def images(digits_data):
    return digits_data[0][:6].to(torch.float64)


@pytest.mark.parametrize("method", ["saliency", "guided", "deconv"])
@pytest.mark.parametrize("target", [0, 7])
def test_output_unit_matches_captum(cnn, images, method, target, unchanged):
    with unchanged(cnn):
        ours = OURS[method](cnn, images, of=("fc", target))
    theirs = captum(method, cnn, images, target)
    assert ours.shape == images.shape
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["saliency", "guided", "deconv"])
def test_conv_channel_matches_captum(cnn, images, method):
    # conv2 is layer index 3; relu2 is 4: a channel of relu2, summed over positions
    ours = OURS[method](cnn, images, of=("relu2", 5), reduce="sum")
    theirs = captum(method, UpTo(cnn, 5), images, 5)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    one = OURS[method](cnn, images, of=("relu2", (5, 3, 9)))
    theirs_one = captum(method, UpTo(cnn, 5, position=(3, 9)), images, 5)
    torch.testing.assert_close(one, theirs_one, rtol=1e-10, atol=1e-12)


def test_reduce_mean_and_positions(cnn, images):
    total = gradient(cnn, images, of=("conv2", 2), reduce="sum")
    mean = gradient(cnn, images, of=("conv2", 2))
    torch.testing.assert_close(mean, total / (14 * 14))
    by_position = sum(gradient(cnn, images, of=("conv2", (2, i, j))) for i in range(14) for j in range(14))
    torch.testing.assert_close(by_position, total)


def test_position_gradient_stays_inside_receptive_field(cnn, images):
    from nbvis.compute.dataset import receptive_field

    grad = gradient(cnn, images, of=("pool2", (1, 2, 5)))
    (top, bottom), (left, right) = receptive_field(cnn, "pool2", (2, 5), (1, 28, 28))
    inside = torch.zeros(28, 28, dtype=torch.bool)
    inside[top:bottom, left:right] = True
    assert grad[..., ~inside].abs().max() == 0
    assert grad[..., inside].abs().max() > 0


def test_finite_differences_on_tiny_net(digits_data):
    model = nbvis.demo.tiny_net().to(torch.float64)
    x = digits_data[0][[0, 1, 20]].to(torch.float64).reshape(3, 784)
    eps = 1e-6
    for unit in (0, 1):
        grad = gradient(model, x, of=("fc2", unit))
        for sample in range(len(x)):
            steps = torch.eye(784, dtype=torch.float64) * eps
            up = model(x[sample] + steps)[:, unit]
            down = model(x[sample] - steps)[:, unit]
            numeric = (up - down) / (2 * eps)
            torch.testing.assert_close(grad[sample], numeric, rtol=1e-5, atol=1e-9)
    # the loss sensitivity too
    target = torch.tensor([0, 1, 1])
    grad = loss_gradient(model, x, target)
    for sample in range(len(x)):
        steps = torch.eye(784, dtype=torch.float64) * eps
        loss = lambda z: F.cross_entropy(model(z), target[sample].expand(len(z)), reduction="none")  # noqa: E731
        numeric = (loss(x[sample] + steps) - loss(x[sample] - steps)) / (2 * eps)
        torch.testing.assert_close(grad[sample], numeric, rtol=1e-5, atol=1e-9)


def test_gradient_wrt_layer_equals_hand_computation(digits_mlp, digits_data):
    model = copy.deepcopy(digits_mlp).to(torch.float64)
    x = digits_data[0][:5].to(torch.float64)
    w1, w2 = model.fc1.weight, model.fc2.weight
    s = torch.sigmoid(x.reshape(5, 784) @ w1.T + model.fc1.bias)
    unit = 4
    # d fc2[unit] / d sigmoid = W2[unit] for every sample
    torch.testing.assert_close(gradient(model, x, of=("fc2", unit), wrt="sigmoid"), w2[unit].expand(5, 100))
    # d fc2[unit] / d fc1 = W2[unit] * s (1 - s)
    by_fc1 = gradient(model, x, of=("fc2", unit), wrt="fc1")
    torch.testing.assert_close(by_fc1, w2[unit] * s * (1 - s))
    # d fc2[unit] / d input = (W2[unit] * s (1 - s)) @ W1, reshaped like the input
    torch.testing.assert_close(gradient(model, x, of=("fc2", unit)), (by_fc1 @ w1).reshape(x.shape))
    # d fc2[unit] / d flatten: the same numbers, shaped like the flattened layer
    torch.testing.assert_close(gradient(model, x, of=("fc2", unit), wrt="flatten"), by_fc1 @ w1)
    # a hidden unit by its own pre-activation: s (1 - s) on the diagonal
    by_own = gradient(model, x, of=("sigmoid", 7), wrt="fc1")
    expected = torch.zeros(5, 100, dtype=torch.float64)
    expected[:, 7] = s[:, 7] * (1 - s[:, 7])
    torch.testing.assert_close(by_own, expected)
    # the model itself as the unit's layer
    torch.testing.assert_close(gradient(model, x, of=(None, unit)), gradient(model, x, of=("fc2", unit)))


def test_conv_channel_wrt_earlier_layer_is_the_adjoint(cnn, images):
    # d(sum of conv2 channel c)/d(pool1) = conv_transpose of ones with that channel's filter
    c = 9
    grad = gradient(cnn, images, of=("conv2", c), wrt="pool1", reduce="sum")
    ones = torch.ones(1, 1, 14, 14, dtype=torch.float64)
    expected = F.conv_transpose2d(ones, cnn.conv2.weight[c : c + 1], padding=1)
    assert grad.shape == (6, 8, 14, 14)
    torch.testing.assert_close(grad, expected.expand(6, 8, 14, 14))


class FunctionalNet(nn.Module):
    """The same CNN with functional ReLUs (F.relu, Tensor.relu and an in-place torch.relu_)."""

    def __init__(self, seq):
        super().__init__()
        self.conv1, self.conv2, self.fc = seq.conv1, seq.conv2, seq.fc

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = self.conv2(x)
        torch.relu_(x)
        return self.fc(F.max_pool2d(x, 2).flatten(1))


def inplace_copy(seq):
    model = copy.deepcopy(seq)
    model.relu1, model.relu2 = nn.ReLU(inplace=True), nn.ReLU(inplace=True)
    return model


@pytest.mark.parametrize("method", ["guided", "deconv"])
def test_functional_and_inplace_relus(cnn, images, method):
    reference = captum(method, cnn, images, 3)
    torch.testing.assert_close(OURS[method](FunctionalNet(cnn), images, of=("fc", 3)), reference)
    inplace = inplace_copy(cnn)
    torch.testing.assert_close(OURS[method](inplace, images, of=("fc", 3)), reference)
    # a unit recorded before an in-place ReLU keeps its own (pre-ReLU) gradient
    torch.testing.assert_close(
        gradient(inplace, images, of=("conv2", 1)), gradient(cnn, images, of=("conv2", 1))
    )


def test_a_model_that_starts_with_an_inplace_relu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(3, 2))
    x = torch.tensor([[1.0, -2.0, 3.0], [-1.0, 2.0, 0.5]])
    before = x.clone()
    weight = model[1].weight.detach()
    expected = (x > 0).float() * weight[1]
    torch.testing.assert_close(gradient(model, x, of=("1", 1)), expected)
    torch.testing.assert_close(guided_backprop(model, x, of=("1", 1)), expected * (weight[1] > 0).float())
    target = torch.tensor([0, 1])
    logits = model(torch.relu(x.clone()))
    probs = torch.softmax(logits, 1) - F.one_hot(target, 2).float()
    torch.testing.assert_close(loss_gradient(model, x, target), (x > 0).float() * (probs @ weight))
    torch.testing.assert_close(x, before)  # the caller's tensor is untouched


def test_guided_maps_differ_from_plain_gradient(cnn, images):
    plain = gradient(cnn, images, of=("fc", 2))
    guided = guided_backprop(cnn, images, of=("fc", 2))
    deconv = deconvnet(cnn, images, of=("fc", 2))
    assert not torch.allclose(plain, guided) and not torch.allclose(guided, deconv)


def test_loss_gradient_matches_autograd(cnn, images):
    target = torch.tensor([0, 1, 2, 3, 4, 5])
    leaf = images.clone().requires_grad_(True)
    reference = copy.deepcopy(cnn)
    F.cross_entropy(reference(leaf), target, reduction="sum").backward()
    torch.testing.assert_close(loss_gradient(cnn, images, target), leaf.grad)
    # one class for every sample
    leaf.grad = None
    F.cross_entropy(reference(leaf), torch.full((6,), 8), reduction="sum").backward()
    torch.testing.assert_close(loss_gradient(cnn, images, 8), leaf.grad)
    # mse and a callable
    goal = torch.randn(6, 10, dtype=torch.float64)
    leaf.grad = None
    F.mse_loss(reference(leaf), goal, reduction="sum").backward()
    torch.testing.assert_close(loss_gradient(cnn, images, goal, loss="mse"), leaf.grad)
    l1 = loss_gradient(cnn, images, goal, loss=lambda out, t: (out - t).abs().sum())
    leaf.grad = None
    (reference(leaf) - goal).abs().sum().backward()
    torch.testing.assert_close(l1, leaf.grad)


def test_model_left_as_it_was_even_on_failure(digits_cnn, digits_data, unchanged):
    model = copy.deepcopy(digits_cnn).train()
    model.conv1.weight.requires_grad_(False)
    model.fc.register_forward_hook(lambda *a: None)
    x = digits_data[0][:3]
    with unchanged(model):
        gradient(model, x, of=("fc", 1))
        gradient(model, x, of=("conv2", 1), wrt="relu1")
        guided_backprop(model, x, of=("conv2", (1, 2, 2)))
        deconvnet(model, x, of=("fc", 1))
        loss_gradient(model, x, 1)
        for bad in [("fc", 10), ("conv2", (1, 14, 0))]:
            with pytest.raises(ValueError):
                gradient(model, x, of=bad)
        with pytest.raises(ValueError):
            gradient(model, x[:, :, :5], of=("fc", 1))
    assert all(p.grad is None for p in model.parameters())
    assert model.training and not model.conv1.weight.requires_grad and model.fc.weight.requires_grad


def test_train_mode_models_are_explained_in_eval_mode(digits_data):
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(784, 30), drop=nn.Dropout(0.9), relu=nn.ReLU(), fc2=nn.Linear(30, 3)))
    x = digits_data[0][:4].reshape(4, 784)
    model.train()
    first = gradient(model, x, of=("fc2", 0))
    second = gradient(model, x, of=("fc2", 0))
    torch.testing.assert_close(first, second)  # dropout off: deterministic
    assert model.training


def test_errors_are_clear(digits_cnn, digits_mlp, digits_data):
    x = digits_data[0][:2]
    with pytest.raises(ValueError, match=r"unknown layer 'conv3'.*'conv1'"):
        gradient(digits_cnn, x, of=("conv3", 0))
    with pytest.raises(ValueError, match=r"unknown layer 'nope'.*'pool2'"):
        gradient(digits_cnn, x, of=("fc", 0), wrt="nope")
    with pytest.raises(ValueError, match=r"unit 16 is out of range for layer 'conv2': it has 16 units"):
        gradient(digits_cnn, x, of=("conv2", 16))
    with pytest.raises(ValueError, match=r"element \(0, 3, 14\) is out of range for layer 'conv2'.*\(16, 14, 14\) \(axis 2: 0\.\.13\)"):
        gradient(digits_cnn, x, of=("conv2", (0, 3, 14)))
    with pytest.raises(ValueError, match=r"has 3 indices \(one sample has shape \(16, 14, 14\)\); got \(0, 3\)"):
        gradient(digits_cnn, x, of=("conv2", (0, 3)))
    with pytest.raises(ValueError, match=r"does not depend on layer 'pool2'"):
        gradient(digits_cnn, x, of=("conv2", 0), wrt="pool2")
    with pytest.raises(ValueError, match="the unit's own layer"):
        gradient(digits_cnn, x, of=("conv2", 0), wrt="conv2")
    with pytest.raises(ValueError, match="not the model's output"):
        gradient(digits_cnn, x, of=("conv2", 0), wrt="")
    with pytest.raises(TypeError, match=r"\(layer, index\)"):
        gradient(digits_cnn, x, of="fc")
    with pytest.raises(TypeError, match="a unit index is an integer"):
        gradient(digits_cnn, x, of=("fc", "three"))
    with pytest.raises(ValueError, match="reduce must be one of"):
        gradient(digits_cnn, x, of=("fc", 0), reduce="median")
    with pytest.raises(ValueError, match=r"x has shape \(2, 1, 28\): one sample with 2 channels, but its input goes into 'conv1', a Conv2d that expects 1 channels"):
        gradient(digits_cnn, x[:, :, 0], of=("fc", 0))
    with pytest.raises(TypeError, match="must hold numbers"):
        gradient(digits_cnn, [["a"]], of=("fc", 0))
    with pytest.raises(ValueError, match="no ReLU ran"):
        guided_backprop(digits_mlp, x, of=("fc2", 0))
    with pytest.raises(ValueError, match=r"target class 10 is out of range: the model has 10 classes"):
        loss_gradient(digits_cnn, x, 10)
    with pytest.raises(TypeError, match="class indices"):
        loss_gradient(digits_cnn, x, torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"one class index per sample, shape \(2,\)"):
        loss_gradient(digits_cnn, x, [1, 2, 3])
    with pytest.raises(ValueError, match="mse targets must match"):
        loss_gradient(digits_cnn, x, torch.zeros(2, 3), loss="mse")
    with pytest.raises(ValueError, match="loss must be one of"):
        loss_gradient(digits_cnn, x, 1, loss="hinge")
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        gradient(digits_cnn, x, of=("fc", 0))


def test_nan_and_inf_inputs_give_maps_not_crashes(digits_cnn, digits_mlp, digits_data):
    x = digits_data[0][:3].clone()
    x[1, 0, 4, 4] = float("nan")
    x[2, 0, 5, 5] = float("inf")
    for model, layer in ((digits_cnn, "fc"), (digits_mlp, "fc2")):
        grad = gradient(model, x, of=(layer, 0))
        assert grad.shape == x.shape
        # samples are independent: the clean one is unaffected
        torch.testing.assert_close(grad[0], gradient(model, x[:1], of=(layer, 0))[0])
        assert torch.isfinite(grad[0]).all()
    # through the sigmoid a NaN input gives a NaN map (it is reported, not hidden)
    assert torch.isnan(gradient(digits_mlp, x, of=("fc2", 0))[1]).all()


def test_works_without_grad_mode_and_with_numpy(digits_cnn, digits_data):
    x = digits_data[0][:2]
    with torch.no_grad():
        inside = gradient(digits_cnn, x, of=("fc", 5))
    torch.testing.assert_close(inside, gradient(digits_cnn, x.numpy(), of=("fc", 5)))
    assert not inside.requires_grad


@pytest.mark.parametrize("device", DEVICES)
def test_results_on_the_models_device(digits_cnn, digits_data, device):
    model = copy.deepcopy(digits_cnn).to(device)
    x = digits_data[0][:2]
    for fn in (gradient, guided_backprop, deconvnet):
        out = fn(model, x, of=("fc", 1))
        assert out.device.type == device
        torch.testing.assert_close(out.cpu(), fn(digits_cnn, x, of=("fc", 1)), rtol=1e-4, atol=1e-5)
    assert loss_gradient(model, x, 1).device.type == device


def test_public_names():
    assert nbvis.gradient is gradient and nbvis.guided_backprop is guided_backprop
    assert nbvis.deconvnet is deconvnet and nbvis.loss_gradient is loss_gradient


def test_weighted_reduce_backpropagates_a_channel_weighted_by_its_own_activation(digits_cnn, digits_data):
    """The "why" of a conv channel on this input: the gradient of sum_p a_p(x) a_p(x0) / sum_p a_p(x0)
    (positive part), checked against autograd by hand; it sits on the digit, unlike the plain sum."""
    images, _ = digits_data
    x0 = images[3]
    weighted = nbvis.gradient(digits_cnn, x0, of=("conv2", 5), reduce="weighted")
    summed = nbvis.gradient(digits_cnn, x0, of=("conv2", 5), reduce="sum")

    x = x0[None].clone().requires_grad_(True)
    seen = {}
    handle = digits_cnn.conv2.register_forward_hook(lambda m, i, o: seen.__setitem__("a", o))
    try:
        digits_cnn(x)
    finally:
        handle.remove()
    a = seen["a"][0, 5]
    w = a.detach().clamp(min=0)
    (reference,) = torch.autograd.grad((a * w).sum() / w.sum(), x)
    torch.testing.assert_close(weighted, reference[0], rtol=1e-5, atol=1e-7)

    cosine = torch.nn.functional.cosine_similarity(weighted.flatten(), summed.flatten(), dim=0)
    assert cosine < 0.95  # a different map, not a rescaled one
    ink = x0[0] > 0.2  # where the digit is

    def on_ink(g):
        g = g[0].abs()
        return float(g[ink].sum() / g.sum())

    assert on_ink(weighted) > 0.75 and on_ink(weighted) > on_ink(summed) + 0.15, (on_ink(weighted), on_ink(summed))


def test_weighted_reduce_of_a_channel_that_never_fires_is_the_mean():
    values = torch.tensor([[-1.0, -2.0, -3.0, -4.0], [0.0, 2.0, 6.0, -1.0]])
    weights = nbvis.compute.units.activation_weights(values)
    torch.testing.assert_close(weights, torch.tensor([[0.25] * 4, [0.0, 0.25, 0.75, 0.0]]))
    with pytest.raises(ValueError, match="weighted"):
        nbvis.gradient(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)), torch.zeros(1, 5, 5), of=("0", 1), reduce="weighed")


@pytest.mark.parametrize("method", ["gradient", "guided", "deconvnet"])
def test_element_maps_give_each_sample_the_map_of_its_own_element(cnn, images, method, unchanged):
    from nbvis.compute.gradients import METHODS, element_maps

    elements = [(c % 16, c % 7, (3 * c) % 7) for c in range(len(images))]  # a different (c, y, x) per sample
    passes = []
    hook = cnn.conv1.register_forward_hook(lambda *_: passes.append(1))
    with unchanged(cnn):
        maps = element_maps(cnn, images, "conv2", elements, method)
    assert len(passes) == 1  # one forward (and backward) pass for the whole batch
    hook.remove()
    for i, element in enumerate(elements):  # by hand: one call per sample, for its own element
        torch.testing.assert_close(maps[i], METHODS[method](cnn, images[i], of=("conv2", element)))
    assert maps.shape == images.shape and all(maps[i].abs().sum() > 0 for i in range(len(images)))
    with pytest.raises(ValueError, match=r"layer 'conv2' has 3 indices, in 0..\(15, 13, 13\) \(one sample has shape \(16, 14, 14\)\)"):
        element_maps(cnn, images[:2], "conv2", [(0, 0, 0), (16, 0, 0)], method)
    with pytest.raises(ValueError, match="method is one of"):
        element_maps(cnn, images[:2], "conv2", [(0, 0, 0), (1, 0, 0)], "saliency")
