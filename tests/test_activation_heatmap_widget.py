"""The ActivationHeatmap widget in Python: activations, inputs from every source, gradients, top examples."""

from __future__ import annotations

import copy
import gc
import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import traitlets
from ipywidgets.widgets.widget import _remove_buffers
from PIL import Image

import nbvis
from nbvis._arrays import unpack
from nbvis.compute.dataset import field_geometry, top_examples


def live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inspecting some deprecated torch objects warns
        return sum(isinstance(o, torch.Tensor) for o in gc.get_objects())


def browser_sends(widget, content, data: bytes):
    """What the view does: a custom message with one binary buffer."""
    widget._handle_custom_msg(content, [memoryview(data)])


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def mlp_view(digits_mlp, digits_data):
    return nbvis.ActivationHeatmap(digits_mlp, digits_data[0][0], labels=nbvis.demo.DIGIT_LABELS)


def test_activations_equal_a_manual_forward(digits_mlp, digits_data, unchanged):
    x = digits_data[0][7]
    with unchanged(digits_mlp):
        view = nbvis.ActivationHeatmap(digits_mlp, x)
    flat = x.reshape(784)
    pre = digits_mlp.fc1.weight @ flat + digits_mlp.fc1.bias
    hidden = torch.sigmoid(pre)
    logits = digits_mlp.fc2.weight @ hidden + digits_mlp.fc2.bias
    acts = view.activations
    assert view.layers == ["flatten", "fc1", "sigmoid", "fc2"]
    np.testing.assert_allclose(acts["flatten"], flat.numpy())
    np.testing.assert_allclose(acts["fc1"], pre.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(acts["sigmoid"], hidden.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["fc2"], logits.detach().numpy(), rtol=1e-5, atol=1e-5)
    # what the browser gets is exactly these numbers
    for name, packed in view._acts.items():
        np.testing.assert_array_equal(unpack(packed), acts[name])


def test_conv_activations_and_layout(digits_cnn, digits_data):
    x = digits_data[0][3]
    view = nbvis.ActivationHeatmap(digits_cnn, x)
    conv1 = F.conv2d(x[None], digits_cnn.conv1.weight, digits_cnn.conv1.bias, padding=2)[0]
    np.testing.assert_allclose(view.activations["conv1"], conv1.detach().numpy(), rtol=1e-5, atol=1e-5)
    pooled = F.max_pool2d(F.relu(conv1), 2)
    np.testing.assert_allclose(view.activations["pool1"], pooled.detach().numpy(), rtol=1e-5, atol=1e-5)
    layout = {entry["name"]: entry for entry in view._layout}
    assert layout["input"]["kind"] == "image" and layout["input"]["image"] == [1, 28, 28]
    assert layout["conv2"]["kind"] == "conv" and layout["conv2"]["maps"] == [14, 14] and layout["conv2"]["units"] == 16
    assert layout["conv2"]["field"] == field_geometry(digits_cnn, "conv2", (1, 28, 28)).to_dict()
    assert layout["fc"]["kind"] == "bars" and layout["fc"]["output"]
    assert "field" not in layout["fc"]  # dense units see the whole input
    assert layout["flatten"]["kind"] == "dense" and layout["flatten"]["units"] == 784


def test_arrays_cross_as_binary_buffers(mlp_view):
    state, paths, buffers = _remove_buffers(mlp_view.get_state())
    assert {("_acts", "fc1", "data"), ("_acts", "fc2", "data"), ("_input", "data")} <= {tuple(p) for p in paths}
    assert all(isinstance(b, (bytes, memoryview)) for b in buffers)
    sizes = {tuple(p): len(b) for p, b in zip(paths, buffers)}
    assert sizes[("_acts", "fc1", "data")] == 100 * 4 and sizes[("_input", "data")] == 784 * 4
    assert state["_acts"]["fc2"]["shape"] == [10]


def test_output_of_a_model_without_a_final_leaf_is_shown():
    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) + x  # the output comes from no module

    model = Residual()
    x = torch.arange(4.0)
    view = nbvis.ActivationHeatmap(model, x, labels=list("abcd"))
    assert view.layers == ["fc", ""]
    np.testing.assert_allclose(view.activations[""], (model.fc(x) + x).detach().numpy(), rtol=1e-6)
    assert view._layout[-1]["kind"] == "bars" and view.labels == ["a", "b", "c", "d"]
    assert view._layout[0]["kind"] == "dense"  # 4 features are not an image


def test_input_is_settable_and_bad_inputs_leave_the_view_usable(mlp_view, digits_data, digits_mlp, unchanged):
    images = digits_data[0]
    with unchanged(digits_mlp):
        mlp_view.input = images[4:5]  # a batch of one works too
        torch.testing.assert_close(mlp_view.input, images[4])
        before = mlp_view.activations
        with pytest.raises(ValueError, match=r"x has shape \(1, 28, 14\); expected \(1, 28, 28\) \(one sample\) or \(1, 1, 28, 28\) \(a batch of one\)"):
            mlp_view.input = images[4, :, :, :14]
        assert "ValueError" in mlp_view.error and "(1, 28, 14)" in mlp_view.error
        with pytest.raises(TypeError, match="must hold numbers"):
            mlp_view.input = np.array([["a"] * 28] * 28)
        for name, values in mlp_view.activations.items():  # nothing changed
            np.testing.assert_array_equal(values, before[name])
        mlp_view.input = (images[9].numpy() * 255).astype(np.uint8)  # integer pixels are converted
        assert mlp_view.error == ""
        np.testing.assert_allclose(mlp_view.activations["flatten"], (images[9].numpy() * 255).astype(np.uint8).reshape(784))


def test_nan_and_inf_inputs_are_shown_not_crashing(mlp_view, digits_data):
    x = digits_data[0][0].clone()
    x[0, 3, 3] = float("nan")
    x[0, 10, 10] = float("inf")
    mlp_view.selected = ("fc2", 1)
    mlp_view.input = x
    assert mlp_view.error == ""
    assert np.isnan(unpack(mlp_view._input)[0, 3, 3]) and np.isinf(unpack(mlp_view._input)[0, 10, 10])
    assert np.isnan(mlp_view.activations["fc1"]).any()
    assert mlp_view.gradient_map is not None and mlp_view.gradient_map.shape == (1, 28, 28)


def test_construction_errors(digits_mlp, digits_data):
    images = digits_data[0]
    with pytest.raises(ValueError, match=r"labels has 3 names; the model's output has 10 units"):
        nbvis.ActivationHeatmap(digits_mlp, images[0], labels=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"unknown layer 'fc3'.*'fc2'"):
        nbvis.ActivationHeatmap(digits_mlp, images[0], layers=["fc1", "fc3"])
    with pytest.raises(ValueError, match=r"x has shape \(5, 1, 28, 28\): a batch of 5 inputs"):
        nbvis.ActivationHeatmap(digits_mlp, images[:5])
    with pytest.raises(ValueError, match=r"x has shape \(1, 20, 20\) \(400 values\); its input goes into 'fc1', a Linear layer that expects 784 features"):
        nbvis.ActivationHeatmap(digits_mlp, torch.zeros(1, 20, 20))
    with pytest.raises(TypeError, match="needs an input x"):
        nbvis.ActivationHeatmap(digits_mlp)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        nbvis.ActivationHeatmap("model", images[0])
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        nbvis.ActivationHeatmap(digits_mlp, images[0], colormap="jet")
    with pytest.raises(TypeError, match="dataset must be"):
        nbvis.ActivationHeatmap(digits_mlp, images[0], dataset="digits")


def test_chosen_layers_only(digits_cnn, digits_data):
    view = nbvis.ActivationHeatmap(digits_cnn, digits_data[0][0], layers=["conv2", digits_cnn.fc])
    assert view.layers == ["conv2", "fc"]
    assert [e["name"] for e in view._layout] == ["input", "conv2", "fc"]


def test_selecting_a_unit_shows_its_gradient(mlp_view, digits_mlp, digits_cnn, digits_data, unchanged):
    x = digits_data[0][0]
    with unchanged(digits_mlp):
        mlp_view.set_state({"selected": ["fc2", 3]})  # what the browser sends on a click
    assert mlp_view.selected == ("fc2", 3)
    expected = nbvis.gradient(digits_mlp, x[None], of=("fc2", 3))[0]
    np.testing.assert_allclose(mlp_view.gradient_map, expected.numpy())
    np.testing.assert_array_equal(unpack(mlp_view._grad), mlp_view.gradient_map)
    assert mlp_view.grad_caption == "gradient of fc2[3] over the input"
    mlp_view.wrt = "sigmoid"
    np.testing.assert_allclose(mlp_view.gradient_map, digits_mlp.fc2.weight[3].detach().numpy(), rtol=1e-6)
    # selecting a layer at or before `wrt` falls back to the input
    mlp_view.selected = ("fc1", 5)
    assert mlp_view.wrt == "input" and mlp_view.gradient_map.shape == (1, 28, 28)
    # the map follows the input
    mlp_view.input = digits_data[0][2]
    np.testing.assert_allclose(
        mlp_view.gradient_map, nbvis.gradient(digits_mlp, digits_data[0][2:3], of=("fc1", 5))[0].numpy()
    )
    with pytest.raises(traitlets.TraitError, match=r"unit 100 is out of range for layer 'fc1': it has 100 units"):
        mlp_view.selected = ("fc1", 100)
    with pytest.raises(traitlets.TraitError, match="unknown layer 'conv1'"):
        mlp_view.selected = ("conv1", 0)
    with pytest.raises(traitlets.TraitError, match="wrt is 'input' or one of the shown layers"):
        mlp_view.wrt = "nope"
    # guided backprop needs ReLUs: a clear error in the view, and the view keeps working
    with pytest.raises(ValueError, match="no ReLU ran"):
        mlp_view.method = "guided"
    assert "no ReLU ran" in mlp_view.error
    mlp_view.method = "gradient"
    assert mlp_view.error == "" and mlp_view.gradient_map is not None

    cnn_view = nbvis.ActivationHeatmap(digits_cnn, x, method="deconvnet")
    cnn_view.selected = ("conv2", 7)
    np.testing.assert_allclose(
        cnn_view.gradient_map, nbvis.deconvnet(digits_cnn, x[None], of=("conv2", 7), reduce="weighted")[0].numpy()
    )
    cnn_view.wrt = "pool1"
    assert cnn_view.gradient_map.shape == (8, 14, 14)


def test_dataset_slider_and_sources(digits_mlp, digits_data):
    images, labels = digits_data
    view = nbvis.ActivationHeatmap(digits_mlp, dataset=(images, labels), labels=nbvis.demo.DIGIT_LABELS)
    assert view.dataset_size == len(images) and view.input_caption == "dataset #0 (label 0)"
    view.set_state({"index": 42})  # the slider
    torch.testing.assert_close(view.input, images[42])
    assert view.input_caption == f"dataset #42 (label {int(labels[42])})"
    with pytest.raises(traitlets.TraitError, match=r"index must be in 0..1796"):
        view.index = 1797
    by_array = nbvis.ActivationHeatmap(digits_mlp, dataset=images[:10].numpy())
    by_array.index = 3
    torch.testing.assert_close(by_array.input, images[3])
    by_dataset = nbvis.ActivationHeatmap(digits_mlp, dataset=torch.utils.data.TensorDataset(images[:10], labels[:10]))
    by_dataset.index = 4
    torch.testing.assert_close(by_dataset.input, images[4])
    assert by_dataset.input_caption == f"dataset #4 (label {int(labels[4])})"


def test_drawing_webcam_and_upload_messages(mlp_view):
    drawing = np.zeros((28, 28), np.uint8)
    drawing[5:23, 13:15] = 255  # a "1"
    drawing[10, 5] = 128
    browser_sends(mlp_view, {"type": "input", "source": "draw", "seq": 7, "shape": [28, 28, 1]}, drawing.tobytes())
    assert mlp_view.error == "" and mlp_view._seq_done == 7 and mlp_view.input_caption == "drawing"
    np.testing.assert_allclose(mlp_view.input.numpy()[0], drawing / 255, atol=1e-6)
    np.testing.assert_allclose(unpack(mlp_view._acts["flatten"]), drawing.reshape(784) / 255, atol=1e-6)

    frame = np.full((28, 28, 4), 255, np.uint8)  # dark ink on white paper, from a webcam
    frame[4:24, 12:16, :3] = 0
    browser_sends(mlp_view, {"type": "input", "source": "webcam", "seq": 8, "shape": [28, 28, 4]}, frame.tobytes())
    assert mlp_view._seq_done == 8
    np.testing.assert_allclose(mlp_view.input.numpy()[0], 1 - frame[..., 0] / 255, atol=1e-6)  # inverted

    upload = np.zeros((56, 56), np.uint8)
    upload[10:46, 26:30] = 255
    browser_sends(mlp_view, {"type": "input", "source": "upload", "seq": 9, "name": "one.png"}, png(upload))
    assert mlp_view._seq_done == 9 and mlp_view.input_caption == "uploaded one.png"
    np.testing.assert_allclose(mlp_view.input.numpy()[0], upload.reshape(28, 2, 28, 2).mean((1, 3)) / 255, atol=1e-6)


def test_bad_uploads_give_clear_errors_and_the_view_stays_usable(mlp_view):
    before = mlp_view.activations["fc2"].copy()
    browser_sends(mlp_view, {"type": "input", "source": "upload", "seq": 1, "name": "notes.txt"}, b"hello, this is text\n")
    assert mlp_view._seq_done == 1  # acknowledged, so the view can send again
    assert "ValueError" in mlp_view.error and "not an image file" in mlp_view.error and "text file" in mlp_view.error
    np.testing.assert_array_equal(mlp_view.activations["fc2"], before)
    mlp_view.upload_max_bytes = 1000
    big = png(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8))
    browser_sends(mlp_view, {"type": "input", "source": "upload", "seq": 2, "name": "big.png"}, big)
    assert "the limit is" in mlp_view.error and mlp_view._seq_done == 2
    browser_sends(mlp_view, {"type": "input", "source": "draw", "seq": 3, "shape": [28, 28, 1]}, b"\x00" * 10)
    assert "sent 10 bytes for a 28x28x1 image" in mlp_view.error
    browser_sends(mlp_view, {"type": "input", "source": "draw", "seq": 4, "shape": [28, 28, 1]}, b"\x00" * 784)
    assert mlp_view.error == "" and mlp_view._seq_done == 4
    assert float(mlp_view.input.abs().sum()) == 0.0
    mlp_view.load_image(png(np.full((28, 28), 255, np.uint8)))
    assert float(mlp_view.input.min()) == 0.0  # a bright image is read as dark ink on paper


def test_top_examples_for_the_selected_unit(digits_cnn, digits_data, unchanged):
    images, labels = digits_data
    with unchanged(digits_cnn):
        view = nbvis.ActivationHeatmap(digits_cnn, dataset=(images, labels), top_k=6)
        view.selected = ("relu2", 3)
        view.top_job.wait()
    expected = top_examples(digits_cnn, "relu2", 3, images, k=6)
    assert view.top_state == "done" and view.top_progress == 1.0
    assert view.top.indices.tolist() == expected.indices.tolist()
    np.testing.assert_array_equal(unpack(view._top["indices"]), expected.indices.numpy())
    np.testing.assert_allclose(unpack(view._top["patches"]), expected.patches.numpy())
    assert unpack(view._top["patches"]).shape == (6, 1, 10, 10) and view._top["scanned"] == len(images)
    # cancel from the view: the scan stops and says so
    view.selected = ("conv1", 2)
    view._handle_custom_msg({"type": "command", "name": "cancel_top"}, [])
    assert view.top_state in ("stopped", "done")
    view._handle_custom_msg({"type": "command", "name": "scan_top"}, [])
    view.top_job.wait()
    assert view.top_state == "done" and view.top.layer == "conv1"
    view.close()


def test_repeated_input_changes_leak_nothing(mlp_view, digits_data, digits_mlp):
    images = digits_data[0]
    mlp_view.selected = ("fc1", 1)
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in digits_mlp.modules())
    for i in range(30):
        mlp_view.input = images[i]
    count = live_tensors()
    for i in range(200):
        mlp_view.input = images[i]
        browser_sends(mlp_view, {"type": "input", "source": "draw", "seq": i + 1, "shape": [28, 28, 1]}, bytes(784))
    assert live_tensors() <= count
    assert hooks == sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in digits_mlp.modules())


def test_model_unchanged_by_a_whole_session(digits_cnn, digits_data, unchanged):
    model = copy.deepcopy(digits_cnn).train()
    model.conv1.weight.requires_grad_(False)
    images = digits_data[0]
    with unchanged(model):
        view = nbvis.ActivationHeatmap(model, images[0], dataset=images[:100])
        view.selected = ("conv2", 1)
        view.method = "guided"
        view.wrt = "pool1"
        view.index = 5
        browser_sends(view, {"type": "input", "source": "draw", "seq": 1, "shape": [28, 28, 1]}, bytes(784))
        browser_sends(view, {"type": "input", "source": "upload", "seq": 2}, b"not an image")
        view.top_job.wait()  # outside a kernel the scan runs on a thread: let it finish
    assert all(p.grad is None for p in model.parameters())


def test_start_index_and_preprocess_hook(digits_mlp, digits_data):
    images, labels = digits_data
    view = nbvis.ActivationHeatmap(digits_mlp, dataset=(images, labels), index=11)
    torch.testing.assert_close(view.input, images[11])
    assert view.input_caption.startswith("dataset #11")
    seen = []

    def normalize(image):
        seen.append((image.mode, image.size))
        gray = np.asarray(image.convert("L").resize((28, 28)), dtype=np.float32) / 255
        return (gray - 0.5) / 0.5

    custom = nbvis.ActivationHeatmap(digits_mlp, images[0], preprocess=normalize)
    photo = np.zeros((40, 40, 3), np.uint8)
    photo[:, 20:] = 255
    browser_sends(custom, {"type": "input", "source": "upload", "seq": 1, "name": "half.png"}, png(photo))
    assert seen == [("RGB", (40, 40))] and custom.error == ""
    values = custom.input.numpy()[0]
    assert values.min() == -1.0 and values.max() == 1.0
    with pytest.raises(TypeError, match="preprocess must be a callable"):
        nbvis.ActivationHeatmap(digits_mlp, images[0], preprocess="imagenet")


def test_a_list_of_samples_is_scanned_sample_by_sample(digits_cnn, digits_data):
    images, labels = digits_data
    images, labels = images[:40], labels[:40]
    pairs = [(images[i], int(labels[i])) for i in range(len(images))]
    view = nbvis.ActivationHeatmap(digits_cnn, dataset=pairs, top_k=5)
    assert view.input_caption == f"dataset #0 (label {int(labels[0])})"
    view.selected = ("conv1", 2)
    view.top_job.wait()
    expected = top_examples(digits_cnn, "conv1", 2, images, k=5)
    assert view.top_state == "done" and view.error == ""
    assert view.top.indices.tolist() == expected.indices.tolist()
    view.close()


def test_top_examples_follow_the_selection_and_progress_comes_with_them(digits_cnn, digits_data):
    images = digits_data[0]
    view = nbvis.ActivationHeatmap(digits_cnn, images[0], dataset=images)
    sent = {"top_progress": 0, "_top": 0}
    view.observe(lambda change: sent.__setitem__(change["name"], sent[change["name"]] + 1), names=list(sent))
    view.selected = ("conv1", 2)
    view.top_job.wait()
    assert view.top_progress == 1.0 and view.top.layer == "conv1"
    # one progress update per batch would be 8 of them; they go out with the (throttled) examples
    assert sent["top_progress"] <= sent["_top"] + 1
    view.selected = None
    assert view.top is None and view._top is None
    view.close()


def test_a_bad_dataset_item_is_shown_in_the_view(digits_mlp, digits_data):
    images = digits_data[0]
    samples = [images[0], images[1], "not a sample"]
    view = nbvis.ActivationHeatmap(digits_mlp, dataset=samples)
    with pytest.raises(TypeError, match="dataset items must be"):
        view.index = 2
    assert "TypeError" in view.error and "dataset items must be" in view.error
    assert view.index == 0 and view.input_caption.startswith("dataset #0")  # index and input agree
    view.index = 1
    assert view.error == "" and view.input_caption.startswith("dataset #1")


def test_a_map_that_cannot_be_drawn_still_scans_for_top_examples(digits_mlp, digits_data):
    images = digits_data[0]
    view = nbvis.ActivationHeatmap(digits_mlp, images[0], dataset=images[:300], method="guided")
    with pytest.raises(ValueError, match="no ReLU ran"):
        view.selected = ("fc1", 3)  # the demo MLP has sigmoids: no guided backprop
    assert "no ReLU ran" in view.error and view.gradient_map is None
    view.top_job.wait()
    assert view.top_state == "done" and view.top.layer == "fc1" and view.top.unit == 3
    view.close()


def test_moving_the_selection_before_wrt_computes_the_map_once(digits_cnn, digits_data, monkeypatch):
    view = nbvis.ActivationHeatmap(digits_cnn, digits_data[0][0])
    view.selected = ("conv2", 1)
    view.wrt = "pool1"
    calls = []
    original = view._gradient_state
    monkeypatch.setattr(view, "_gradient_state", lambda: calls.append(1) or original())
    view.selected = ("conv1", 0)
    assert view.wrt == "input" and len(calls) == 1
    assert view.grad_caption == "gradient of conv1[0] (positions weighted by its activation) over the input"


def test_a_flatten_after_conv_maps_is_laid_out_as_those_maps(digits_cnn, digits_data):
    images, _ = digits_data
    view = nbvis.ActivationHeatmap(digits_cnn, images[0])
    entries = {entry["name"]: entry for entry in view._layout}
    assert entries["flatten"]["fold"] == list(view.activations["pool2"].shape)  # 16 maps of 7x7
    assert entries["flatten"]["kind"] == "dense" and entries["flatten"]["units"] == 784
    assert "fold" not in entries["fc"] and "fold" not in entries["conv2"]
    np.testing.assert_array_equal(view.activations["flatten"], view.activations["pool2"].reshape(-1))
    view.close()


def test_the_why_map_of_a_channel_is_weighted_by_its_activation_or_summed(digits_cnn, digits_data):
    images, _ = digits_data
    view = nbvis.ActivationHeatmap(digits_cnn, images[3])
    view.selected = ("relu2", 5)
    assert view.reduce == "weighted"
    weighted = nbvis.gradient(digits_cnn, images[3], of=("relu2", 5), reduce="weighted").numpy()
    np.testing.assert_allclose(view.gradient_map, weighted, rtol=1e-5, atol=1e-8)
    assert "weighted by its activation" in view.grad_caption
    view.reduce = "sum"
    summed = nbvis.gradient(digits_cnn, images[3], of=("relu2", 5), reduce="sum").numpy()
    np.testing.assert_allclose(view.gradient_map, summed, rtol=1e-5, atol=1e-8)
    assert "summed over positions" in view.grad_caption
    assert not np.allclose(weighted / np.abs(weighted).max(), summed / np.abs(summed).max(), atol=0.05)
    view.selected = ("fc", 3)  # a dense unit has one value: nothing to weigh
    assert view.grad_caption == "gradient of fc[3] over the input"
    view.close()
