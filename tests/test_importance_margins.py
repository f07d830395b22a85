"""Accuracy skips the changed rows whose predicted class provably stays: the bounds hold against
real forward passes, rows are skipped, ties are never skipped, and the numbers stay scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.inspection import permutation_importance as sklearn_importance
from sklearn_estimators import TorchClassifier
from test_importance import Wrapped  # the same layers behind a custom forward: the whole model runs
from torch import nn

from nbvis.compute.importance import margins
from nbvis.compute.importance import run as imp_run
from nbvis.compute.importance import permutation_importance


def _data(n=400, features=6, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features)).astype(np.float32)
    score = X[:, 0] * 2 + np.sin(X[:, 1]) + 0.5 * X[:, 2] * X[:, 3]
    return X, np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))


def _trained(model, X, y, epochs=150):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(epochs):
        opt.zero_grad()
        out = model(Xt)
        if out.shape[1] == 1:
            loss = nn.functional.binary_cross_entropy_with_logits(out[:, 0], yt.float())
        else:
            loss = nn.functional.cross_entropy(out, yt)
        loss.backward()
        opt.step()
    return model.eval()


def _plan(model, X, y, method="permutation", groups=None):
    return imp_run._Plan(model, X, y, "accuracy", method, 3, 0, groups, None, None, None, 1.0)


TAILS = {
    "sigmoid": lambda: [nn.Sigmoid(), nn.Linear(16, 4)],
    "relu-tanh": lambda: [nn.ReLU(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 4)],
    "leaky": lambda: [nn.LeakyReLU(1.5), nn.Linear(16, 4)],
    "identity-last": lambda: [nn.ReLU(), nn.Linear(16, 4), nn.Identity()],
}


@pytest.mark.parametrize("pairs", [1 << 12, 1], ids=["class-pairs", "per-class"])
@pytest.mark.parametrize("tail", TAILS)
def test_the_bound_holds_on_real_forward_passes(monkeypatch, tail, pairs):
    """For random rows and elements, the margin to every other class moves by at most |change| x the bound."""
    monkeypatch.setattr(margins, "_PAIRS", pairs)
    X, y = _data()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 16), *TAILS[tail]()).eval()
    plan = _plan(model, X, y)
    found = plan.margins
    assert found is not None
    rng = np.random.default_rng(2)
    Xt = torch.from_numpy(X).double()
    double = model.double()
    with torch.no_grad():
        base = double(Xt)
        top = base.argmax(dim=1)
        for _ in range(30):
            j = int(rng.integers(6))
            delta = float(rng.normal() * 3)
            moved = Xt.clone()
            moved[:, j] += delta
            out = double(moved)
            gap = base.gather(1, top[:, None]) - base  # (m, o): the margin to each class
            new_gap = out.gather(1, top[:, None]) - out
            bound = abs(delta) * found.moves(torch.tensor([j]))[:, 0].double()
            assert bool(((gap - new_gap).abs() <= bound[:, None] + 1e-9).all())
    model.float()


def test_rows_that_keep_their_class_are_skipped_and_the_numbers_stay():
    X, y = _data(n=600)
    model = _trained(nn.Sequential(nn.Linear(6, 32), nn.Sigmoid(), nn.Linear(32, 4)), X, y)
    plan = _plan(model, X, y)
    assert plan.margins is not None
    unit = plan._unit([0, 1, 2], list(range(6)))
    plain = _plan(model, X, y)
    plain.margins = None
    every = plain._unit([0, 1, 2], list(range(6)))
    assert unit.counts.sum() < 0.9 * every.counts.sum()  # many changed rows keep their class
    assert np.all(unit.counts <= every.counts)
    for method in ("permutation", "noise"):
        ours = permutation_importance(model, X, y, scoring="accuracy", method=method, n_repeats=3, random_state=0)
        if method == "permutation":
            ref = sklearn_importance(TorchClassifier(model).fit(X, y), X, y, scoring="accuracy", n_repeats=3, random_state=0)
            np.testing.assert_array_equal(ours.importances, ref.importances)
            assert ours.importances[0].mean() > 0.1
        else:  # the same run through the whole model (no shortcut, nothing skipped)
            whole = permutation_importance(Wrapped(model), X, y, scoring="accuracy", method=method, n_repeats=3, random_state=0)
            np.testing.assert_array_equal(ours.importances, whole.importances)


def test_groups_of_several_elements_skip_rows_too():
    X, y = _data(n=500)
    model = _trained(nn.Sequential(nn.Linear(6, 24), nn.ReLU(), nn.Linear(24, 4)), X, y)
    groups = [[0, 1], [2, 3, 4], [5]]
    plan = _plan(model, X, y, groups=groups)
    plain = _plan(model, X, y, groups=groups)
    plain.margins = None
    unit, every = plan._unit([0, 1, 2], [0, 1, 2]), plain._unit([0, 1, 2], [0, 1, 2])
    assert unit.counts.sum() < every.counts.sum() and np.all(unit.counts <= every.counts)
    ours = permutation_importance(model, X, y, scoring="accuracy", n_repeats=3, feature_groups=groups, random_state=0)
    whole = permutation_importance(Wrapped(model), X, y, scoring="accuracy", n_repeats=3, feature_groups=groups, random_state=0)
    np.testing.assert_array_equal(ours.importances, whole.importances)


def test_tied_classes_are_never_skipped():
    """Two classes with the same weights tie on every row (argmax takes the first): no margin."""
    X, y = _data(n=300, classes=3)
    model = _trained(nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)), X, y)
    with torch.no_grad():
        model[2].weight[1] = model[2].weight[0]
        model[2].bias[1] = model[2].bias[0]
    plan = _plan(model, X, y)
    assert plan.margins is not None
    tied = model(torch.from_numpy(X)).argmax(dim=1) != 2
    assert bool((plan.margins.margin[tied] < 0).all())
    ours = permutation_importance(model, X, y, scoring="accuracy", n_repeats=3, random_state=0)
    ref = sklearn_importance(TorchClassifier(model).fit(X, y), X, y, scoring="accuracy", n_repeats=3, random_state=0)
    np.testing.assert_array_equal(ours.importances, ref.importances)


@pytest.mark.parametrize("ending, bounded", [("logit", True), ("sigmoid", True), ("softmax", False), ("gelu", False)])
def test_outputs_read_as_classes_with_and_without_a_bound(ending, bounded):
    X, y = _data(n=400, classes=2)
    layers = {
        "logit": [nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 1)],
        "sigmoid": [nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 1), nn.Sigmoid()],
        "softmax": [nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 2), nn.Softmax(dim=1)],
        "gelu": [nn.Linear(6, 12), nn.GELU(), nn.Linear(12, 2)],
    }[ending]
    model = nn.Sequential(*layers)
    if ending in ("logit", "gelu"):
        _trained(model, X, y)
    torch.manual_seed(0)
    model.eval()
    plan = _plan(model, X, y)
    assert (plan.margins is not None) == bounded
    ours = permutation_importance(model, X, y, scoring="accuracy", n_repeats=3, random_state=0)
    whole = permutation_importance(Wrapped(model), X, y, scoring="accuracy", n_repeats=3, random_state=0)
    np.testing.assert_array_equal(ours.importances, whole.importances)
    assert np.abs(ours.importances).max() > 0


def test_only_accuracy_skips_rows():
    X, y = _data()
    model = _trained(nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4)), X, y)
    assert _plan(model, X, y).margins is not None
    log_loss = imp_run._Plan(model, X, y, "neg_log_loss", "permutation", 3, 0, None, None, None, None, 1.0)
    assert log_loss.margins is None


def test_half_precision_outputs_get_no_bound():
    layers = [nn.ReLU(), nn.Linear(8, 3)]
    weight_t = torch.randn(5, 8)
    base = torch.randn(20, 3)
    assert margins.class_margins(weight_t, layers, base, False) is not None
    assert margins.class_margins(weight_t, layers, base.double(), False) is not None
    for dtype in (torch.float16, torch.bfloat16):
        assert margins.class_margins(weight_t.to(dtype), layers, base.to(dtype), False) is None
