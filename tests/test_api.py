"""The public API contract of DESIGN.md: these names and keyword arguments must not change."""

from __future__ import annotations

import inspect

import pytest

import nbvis

CONTRACT = {
    "WeightGrid": ["model", "layer", "input_shape"],
    "ActivationHeatmap": ["model", "x", "layers", "labels"],
    "FeatureImportance": ["model", "X", "y", "scoring", "method", "n_repeats", "random_state", "feature_names"],
    "OptimizationViewer": ["model", "objective", "input_shape", "steps", "starts", "regularizers"],
    "capture": ["model", "x", "layers"],
    "gradient": ["model", "x", "of", "wrt"],
    "permutation_importance": ["model", "X", "y", "scoring", "method", "n_repeats", "random_state"],
    "maximize": ["model", "objective", "input_shape", "steps", "starts", "regularizers", "parametrization", "seed"],
}


@pytest.mark.parametrize("name", sorted(nbvis.__all__))
def test_every_exported_name_resolves(name):
    assert getattr(nbvis, name) is not None


@pytest.mark.parametrize("name, params", sorted(CONTRACT.items()))
def test_contract_signatures(name, params):
    signature = inspect.signature(getattr(nbvis, name))
    missing = [p for p in params if p not in signature.parameters]
    assert not missing, f"nbvis.{name} lacks {missing}"


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        nbvis.Nope
