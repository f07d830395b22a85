"""The contract of nbvis.compute.units: one meaning of layer, unit and sample in every function and view.

Each test is one finding of the contract issue: it failed before the contract existed."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
import traitlets
from torch import nn

import nbvis
from nbvis.compute import units
from nbvis.compute.dataset import top_examples
from nbvis.compute.optimize import OptimizationRun, unit


def mlp(flatten=False):
    torch.manual_seed(0)
    layers = [nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)]
    return nn.Sequential(*([nn.Flatten()] if flatten else []), *layers)


class Reused(nn.Module):
    """One ReLU instance called twice, on 10 and then on 3 units (Captum's BasicModelWithReusedModules)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.a, self.b, self.act = nn.Linear(4, 10), nn.Linear(10, 3), nn.ReLU()

    def forward(self, x):
        return self.act(self.b(self.act(self.a(x))))


# ------------------------------------------------------------------------------------ samples


def test_a_batch_of_one_is_one_sample_in_the_heatmap():
    model = mlp()
    view = nbvis.ActivationHeatmap(model, torch.rand(1, 784), labels=[str(i) for i in range(10)])
    assert view.labels == [str(i) for i in range(10)]
    assert view.activations["2"].shape == (10,)
    view.input = torch.rand(784)  # one sample after a batch of one
    assert view.input.shape == (784,)


@pytest.mark.parametrize("with_dataset", [False, True])
def test_a_batch_of_one_image_keeps_drawing(with_dataset):
    images = torch.rand(5, 1, 28, 28)
    view = nbvis.ActivationHeatmap(mlp(flatten=True), images[:1], dataset=images if with_dataset else None)
    assert view.can_draw
    assert view.input.shape == (1, 28, 28)
    assert view._layout[0]["kind"] == "image"


def test_one_sample_of_a_sequence_model_is_not_a_batch():
    model = nn.Sequential(nn.Linear(32, 100))
    x = torch.randn(8, 32)
    view = nbvis.ActivationHeatmap(model, x)
    np.testing.assert_allclose(view.activations["0"], model(x).detach().numpy(), rtol=1e-6)
    assert view._units("0") == 100  # units run along the feature axis
    view.selected = ("0", 99)
    expected = torch.autograd.functional.jacobian(lambda v: model(v)[:, 99].mean(), x)
    np.testing.assert_allclose(view.gradient_map, expected.numpy(), rtol=1e-5, atol=1e-7)


def test_the_sample_rule_needs_no_trial_forward_pass():
    calls = []
    model = mlp()
    model.register_forward_pre_hook(lambda m, a: calls.append(tuple(a[0].shape)))
    nbvis.ActivationHeatmap(model, torch.rand(1, 784))
    assert calls == [(1, 784)]
    calls.clear()
    nbvis.ActivationHeatmap(model, torch.rand(784))
    assert calls == [(1, 784)]


def test_compute_functions_take_one_unbatched_sample():
    model = nn.Sequential(nn.Linear(784, 10))
    x = torch.rand(784)
    acts = nbvis.capture(model, x)
    torch.testing.assert_close(acts["0"], model(x).detach())
    grad = nbvis.gradient(model, x, of=("0", 3))
    torch.testing.assert_close(grad, model[0].weight[3].detach())
    result = top_examples(model, "0", 3, x, k=1)
    assert result.indices.tolist() == [0]


def test_embedding_inputs_stay_token_ids():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 2))
    ids = torch.tensor([1, 2, 3])
    acts = nbvis.capture(model, ids)
    torch.testing.assert_close(acts["1"], model(ids).detach())
    view = nbvis.ActivationHeatmap(model, ids)
    assert view.layers == ["0", "1"] and view.input.dtype == torch.long
    assert view._layout[0]["kind"] == "tokens"  # drawn as their ids, not as colors
    square = nbvis.ActivationHeatmap(model, torch.arange(64) % 20)  # 64 ids are no 8 x 8 picture
    assert square._layout[0]["kind"] == "tokens" and not square.can_draw
    view.selected = ("1", 1)
    assert "token ids" in view.grad_caption
    grad = nbvis.gradient(model, ids[None], of=("1", 1), wrt="0")
    torch.testing.assert_close(grad[0], model[1].weight[1].detach().expand(3, 8) / 3)
    with pytest.raises(TypeError, match="embedding '0', which takes token ids"):
        nbvis.capture(model, torch.tensor([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="token ids.*wrt= the embedding layer"):
        nbvis.gradient(model, ids, of=("1", 1))


class Recurrent(nn.Module):
    """A recurrent classifier: the LSTM (or GRU) defined first reads the input, the head reads its last step."""

    def __init__(self, cell=nn.LSTM, batch_first=True):
        super().__init__()
        torch.manual_seed(0)
        self.rnn, self.head = cell(5, 8, batch_first=batch_first), nn.Linear(8, 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1] if self.rnn.batch_first else out[-1])


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_a_recurrent_model_takes_steps_by_features_as_one_sample(cell):
    model = Recurrent(cell).eval()
    x = torch.randn(4, 7, 5, generator=torch.Generator().manual_seed(1))
    for sample in (x[0], x[:1]):  # one sample, or a batch of one: the heatmap shows the same
        view = nbvis.ActivationHeatmap(model, sample)
        assert view.input.shape == (7, 5)
        np.testing.assert_allclose(view.activations["rnn"], model.rnn(x[:1])[0][0].detach().numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(view.activations["head"], model(x[:1])[0].detach().numpy(), rtol=1e-5, atol=1e-7)
        view.selected = ("head", 2)
        expected = torch.autograd.functional.jacobian(lambda v: model(v[None])[0, 2], x[0])
        np.testing.assert_allclose(np.asarray(view.gradient_map).reshape(7, 5), expected.numpy(), rtol=1e-5, atol=1e-7)
        view.close()
    acts = nbvis.capture(model, x[0])  # a compute function: one sample comes back without the batch axis
    torch.testing.assert_close(acts["head"], model(x[:1])[0].detach())
    torch.testing.assert_close(nbvis.capture(model, x)["head"], model(x).detach())
    with pytest.raises(ValueError, match=r"a batch of 4 inputs; pass one sample"):
        nbvis.ActivationHeatmap(model, x)
    with pytest.raises(ValueError, match=r"\(7, 4\).*'rnn' \(\w+\), which expects 5 features a step"):
        nbvis.capture(model, x[0, :, :4])
    time_major = Recurrent(cell, batch_first=False).eval()
    with pytest.raises(ValueError, match=r"batch_first=False.*build it with batch_first=True.*out\[:, -1\] for out\[-1\]"):
        nbvis.ActivationHeatmap(time_major, x[0])
    steps = x.transpose(0, 1)  # (7, 4, 5): a compute function takes the batch as the model does
    torch.testing.assert_close(nbvis.capture(time_major, steps)["head"], time_major(steps).detach())


class RecurrentAfter(nn.Module):
    """A recurrent layer defined before the layer that reads the input: an embedding of token ids,
    or an input projection."""

    def __init__(self, first):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.GRU(16, 8, batch_first=True)
        self.first = nn.Embedding(50, 16) if first == "embedding" else nn.Linear(5, 16)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        out, _ = self.rnn(self.first(x))
        return self.head(out[:, -1])


class Seq2Seq(nn.Module):
    """An encoder LSTM over float features, defined before the decoder's embedding of token ids."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.LSTM(5, 8, batch_first=True)
        self.decoder = nn.Embedding(20, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        out, _ = self.encoder(x)
        return self.head(out[:, -1] + self.decoder.weight[0])


def test_a_recurrent_encoder_takes_its_features_beside_a_decoders_embedding():
    model = Seq2Seq().eval()
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
    view = nbvis.ActivationHeatmap(model, x)
    assert view.input.dtype == torch.float32 and view.input.shape == (7, 5)
    np.testing.assert_allclose(view.activations["head"], model(x[None])[0].detach().numpy(), rtol=1e-5, atol=1e-7)
    view.close()
    torch.testing.assert_close(nbvis.capture(model, x[None])["head"], model(x[None]).detach())


@pytest.mark.parametrize("first", ["embedding", "projection"])
def test_a_recurrent_layer_defined_first_does_not_take_the_input_from_the_layer_that_reads_it(first):
    model = RecurrentAfter(first).eval()
    x = torch.randint(0, 50, (7,)) if first == "embedding" else torch.randn(7, 5)
    view = nbvis.ActivationHeatmap(model, x)
    assert view.input.dtype == (torch.long if first == "embedding" else torch.float32)
    np.testing.assert_allclose(view.activations["head"], model(x[None])[0].detach().numpy(), rtol=1e-5, atol=1e-7)
    view.close()
    torch.testing.assert_close(nbvis.capture(model, x[None])["head"], model(x[None]).detach())


# ------------------------------------------------------------------------------------ values at the moment


def test_in_place_ops_after_a_layer_do_not_change_the_objective():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(inplace=True))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([-1.0, 0.0, 2.0]))
    assert nbvis.maximize(model, ("0", 0), (4,), steps=1).history.tolist() == [[-1.0]]
    viewer = nbvis.OptimizationViewer(model, ("0", 0), (4,), steps=2, starts=1, regularizers="none", autostart=False)
    viewer.start().wait(30)
    assert viewer.history[:, 0].tolist() == [-1.0, -1.0]
    viewer.close()


class ResidualBlock(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.conv(x)
        out += x  # changes conv's output after it was produced
        return self.relu(out)


def test_a_residual_added_in_place_does_not_change_the_layer_value():
    model = ResidualBlock()
    x = torch.randn(1, 2, 5, 5)
    true = model.conv(x).detach()
    run = OptimizationRun(model, ("conv", 1), (2, 5, 5), init=x)
    step = run.step()
    assert step.values[0] == pytest.approx(float(true[0, 1].mean()), abs=1e-6)
    assert nbvis.capture(model, x, ["conv"])["conv"].equal(true)


# ------------------------------------------------------------------------------------ layers


def test_a_reused_module_exposes_every_call_under_one_naming(unchanged):
    model = Reused()
    x = torch.randn(6, 4)
    first = torch.relu(model.a(x)).detach()
    second = torch.relu(model.b(first)).detach()
    with unchanged(model):
        acts = nbvis.capture(model, x)
        assert list(acts) == ["a", "act", "b", "act#2"]
        torch.testing.assert_close(acts["act"], first)
        torch.testing.assert_close(acts["act#2"], second)
        assert list(nbvis.capture(model, x, ["act#1"])) == ["act"]  # call 1 is the plain name
        with pytest.raises(ValueError, match=r"unit 50 is out of range for layer 'act': it has 10 units"):
            nbvis.gradient(model, x, of=("act", 50))
        ours = nbvis.gradient(model, x, of=("act#2", 2))
        xs = x.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(torch.relu(model.b(torch.relu(model.a(xs))))[:, 2].sum(), xs)
        torch.testing.assert_close(ours, expected)
        grad_first = nbvis.gradient(model, x, of=("act", 4), wrt="a")
        assert grad_first.shape == (6, 10)
        assert nbvis.guided_backprop(model, x, of=("act#2", 2)).shape == x.shape
        top = top_examples(model, "act#2", 2, x, k=3)
        assert top.indices.tolist() == torch.sort(second[:, 2], descending=True, stable=True).indices[:3].tolist()
        history = nbvis.maximize(model, ("act#2", 2), (4,), steps=3, init=x[0]).history
    run = OptimizationRun(model, ("act#2", 2), (4,), init=x[0])
    assert run.evaluate()[0] == pytest.approx(float(second[0, 2]), abs=1e-6)
    assert history.shape == (3, 1)
    view = nbvis.ActivationHeatmap(model, x[0])
    assert view.layers == ["a", "act", "b", "act#2"]
    view.selected = ("act#2", 1)
    assert view.selected == ("act#2", 1)
    with pytest.raises(ValueError, match=r"call 3 of 'act', which ran 2 time"):
        nbvis.capture(model, x, ["act#3"])


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.att(x, x, x)[0])


def test_tuple_returning_modules_work_as_of_and_wrt():
    model = Attention().eval()
    x = torch.randn(2, 5, 8)
    grad = nbvis.gradient(model, x, of=("att", (1, 3)))
    xs = x.clone().requires_grad_(True)
    model.att(xs, xs, xs)[0][:, 1, 3].sum().backward()
    torch.testing.assert_close(grad, xs.grad)
    wrt = nbvis.gradient(model, x, of=("fc", (0, 1)), wrt="att")
    expected = torch.zeros(2, 5, 8)
    expected[:, 0] = model.fc.weight[1].detach()
    torch.testing.assert_close(wrt, expected)
    weights = nbvis.capture(model, x, ["att[1]"])["att[1]"]
    torch.testing.assert_close(weights, model.att(x, x, x)[1].detach())


Pair = collections.namedtuple("Pair", "logits hidden")


class DictOut(nn.Module):
    def __init__(self, kind):
        super().__init__()
        torch.manual_seed(4)
        self.fc = nn.Linear(4, 3)
        self.kind = kind

    def forward(self, x):
        y = self.fc(x)
        if self.kind == "dict":
            return {"hidden": x, "logits": y}
        if self.kind == "namedtuple":
            return Pair(y, x)
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(logits=y, hidden_states=(x,))


@pytest.mark.parametrize("kind", ["dict", "namedtuple", "modeloutput"])
def test_dict_namedtuple_and_model_output_resolve_to_logits(kind):
    model = DictOut(kind)
    x = torch.randn(2, 4)
    assert nbvis.capture(model, x, [""])[""].equal(model.fc(x).detach())
    grad = nbvis.gradient(model, x, of=(None, 1))
    torch.testing.assert_close(grad, model.fc.weight[1].detach().expand(2, 4))
    view = nbvis.ActivationHeatmap(model, x[0], labels=["a", "b", "c"])
    assert view.output_layer == "fc"
    assert nbvis.maximize(model, (None, 2), (4,), steps=2).history.shape == (2, 1)


def test_a_module_named_output_does_not_collide_with_the_model_output():
    class Named(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(5)
            self.output = nn.Linear(4, 3)

        def forward(self, x):
            return self.output(x) * 2

    model = Named()
    x = torch.randn(4)
    view = nbvis.ActivationHeatmap(model, x)
    assert view.layers == ["output", ""]
    view.selected = ("output", 1)
    assert view.selected == ("output", 1)
    view.selected = (None, 1)
    assert view.selected == ("", 1)
    np.testing.assert_allclose(view.gradient_map, 2 * model.output.weight[1].detach().numpy(), rtol=1e-6)
    acts = nbvis.capture(model, x, ["output", ""])
    torch.testing.assert_close(acts[""], 2 * acts["output"])


# ------------------------------------------------------------------------------------ units


@pytest.mark.parametrize("bad,error,message", [
    (-1, ValueError, r"unit -1 is out of range for layer '0': it has 10 units \(0..9\)"),
    (1.5, TypeError, r"a unit index is an integer, not 1\.5 \(float\)"),
    (True, TypeError, r"a unit index is an integer, not a bool \(True\)"),
])
def test_one_rule_for_negative_bool_and_float_units(bad, error, message):
    model = nn.Sequential(nn.Linear(6, 10))
    x = torch.randn(3, 6)
    with pytest.raises(error, match=message):
        nbvis.gradient(model, x, of=("0", bad))
    with pytest.raises(error, match=message):
        top_examples(model, "0", bad, x)
    with pytest.raises(error, match=message):
        nbvis.maximize(model, unit("0", bad), (6,), steps=1)
    view = nbvis.ActivationHeatmap(model, x[0])
    with pytest.raises(traitlets.TraitError, match=message):
        view.selected = ("0", bad)
    grid = nbvis.WeightGrid(model, "0", (6,))
    with pytest.raises(traitlets.TraitError, match=message.replace("'0'", "'0'")):
        grid.selected = bad
    assert units.check_index(np.int64(9), 10) == 9 and units.check_index(torch.tensor(2), 10) == 2


def test_one_spelling_of_a_position_and_one_reduction():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU())
    x = torch.randn(1, 1, 12, 12)
    act = model(x).detach()
    run = OptimizationRun(model, ("1", (5, 3, 9)), (1, 12, 12), init=x[0])
    alias = OptimizationRun(model, ("1", 5, (3, 9)), (1, 12, 12), init=x[0])
    assert run.evaluate()[0] == alias.evaluate()[0] == pytest.approx(float(act[0, 5, 3, 9]))
    torch.testing.assert_close(nbvis.gradient(model, x, of=("1", (5, 3, 9))), nbvis.gradient(model, x, of=("1", 5, (3, 9))))
    # a channel is its mean over positions in gradient, maximize and top_examples alike
    channel = OptimizationRun(model, ("1", 5), (1, 12, 12), init=x[0]).evaluate()[0]
    assert channel == pytest.approx(float(act[0, 5].mean()), rel=1e-5)
    assert float(top_examples(model, "1", 5, x, k=1).values[0]) == pytest.approx(float(act[0, 5].mean()), rel=1e-5)
    xs = x.clone().requires_grad_(True)
    model(xs)[0, 5].mean().backward()
    torch.testing.assert_close(nbvis.gradient(model, x, of=("1", 5)), xs.grad)
    torch.testing.assert_close(nbvis.gradient(model, x, of=("1", 5), reduce="sum"), xs.grad * 100)
    result = nbvis.maximize(model, ("1", 5), (1, 12, 12), steps=1)
    assert result.images.shape == (1, 12, 12, 1)  # a property, as everywhere


def test_channels_last_and_token_layers_select_along_the_feature_axis():
    class ChannelsLast(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(7)
            self.conv = nn.Conv2d(3, 4, 1)
            self.norm = nn.LayerNorm(4)
            self.fc = nn.Linear(4, 5)

        def forward(self, x):
            return self.fc(self.norm(self.conv(x).permute(0, 2, 3, 1)))

    model = ChannelsLast().eval()
    x = torch.randn(2, 3, 6, 7)
    acts = nbvis.capture(model, x, ["conv", "norm", "fc"])
    out = model(x).detach()
    xs = x.clone().requires_grad_(True)
    model(xs)[..., 4].mean(dim=(1, 2)).sum().backward()
    torch.testing.assert_close(nbvis.gradient(model, x, of=("fc", 4)), xs.grad)
    assert top_examples(model, "fc", 4, x, k=2).values.tolist() == pytest.approx(
        torch.sort(out[..., 4].mean((1, 2)), descending=True).values.tolist())
    assert acts["norm"].shape == (2, 6, 7, 4)
    run = OptimizationRun(model, ("norm", 3), (3, 6, 7), init=x[0])
    assert run.evaluate()[0] == pytest.approx(float(acts["norm"][0, ..., 3].mean()), abs=1e-6)


# ------------------------------------------------------------------------------------ views


class Shortcut(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(8)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.shortcut = nn.Conv2d(1, 4, 1)
        self.act = nn.ReLU()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 3))

    def forward(self, x):
        return self.head(self.act(self.conv(x) + self.shortcut(x)))


def test_the_preactivation_redirect_needs_exactly_one_module_output():
    model = Shortcut()
    data = torch.rand(6, 1, 8, 8)
    explorer = nbvis.Explorer(model, data, steps=2, starts=1)
    try:
        assert explorer.weighted_layer("act") is None
        assert explorer._objective("act", 2) == ("act", 2)
        explorer.selected = ("act", 2)
        assert explorer.grid is None
        assert explorer.optimizer.run.objective.description == "act[2]"
    finally:
        explorer.close()
    plain = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))
    explorer = nbvis.Explorer(plain, data, steps=2, starts=1)
    try:
        assert explorer.weighted_layer("1") == "0"
        assert explorer._objective("1", 2) == ("0", 2)
    finally:
        explorer.close()


def test_weight_grid_reads_conv_transpose_filters():
    torch.manual_seed(9)
    model = nn.Sequential(nn.ConvTranspose2d(3, 5, 3))
    grid = nbvis.WeightGrid(model, "0")
    assert grid.n_units == 5
    assert len(grid.tiles()) == 5
    from nbvis.compute.weights import layer_tiles

    tiles = layer_tiles(model, "0")
    torch.testing.assert_close(tiles.filters, model[0].weight.detach().transpose(0, 1))
    x = torch.zeros(1, 3, 1, 1)
    x[0, 2] = 1.0  # one input channel at one pixel scatters that channel's slice of every filter
    torch.testing.assert_close((model(x) - model[0].bias[:, None, None]).detach()[0], tiles.filters[:, 2])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_work_in_every_view(dtype):
    torch.manual_seed(10)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).to(dtype)
    result = nbvis.maximize(model, ("0", 1), (1, 8, 8), steps=2)
    assert result.history.shape == (2, 1) and result.images.dtype == np.uint8
    viewer = nbvis.OptimizationViewer(model, ("0", 1), (1, 8, 8), steps=2, starts=1, autostart=False)
    viewer.start().wait(60)
    assert viewer.images.shape == (1, 8, 8, 1) and viewer.history.shape == (2, 1)
    viewer.close()
    view = nbvis.ActivationHeatmap(model, torch.rand(1, 8, 8))
    view.selected = ("0", 2)
    assert view.activations["3"].shape == (4,) and view.gradient_map.shape == (1, 8, 8)
