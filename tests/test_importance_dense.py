"""The dense passes through the rank-1 shortcut (every row of each perturbation, in cache-sized
passes, outputs scored by groups of items), checked against scikit-learn at every pass shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.inspection import permutation_importance as sklearn_importance
from sklearn.metrics import make_scorer, mean_squared_error
from sklearn_estimators import TorchClassifier, TorchRegressor
from torch import nn

from nbvis.compute.importance import dense
from nbvis.compute.importance import passes
from nbvis.compute.importance import run as imp_run
from nbvis.compute.importance import iter_permutation_importance, permutation_importance
from nbvis.compute.importance.scoring import SCORINGS, fitting, mismatch
from nbvis.compute.importance.shortcut import Tail, run_tail


def _table(n=300, features=5, classes=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features)).astype(np.float32)
    score = X[:, 0] * 2 + np.sin(X[:, 1]) + 0.5 * X[:, 2] * X[:, 3]
    if classes is None:
        return X, (score + 0.1 * rng.normal(size=n)).astype(np.float32)
    return X, np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))


def _mlp(*widths, end=(), data=None):
    """An MLP with ReLUs, trained a little on ``data`` (X, y) when given."""
    torch.manual_seed(0)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1], *end)
    if data is not None:
        X, y = torch.as_tensor(data[0]), torch.as_tensor(data[1])
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(150):
            opt.zero_grad()
            out = model(X)
            loss = nn.functional.mse_loss(out[:, 0], y) if widths[-1] == 1 else nn.functional.cross_entropy(out, y)
            loss.backward()
            opt.step()
    return model.eval()


# (PASS_ROWS, GROUP_ELEMENTS): several whole items per pass, or an item's rows over several
# passes; groups of items that end inside a unit, or one group for everything
SHAPES = [(2048, 1 << 20), (1024, 1 << 20), (700, 1500), (128, 300), (64, 1)]


@pytest.mark.parametrize("rows, group", SHAPES)
def test_dense_passes_match_sklearn_at_every_shape(monkeypatch, rows, group):
    monkeypatch.setattr(dense, "PASS_ROWS", rows)
    monkeypatch.setattr(dense, "GROUP_ELEMENTS", group)
    X, y = _table()
    model = _mlp(5, 16, 8, 1, data=(X, y))
    plan = imp_run._Plan(model, X, y, "r2", "permutation", 4, 0, None, None, None, None, 1.0)
    assert plan.fast is not None
    assert plan._unit([0, 1, 2, 3], list(range(5))).row is None  # the dense path
    ours = permutation_importance(model, X, y, n_repeats=4, random_state=2)
    ref = sklearn_importance(TorchRegressor(model), X, y, scoring="r2", n_repeats=4, random_state=2)
    np.testing.assert_allclose(ours.importances, ref.importances, rtol=0, atol=1e-6)
    assert ours.importances.std() > 0.01


@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")  # float32 softmax, summed in float64
@pytest.mark.parametrize("rows, group", SHAPES[1:4])
def test_dense_passes_classes_and_callables(monkeypatch, rows, group):
    monkeypatch.setattr(dense, "PASS_ROWS", rows)
    monkeypatch.setattr(dense, "GROUP_ELEMENTS", group)
    X, y = _table(classes=3)
    # three class scores: the last layer writes them straight into the outputs buffer
    clf = _mlp(5, 12, 3, data=(X, y))
    est = TorchClassifier(clf).fit(X, y)
    for scoring in ("accuracy", "neg_log_loss"):
        ours = permutation_importance(clf, X, y, scoring=scoring, n_repeats=3, random_state=1)
        ref = sklearn_importance(est, X, y, scoring=scoring, n_repeats=3, random_state=1)
        np.testing.assert_allclose(ours.importances, ref.importances, rtol=1e-5, atol=1e-6)
    # probabilities from a final Softmax: the tail ends with a module call
    probs = _mlp(5, 12, 3, end=(nn.Softmax(dim=1),))
    ours = permutation_importance(probs, X, y, scoring="neg_log_loss", n_repeats=3, random_state=1)
    ref = sklearn_importance(TorchClassifier(probs, probabilities=True).fit(X, y), X, y, scoring="neg_log_loss",
                             n_repeats=3, random_state=1)
    np.testing.assert_allclose(ours.importances, ref.importances, rtol=1e-5, atol=1e-6)
    # a callable gets each item's whole predictions
    Xr, yr = _table()
    reg = _mlp(5, 16, 1, data=(Xr, yr))

    def neg_mse(y_true, y_pred):
        assert y_pred.shape == y_true.shape == (len(Xr),)
        return -float(np.mean((y_true - y_pred) ** 2))

    ours = permutation_importance(reg, Xr, yr, scoring=neg_mse, n_repeats=3)
    ref = sklearn_importance(TorchRegressor(reg), Xr, yr, scoring=make_scorer(mean_squared_error, greater_is_better=False),
                             n_repeats=3, random_state=0)
    np.testing.assert_allclose(ours.importances, ref.importances, atol=1e-6)


def test_a_lone_first_layer_and_float64(monkeypatch):
    monkeypatch.setattr(dense, "PASS_ROWS", 256)
    X, y = _table()
    for model in (nn.Sequential(nn.Linear(5, 1)), _mlp(5, 16, 1, data=(X, y)).double()):  # no tail; float64 throughout
        ours = permutation_importance(model, X, y, n_repeats=3)
        ref = sklearn_importance(TorchRegressor(model), X, y, scoring="r2", n_repeats=3, random_state=0)
        tol = 1e-12 if next(model.parameters()).dtype == torch.float64 else 1e-6
        np.testing.assert_allclose(ours.importances, ref.importances, rtol=0, atol=tol)


def test_a_hook_put_on_a_later_layer_between_steps_runs(monkeypatch):
    """The tail reads the layers' hooks at every step: a hook the owner adds meanwhile is called
    (and what it returns is used) from the next step on."""
    monkeypatch.setattr(imp_run, "STEP_SECONDS", 0.0)
    X, y = _table()
    model = _mlp(5, 16, 8, 1)
    steps = iter_permutation_importance(model, X, y, n_repeats=4)
    next(steps)
    calls = []
    handle = model[2].register_forward_hook(lambda m, i, o: calls.append(len(o)) or o * 0)
    try:
        for step in steps:
            pass
    finally:
        handle.remove()
    assert calls  # the hook ran on the perturbed rows
    # with the second layer's output zeroed, a perturbation no longer moves the predictions
    assert np.isfinite(step.result.importances).all()


def test_tail_writes_into_out_and_reuses_buffers():
    torch.manual_seed(0)
    for modules in ([nn.ReLU(), nn.Linear(8, 3)], [nn.Tanh(), nn.Linear(8, 40), nn.Sigmoid()], [], [nn.Linear(8, 1)]):
        tail = Tail(modules)
        h = torch.randn(50, 8)
        with torch.no_grad():
            want = run_tail(modules, h.clone())
            out = torch.empty_like(want)
            got = tail(h.clone(), out=out)
            assert got is out
            torch.testing.assert_close(out, want)
            again = tail(h.clone())
            torch.testing.assert_close(again, want)
            assert tail(h.clone()).data_ptr() == again.data_ptr() or not modules  # the same buffer


@pytest.mark.parametrize("scoring", ["r2", "callable"])
def test_items_that_change_few_rows_run_only_those(monkeypatch, scoring):
    """In a unit where most rows change, the items of a mostly constant feature run their changed
    rows only; the numbers stay scikit-learn's."""
    monkeypatch.setattr(dense, "PASS_ROWS", 64)
    X, y = _table(n=400, features=6)
    X[np.random.default_rng(1).random(400) < 0.8, 5] = 0.0  # feature 5 is 0 in about 80% of the rows
    y = y + X[:, 5]
    model = _mlp(6, 16, 8, 1, data=(X, y))
    plan = imp_run._Plan(model, X, y, "r2", "permutation", 4, 0, None, None, None, None, 1.0)
    unit = plan._unit([0, 1, 2, 3], list(range(6)))
    assert unit.row is None  # dense as a whole
    few = np.flatnonzero(unit.counts < passes.FEW_ROWS * 400)
    assert set(few % 6) == {5}
    seen = []
    original = passes.Passes._sparse
    monkeypatch.setattr(passes.Passes, "_sparse", lambda self, u: seen.append(u.counts.copy()) or original(self, u))

    def r2(y_true, y_pred):
        return 1 - float(((y_true - y_pred) ** 2).sum() / ((y_true - y_true.mean()) ** 2).sum())

    ours = permutation_importance(model, X, y, scoring=r2 if scoring == "callable" else "r2", n_repeats=4, random_state=0)
    ref = sklearn_importance(TorchRegressor(model), X, y, scoring="r2", n_repeats=4, random_state=0)
    np.testing.assert_allclose(ours.importances, ref.importances, rtol=0, atol=1e-6)
    assert seen and all(set(np.flatnonzero(c) % 6) == {5} for c in seen)  # only feature 5's items went by rows
    assert ours.importances[5].mean() > 0.05


# tails the bound runs go through: with and without biases, other activations in place, a layer
# called as a module (GELU), a tail that ends with an activation, float64, none at all
TAILS = {
    "relu": lambda: [nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1)],
    "no bias": lambda: [nn.ReLU(), nn.Linear(16, 8, bias=False), nn.ReLU(), nn.Linear(8, 1, bias=False)],
    "tanh, leaky": lambda: [nn.Tanh(), nn.Linear(16, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1)],
    "gelu module": lambda: [nn.GELU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1)],
    "ends with sigmoid": lambda: [nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid()],
    "float64": lambda: [nn.ReLU(), nn.Linear(16, 8).double(), nn.Tanh(), nn.Linear(8, 1).double()],
    "none": lambda: [],
}


@pytest.mark.parametrize("name", TAILS)
def test_a_bound_tail_runs_the_modules(name):
    """``Tail.bound(h)(out)`` gives the modules' own numbers (the same kernels) for whatever ``h``
    holds when it is called, and follows ``compile``: a hook added later is called."""
    torch.manual_seed(0)
    modules = TAILS[name]()
    dtype = torch.float64 if name == "float64" else torch.float32
    tail = Tail(modules)
    h = torch.empty(40, 16, dtype=dtype)
    run = tail.bound(h)
    out = torch.empty(40, 1 if modules else 16, dtype=dtype)
    with torch.no_grad():
        for _ in range(2):  # new values in h each time
            values = torch.randn(40, 16, dtype=dtype)
            h.copy_(values)
            assert run(out) is out
            want = run_tail(modules, values.clone())
            assert torch.equal(out, want), name
            assert torch.equal(tail(values.clone()), want)
        if not modules:
            return
        calls = []
        modules[-1].register_forward_hook(lambda m, i, o: calls.append(1) or o + 1)
        tail.compile()
        h.copy_(values)
        run(out)
        assert calls and torch.equal(out, want + 1)


@pytest.mark.parametrize("name", [n for n in TAILS if n != "none"])
def test_dense_passes_match_sklearn_for_other_tails(monkeypatch, name):
    """The bound tails in the dense passes, several items per pass and an item over several
    passes: scikit-learn's numbers."""
    X, y = _table()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), *TAILS[name]()).eval()
    if name == "float64":
        model = model.double()
    for rows in (2048, 128):
        monkeypatch.setattr(dense, "PASS_ROWS", rows)
        plan = imp_run._Plan(model, X, y, "r2", "permutation", 3, 0, None, None, None, None, 1.0)
        assert plan.fast is not None and plan._unit([0, 1, 2], list(range(5))).row is None  # the dense path
        ours = permutation_importance(model, X, y, n_repeats=3, random_state=1)
        ref = sklearn_importance(TorchRegressor(model), X, y, scoring="r2", n_repeats=3, random_state=1)
        tol = 1e-12 if name == "float64" else 1e-6
        np.testing.assert_allclose(ours.importances, ref.importances, rtol=0, atol=tol)
        assert np.abs(ours.importances).max() > 1e-3


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_changed_rows_are_counted_as_count_nonzero(dtype):
    values = torch.randn(3, 4, 5000).to(dtype)
    values[values.abs() < 0.5] = 0
    values[0, 0, :7] = -0.0
    values[1, 2] = 0
    counts = imp_run._nonzero_counts(values)
    assert counts.dtype == torch.int64
    assert torch.equal(counts, torch.count_nonzero(values, dim=-1))
    assert counts[1, 2] == 0 and counts.max() > 2000


def test_the_fitting_scorings_are_those_with_no_mismatch():
    rng = np.random.default_rng(0)
    for y, outputs in [(rng.normal(size=50), 1), (rng.normal(size=(50, 2)), 2), (rng.integers(0, 3, 50), 3),
                       (rng.integers(0, 2, 50), 1), (rng.integers(0, 5, 50), 3), (rng.normal(size=50), 3)]:
        assert fitting(y, outputs) == tuple(k for k in SCORINGS if mismatch(k, y, outputs) is None)


def test_rows_per_pass_count_every_output_after_the_first_layer():
    """The sparse passes' batch: the memory budget over the bytes a row takes after the first layer
    (its outputs, the tail's each)."""
    X, y = _table()
    model = _mlp(5, 16, 8, 1)  # 16 + 16 (ReLU) + 8 + 8 (ReLU) + 1 float32 per row
    plan = imp_run._Plan(model, X, y, "r2", "permutation", 2, 0, None, None, None, None, 1.0)
    assert plan.fast is not None
    assert plan.batch == imp_run.MEMORY_BUDGET // (49 * 4)
