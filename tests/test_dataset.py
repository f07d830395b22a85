"""Streaming top-k dataset scans and receptive fields, against brute force."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

import nbvis
from nbvis.compute.dataset import field_geometry, receptive_field, scan_top_examples, top_examples


def brute_force(model, layer, unit, data, k, reduce="max"):
    """Full forward over the whole dataset, then a full stable sort (equal scores keep dataset order)."""
    act = nbvis.capture(model, data, [layer])[layer][:, unit]
    flat = act.flatten(1) if act.dim() > 1 else act[:, None]
    score, where = flat.max(1)
    if reduce == "mean":
        score = flat.mean(1)
    values, indices = torch.sort(score, descending=True, stable=True)
    values, indices = values[:k], indices[:k]
    assert torch.equal(values, torch.topk(score, k).values)
    return values, indices, where[indices]


@pytest.mark.parametrize(
    "which,layer,unit",
    [("mlp", "fc1", 17), ("mlp", "fc2", 3), ("cnn", "conv2", 6), ("cnn", "pool1", 2), ("cnn", "fc", 9)],
)
@pytest.mark.parametrize("batch_size", [1000, 64])
def test_matches_brute_force(digits_mlp, digits_cnn, digits_data, which, layer, unit, batch_size, unchanged):
    model = digits_mlp if which == "mlp" else digits_cnn
    images = digits_data[0]
    with unchanged(model):
        result = top_examples(model, layer, unit, images, k=9, batch_size=batch_size, reduce="max")
    values, indices, where = brute_force(model, layer, unit, images, 9)
    torch.testing.assert_close(result.values, values)
    assert result.indices.tolist() == indices.tolist()
    torch.testing.assert_close(result.inputs, images[indices])
    assert result.scanned == len(images) and result.layer == layer and result.unit == unit
    if layer.startswith(("conv", "pool")):
        spatial = nbvis.capture(model, images[:1], [layer])[layer].shape[2:]
        flat = result.positions[:, 0] * spatial[1] + result.positions[:, 1]
        assert flat.tolist() == where.tolist()
    else:
        assert result.positions is None
        torch.testing.assert_close(result.patches, result.inputs)


def test_a_channel_is_ranked_by_its_mean_unless_reduce_says_otherwise(digits_cnn, digits_data):
    images = digits_data[0][:400]
    result = top_examples(digits_cnn, "conv2", 6, images, k=9, batch_size=128)
    values, indices, _ = brute_force(digits_cnn, "conv2", 6, images, 9, reduce="mean")
    torch.testing.assert_close(result.values, values)
    assert result.indices.tolist() == indices.tolist()


def test_every_kind_of_dataset_gives_the_same_answer(digits_cnn, digits_data):
    images, labels = digits_data
    images, labels = images[:300], labels[:300]
    expected = top_examples(digits_cnn, "conv1", 4, images, k=7)

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return images[i].numpy(), int(labels[i])

    class Stream(torch.utils.data.IterableDataset):  # yields batches; its length counts batches
        def __iter__(self):
            return (images[i : i + 60] for i in range(0, 300, 60))

        def __len__(self):
            return 5

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=33)
    sources = {
        "iterable dataset with a length": Stream(),
        "numpy": images.numpy(),
        "tensor dataset": torch.utils.data.TensorDataset(images, labels),
        "map-style dataset": Pairs(),
        "data loader": loader,
        "list of numpy batches": [images[i : i + 50].numpy() for i in range(0, 300, 50)],
        "generator": (images[i : i + 40] for i in range(0, 300, 40)),
    }
    for name, data in sources.items():
        got = top_examples(digits_cnn, "conv1", 4, data, k=7, batch_size=16)
        assert got.indices.tolist() == expected.indices.tolist(), name
        torch.testing.assert_close(got.values, expected.values)
        torch.testing.assert_close(got.inputs, expected.inputs)


def test_patches_are_the_input_under_the_field(digits_cnn, digits_data):
    images = digits_data[0]
    result = top_examples(digits_cnn, "conv2", 11, images, k=12, reduce="max")
    geometry = field_geometry(digits_cnn, "conv2", (1, 28, 28))
    assert result.patches.shape == (12, 1, 10, 10)
    act = nbvis.capture(digits_cnn, result.inputs, ["conv2"])["conv2"][:, 11]
    for i in range(12):
        r, c = result.positions[i].tolist()
        assert act[i, r, c] == result.values[i]
        # hand computation: start -4 + 2 * position, size 10, clipped; outside the input is zero
        padded = torch.nn.functional.pad(result.inputs[i], (4, 4, 4, 4))
        expected = padded[:, 2 * r : 2 * r + 10, 2 * c : 2 * c + 10]
        torch.testing.assert_close(result.patches[i], expected)
        (top, bottom), (left, right) = result.boxes[i].tolist()
        assert (top, bottom, left, right) == (max(0, 2 * r - 4), min(28, 2 * r + 6), max(0, 2 * c - 4), min(28, 2 * c + 6))
        assert geometry.box((r, c)) == ((top, bottom), (left, right))


def test_progress_and_generator_form(digits_cnn, digits_data, unchanged):
    images = digits_data[0][:500]
    calls = []
    top_examples(digits_cnn, "fc", 0, images, k=3, batch_size=128, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(128, 500), (256, 500), (384, 500), (500, 500)]
    calls.clear()
    top_examples(digits_cnn, "fc", 0, iter([images[:200], images[200:]]), k=3, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(200, None), (500, None)]
    # partial results are the best so far; closing the generator cancels the scan cleanly
    with unchanged(digits_cnn):
        steps = scan_top_examples(digits_cnn, "fc", 0, images, k=3, batch_size=100)
        first = next(steps)
        assert (first.done, first.total) == (100, 500)
        assert first.result.indices.tolist() == brute_force(digits_cnn, "fc", 0, images[:100], 3)[1].tolist()
        steps.close()


def test_k_larger_than_dataset_ties_and_nan(digits_cnn, digits_data):
    images = digits_data[0][:5].clone()
    result = top_examples(digits_cnn, "fc", 2, images, k=50)
    assert len(result.indices) == 5 and sorted(result.indices.tolist()) == list(range(5))
    assert (result.values[:-1] >= result.values[1:]).all()
    # equal scores keep dataset order
    zeros = torch.zeros(20, 1, 28, 28)
    assert top_examples(digits_cnn, "fc", 2, zeros, k=4, batch_size=3).indices.tolist() == [0, 1, 2, 3]
    # a NaN sample ranks last instead of first
    images[0, 0, 10, 10] = float("nan")
    result = top_examples(digits_cnn, "fc", 2, images, k=5)
    assert result.indices[-1] == 0 and result.values[-1] == -float("inf")


def test_errors(digits_cnn, digits_data):
    images = digits_data[0][:10]
    with pytest.raises(ValueError, match="positive integer"):
        top_examples(digits_cnn, "fc", 0, images, k=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        top_examples(digits_cnn, "fc", 0, images, batch_size=0)
    with pytest.raises(ValueError, match=r"unknown layer 'fc2'.*'fc'"):
        top_examples(digits_cnn, "fc2", 0, images)
    with pytest.raises(ValueError, match=r"unit 10 is out of range for layer 'fc'"):
        top_examples(digits_cnn, "fc", 10, images)
    with pytest.raises(TypeError, match="a torch Dataset or an iterable of batches, not str"):
        top_examples(digits_cnn, "fc", 0, "digits")
    with pytest.raises(TypeError, match="must be tensors, numeric arrays"):
        top_examples(digits_cnn, "fc", 0, [["a", "b"]])
    with pytest.raises(ValueError, match="empty"):
        top_examples(digits_cnn, "fc", 0, torch.zeros(0, 1, 28, 28))
    with pytest.raises(ValueError, match="no samples"):
        top_examples(digits_cnn, "fc", 0, iter([]))
    with pytest.raises(ValueError, match=r"could not run on an input of shape \(10, 1, 14, 14\)"):
        top_examples(digits_cnn, "fc", 0, images[:, :, :14, :14])

    class Ragged(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.zeros(1, 28, 28 - i)

    with pytest.raises(ValueError, match="one shape"):
        top_examples(digits_cnn, "fc", 0, Ragged())


# ---------------------------------------------------------------- receptive fields


def positive_copy(model):
    """A copy whose every path is live: max pools become average pools with the same window,
    weights are positive and biases zero. The nonzero gradient of one position is then exactly
    the set of inputs it sees."""
    model = copy.deepcopy(model).to(torch.float64)

    def swap(parent):
        for name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
            else:
                swap(child)

    swap(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(p.abs() + 0.1 if name.endswith("weight") else torch.zeros_like(p))
    return model


def gradient_box(model, layer, position, shape):
    x = torch.rand((1,) + shape, dtype=torch.float64) + 0.5
    grad = nbvis.gradient(model, x, of=(layer, (0,) + tuple(position)))[0].abs().sum(0)
    rows = torch.nonzero(grad.sum(1)).flatten()
    cols = torch.nonzero(grad.sum(0)).flatten()
    return ((int(rows.min()), int(rows.max()) + 1), (int(cols.min()), int(cols.max()) + 1))


class Residual(nn.Module):
    """A torchvision-style basic block: two 3x3 convs, a strided 1x1 downsample, in-place add."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 3, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
        self.down = nn.Conv2d(4, 3, 1, stride=2)

    def forward(self, x):
        out = self.conv2(self.relu(self.conv1(x)))
        out += self.down(x)
        return self.relu(out)


def strange_net():
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(2, 4, (3, 5), stride=(1, 2), padding=(0, 2)),
            pool1=nn.MaxPool2d(3, stride=2, padding=1),
            conv2=nn.Conv2d(4, 4, 3, dilation=2, padding="same"),
            block=Residual(),
            pool2=nn.AvgPool2d(2),
        )
    )


def test_receptive_fields_of_the_demo_cnn_by_hand(digits_cnn):
    expected = {"conv1": (5, 1, -2), "relu1": (5, 1, -2), "pool1": (6, 2, -2), "conv2": (10, 2, -4), "pool2": (12, 4, -4)}
    for layer, (size, jump, start) in expected.items():
        g = field_geometry(digits_cnn, layer, (1, 28, 28))
        assert (g.size, g.jump, g.start) == ((size, size), (jump, jump), (start, start)), layer
    assert receptive_field(digits_cnn, "pool2", (0, 0), (1, 28, 28)) == ((0, 8), (0, 8))
    assert receptive_field(digits_cnn, "pool2", (6, 3), (1, 28, 28)) == ((20, 28), (8, 20))
    dense = field_geometry(digits_cnn, "fc", (1, 28, 28))
    assert dense.whole and receptive_field(digits_cnn, "fc", (), (1, 28, 28)) == ((0, 28), (0, 28))
    assert field_geometry(digits_cnn, "conv1", (1, 40, 36)).layer_spatial == (40, 36)


@pytest.mark.parametrize("layer", ["conv1", "pool1", "conv2", "block.conv1", "block", "pool2"])
def test_receptive_fields_match_gradients(layer):
    torch.manual_seed(0)
    model = strange_net()
    reference = positive_copy(model)
    shape = (2, 37, 45)
    spatial = nbvis.capture(model, torch.zeros((1,) + shape), [layer])[layer].shape[2:]
    for position in {(0, 0), (spatial[0] - 1, spatial[1] - 1), (spatial[0] // 2, spatial[1] // 3), (1, spatial[1] - 2)}:
        assert receptive_field(model, layer, position, shape) == gradient_box(reference, layer, position, shape), position


def test_receptive_field_demo_cnn_matches_gradients(digits_cnn):
    reference = positive_copy(digits_cnn)
    for layer in ("conv1", "pool1", "conv2", "pool2"):
        for position in [(0, 0), (3, 5), (6, 6)]:
            assert receptive_field(digits_cnn, layer, position, (1, 28, 28)) == gradient_box(
                reference, layer, position, (1, 28, 28)
            )


def test_several_layers_from_one_trace(digits_cnn):
    from nbvis.compute.dataset import field_geometries

    names = ["pool2", "conv1", "fc", ""]
    together = field_geometries(digits_cnn, names, (1, 28, 28))
    assert list(together) == names
    for name in names:
        assert together[name] == field_geometry(digits_cnn, name, (1, 28, 28)), name
    assert together[""].whole and together["fc"].whole


def test_one_dimensional_convolutions():
    model = nn.Sequential(nn.Conv1d(1, 2, 4, stride=3), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(2, 2, 3))
    g = field_geometry(model, "3", (1, 50))
    # size 4 -> pool: 4 + 1*3 = 7, jump 6 -> conv 3: 7 + 2*6 = 19
    assert (g.size, g.jump, g.start) == ((19,), (6,), (0,))
    assert receptive_field(model, "3", (2,), (1, 50)) == ((12, 31),)


def test_receptive_field_errors(digits_cnn):
    with pytest.raises(ValueError, match=r"out of range for positions of shape \(14, 14\)"):
        receptive_field(digits_cnn, "conv2", (14, 0), (1, 28, 28))
    with pytest.raises(ValueError, match="has 2 indices"):
        receptive_field(digits_cnn, "conv2", (1,), (1, 28, 28))
    with pytest.raises(ValueError, match="has 0 indices"):
        receptive_field(digits_cnn, "fc", (1, 1), (1, 28, 28))
    with pytest.raises(ValueError, match="without the batch axis"):
        field_geometry(digits_cnn, "conv2", ())
    with pytest.raises(ValueError, match="unknown layer"):
        field_geometry(digits_cnn, "conv9", (1, 28, 28))
    with pytest.raises(ValueError, match=r"could not run on an input of shape \(1, 3, 28, 28\)"):
        field_geometry(digits_cnn, "conv2", (3, 28, 28))


def test_public_name():
    assert nbvis.top_examples is top_examples
