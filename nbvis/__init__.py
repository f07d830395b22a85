"""nbvis: open up a live PyTorch model inside the notebook."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public names and the module that defines each; imported on first use so that the
# compute functions work without loading any widget code.
_EXPORTS = {
    "capture": "nbvis.compute.probe",
    "exclusive": "nbvis.compute.turns",
    "gradient": "nbvis.compute.gradients",
    "guided_backprop": "nbvis.compute.gradients",
    "deconvnet": "nbvis.compute.gradients",
    "loss_gradient": "nbvis.compute.gradients",
    "top_examples": "nbvis.compute.dataset",
    "receptive_field": "nbvis.compute.fields",
    "OUTPUT": "nbvis.compute.units",
    "permutation_importance": "nbvis.compute.importance",
    "iter_permutation_importance": "nbvis.compute.importance",
    "maximize": "nbvis.compute.optimize",
    "iter_maximize": "nbvis.compute.optimize",
    "unit": "nbvis.compute.optimize",
    "logit": "nbvis.compute.optimize",
    "Regularizers": "nbvis.compute.optimize",
    "neuron_groups": "nbvis.compute.blocks",
    "semantic_dictionary": "nbvis.compute.blocks",
    "feature_cache": "nbvis.compute.blocks",
    "FeatureCache": "nbvis.compute.blocks",
    "NeuronGroups": "nbvis.widgets.neuron_groups",
    "SemanticDictionary": "nbvis.widgets.semantic_dictionary",
    "WeightGrid": "nbvis.widgets.weight_grid",
    "ActivationHeatmap": "nbvis.widgets.activation_heatmap",
    "FeatureImportance": "nbvis.widgets.feature_importance",
    "OptimizationViewer": "nbvis.widgets.optimization_viewer",
    "Explorer": "nbvis.widgets.explorer",
    "demo": "nbvis.demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'nbvis' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name == f"nbvis.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
