"""Hostile input over every public function and view: a clear TypeError / ValueError that says
what was expected and what exists, the model left as it was, and the view usable afterwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import traitlets
from torch import nn

import nbvis
from faultkit import assert_same, full_state

torch.manual_seed(0)
CNN = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10)).train()
MLP = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1))
IMAGES = torch.rand(20, 1, 8, 8)
X, Y = torch.randn(50, 6), torch.randn(50)

# (name, call, exception, what the message must say)
CASES = [
    ("capture: unknown layer", lambda: nbvis.capture(CNN, IMAGES[:2], ["nope"]), ValueError, r"unknown layer 'nope'.*'0', '1'"),
    ("capture: layer of another type", lambda: nbvis.capture(CNN, IMAGES[:2], [3.5]), TypeError, r"a layer is a dotted name \(str\).*not float"),
    ("capture: module of another model", lambda: nbvis.capture(CNN, IMAGES[:2], [nn.ReLU()]), ValueError, r"not part of this model"),
    ("capture: strings as input", lambda: nbvis.capture(CNN, [["a"]]), TypeError, r"must hold numbers"),
    ("capture: complex input", lambda: nbvis.capture(CNN, torch.zeros(1, 1, 8, 8, dtype=torch.complex64)), TypeError, r"real-valued"),
    ("capture: ragged list", lambda: nbvis.capture(CNN, [[1, 2], [3]]), TypeError, r"tensor or an array of numbers"),
    ("capture: wrong channel count", lambda: nbvis.capture(CNN, torch.rand(1, 3, 8, 8)), ValueError, r"shape \(1, 3, 8, 8\).*Conv2d.*expects 1 channels"),
    ("capture: wrong feature count", lambda: nbvis.capture(MLP, torch.rand(2, 7)), ValueError, r"shape \(2, 7\).*expects 6 features"),
    ("gradient: unknown of layer", lambda: nbvis.gradient(CNN, IMAGES[:1], of=("nope", 0)), ValueError, r"nope.*'0'"),
    ("gradient: unit out of range", lambda: nbvis.gradient(CNN, IMAGES[:1], of=("4", 10)), ValueError, r"out of range.*10 units"),
    ("gradient: unit not an integer", lambda: nbvis.gradient(CNN, IMAGES[:1], of=("4", "x")), TypeError, r"unit"),
    ("gradient: unknown wrt", lambda: nbvis.gradient(CNN, IMAGES[:1], of=("4", 1), wrt="nope"), ValueError, r"nope"),
    ("guided_backprop: unknown layer", lambda: nbvis.guided_backprop(CNN, IMAGES[:1], of=("nope", 0)), ValueError, r"nope"),
    ("deconvnet: unit out of range", lambda: nbvis.deconvnet(CNN, IMAGES[:1], of=("0", 9)), ValueError, r"out of range.*4 units"),
    ("maximize: unknown layer", lambda: nbvis.maximize(CNN, ("nope", 0), (1, 8, 8), steps=2), ValueError, r"nope"),
    ("maximize: unit out of range", lambda: nbvis.maximize(CNN, ("4", 99), (1, 8, 8), steps=2), ValueError, r"99"),
    ("maximize: negative steps", lambda: nbvis.maximize(CNN, ("4", 1), (1, 8, 8), steps=-1), ValueError, r"steps must be an integer >= 0, not -1"),
    ("maximize: zero starts", lambda: nbvis.maximize(CNN, ("4", 1), (1, 8, 8), steps=2, starts=0), ValueError, r"starts"),
    ("maximize: unknown preset", lambda: nbvis.maximize(CNN, ("4", 1), (1, 8, 8), steps=2, regularizers="nope"), ValueError, r"nope.*yosinski2015"),
    ("maximize: unknown parametrization", lambda: nbvis.maximize(CNN, ("4", 1), (1, 8, 8), steps=2, parametrization="nope"), ValueError, r"'pixel', 'fourier' or 'data', not 'nope'"),
    ("maximize: bool objective", lambda: nbvis.maximize(CNN, True, (1, 8, 8), steps=2), TypeError, r"bool"),
    ("maximize: input shape the model cannot take", lambda: nbvis.maximize(CNN, ("4", 1), (3, 8, 8), steps=2), ValueError, r"\(3, 8, 8\)|channels"),
    ("permutation_importance: unknown metric", lambda: nbvis.permutation_importance(MLP, X, Y, scoring="nope"), ValueError, r"nope.*r2"),
    ("permutation_importance: unknown method", lambda: nbvis.permutation_importance(MLP, X, Y, method="nope"), ValueError, r"nope.*permutation"),
    ("permutation_importance: zero repeats", lambda: nbvis.permutation_importance(MLP, X, Y, n_repeats=0), ValueError, r"n_repeats"),
    ("permutation_importance: y of another length", lambda: nbvis.permutation_importance(MLP, X, Y[:10]), ValueError, r"50.*10|10.*50"),
    ("permutation_importance: too few feature names", lambda: nbvis.permutation_importance(MLP, X, Y, feature_names=["a"]), ValueError, r"feature_names|names"),
    ("permutation_importance: too many samples", lambda: nbvis.permutation_importance(MLP, X, Y, max_samples=500), ValueError, r"max_samples"),
    ("top_examples: unknown layer", lambda: nbvis.top_examples(CNN, "nope", 0, IMAGES), ValueError, r"nope"),
    ("top_examples: unit out of range", lambda: nbvis.top_examples(CNN, "0", 7, IMAGES), ValueError, r"out of range.*4 units"),
    ("top_examples: zero batch size", lambda: nbvis.top_examples(CNN, "0", 1, IMAGES, batch_size=0), ValueError, r"batch_size must be a positive integer"),
    ("WeightGrid: not a module", lambda: nbvis.WeightGrid("model", "0"), TypeError, r"torch.nn.Module, not str"),
    ("WeightGrid: unknown layer", lambda: nbvis.WeightGrid(CNN, "nope"), ValueError, r"nope.*'0'"),
    ("WeightGrid: layer without weights", lambda: nbvis.WeightGrid(CNN, "2"), (TypeError, ValueError), r"ReLU|Linear|Conv"),
    ("WeightGrid: unknown keyword", lambda: nbvis.WeightGrid(CNN, "0", colour="red"), TypeError, r"unexpected keyword argument.*colour"),
    ("WeightGrid: wrong input_shape", lambda: nbvis.WeightGrid(CNN, "4", input_shape=(5, 5)), ValueError, r"144"),
    ("ActivationHeatmap: not a module", lambda: nbvis.ActivationHeatmap(None, IMAGES[0]), TypeError, r"torch.nn.Module"),
    ("ActivationHeatmap: no input nor dataset", lambda: nbvis.ActivationHeatmap(CNN), TypeError, r"needs an input x"),
    ("ActivationHeatmap: labels of another length", lambda: nbvis.ActivationHeatmap(CNN, IMAGES[0], labels=["a"]), ValueError, r"labels has 1 names.*10 units"),
    ("ActivationHeatmap: preprocess not callable", lambda: nbvis.ActivationHeatmap(CNN, IMAGES[0], preprocess=3), TypeError, r"preprocess must be a callable"),
    ("ActivationHeatmap: bad invert", lambda: nbvis.ActivationHeatmap(CNN, IMAGES[0], invert="maybe"), ValueError, r"invert is True, False or 'auto'"),
    ("ActivationHeatmap: empty dataset", lambda: nbvis.ActivationHeatmap(CNN, dataset=[]), ValueError, r"empty"),
    ("ActivationHeatmap: dataset of another type", lambda: nbvis.ActivationHeatmap(CNN, dataset=42), TypeError, r"dataset must be"),
    ("FeatureImportance: unknown metric", lambda: nbvis.FeatureImportance(MLP, X, Y, scoring="nope"), ValueError, r"nope"),
    ("FeatureImportance: unknown keyword", lambda: nbvis.FeatureImportance(MLP, X, Y, colour=1), TypeError, r"colour"),
    ("OptimizationViewer: no objective", lambda: nbvis.OptimizationViewer(CNN, input_shape=(1, 8, 8)), TypeError, r"needs objective"),
    ("OptimizationViewer: bad steps", lambda: nbvis.OptimizationViewer(CNN, ("4", 1), (1, 8, 8), steps=-3), ValueError, r"steps must be an integer >= 1"),
    ("OptimizationViewer: names of another length", lambda: nbvis.OptimizationViewer(MLP, ("2", 0), (6,), feature_names=["a"]), ValueError, r"one name per input feature"),
    ("Explorer: no dataset", lambda: nbvis.Explorer(CNN, None), TypeError, r"needs a dataset"),
    ("Explorer: bad steps", lambda: nbvis.Explorer(CNN, IMAGES, steps=0), ValueError, r"steps must be an integer >= 1"),
]


@pytest.mark.parametrize("name,call,kind,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(name, call, kind, message):
    before = {id(m): full_state(m) for m in (CNN, MLP)}
    with pytest.raises(kind, match=message):
        call()
    for model in (CNN, MLP):
        assert_same(model, before[id(model)])


def test_the_count(figures):
    figures.add("bad inputs", "distinct cases over every public function and view", len(CASES))
    assert len(CASES) >= 40


# In a live view: a bad value is refused, said in the view, and the view goes on working.
VIEW_CASES = [
    ("WeightGrid.page_size = 0", lambda: nbvis.WeightGrid(CNN, "0"), lambda v: setattr(v, "page_size", 0), r"page_size must be at least 1",
     lambda v: setattr(v, "page_size", 2) or v.n_pages == 2),
    ("WeightGrid.selected out of range", lambda: nbvis.WeightGrid(CNN, "0"), lambda v: setattr(v, "selected", 9), r"0..3",
     lambda v: setattr(v, "selected", 1) or v.selected == 1),
    ("WeightGrid.input of another size", lambda: nbvis.WeightGrid(MLP, "0", input_shape=(6,)), lambda v: setattr(v, "input", torch.rand(5)), r"6 inputs",
     lambda v: setattr(v, "input", torch.rand(6)) or v.has_input),
    ("ActivationHeatmap.input of another shape", lambda: nbvis.ActivationHeatmap(CNN, IMAGES[0]), lambda v: setattr(v, "input", torch.rand(3, 8, 8)),
     r"\(3, 8, 8\).*\(1, 8, 8\)", lambda v: setattr(v, "input", IMAGES[1]) or v.error == ""),
    ("ActivationHeatmap.selected unknown layer", lambda: nbvis.ActivationHeatmap(CNN, IMAGES[0]), lambda v: setattr(v, "selected", ("nope", 0)),
     r"'nope'.*layers are", lambda v: setattr(v, "selected", ("4", 2)) or v.gradient_map is not None),
    ("ActivationHeatmap.index out of range", lambda: nbvis.ActivationHeatmap(CNN, dataset=IMAGES), lambda v: setattr(v, "index", 99),
     r"index must be in 0..19", lambda v: setattr(v, "index", 3) or v.index == 3),
    ("FeatureImportance.n_repeats = 0", lambda: nbvis.FeatureImportance(MLP, X, Y, n_repeats=1), lambda v: setattr(v, "n_repeats", 0),
     r"n_repeats must be at least 1", lambda v: v.wait() is not None and v.state == "done"),
    ("OptimizationViewer.regularizers unknown", lambda: nbvis.OptimizationViewer(CNN, ("4", 1), (1, 8, 8), steps=5),
     lambda v: setattr(v, "regularizers", {"nope": 1}), r"nope", lambda v: v.start().wait().state == "done"),
]


@pytest.mark.parametrize("name,make,bad,message,works", VIEW_CASES, ids=[c[0] for c in VIEW_CASES])
def test_a_view_refuses_bad_values_and_goes_on(name, make, bad, message, works, figures):
    view = make()
    if hasattr(view, "wait"):
        view.wait()
    with pytest.raises((traitlets.TraitError, ValueError, TypeError), match=message):
        bad(view)
    assert works(view), f"{name}: the view no longer works"
    view.close()
    figures.add("bad values in a live view (refused, view still usable)", name, "ok")
