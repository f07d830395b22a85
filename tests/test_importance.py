"""Permutation / noise importance, checked against scikit-learn and hand computations."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits
from sklearn.inspection import permutation_importance as sklearn_importance
from sklearn.metrics import accuracy_score, make_scorer, mean_absolute_error, r2_score
from sklearn.utils.random import sample_without_replacement
from sklearn_estimators import TorchClassifier, TorchRegressor
from torch import nn

from nbvis.compute.importance import draws
from nbvis.compute.importance import run as imp_run
from nbvis.compute.importance import ImportanceStep, iter_permutation_importance, permutation_importance


class Wrapped(nn.Module):
    """The same layers behind a custom forward: nbvis must run the whole model."""

    def __init__(self, seq):
        super().__init__()
        self.seq = seq

    def forward(self, x):
        return self.seq(x)


def _fit(model, X, y, loss, epochs=150, lr=1e-2):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        loss(model(X), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1))
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    _fit(model, Xt, yt, lambda out, t: nn.functional.mse_loss(out[:, 0], t))
    return X, y, model


@pytest.fixture(scope="module")
def digits8():
    """8x8 digits as images (n, 1, 8, 8) and a Flatten-Linear-ReLU-Linear classifier."""
    data = load_digits()
    X = (data.images / 16.0).astype(np.float32)[:600, None]
    y = data.target[:600]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10))
    _fit(model, torch.from_numpy(X), torch.from_numpy(y), nn.functional.cross_entropy, epochs=100)
    return X, y, model


# ------------------------------------------------------------------ agreement with scikit-learn


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("wrap", [False, True], ids=["rank1", "whole-model"])
def test_matches_sklearn_regression(diabetes, dtype, tol, wrap):
    X, y, model = diabetes
    model = model.to(dtype)
    net = Wrapped(model) if wrap else model
    try:
        ours = permutation_importance(net, X, y, scoring="r2", n_repeats=6, random_state=3)
        ref = sklearn_importance(TorchRegressor(net), X, y, scoring="r2", n_repeats=6, random_state=3)
    finally:
        model.float()
    assert ours.importances.shape == (10, 6)
    np.testing.assert_allclose(ours.importances, ref.importances, rtol=0, atol=tol)
    np.testing.assert_allclose(ours.importances_mean, ref.importances_mean, rtol=0, atol=tol)
    np.testing.assert_allclose(ours.importances_std, ref.importances_std, rtol=0, atol=tol)
    assert ours.importances.std() > 0.01  # a real, non-trivial comparison
    assert ours.feature_names == [f"x{j}" for j in range(10)]


def test_rank1_shortcut_is_used_only_where_exact(diabetes, digits8):
    X, y, model = diabetes
    plan = imp_run._Plan(model, X, y, "r2", "permutation", 2, 0, None, None, None, None, 1.0)
    assert plan.fast is not None
    plan = imp_run._Plan(Wrapped(model), X, y, "r2", "permutation", 2, 0, None, None, None, None, 1.0)
    assert plan.fast is None
    handle = model[0].register_forward_hook(lambda m, i, o: o * 2)  # a hook changes what the layer returns
    try:
        plan = imp_run._Plan(model, X, y, "r2", "permutation", 2, 0, None, None, None, None, 1.0)
        assert plan.fast is None
        hooked = permutation_importance(model, X, y, n_repeats=2)
        ref = sklearn_importance(TorchRegressor(model), X, y, scoring="r2", n_repeats=2, random_state=0)
        np.testing.assert_allclose(hooked.importances, ref.importances, atol=1e-6)
    finally:
        handle.remove()
    Xd, yd, clf = digits8  # Flatten then Linear on images
    assert imp_run._Plan(clf, Xd, yd, "accuracy", "permutation", 1, 0, None, None, None, None, 1.0).fast is not None


def test_in_place_layers_do_not_corrupt_the_data(diabetes):
    X, y, model = diabetes
    torch.manual_seed(2)
    for net in (
        nn.Sequential(nn.ReLU(inplace=True), nn.Linear(10, 8), nn.Tanh(), nn.Linear(8, 1)),  # the whole model runs
        nn.Sequential(nn.Linear(10, 8), nn.ReLU(inplace=True), nn.Linear(8, 1)),  # the shortcut
    ):
        Xt = torch.tensor(X, dtype=torch.float32)
        ours = permutation_importance(net, Xt, y, n_repeats=3)
        ref = sklearn_importance(TorchRegressor(net), X, y, scoring="r2", n_repeats=3, random_state=0)
        np.testing.assert_allclose(ours.importances, ref.importances, atol=1e-6)
        assert torch.equal(Xt, torch.tensor(X, dtype=torch.float32))  # the caller's X is untouched


@pytest.mark.parametrize("max_samples", [0.5, 300, 3, 440])
def test_matches_sklearn_max_samples(diabetes, max_samples):
    X, y, model = diabetes
    kw = dict(scoring="neg_mean_squared_error", n_repeats=4, random_state=7, max_samples=max_samples)
    ours = permutation_importance(model, X, y, **kw)
    ref = sklearn_importance(TorchRegressor(model), X, y, **kw)
    np.testing.assert_allclose(ours.importances, ref.importances, atol=1e-6)


@pytest.mark.parametrize("n, m", [(442, 3), (1000, 500), (442, 440), (5000, 20)])
def test_row_sampling_draws_like_sklearn(n, m):
    # tracking selection (m/n <= 1%), permutation, reservoir sampling (m/n >= 99%)
    for seed in range(3):
        expected = sample_without_replacement(n, m, random_state=np.random.RandomState(seed))
        np.testing.assert_array_equal(draws.subsample(np.random.RandomState(seed), n, m), expected)


def test_draws_are_numpys_on_every_thread_at_once():
    """The permutations come from a reseeded generator per thread: the same draws as a new
    RandomState each time, also while other threads draw."""
    import threading

    def expected(random_state, n, repeats):
        seed = np.random.RandomState(random_state).randint(np.iinfo(np.int32).max + 1)
        rng, index, out = np.random.RandomState(seed), np.arange(n), []
        composed = np.arange(n)
        for _ in range(repeats):
            rng.shuffle(index)
            composed = composed[index]
            out.append(composed)
        return out

    wrong = []

    def draw(k):
        for random_state in range(k, k + 30):
            _, perms = draws.permutations(draws.draw_seed(random_state), 50 + k, 50 + k, 3)
            if not all(np.array_equal(a, b) for a, b in zip(perms, expected(random_state, 50 + k, 3))):
                wrong.append(random_state)

    threads = [threading.Thread(target=draw, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_matches_sklearn_dataframe_and_names(diabetes):
    X, y, model = diabetes
    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    frame = pd.DataFrame(X, columns=names)
    ours = permutation_importance(model, frame, pd.Series(y), n_repeats=3, random_state=1)
    ref = sklearn_importance(TorchRegressor(model), frame, y, scoring="r2", n_repeats=3, random_state=1)
    assert ours.feature_names == names
    np.testing.assert_allclose(ours.importances, ref.importances, atol=1e-6)
    assert ours.feature_names[ours.ranking()[0]] in ("bmi", "s5")  # diabetes' well-known strongest features


def test_matches_sklearn_accuracy_and_log_loss_on_images(digits8):
    X, y, model = digits8
    flat = X.reshape(len(X), -1)
    est = TorchClassifier(model, input_shape=(1, 8, 8)).fit(flat, y)
    for scoring in ("accuracy", "neg_log_loss"):
        ours = permutation_importance(model, X, y, scoring=scoring, n_repeats=3, random_state=0)
        ref = sklearn_importance(est, flat, y, scoring=scoring, n_repeats=3, random_state=0)
        assert ours.importances.shape == (64, 3)
        np.testing.assert_allclose(ours.importances, ref.importances, atol=1e-6)
        assert ours.importance_map().shape == (1, 8, 8)
        assert ours.feature_names[9] == "pixel (1, 1)"
    # border pixels of the 8x8 digits are almost always 0: permuting them changes nothing
    assert np.all(ours.importance_map()[0, :, 0] == pytest.approx(0.0, abs=2e-3))


def test_binary_logit_and_probability_outputs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] + 0.3 * rng.normal(size=400) > 0).astype(np.int64)
    torch.manual_seed(0)
    logit = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    _fit(logit, torch.from_numpy(X), torch.from_numpy(y).float(), lambda o, t: nn.functional.binary_cross_entropy_with_logits(o[:, 0], t))
    probs = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2), nn.Softmax(dim=1))
    _fit(probs, torch.from_numpy(X), torch.from_numpy(y), lambda o, t: nn.functional.nll_loss(torch.log(o), t))
    for model, est in ((logit, TorchClassifier(logit)), (probs, TorchClassifier(probs, probabilities=True))):
        est.fit(X, y)
        for scoring in ("accuracy", "neg_log_loss"):
            ours = permutation_importance(model, X, y, scoring=scoring, n_repeats=4)
            ref = sklearn_importance(est, X, y, scoring=scoring, n_repeats=4, random_state=0)
            # float32 logits: the first layer updated in place vs recomputed differ by rounding
            np.testing.assert_allclose(ours.importances, ref.importances, rtol=1e-5, atol=1e-6)
            assert ours.ranking()[0] == 0


def test_custom_callable_and_multi_output(diabetes):
    X, y, model = diabetes

    def neg_mae(y_true, y_pred):
        assert y_pred.shape == y_true.shape == (len(X),)
        return -np.mean(np.abs(y_true - y_pred))

    ours = permutation_importance(model, X, y, scoring=neg_mae, n_repeats=3)
    builtin = permutation_importance(model, X, y, scoring="neg_mean_absolute_error", n_repeats=3)
    ref = sklearn_importance(
        TorchRegressor(model), X, y, scoring=make_scorer(mean_absolute_error, greater_is_better=False),
        n_repeats=3, random_state=0,
    )
    np.testing.assert_allclose(ours.importances, ref.importances, atol=1e-6)
    np.testing.assert_allclose(builtin.importances, ref.importances, atol=1e-6)
    assert ours.scoring == "neg_mae"

    torch.manual_seed(1)
    two = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 2))
    Y = np.stack([y, X[:, 2] - X[:, 8]], axis=1)
    _fit(two, torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32), nn.functional.mse_loss)
    ours = permutation_importance(two, X, Y, n_repeats=3)
    ref = sklearn_importance(TorchRegressor(two), X, Y, scoring="r2", n_repeats=3, random_state=0)
    np.testing.assert_allclose(ours.importances, ref.importances, atol=1e-6)


def test_batch_size_and_random_state_forms(diabetes):
    X, y, model = diabetes
    ref = permutation_importance(model, X, y, n_repeats=3, random_state=11)
    small = permutation_importance(model, torch.tensor(X), y, n_repeats=3, random_state=11, batch_size=7)
    np.testing.assert_allclose(small.importances, ref.importances, atol=1e-6)
    state = permutation_importance(model, X, y, n_repeats=3, random_state=np.random.RandomState(11))
    np.testing.assert_allclose(state.importances, ref.importances, atol=1e-6)
    assert permutation_importance(model, X, y, n_repeats=2, random_state=None).importances.shape == (10, 2)


# ------------------------------------------------------------------ noise, groups, images


def test_noise_ranks_planted_features_and_matches_expected_drop():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, size=(4000, 5))
    weights = [3.0, 1.0, 0.0, 0.0, 0.0]
    model = nn.Linear(5, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([weights]))
        model.bias.zero_()
    y = X @ np.array(weights)  # the model is exact: baseline MSE 0
    res = permutation_importance(model, X, y, scoring="neg_mean_squared_error", method="noise", n_repeats=5)
    assert list(res.ranking()[:2]) == [0, 1]
    assert np.all(res.importances[2:] == 0)  # zero weight: the output does not move at all
    # adding s * range * (U - 1/2) raises the MSE by w^2 * range^2 / 12 in expectation
    span = X.max(0) - X.min(0)
    expected = np.array(weights) ** 2 * span**2 / 12
    np.testing.assert_allclose(res.importances_mean[:2], expected[:2], rtol=0.05)
    half = permutation_importance(model, X, y, scoring="neg_mean_squared_error", method="noise", n_repeats=5, noise_scale=0.5)
    np.testing.assert_allclose(half.importances_mean[:2], expected[:2] / 4, rtol=0.05)
    again = permutation_importance(model, X, y, scoring="neg_mean_squared_error", method="noise", n_repeats=5, batch_size=333)
    np.testing.assert_allclose(again.importances, res.importances, rtol=1e-9)  # same draws whatever the batching


def test_noise_finds_informative_feature_through_an_mlp():
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, size=(2000, 6)).astype(np.float32)
    y = (np.sin(4 * X[:, 3]) + 0.1 * X[:, 0]).astype(np.float32)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 1))
    _fit(model, torch.from_numpy(X), torch.from_numpy(y), lambda o, t: nn.functional.mse_loss(o[:, 0], t), epochs=400)
    res = permutation_importance(model, X, y, method="noise", n_repeats=3)
    assert res.ranking()[0] == 3
    assert res.importances_mean[3] > 5 * np.abs(np.delete(res.importances_mean, [0, 3])).max()


def _by_hand(model, X, y, groups, perms, rows=None):
    """Permutation importance written out plainly: one full forward per (group, repeat)."""
    with torch.no_grad():
        def acc(x):
            return (model(torch.from_numpy(x)).argmax(1).numpy() == y_sub).mean()

        base = (model(torch.from_numpy(X)).argmax(1).numpy() == y).mean()
        Xs = X if rows is None else X[rows]
        y_sub = y if rows is None else y[rows]
        flat = Xs.reshape(len(Xs), -1)
        out = np.zeros((len(groups), len(perms)))
        for k, g in enumerate(groups):
            for r, p in enumerate(perms):
                x = flat.copy()
                x[:, g] = flat[p][:, g]
                out[k, r] = base - acc(x.reshape(Xs.shape))
    return out


@pytest.mark.parametrize("spec, count", [(2, 16), ((4, 8), 2), ("channels", 1)])
def test_image_groups_match_hand_computation(digits8, spec, count):
    X, y, model = digits8
    res = permutation_importance(model, X, y, scoring="accuracy", n_repeats=3, feature_groups=spec, random_state=5)
    assert len(res.groups) == len(res.feature_names) == count
    _, perms = draws.permutations(draws.draw_seed(5), len(X), len(X), 3)
    np.testing.assert_allclose(res.importances, _by_hand(model, X, y, res.groups, perms), atol=1e-9)
    picture = res.importance_map()
    assert picture.shape == (1, 8, 8)
    for k, g in enumerate(res.groups):
        assert np.all(picture.ravel()[g] == res.importances_mean[k])


def test_cnn_patches_and_mask_with_subsampling(digits_cnn, digits_data):
    images, labels = digits_data
    X, y = images[:300].numpy(), labels[:300].numpy()
    mask = np.repeat(np.repeat(np.arange(4).reshape(2, 2), 14, axis=0), 14, axis=1)  # 4 quadrants, (H, W)
    res = permutation_importance(digits_cnn, X, y, scoring="accuracy", n_repeats=2, feature_groups=mask, max_samples=200)
    assert res.feature_names == ["group 0", "group 1", "group 2", "group 3"]
    rows, perms = draws.permutations(draws.draw_seed(0), 300, 200, 2)
    np.testing.assert_allclose(res.importances, _by_hand(digits_cnn, X, y, res.groups, perms, rows), atol=1e-9)
    by_patch = permutation_importance(digits_cnn, X, y, scoring="accuracy", n_repeats=2, feature_groups=14, max_samples=200)
    np.testing.assert_allclose(by_patch.importances, res.importances, atol=1e-12)


def test_tabular_groups_by_name(diabetes):
    X, y, model = diabetes
    frame = pd.DataFrame(X, columns=["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"])
    res = permutation_importance(model, frame, y, n_repeats=2, feature_groups={"body": ["bmi", "bp"], "serum": [4, 5, 6, 7, 8, 9]})
    assert res.feature_names == ["body", "serum"]
    listed = permutation_importance(model, frame, y, n_repeats=2, feature_groups=[["bmi", "bp"], ["age"]])
    assert listed.feature_names == ["bmi+bp", "age"]
    np.testing.assert_allclose(listed.importances[0], res.importances[0], atol=1e-12)


# ------------------------------------------------------------------ steps, progress, the model left alone


def test_steps_fill_the_result_progressively(diabetes, monkeypatch):
    X, y, model = diabetes
    monkeypatch.setattr(imp_run, "STEP_SECONDS", 0.0)  # one step per forward pass
    steps, filled = [], []
    for step in iter_permutation_importance(model, X, y, n_repeats=4, batch_size=50):
        steps.append(step)
        filled.append(int(np.isfinite(step.result.importances).sum()))
    assert all(isinstance(s, ImportanceStep) for s in steps)
    assert steps[0].done == 0 and filled[0] == 0 and len(steps) > 5
    assert filled == [s.done for s in steps]  # done counts exactly the importances filled in so far
    done = [s.done for s in steps]
    assert done == sorted(done) and done[-1] == steps[-1].total == 40
    result = steps[-1].result
    assert result.complete
    np.testing.assert_allclose(result.importances, permutation_importance(model, X, y, n_repeats=4).importances, atol=1e-6)
    seen = []
    permutation_importance(model, X, y, n_repeats=2, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (20, 20)


def test_stopping_early_and_failing_leave_the_model_alone(diabetes, unchanged, monkeypatch):
    X, y, model = diabetes
    monkeypatch.setattr(imp_run, "STEP_SECONDS", 0.0)
    model.train()
    model[0].weight.requires_grad_(False)
    try:
        with unchanged(model):
            it = iter_permutation_importance(model, X, y, n_repeats=50, batch_size=20)
            first = next(it)
            next(it)
            assert not first.result.complete
            it.close()

            def broken(y_true, y_pred):
                raise RuntimeError("scorer failed")

            with pytest.raises(RuntimeError, match="scorer failed"):
                permutation_importance(model, X, y, scoring=broken)
            res = permutation_importance(model, X, y, n_repeats=2)
        assert model.training and res.complete
    finally:
        model.eval()
        model[0].weight.requires_grad_(True)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(y=np.zeros(400)), ValueError, "X has 442 rows but y has 400"),
        (dict(X=np.zeros((442, 12))), ValueError, "expects 10 features"),
        (dict(n_repeats=0), ValueError, "n_repeats must be at least 1"),
        (dict(n_repeats=2.5), TypeError, "n_repeats must be an integer"),
        (dict(scoring="f1_macro"), ValueError, "unknown scoring 'f1_macro'; expected one of"),
        (dict(method="shuffle"), ValueError, "unknown method 'shuffle'"),
        (dict(max_samples=1000), ValueError, "max_samples=1000 rows is outside 2..442"),
        # one row has nothing to be permuted with: scikit-learn returns NaN, nbvis returned a constant
        (dict(max_samples=1), ValueError, "max_samples=1 rows is outside 2..442: permuting needs at least 2 rows"),
        (dict(scoring=[]), ValueError, "scoring is an empty list"),
        (dict(scoring={}), ValueError, "scoring is an empty dict"),
        (dict(scoring=["r2", "r2"]), ValueError, "scoring lists a name twice"),
        (dict(scoring=["r2", len]), TypeError, "a list of scorings must hold names"),
        (dict(scoring={"fit": 3}), TypeError, "scoring\\['fit'\\] must be a scoring name or a callable"),
        (dict(scoring=["r2", "f1_macro"]), ValueError, "unknown scoring 'f1_macro'"),
        (dict(feature_names="abcdefghij"), TypeError, "feature_names must be a list of 10 names, not str"),
        (dict(method="noise", noise_scale=-0.5), ValueError, "noise_scale must be at least 0"),
        (dict(random_state=-1), ValueError, "an int random_state must be in 0..2\\*\\*32 - 1"),
        (dict(progress=5), TypeError, "progress must be None or a callable\\(done, total\\), not int"),
        (dict(max_samples=1.5), ValueError, "in \\(0, 1\\]"),
        (dict(scoring="accuracy"), ValueError, "class indices"),
        (dict(y=np.zeros((442, 3))), ValueError, "the model gives 1 output\\(s\\) per sample but y has 3"),
        (dict(feature_groups=[[0, 99]]), ValueError, "outside 0..9"),
        (dict(feature_groups=4), ValueError, "patches need image inputs"),
        (dict(feature_groups="rows"), ValueError, "unknown feature_groups 'rows'"),
        (dict(feature_names=["a", "b"]), ValueError, "feature_names has 2 names but there are 10 features"),
        (dict(random_state="seed"), TypeError, "random_state must be"),
        (dict(method="noise", noise_scale="big"), TypeError, "noise_scale must be a number"),
        (dict(method="noise", noise_scale=[1.0, 2.0]), ValueError, "one per input element \\(10\\)"),
        (dict(X="not an array"), TypeError, "X must hold numbers"),
    ],
)
def test_bad_input_raises_clear_errors(diabetes, unchanged, change, error, match):
    X, y, model = diabetes
    kwargs = dict(X=X, y=y)
    kwargs.update(change)
    with unchanged(model), pytest.raises(error, match=match):
        permutation_importance(model, **kwargs)


def test_several_scorings_match_sklearn(diabetes):
    """A list (or dict) of scorings gives a dict of results by name, from the same permutations, as scikit-learn."""
    X, y, model = diabetes
    names = ["r2", "neg_mean_squared_error", "neg_mean_absolute_error"]
    for random_state in (4, np.random.RandomState(4)):
        ours = permutation_importance(model, X, y, scoring=names, n_repeats=3, random_state=random_state)
        ref = sklearn_importance(TorchRegressor(model), X, y, scoring=names, n_repeats=3, random_state=4 if random_state == 4 else np.random.RandomState(4))
        assert list(ours) == names
        for name in names:
            assert ours[name].scoring == name
            np.testing.assert_allclose(ours[name].importances, ref[name].importances, rtol=0, atol=1e-6)
            np.testing.assert_allclose(ours[name].importances_mean, ref[name].importances_mean, rtol=0, atol=1e-6)
    single = permutation_importance(model, X, y, scoring="neg_mean_absolute_error", n_repeats=3, random_state=4)
    by_dict = permutation_importance(model, X, y, scoring={"mae": "neg_mean_absolute_error", "mine": _mae}, n_repeats=3, random_state=4)
    assert list(by_dict) == ["mae", "mine"]
    np.testing.assert_array_equal(by_dict["mae"].importances, single.importances)
    np.testing.assert_allclose(by_dict["mine"].importances, single.importances, atol=1e-9)
    seen = []
    permutation_importance(model, X, y, scoring=names[:2], n_repeats=2, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (40, 40) and all(t == 40 for _, t in seen) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    with pytest.raises(TypeError, match="iter_permutation_importance takes one scoring"):
        iter_permutation_importance(model, X, y, scoring=names)


def _mae(y_true, y_pred):
    return -float(np.abs(y_true - y_pred).mean())


@pytest.mark.parametrize("max_samples", [None, 150])
def test_the_baseline_is_the_score_of_every_row(diabetes, digits8, max_samples):
    """With or without row sampling, the baseline scores all rows, as scikit-learn's does."""
    X, y, model = diabetes
    predicted = TorchRegressor(model).predict(X)
    for scoring, want in (("r2", r2_score(y, predicted)), (_mae, _mae(y, predicted))):
        ours = permutation_importance(model, X, y, scoring=scoring, n_repeats=1, max_samples=max_samples)
        assert ours.baseline_score == pytest.approx(want, abs=1e-6)
    Xd, yd, clf = digits8
    flat = Xd.reshape(len(Xd), -1)
    labels = TorchClassifier(clf, input_shape=(1, 8, 8)).fit(flat, yd).predict(flat)
    ours = permutation_importance(clf, Xd, yd, scoring="accuracy", n_repeats=1, max_samples=max_samples)
    assert ours.baseline_score == accuracy_score(yd, labels)


def test_nan_and_class_range_errors(diabetes, digits8):
    X, y, model = diabetes
    bad = X.copy()
    bad[5, 3] = np.nan
    with pytest.raises(ValueError, match="X contains 1 NaN or infinite value\\(s\\) \\(the first in row 5, feature 3\\)"):
        permutation_importance(model, bad, y)
    with pytest.raises(ValueError, match="y contains 1 NaN"):
        permutation_importance(model, X, np.where(np.arange(442) == 0, np.nan, y))
    Xd, yd, clf = digits8
    with pytest.raises(ValueError, match="class indices from 0 to 12 but the model gives 10 output"):
        permutation_importance(clf, Xd, np.where(np.arange(len(yd)) == 0, 12, yd), scoring="accuracy")
    with pytest.raises(ValueError, match="could not run on an input of shape"):
        permutation_importance(clf, Xd[:, :, :4], yd, scoring="accuracy")
    with pytest.raises(TypeError, match="model must be a torch nn.Module"):
        permutation_importance(lambda x: x, Xd, yd)
    with pytest.raises(TypeError, match="X must hold numbers; the columns 'kind' do not"):
        permutation_importance(model, pd.DataFrame({"a": [1.0, 2.0], "kind": ["x", "y"]}), [1.0, 2.0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_model_device(diabetes):
    X, y, model = diabetes
    gpu = copy.deepcopy(model).cuda()
    ours = permutation_importance(gpu, X, y, n_repeats=3)
    ref = permutation_importance(model, X, y, n_repeats=3)
    np.testing.assert_allclose(ours.importances, ref.importances, atol=1e-5)
