"""The Explorer in Python: one selected unit linked across the heatmap, the weight grid, the
optimization view and the top dataset examples; errors; the model left as it was."""

from __future__ import annotations

import copy
import threading
import time

import ipywidgets
from ipywidgets.widgets import widget as widget_module
import numpy as np
import pytest
import torch
import traitlets
from torch import nn

import nbvis
from nbvis._arrays import unpack
from nbvis.widgets.explorer import Explorer


def descendants(widget) -> list:
    """Every widget shown inside ``widget`` (depth first)."""
    found = []
    for child in getattr(widget, "children", ()):
        found.append(child)
        found.extend(descendants(child))
    return found


def open_widgets() -> dict:
    return dict(widget_module._instances)


def job_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nbvis-job" and t.is_alive()]


@pytest.fixture
def mlp_explorer(digits_mlp, digits_data):
    images, labels = digits_data
    explorer = Explorer(digits_mlp, (images, labels), labels=nbvis.demo.DIGIT_LABELS, steps=60)
    yield explorer
    explorer.close()


def test_exported_and_a_box_of_the_views(mlp_explorer):
    assert nbvis.Explorer is Explorer
    assert isinstance(mlp_explorer, ipywidgets.VBox)
    shown = descendants(mlp_explorer)
    assert mlp_explorer.heatmap in shown and mlp_explorer.grid in shown
    # before a selection: the first weight layer, nothing selected, nothing running
    assert mlp_explorer.selected is None and mlp_explorer.optimizer is None
    assert mlp_explorer.grid.layer == "fc1" and mlp_explorer.grid.selected is None
    assert not any(isinstance(w, nbvis.OptimizationViewer) for w in shown)


def test_a_click_in_the_heatmap_selects_the_unit_everywhere(mlp_explorer, digits_mlp, digits_data):
    images, _ = digits_data
    explorer = mlp_explorer
    explorer.heatmap.set_state({"selected": ["sigmoid", 12]})  # what the browser sends on a click
    assert explorer.selected == ("sigmoid", 12)

    # the grid of the Linear layer that computes the sigmoid, with unit 12 selected and drawn
    grid = explorer.grid
    assert grid.layer == "fc1" and grid.selected == 12 and grid in descendants(explorer)
    on_page = unpack(grid._units).tolist()
    assert 12 in on_page
    np.testing.assert_allclose(grid.tiles()[list(grid.units()).index(12), :, :, 0],
                               digits_mlp.fc1.weight[12].detach().reshape(28, 28).numpy())

    # the optimizer maximizes the unit (through its pre-activation, where a sigmoid cannot saturate)
    optimizer = explorer.optimizer
    assert optimizer.objective_text == "fc1[12]" and optimizer in descendants(explorer)
    assert optimizer.state == "running" or optimizer.state == "done"
    optimizer.wait()
    w, b = digits_mlp.fc1.weight[12].detach(), digits_mlp.fc1.bias[12].detach()
    synthesized = optimizer.inputs.reshape(optimizer.inputs.shape[0], -1) @ w + b
    dataset_best = (images.reshape(len(images), -1) @ w + b).max()
    assert (synthesized > dataset_best).all()
    # inside the data's range 0..1 a linear unit wants the pixels where its weights are positive
    assert optimizer.value_range == [0.0, 1.0] and 0 <= optimizer.inputs.min() and optimizer.inputs.max() <= 1
    cosine = torch.nn.functional.cosine_similarity(optimizer.inputs.flatten(1), w.clamp(min=0)[None], dim=1)
    assert (cosine > 0.5).all(), cosine

    # the top dataset examples of the sigmoid unit, ranked by what is maximized, its pre-activation
    # fc1[12] (the sigmoid's near-1 values would tie), against a brute-force ranking
    explorer.heatmap.top_job.wait()
    pre = images.reshape(len(images), -1) @ digits_mlp.fc1.weight.T.detach() + digits_mlp.fc1.bias.detach()
    expected = pre[:, 12].topk(9)
    top = explorer.heatmap.top
    assert top.layer == "fc1" and top.unit == 12
    assert top.indices.tolist() == expected.indices.tolist()
    np.testing.assert_allclose(top.values.numpy(), expected.values.numpy(), rtol=1e-5)


def test_preactivation_can_be_turned_off(digits_mlp, digits_data):
    explorer = Explorer(digits_mlp, digits_data[0], selected=("sigmoid", 3), preactivation=False, steps=5)
    try:
        assert explorer.optimizer.objective_text == "sigmoid[3]"
        explorer.selected = ("fc2", 4)  # a Linear layer's own unit
        assert explorer.optimizer.objective_text == "fc2[4]"
    finally:
        explorer.close()


def relu2_means(cnn, x) -> torch.Tensor:
    """Channel means of relu2, by calling the CNN's layers one after the other."""
    with torch.no_grad():
        return cnn.relu2(cnn.conv2(cnn.pool1(cnn.relu1(cnn.conv1(x))))).mean(dim=(2, 3))


def test_preactivation_reaches_a_channel_that_relu_keeps_at_zero(digits_cnn, digits_data):
    images = digits_data[0]
    stuck = Explorer(digits_cnn, images, selected=("relu2", 5), preactivation=False, steps=40)
    try:
        stuck.optimizer.wait()
        assert stuck.optimizer.objective_text == "relu2[5]"
        # channel 5 is on for the maximized ReLU itself too: starts inside the data's range, and
        # the redirected ReLU gradient of the first steps where a start has it off
        assert (relu2_means(digits_cnn, stuck.optimizer.inputs)[:, 5] > 0).all()
    finally:
        stuck.close()
    # the Explorer's default length: the default priors for known data (the "data" preset)
    # keep the image to the ways the digits vary, which rises more slowly than free pixels
    explorer = Explorer(digits_cnn, images, selected=("relu2", 5), steps=128)
    try:
        explorer.optimizer.wait()
        assert explorer.optimizer.objective_text == "conv2[5]"
        means = relu2_means(digits_cnn, explorer.optimizer.inputs)
        best_in_data = relu2_means(digits_cnn, images)[:, 5].max()
        assert (means[:, 5] > best_in_data).all(), (means[:, 5], best_in_data)
    finally:
        explorer.close()


def test_preactivation_only_through_rising_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.GELU())
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([-1.0, 2.0]))  # channel 0 flips sign, channel 1 does not
    explorer = Explorer(model, torch.rand(8, 1, 8, 8), steps=2)
    try:
        assert explorer.weighted_layer("2") == "0" and explorer.weighted_layer("4") == "3"
        explorer.selected = ("2", 1)
        assert explorer.optimizer.objective_text == "0[1]"
        explorer.selected = ("2", 0)  # a negative batch-norm scale: the conv's unit would go the wrong way
        assert explorer.optimizer.objective_text == "2[0]"
        explorer.selected = ("4", 1)  # GELU falls below zero: not rising
        assert explorer.optimizer.objective_text == "4[1]"
    finally:
        explorer.close()


def test_a_new_units_optimization_waits_until_its_top_examples_are_shown(digits_cnn, digits_data, monkeypatch):
    # every panel shows the new unit first: the run that streams preferred inputs gives way to
    # the scan of the top examples and their maps (for at most PANELS_FIRST seconds: here as
    # long as a busy machine needs), then goes on
    monkeypatch.setattr("nbvis.widgets.explorer.PANELS_FIRST", 120.0)
    explorer = Explorer(digits_cnn, digits_data, steps=1_000_000)
    try:
        steps_when_shown = []

        def shown(change):
            if change["new"] and "guided" in change["new"]:  # the examples with their maps
                optimizer = explorer.optimizer  # None: not made yet (the scan ran on its own thread)
                steps_when_shown.append(0 if optimizer is None else optimizer.run.step_count)

        explorer.heatmap.observe(shown, names=["_top"])
        for unit in (3, 7):  # a scan of the whole dataset, then one served from the scan cache
            explorer.selected = ("relu2", unit)
            optimizer = explorer.optimizer
            assert optimizer.state == "running"
            explorer.heatmap.top_job.wait()
            deadline = time.monotonic() + 30
            while optimizer.run.step_count < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert optimizer.run.step_count >= 3  # and then it runs
        assert steps_when_shown == [0, 0]
    finally:
        explorer.close()


def test_a_new_selection_stops_the_previous_run(digits_mlp, digits_data):
    explorer = Explorer(digits_mlp, digits_data[0], steps=1_000_000, selected=("fc2", 1))
    first = explorer.optimizer
    assert first.state == "running"
    explorer.selected = ("fc2", 2)
    assert first.state == "stopped" and not first._job.running and first.comm is None  # stopped and closed
    second = explorer.optimizer
    assert second is not first and second.objective_text == "fc2[2]" and second.state == "running"
    assert first not in descendants(explorer) and second in descendants(explorer)
    explorer.selected = None  # nothing selected: no run at all
    assert second.state == "stopped" and explorer.optimizer is None and explorer.grid.selected is None
    explorer.selected = ("sigmoid", 5)
    third = explorer.optimizer
    explorer.close()
    assert third.state == "stopped" and not explorer.heatmap.top_job.running
    assert not job_threads()


def test_a_new_selection_does_not_wait_for_the_previous_runs_figures(digits_mlp, digits_data):
    # The quality figures of a stopped run go through the dataset; the previous unit's run is
    # closed, so a click must not wait for them (they are computed when asked for, as ever).
    explorer = Explorer(digits_mlp, digits_data[0], steps=1_000_000, selected=("fc2", 1))
    try:
        first = explorer.optimizer
        explorer.selected = ("fc2", 2)
        assert first.state == "stopped" and first.comm is None and first.quality_rows == []
        assert first.quality.rows() and first.quality_rows  # on demand: still there
        second = explorer.optimizer
        second.stop()  # stopped but still shown: its figures come with the stop, as before
        assert second.state == "stopped" and second.quality_rows
    finally:
        explorer.close()


def test_settings_made_in_the_optimizer_carry_over(digits_mlp, digits_data):
    explorer = Explorer(digits_mlp, digits_data[0], steps=1_000_000, starts=2, selected=("fc2", 1))
    try:
        explorer.optimizer.preset = "yosinski2015-1"
        explorer.optimizer.steps = 40
        explorer.selected = ("fc2", 5)
        assert explorer.optimizer.preset == "yosinski2015-1" and explorer.optimizer.steps == 40
        assert explorer.optimizer.n_starts == 2
        explorer.optimizer.wait()
        assert explorer.optimizer.history.shape == (40, 2)
    finally:
        explorer.close()


def test_a_click_in_the_grid_selects_back_in_the_heatmap(mlp_explorer):
    explorer = mlp_explorer
    explorer.grid.set_state({"selected": 5})  # no selection yet: the grid's own layer
    assert explorer.selected == ("fc1", 5) and explorer.heatmap.selected == ("fc1", 5)
    explorer.selected = ("sigmoid", 12)
    explorer.grid.set_state({"selected": 40})  # the sigmoid stays: fc1 computes it
    assert explorer.selected == ("sigmoid", 40)
    assert explorer.optimizer.objective_text == "fc1[40]"
    explorer.selected = ["fc2", 3]
    assert explorer.selected == ("fc2", 3) and explorer.grid.layer == "fc2"
    explorer.grid.set_state({"selected": 7})
    assert explorer.selected == ("fc2", 7) and explorer.optimizer.objective_text == "fc2[7]"
    # grids are kept per layer: back to fc1 shows the same grid, with the new unit
    fc1_grid = explorer._grids["fc1"]
    explorer.selected = ("fc1", 99)
    assert explorer.grid is fc1_grid and fc1_grid.selected == 99


def test_the_grid_turns_to_the_page_of_the_selected_unit(digits_mlp, digits_data):
    explorer = Explorer(digits_mlp, digits_data[0], page_size=10, steps=5)
    try:
        explorer.grid.top_k = 5
        explorer.selected = ("sigmoid", 57)
        grid = explorer.grid
        assert grid.top_k == 0 and grid.page == 5 and 57 in unpack(grid._units).tolist()
        explorer.selected = ("sigmoid", 3)
        assert grid.page == 0 and 3 in unpack(grid._units).tolist()
    finally:
        explorer.close()


def test_conv_layers_map_to_their_filters(digits_cnn, digits_data):
    explorer = Explorer(digits_cnn, digits_data[0], steps=5)
    try:
        expected = {"conv1": "conv1", "relu1": "conv1", "pool1": "conv1", "conv2": "conv2", "relu2": "conv2",
                    "pool2": "conv2", "flatten": None, "fc": "fc"}
        assert {layer: explorer.weighted_layer(layer) for layer in explorer.heatmap.layers} == expected
        explorer.selected = ("pool1", 3)
        assert explorer.grid.layer == "conv1" and explorer.grid.selected == 3
        np.testing.assert_allclose(explorer.grid.tiles()[3, :, :, 0], digits_cnn.conv1.weight[3, 0].detach().numpy())
        assert explorer.optimizer.objective_text == "conv1[3]"  # the mean of channel 3 before ReLU and pooling
        # fc reads the 16 x 7 x 7 maps of pool2 (through flatten): its tiles are laid out that way
        explorer.selected = ("fc", 2)
        tile = explorer.grid.tiles()[2, :, :, 0]
        maps = digits_cnn.fc.weight[2].detach().reshape(16, 7, 7).numpy()
        np.testing.assert_allclose(tile[:7, :7], maps[0])
        np.testing.assert_allclose(tile[:7, 8:15], maps[1])
        assert explorer.grid.input is None  # fc does not read the pixels: no input x weights
        # a unit of flatten is computed by no single weight layer
        explorer.selected = ("flatten", 100)
        assert explorer.grid is None and "flatten has no incoming weights" in explorer._grid_note.value
        assert explorer._grid_note in descendants(explorer)
        assert explorer.optimizer.objective_text == "flatten[100]"
    finally:
        explorer.close()


def test_the_first_layer_grid_follows_the_heatmap_input(mlp_explorer, digits_data):
    images, _ = digits_data
    explorer = mlp_explorer
    explorer.selected = ("fc1", 3)
    explorer.heatmap.index = 42
    np.testing.assert_array_equal(explorer.grid.input.numpy(), images[42].numpy())
    explorer.grid.show_products = True
    np.testing.assert_allclose(unpack(explorer.grid._products)[list(unpack(explorer.grid._units)).index(3), :, :, 0],
                               (images[42, 0] * explorer.model.fc1.weight[3].detach().reshape(28, 28)).numpy(), rtol=1e-6)


def test_bad_selections_give_clear_errors(mlp_explorer):
    explorer = mlp_explorer
    explorer.selected = ("fc2", 1)
    with pytest.raises(ValueError, match=r"unknown layer 'nope'; the model's layers are: 'flatten', 'fc1', 'sigmoid', 'fc2'"):
        explorer.selected = ("nope", 1)
    with pytest.raises(ValueError, match=r"it has 10 units \(0\.\.9\)"):
        explorer.selected = ("fc2", 10)
    with pytest.raises(ValueError, match=r"selected is \(layer, unit\)"):
        explorer.selected = ("fc2",)
    with pytest.raises(traitlets.TraitError, match=r"unit 100 is out of range for layer 'fc2': it has 10 units \(0\.\.9\)"):
        explorer.grid.set_state({"selected": 100})
    # nothing moved
    assert explorer.selected == ("fc2", 1) and explorer.optimizer.objective_text == "fc2[1]"
    assert explorer.grid.layer == "fc2" and explorer.grid.selected == 1
    with pytest.raises(ValueError, match=r"unknown layer 'nope'; the model's layers are: "):
        explorer.weighted_layer("nope")


class Constant(nn.Module):
    def forward(self, x):
        return torch.ones(x.shape[0], 3)


class WithASideBranch(nn.Module):
    """A small net with a layer whose output does not depend on the input."""

    def __init__(self):
        super().__init__()
        self.flatten, self.fc, self.act, self.const = nn.Flatten(), nn.Linear(16, 3), nn.Tanh(), Constant()

    def forward(self, x):
        self.const(x)
        return self.act(self.fc(self.flatten(x)))


def test_errors_of_a_selection_are_shown_and_raised():
    torch.manual_seed(0)
    model = WithASideBranch()
    images = torch.rand(20, 1, 4, 4)
    explorer = Explorer(model, images, steps=5)
    try:
        with pytest.raises(ValueError, match="does not depend on the input"):
            explorer.selected = ("const", 1)
        assert "does not depend on the input" in explorer.error and explorer._error.layout.display != "none"
        assert explorer.optimizer is None and explorer._optimizer_note in descendants(explorer)
        assert "see the error below" in explorer._optimizer_note.value
        explorer.selected = ("act", 1)  # a good selection clears the error
        assert explorer.error == "" and explorer._error.layout.display == "none"
        assert explorer.optimizer.objective_text == "fc[1]" and explorer.grid.layer == "fc"
        # 16 inputs: tiles of 4 x 4, the shape of the samples that Flatten reads
        assert explorer.grid.tiles().shape == (3, 4, 4, 1)
    finally:
        explorer.close()


def test_construction_errors_leave_nothing_open(digits_mlp, digits_data):
    images = digits_data[0]
    before = set(open_widgets())
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Explorer("model", images)
    with pytest.raises(TypeError, match="needs a dataset"):
        Explorer(digits_mlp, None)
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        Explorer(digits_mlp, images, colour="red")
    with pytest.raises(ValueError, match="starts must be an integer >= 1"):
        Explorer(digits_mlp, images, starts=0)
    with pytest.raises(ValueError, match="unknown regularizer preset 'soft'"):
        Explorer(digits_mlp, images, regularizers="soft")
    with pytest.raises(ValueError, match=r"could not run on an input of shape \(3, 3, 5\)"):
        Explorer(digits_mlp, images, input_shape=(3, 5))
    with pytest.raises(ValueError, match="labels has 3 names"):
        Explorer(digits_mlp, images, labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="unit 10 is out of range"):
        Explorer(digits_mlp, images, selected=("fc2", 10))
    left = [type(w).__name__ for key, w in open_widgets().items() if key not in before]
    assert all(name == "Layout" or name.endswith("Style") for name in left), left  # closing keeps those


def test_flat_samples_with_an_image_input_shape(digits_mlp, digits_data):
    flat = digits_data[0].reshape(-1, 784)
    explorer = Explorer(digits_mlp, flat[:100], input_shape=(1, 28, 28), selected=("fc2", 0), steps=3)
    try:
        assert explorer.optimizer.input_kind == "image" and explorer.optimizer.inputs.shape[1:] == (1, 28, 28)
        assert explorer.grid.layer == "fc2"
    finally:
        explorer.close()


def test_model_unchanged_by_a_whole_session(digits_cnn, digits_data, unchanged):
    model = copy.deepcopy(digits_cnn).train()
    model.conv2.weight.requires_grad_(False)
    with unchanged(model):
        explorer = Explorer(model, digits_data[0][:300], steps=20, selected=("relu2", 4))
        explorer.optimizer.wait()
        explorer.heatmap.top_job.wait()
        explorer.grid.set_state({"selected": 6})
        explorer.heatmap.index = 7
        explorer.selected = ("fc", 1)
        explorer.optimizer.wait()
        explorer.close()
    assert not job_threads()


def test_a_failing_grid_still_moves_the_run_to_the_new_unit(digits_mlp, digits_data, monkeypatch):
    explorer = Explorer(digits_mlp, digits_data[0], steps=1_000_000, selected=("fc2", 1))
    try:
        first = explorer.optimizer

        def broken(selection):
            raise RuntimeError("grid failed")

        monkeypatch.setattr(explorer, "_show_grid", broken)
        with pytest.raises(RuntimeError, match="grid failed"):
            explorer.selected = ("fc2", 2)
        assert first.state == "stopped" and explorer.optimizer.objective_text == "fc2[2]"
        assert "grid failed" in explorer.error and "fc2[2]" in explorer._caption.value
    finally:
        explorer.close()
    assert not job_threads()
