"""Every compute function and view on real third-party architectures, against Captum and autograd.

The models come from ``tests/zoo/models.py``. Each check runs inside ``unchanged``: the model's
parameters, buffers (BatchNorm running statistics), requires_grad, modes and hooks are exactly as
they were afterwards."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import nbvis
from nbvis.compute import walk
from nbvis.compute.dataset import top_examples

from .models import CASES, IDS

pytest.importorskip("transformers")
captum_attr = pytest.importorskip("captum.attr")


@pytest.fixture(params=CASES, ids=IDS)
def case(request):
    return request.param


def only(where):
    """Run a test on the cases it applies to (the ``case`` fixture, narrowed)."""
    chosen = [case for case in CASES if where(case)]
    return pytest.mark.parametrize("case", chosen, ids=[case.name for case in chosen])


def out_of_place(model):
    """A copy of ``model`` whose ReLUs work out of place: the same function, which Captum's rule
    hooks can run on (they refuse in-place ReLUs)."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return twin


BUILT: dict = {}  # one model and batch per case for the whole module, whichever test asks first


@pytest.fixture
def model(case):
    if case.name not in BUILT:
        BUILT[case.name] = case.build().eval()  # the references (Captum, autograd) read the model in eval mode
    return BUILT[case.name]


@pytest.fixture
def x(case):
    return case.inputs()


def logits(model):
    """The model as Captum wants it: a function returning the output tensor (the logits)."""

    def forward(inputs):
        out = model(inputs)
        if isinstance(out, dict) or hasattr(out, "keys"):
            return out["logits"] if "logits" in out else next(iter(out.values()))
        return out[0] if isinstance(out, tuple) else out

    return forward


def captum_target(case, model, x):
    """Captum's target for the case's output unit (None for one value per sample)."""
    with torch.no_grad():
        return None if logits(model)(x[:1]).dim() == 1 else case.target


def reference(model, x, layer, grad_wrt=None, select=None):
    """The layer's output at its ``call``-th call, read by a hook of this test (a copy goes on,
    so in-place operations after it cannot change it); with ``select`` and ``grad_wrt``, the
    gradient of the selected unit with respect to ``grad_wrt``."""
    path, _, number = layer.partition("#")
    module, call = dict(model.named_modules())[path], int(number or 1)
    seen = []

    def hook(_module, _args, out):
        tensor = out if isinstance(out, torch.Tensor) else out[0]
        if len(seen) < call:
            seen.append(tensor)
        if len(seen) == call and seen[-1] is tensor:
            return tensor.clone() if isinstance(out, torch.Tensor) else (tensor.clone(), *out[1:])
        return None

    handle = module.register_forward_hook(hook)
    modes = [m.training for m in model.modules()]
    model.eval()  # nbvis reads models in eval mode; train-mode models (the ResNet) are put back below
    try:
        with torch.set_grad_enabled(grad_wrt is not None):
            model(grad_wrt if grad_wrt is not None else x)
    finally:
        handle.remove()
        for m, mode in zip(model.modules(), modes):
            m.training = mode
    value = seen[call - 1]
    if grad_wrt is None:
        return value.detach()
    (grad,) = torch.autograd.grad(select(value).sum(), grad_wrt)
    return grad


def test_the_walk_lists_what_torch_lists(case, model):
    """The borrow's module and parameter lists are torch's own: the same names, modules and
    parameters in the same order, shared ones once."""
    torch_modules = list(model.named_modules())
    assert [name for name, _ in walk.named_modules(model)] == [name for name, _ in torch_modules]
    assert all(a is b for (_, a), (_, b) in zip(walk.named_modules(model), torch_modules))
    assert walk.modules(model) == list(model.modules())
    found, theirs = walk.parameters(model), list(model.parameters())
    assert len(found) == len(theirs) and all(a is b for a, b in zip(found, theirs))


def test_capture_and_gradients_match_captum(case, model, x, unchanged):
    layer, unit = case.mid
    call = int(layer.partition("#")[2] or 1)
    module = dict(model.named_modules())[layer.split("#")[0]]
    with unchanged(model):
        acts = nbvis.capture(model, x, [layer])
        captured_all = nbvis.capture(model, x)
        expected = reference(model, x, layer)
        torch.testing.assert_close(acts[layer], expected)
        assert layer in captured_all
        if case.tokens:
            # token ids have no gradient: ask with respect to the embedding output instead
            grad = nbvis.gradient(model, x, of=(layer, case.element), wrt=case.wrt)
            assert grad.shape[0] == len(x) and grad.abs().sum() > 0
        else:
            ours = nbvis.gradient(model, x, of=(layer, unit))
            if call == 1:
                theirs = captum_attr.NeuronGradient(logits(model), module).attribute(x, neuron_selector=case.select)
            else:
                theirs = reference(model, x, layer, x.clone().requires_grad_(True), case.select)
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
            element = nbvis.gradient(model, x, of=(layer, case.element))
            if call == 1:
                theirs = captum_attr.NeuronGradient(logits(model), module).attribute(x, neuron_selector=case.element)
                torch.testing.assert_close(element, theirs, rtol=1e-4, atol=1e-6)
            saliency = nbvis.gradient(model, x, of=(None, case.target))
            theirs = captum_attr.Saliency(logits(model)).attribute(x, target=captum_target(case, model, x), abs=False)
            torch.testing.assert_close(saliency, theirs, rtol=1e-4, atol=1e-6)
        if case.wrt is not None:
            wrt_module = dict(model.named_modules())[case.wrt]
            ours = nbvis.gradient(model, x, of=(None, case.target), wrt=case.wrt)
            theirs = captum_attr.LayerGradientXActivation(logits(model), wrt_module, multiply_by_inputs=False).attribute(
                x, target=captum_target(case, model, x))
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


@only(lambda case: case.relu)  # guided backprop and deconvnet change the backward pass of ReLUs
def test_guided_backprop_and_deconvnet_match_captum(case, model, x, unchanged):
    module = nn.Module()
    module.inner = out_of_place(model)  # nbvis runs on the model itself, in-place ReLUs included
    module.forward = logits(module.inner)
    with unchanged(model):
        guided = nbvis.guided_backprop(model, x, of=(None, case.target))
        deconv = nbvis.deconvnet(model, x, of=(None, case.target))
    torch.testing.assert_close(guided, captum_attr.GuidedBackprop(module).attribute(x, target=captum_target(case, model, x)), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(deconv, captum_attr.Deconvolution(module).attribute(x, target=captum_target(case, model, x)), rtol=1e-4, atol=1e-6)


def test_maximize_history_is_the_units_true_value(case, model, x, unchanged):
    layer, unit = case.mid
    shape = tuple(x.shape[1:])
    if case.tokens:
        with pytest.raises(ValueError, match="could not run"):
            nbvis.maximize(model, case.mid, shape, steps=1)
        return
    if len(shape) > 3:  # maximize synthesizes vectors and images, not volumes: a clear refusal
        with pytest.raises(ValueError, match=r"\(features,\), \(H, W\) or \(C, H, W\).*got \(1, 10, 10, 10\)"):
            nbvis.maximize(model, case.mid, shape, steps=1)
        return
    with unchanged(model):
        steps = list(nbvis.iter_maximize(model, case.mid, shape, steps=3, starts=2, lr=0.01))
    for step in steps:
        true = case.select(reference(model, step.inputs, layer))
        np.testing.assert_allclose(step.values, true.double().numpy(), rtol=1e-4, atol=1e-5)


def test_top_examples_equal_a_brute_force_ranking(case, model, x, unchanged):
    layer, unit = case.mid
    with unchanged(model):
        result = top_examples(model, layer, unit, x, k=3, batch_size=4)
    score = case.select(reference(model, x, layer))
    order = torch.sort(score, descending=True, stable=True).indices[:3]
    assert result.indices.tolist() == order.tolist()
    torch.testing.assert_close(result.values, score[order].float())


def test_views_build_and_leave_the_model_unchanged(case, model, x, unchanged):
    layer, unit = case.mid
    with unchanged(model):
        for weighted in (case.conv, case.linear):
            if weighted is not None:
                module = dict(model.named_modules())[weighted]
                rows = (module.in_features,) if isinstance(module, nn.Linear) else None
                grid = nbvis.WeightGrid(model, weighted, rows)
                out = getattr(module, "out_features", None) or getattr(module, "out_channels", None)
                assert grid.n_units == out
                grid.close()
        view = nbvis.ActivationHeatmap(model, x[0])
        assert layer in view.layers
        view.selected = (layer, unit)
        if case.tokens:
            view.wrt = case.wrt
        assert view.gradient_map is not None
        view.close()
        if not case.tokens and x.dim() <= 4:  # maximize synthesizes vectors and images, not volumes
            viewer = nbvis.OptimizationViewer(model, case.mid, tuple(x.shape[1:]), steps=2, starts=1, autostart=False)
            viewer.start().wait(120)
            assert viewer.history.shape == (2, 1)
            viewer.close()
        if x.dim() <= 4:
            explorer = nbvis.Explorer(model, x, steps=2, starts=1)
            try:
                explorer.selected = case.mid
                assert explorer.selected == case.mid
                if case.tokens:  # token ids: the heatmap and the weights, no preferred input
                    assert explorer.optimizer is None and "token ids" in explorer._optimizer_note.value
                    assert explorer.error == ""
                else:
                    explorer.optimizer.wait(120)
            finally:
                explorer.close()


@only(lambda case: not case.tokens and case.inputs().dim() == 4)  # patches of (C, H, W) images
def test_feature_importance_on_patches(case, model, x, unchanged):
    with torch.no_grad():
        y = logits(model)(x)[:, case.target]
    from nbvis.compute.importance import permutation_importance

    class Head(nn.Module):
        """One output unit of the model, as a regression target."""

        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, inputs):
            return logits(self.inner)(inputs)[:, case.target]

    with unchanged(model):
        result = permutation_importance(Head(), x, y, scoring="r2", n_repeats=2, random_state=0, feature_groups=(8, 8))
        assert result.importances.shape[1] == 2
        chart = nbvis.FeatureImportance(Head(), x, y, n_repeats=2, feature_groups=(8, 8))
        chart.wait(120)
        assert chart.importances_mean is not None
        chart.close()


def test_a_training_resnet_keeps_its_mode_and_batchnorm_statistics(unchanged):
    from .models import TinyResNet

    torch.manual_seed(0)
    model = TinyResNet().train()
    x = torch.rand(4, 3, 16, 16)
    with unchanged(model):
        nbvis.capture(model, x)
        nbvis.gradient(model, x, of=("layer2.0.relu#2", 1), wrt="layer1")
        nbvis.guided_backprop(model, x, of=("fc", 0))
        nbvis.maximize(model, ("layer1.0.bn2", 2), (3, 16, 16), steps=2)
        top_examples(model, "layer2.0.conv1", 3, x, k=2)
        view = nbvis.ActivationHeatmap(model, x[0])
        view.selected = ("layer1.0.relu#2", 4)
        view.close()
    assert model.training and all(m.training for m in model.modules())


OUTPUT_ONLY = [
    ("BasicModel", (), (6, 4)),
    ("BasicModel_MaxPool_ReLU", (), (6, 3, 6)),
    ("LinearMaxPoolLinearModel", (), (6, 4)),
]


@pytest.mark.parametrize("name,args,shape", OUTPUT_ONLY, ids=[n for n, _, _ in OUTPUT_ONLY])
def test_captum_models_without_a_layer_to_name(name, args, shape, unchanged):
    from captum.testing.helpers import basic_models

    torch.manual_seed(0)
    model = getattr(basic_models, name)(*args).eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    with unchanged(model):
        saliency = nbvis.gradient(model, x, of=(None, 0))
        view = nbvis.ActivationHeatmap(model, x[0])
        assert "" in view.layers or view.output_layer is not None
        view.close()
    theirs = captum_attr.Saliency(model).attribute(x, target=0 if model(x).dim() > 1 else None, abs=False)
    torch.testing.assert_close(saliency, theirs)


def test_captum_text_module_takes_token_ids(unchanged):
    from captum.testing.helpers import basic_models

    torch.manual_seed(0)
    model = basic_models.TextModule(20, 6).eval()
    tokens = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    with unchanged(model):
        acts = nbvis.capture(model, tokens, ["inner_embedding"])
        view = nbvis.ActivationHeatmap(model, tokens[0])
        assert view.input.dtype == torch.long
        view.close()
        top = top_examples(model, "inner_embedding", 3, tokens, k=2)
    torch.testing.assert_close(acts["inner_embedding"], model.inner_embedding(tokens).detach())
    assert top.indices.tolist() == torch.sort(acts["inner_embedding"][..., 3].mean(1), descending=True).indices.tolist()


class Logits(nn.Module):
    """The model's logits as a tensor: the wrapper a user writes for a library that needs one."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def forward(self, inputs):
        return logits(self.inner)(inputs)


def noisy_outputs(model, x):
    """Targets for an r2 score of every output: the model's own outputs plus noise (not a perfect fit)."""
    with torch.no_grad():
        out = logits(model)(x).flatten(1).double()
    return (out + 0.5 * out.std() * torch.randn(out.shape, generator=torch.Generator().manual_seed(4))).numpy()


@only(lambda case: case.name.startswith("hf-") and not case.name.startswith("hf-gpt2"))
def test_importance_reads_a_model_output_by_the_contracts_rule(case, model, x, unchanged):
    """A ``transformers`` model returns a ModelOutput: its logits are scored, as everywhere else."""
    from sklearn.inspection import permutation_importance as sklearn_importance
    from sklearn_estimators import TorchRegressor

    y = noisy_outputs(model, x)
    groups = None if case.tokens else (8, 8)
    with unchanged(model):
        ours = nbvis.permutation_importance(model, x, y, scoring="r2", n_repeats=3, random_state=0, feature_groups=groups)
        chart = nbvis.FeatureImportance(model, x, y, n_repeats=2, feature_groups=groups)
        chart.wait(120)
        assert chart.importances_mean is not None and chart.error == ""
        chart.close()
    if case.tokens:  # token positions are the columns: scikit-learn permutes the same ones
        theirs = sklearn_importance(TorchRegressor(Logits(model)), x.numpy(), y, scoring="r2", n_repeats=3, random_state=0)
    else:  # patches: the same permutations through a model that returns its logits as a tensor
        theirs = nbvis.permutation_importance(Logits(model), x, y, scoring="r2", n_repeats=3, random_state=0,
                                              feature_groups=groups)
    np.testing.assert_allclose(ours.importances, theirs.importances, rtol=1e-5, atol=1e-6)
    assert np.abs(ours.importances).max() > 1e-4  # the inputs move the score
    if case.tokens:
        with pytest.raises(ValueError, match=r"method='noise'.*torch.int64.*use method='permutation'"):
            nbvis.permutation_importance(model, x, y, scoring="r2", method="noise")


@only(lambda case: case.name.startswith("hf-") and not case.tokens)
def test_quality_reads_the_class_from_a_model_output(case, model, x, unchanged):
    """``result.evaluate`` of a class image of the model's output: its confidence under shifts is
    the mean softmax probability of the class over the shifted images, by hand."""
    label = case.target
    with unchanged(model):
        result = nbvis.maximize(model, ("", label), tuple(x.shape[1:]), steps=3, starts=2)
        quality = result.evaluate(model, x, shift=1)
    forward = logits(model)
    with torch.no_grad():
        objective = forward(result.inputs)[:, label]
        shifted = [torch.roll(result.inputs, (dy, dx), (2, 3)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        confidence = torch.stack([torch.softmax(forward(s).double(), 1)[:, label] for s in shifted]).mean(0)
    assert quality.label == label
    np.testing.assert_allclose(quality.objective, objective.double().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(quality.confidence, confidence.numpy(), rtol=1e-6)
    # an objective of the user's that reads the model's output: its figures read the same logits
    from nbvis.compute.optimize import objective as custom

    logit = custom(lambda acts: acts[""][:, label], description=f"logit {label}")
    with unchanged(model):
        result = nbvis.maximize(model, logit, tuple(x.shape[1:]), steps=2, starts=2)
        quality = result.evaluate(model)
    with torch.no_grad():
        np.testing.assert_allclose(quality.objective, forward(result.inputs)[:, label].double().numpy(), rtol=1e-4, atol=1e-5)


def test_the_explorer_opens_a_swin_transformer_whose_windows_regroup_the_batch(unchanged):
    """Swin's window attention reshapes its (starts, ...) maps into rows of windows times starts:
    the Explorer's check of its optimizer reads only the layers with one row per start."""
    import transformers

    torch.manual_seed(0)
    config = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2],
                                     window_size=4, num_labels=3)
    model = transformers.SwinForImageClassification(config).eval()
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with unchanged(model):
        explorer = nbvis.Explorer(model, x, steps=2, starts=2)
        try:
            explorer.selected = ("classifier", 1)
            explorer.optimizer.wait(120)
            assert explorer.optimizer.history.shape == (2, 2) and explorer.error == ""
            # no building blocks: the one (C, H, W) map that follows the input (the patch embedding) has
            # negative values, which NMF cannot factor; the position bias (the same for every input) is no map of it
            assert explorer.blocks is None
        finally:
            explorer.close()
