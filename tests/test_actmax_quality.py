"""Activation maximization worth looking at: bounded by the data, diverse, faithful to the paper's
optimizer, waking dead units, new seeds per start, and the quality figures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import nbvis
from nbvis.compute.optimize import OptimizationRun, Result, fit_regularizers, maximize
from nbvis.compute.optimize.diversity import gram_similarity
from nbvis.compute.optimize.optimizers import ASCENTS, GradientAscent, scaled_lr
from nbvis.compute.optimize.quality import evaluate, high_frequency_share

SHAPE = (1, 28, 28)


def mean_pairwise_distance(inputs: torch.Tensor) -> float:
    """Mean ``1 - correlation`` over pairs of starts, by numpy."""
    flat = inputs.detach().reshape(len(inputs), -1).double().numpy()
    corr = np.corrcoef(flat)
    n = len(flat)
    return float((1 - corr)[~np.eye(n, dtype=bool)].mean())


# ------------------------------------------------------------------------------------ data range


@pytest.mark.parametrize("parametrization", ["pixel", "fourier"])
def test_inputs_stay_in_the_datasets_range(digits_cnn, digits_data, parametrization, unchanged):
    """conv2[5] left the data's 0..1 (pixels up to 9.4); with dataset= every pixel stays inside."""
    images, labels = digits_data
    with unchanged(digits_cnn):
        free = maximize(digits_cnn, ("conv2", 5), SHAPE, steps=60, starts=2, regularizers="none", lr=0.5)
        bounded = maximize(digits_cnn, ("conv2", 5), SHAPE, steps=60, starts=2, regularizers="none", lr=0.5,
                           dataset=(images, labels), parametrization=parametrization)
    if parametrization == "pixel":
        assert free.inputs.max() > 1.5  # without the range the ascent leaves it
    assert bounded.value_range == (float(images.min()), float(images.max())) == (0.0, 1.0)
    assert bounded.inputs.min() >= 0.0 and bounded.inputs.max() <= 1.0
    assert bounded.history[-1].mean() > bounded.history[0].mean()


def test_the_viewer_shows_the_range_and_data_values(digits_cnn, digits_data):
    from nbvis._arrays import unpack

    images, labels = digits_data
    viewer = nbvis.OptimizationViewer(digits_cnn, objective=3, input_shape=SHAPE, steps=20, starts=2,
                                      dataset=(images, labels))
    viewer.wait()
    assert viewer.value_range == [0.0, 1.0]
    assert viewer.preset == "data"  # the default for a known dataset (its range and covariance)
    frame, span = unpack(viewer._frame), unpack(viewer._frame_range)
    np.testing.assert_array_equal(span, [[0.0, 1.0], [0.0, 1.0]])
    # a pixel's value in data units is recovered from the frame within half a grey level
    recovered = span[:, 0, None, None] + frame[..., 0] / 255.0 * (span[:, 1, None, None] - span[:, 0, None, None])
    np.testing.assert_allclose(recovered, viewer.inputs[:, 0].numpy(), atol=0.5 / 255 + 1e-6)
    viewer.close()


# ------------------------------------------------------------------------------------ diversity


def test_diversity_raises_the_distance_between_starts(digits_mlp, digits_data, unchanged):
    """Class 3 with 4 starts collapsed to one image (pairwise 1 - correlation ~ 0.001); the
    diversity penalty spreads them while each still drives the logit."""
    images, labels = digits_data
    options = dict(steps=120, starts=4, regularizers="lucid", dataset=(images, labels))
    with unchanged(digits_mlp):
        alike = maximize(digits_mlp, 3, SHAPE, diversity=0.0, **options)
        diverse = maximize(digits_mlp, 3, SHAPE, **options)  # the preset's default weight
    assert fit_regularizers("lucid", SHAPE).diversity > 0
    assert mean_pairwise_distance(alike.inputs) < 0.05
    assert mean_pairwise_distance(diverse.inputs) > 0.2
    assert mean_pairwise_distance(diverse.inputs) > 5 * mean_pairwise_distance(alike.inputs)
    final = diverse.history[-1]
    assert final.min() >= 0.8 * final.max()
    assert (digits_mlp(diverse.inputs).argmax(1) == 3).all()


def test_gram_similarity_by_hand():
    acts = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    flat = acts.reshape(3, 4, -1)
    grams = [(f @ f.T).flatten() for f in flat]
    grams = [g / g.norm() for g in grams]
    expected = sum(float(grams[i] @ grams[j]) for i in range(3) for j in range(3) if i != j) / 6
    assert float(gram_similarity(acts, torch.zeros(3, 2))) == pytest.approx(expected)
    # no channels and positions: squared correlation of the inputs
    x = torch.randn(2, 10, dtype=torch.float64)
    corr = np.corrcoef(x.numpy())[0, 1]
    assert float(gram_similarity(torch.zeros(2, 3), x)) == pytest.approx(corr**2)
    assert float(gram_similarity(None, x[:1])) == 0.0


# ------------------------------------------------------------------------------------ presets


PAPER = {  # the toolbox README's flags for Table 1 of Yosinski et al. 2015
    "yosinski2015-1": ("progress", 100.0, 2.0, 500),
    "yosinski2015-2": ("constant", 100.0, 0.0, 750),
    "yosinski2015-3": ("constant", 100.0, 0.0, 1000),
    "yosinski2015-4": ("progress", 100.0, 2.0, 1000),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_each_yosinski_preset_uses_the_papers_optimizer(name):
    policy, lr, progress, steps = PAPER[name]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    run = OptimizationRun(model, ("1", 1), (1, 8, 8), regularizers=name, value_range=(0.0, 2.0), starts=2)
    assert isinstance(run._optimizer, GradientAscent) and run.ascent.kind == "sgd"
    assert (run.ascent.policy, run.ascent.lr, run.ascent.desired_progress, run.ascent.steps) == (policy, lr, progress, steps)
    rate = lr * (2.0 / 255.0) ** 2
    assert run.lr == pytest.approx(rate) == scaled_lr(lr, (0.0, 2.0))
    # one step by hand: x + lr * d(objective)/dx (the unit is linear: its gradient is the weight row)
    run.regularizers = "none"
    before = run.inputs.clone()
    run.step()
    w = model[1].weight[1].detach().reshape(1, 8, 8)
    if policy == "constant":
        step = rate * w
    else:
        step = min(rate, progress / float(w.square().sum())) * w
    expected = (before + step).clamp(0.0, 2.0)
    torch.testing.assert_close(run.inputs, expected)


def test_lucid_and_distill_presets():
    assert ASCENTS["lucid"].kind == "adam" and ASCENTS["lucid"].lr == 0.05
    distill = ASCENTS["distill2017"]
    assert distill.kind == "adam" and distill.steps >= 512 and distill.parametrization == "fourier"
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    run = OptimizationRun(model, ("1", 0), (3, 32, 32), regularizers="distill2017", starts=2)
    assert run.parametrization == "fourier" and isinstance(run._optimizer, torch.optim.Adam)
    assert run.regularizers.jitter and run.regularizers.scale and run.regularizers.rotate and run.regularizers.diversity
    # the transforms are given for 224 px and scaled to the input: about a pixel on a digit
    big, small = fit_regularizers("lucid", (3, 224, 224)), fit_regularizers("lucid", SHAPE)
    assert (big.jitter, big.scale, big.rotate) == (8, 0.1, 10.0)
    assert small.jitter == 1 and small.scale < big.scale / 2 and small.rotate < big.rotate / 2


def test_l2_preset_points_a_linear_unit_along_its_weights(digits_mlp):
    """With plain gradient ascent and L2 decay the best input of a linear unit is along its weights."""
    result = maximize(digits_mlp, ("fc1", 17), (784,), starts=2, regularizers="yosinski2015-2")
    assert result.history.shape == (750, 2)
    weights = digits_mlp.fc1.weight[17].detach()
    cosine = torch.nn.functional.cosine_similarity(result.inputs, weights[None], dim=1)
    assert cosine.min() > 0.99
    assert len(torch.unique(result.inputs[0])) > 100  # not a few values, as sign-like Adam steps give


def test_class_objectives_read_the_logits_before_a_softmax(digits_mlp):
    model = nn.Sequential(digits_mlp, nn.Softmax(dim=1))
    run = OptimizationRun(model, 3, SHAPE, starts=2)
    x = run.inputs
    assert run.objective.layer == "0"
    np.testing.assert_allclose(run.evaluate(), digits_mlp(x)[:, 3].detach().numpy(), rtol=1e-5)


# ------------------------------------------------------------------------------------ dead units


def test_a_dead_unit_rises_with_the_redirected_relu(unchanged):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(inplace=True))
    with torch.no_grad():
        model[0].bias[2] = -0.6  # unit 2 is off for every start near 0
    with unchanged(model):
        dead = maximize(model, ("1", 2), (6,), steps=40, starts=3, redirect=0)
        woken = maximize(model, ("1", 2), (6,), steps=40, starts=3)
    assert np.all(dead.history == 0.0)  # no gradient reaches the input
    assert np.all(woken.history[0] == 0.0) and np.all(woken.history[-1] > 0.0)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# ------------------------------------------------------------------------------------ seeds


def test_each_start_draws_a_new_seed_and_a_set_seed_repeats(digits_cnn):
    viewer = nbvis.OptimizationViewer(digits_cnn, objective=("conv2", 5), input_shape=SHAPE, steps=3, autostart=False)
    first_seed, first = viewer.seed, viewer.inputs.clone()
    viewer.start().wait()
    second_seed = viewer.seed
    start_two = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, starts=4, seed=second_seed).inputs
    assert second_seed != first_seed and not torch.equal(start_two, first)
    viewer.start().wait()
    assert viewer.seed not in (first_seed, second_seed)
    viewer.seed = second_seed  # what the seed box sends: the next start repeats that run
    viewer.start().wait()
    assert viewer.seed == second_seed
    repeated = viewer.inputs.clone()
    viewer.start(seed=second_seed).wait()
    torch.testing.assert_close(viewer.inputs, repeated)
    viewer.close()


# ------------------------------------------------------------------------------------ quality


def test_result_images_is_a_property_scaled_by_the_range(digits_mlp):
    result = maximize(digits_mlp, 3, SHAPE, steps=3, starts=2, value_range=(0, 1))
    assert isinstance(result, Result) and isinstance(result.images, np.ndarray)
    inputs, history = result
    expected = np.round(np.clip(inputs.numpy(), 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(result.images, expected)


def test_quality_figures_by_hand(digits_mlp, digits_data):
    images, labels = digits_data
    result = maximize(digits_mlp, 3, SHAPE, steps=40, starts=3, regularizers="lucid", dataset=(images, labels))
    quality = result.evaluate(digits_mlp, (images, labels))
    rows = quality.rows()
    assert len(rows) == 3 and quality.label == 3
    np.testing.assert_allclose(quality.objective, digits_mlp(result.inputs)[:, 3].detach().numpy(), rtol=1e-5)
    # the nearest example: among the 16 images with the largest logit 3, the best correlated
    logits = digits_mlp(images)[:, 3].detach()
    top = logits.argsort(descending=True)[:16]
    for start in range(3):
        corr = [np.corrcoef(result.inputs[start].flatten().numpy(), images[i].flatten().numpy())[0, 1] for i in top]
        assert quality.nearest[start] == int(top[int(np.argmax(corr))])
        assert quality.similarity[start] == pytest.approx(max(corr), abs=1e-6)
    assert quality.mean_diversity == pytest.approx(mean_pairwise_distance(result.inputs), abs=1e-9)
    assert np.all((quality.confidence >= 0) & (quality.confidence <= 1))


def test_fooling_images_score_worse_than_regularized_ones(digits_cnn, digits_data):
    images, labels = digits_data
    fooling = maximize(digits_cnn, 3, SHAPE, steps=100, starts=2, regularizers="none", lr=0.3)
    good = maximize(digits_cnn, 3, SHAPE, steps=100, starts=2, regularizers="lucid", dataset=(images, labels))
    bad_q, good_q = fooling.evaluate(digits_cnn, images), good.evaluate(digits_cnn, images)
    assert good_q.high_frequency.max() < bad_q.high_frequency.min()
    assert fooling.inputs.max() > 1.0 and good.inputs.max() <= 1.0


def test_high_frequency_share_of_known_patterns():
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2
    smooth = torch.cos(torch.arange(8) * torch.pi / 4)[:, None].expand(8, 8)
    share = high_frequency_share(torch.stack([checker, smooth]).double()[:, None])
    assert share[0] == pytest.approx(1.0) and share[1] == pytest.approx(0.0, abs=1e-12)


def test_viewer_quality_row(digits_cnn, digits_data):
    images, labels = digits_data
    viewer = nbvis.OptimizationViewer(digits_cnn, objective=3, input_shape=SHAPE, steps=15, starts=2,
                                      dataset=(images, labels))
    viewer.wait()
    rows = viewer.quality_rows
    assert len(rows) == 2 and {"objective", "confidence", "nearest", "similarity", "diversity", "high_frequency"} <= set(rows[0])
    reference = evaluate(digits_cnn, 3, viewer.inputs, data=(images, labels))
    assert [r["nearest"] for r in rows] == reference.nearest.tolist()
    viewer.close()


def test_confidence_of_a_model_ending_in_a_softmax_is_that_of_its_logits(digits_mlp):
    """A model that outputs probabilities: the confidence is the softmax of the logits the class
    objective reads, not a softmax of the probabilities (which would squash every figure towards 1/10)."""
    x = maximize(digits_mlp, 3, SHAPE, steps=30, starts=2, value_range=(0, 1)).inputs
    plain = evaluate(digits_mlp, 3, x, trials=8, seed=5)
    wrapped = evaluate(nn.Sequential(digits_mlp, nn.Softmax(dim=1)), 3, x, trials=8, seed=5)
    np.testing.assert_allclose(wrapped.confidence, plain.confidence, rtol=1e-6)
    # by hand: the mean over the same random shifts of the softmax probability of class 3
    import random

    rng, total = random.Random(5), 0.0
    for _ in range(8):
        dy, dx = rng.randint(-2, 2), rng.randint(-2, 2)
        total += torch.softmax(digits_mlp(torch.roll(x, (dy, dx), (2, 3))).double(), 1)[:, 3].detach()
    np.testing.assert_allclose(plain.confidence, (total / 8).numpy(), rtol=1e-9)


# ------------------------------------------------------------------------------------ the default preset


def default_run(model, data, label):
    """The default run for a known dataset, as the benchmark does it: 4 starts, seeded by the class."""
    return OptimizationRun(model, label, SHAPE, starts=4, regularizers="auto", dataset=data, seed=label)


@pytest.mark.parametrize("label", [0, 6, 8])
def test_default_class_images_keep_their_class_under_small_shifts(digits_cnn, digits_data, label, unchanged):
    """The default preset for a known dataset optimizes under random shifts of up to 2 px of a
    28 px digit, in the pixel space whitened by the data's covariance, so that the class images
    keep to the ways digits vary: each start stays its class (the model's softmax probability,
    averaged over every shift of up to 2 px) with >= 0.9 when shifted. Before (pixels themselves),
    a start of the demo CNN's 0s scored 0.85: a ring that the shifts broke into other digits."""
    images, labels = digits_data
    with unchanged(digits_cnn):
        run = default_run(digits_cnn, (images, labels), label)
        assert run.regularizers.jitter == 2 and run.parametrization == "data"
        run.run(run.planned)
        quality = run.result().evaluate(digits_cnn)
    assert quality.confidence.min() >= 0.9
    # still different images: starts without the diversity penalty score about 0.003 here
    assert quality.mean_diversity >= 0.03


def test_the_whitened_space_keeps_the_images_to_the_datas_variation(digits_cnn, digits_data, unchanged):
    """The "data" parametrization: pixels = mean + B z with B B^T the data's covariance (shrunk):
    the image maps to z and back exactly, stays in the data's range, and (against pixels
    optimized the same way) holds a smaller share of its variation outside the directions along
    which the digits vary, and less high-frequency energy."""
    from nbvis.compute.optimize.data import data_statistics
    from nbvis.compute.optimize.parametrizations import SHRINK, whitening

    images, labels = digits_data
    stats = data_statistics(images)
    basis, inverse = whitening(stats, SHAPE)
    covariance = torch.cov(images.flatten(1).double().T, correction=0)
    top = float(torch.linalg.eigvalsh(covariance)[-1])
    torch.testing.assert_close(stats.covariance, covariance)
    torch.testing.assert_close(basis @ inverse, torch.eye(784, dtype=torch.float64), atol=1e-6, rtol=0)
    # the basis's covariance is the data's plus at most SHRINK x its largest eigenvalue
    excess = torch.linalg.eigvalsh(basis @ basis.T - covariance)
    assert excess.min() > -1e-6 and excess.max() <= SHRINK * top * (1 + 1e-6)
    values, vectors = torch.linalg.eigh(covariance)
    span = vectors[:, values > 1e-3 * top]  # the directions along which the digits vary

    def outside(x):
        centred = x.flatten(1).double() - stats.mean
        return float((centred - centred @ span @ span.T).norm() / centred.norm())

    with unchanged(digits_cnn):
        runs = {name: OptimizationRun(digits_cnn, 0, SHAPE, starts=2, regularizers="smooth", dataset=images,
                                      parametrization=name, steps=128, seed=1) for name in ("pixel", "data")}
        for run in runs.values():
            run.run(128)
    data, pixels = runs["data"].inputs, runs["pixel"].inputs
    assert data.min() >= 0.0 and data.max() <= 1.0
    assert outside(data) < 0.7 * outside(pixels)
    assert high_frequency_share(data).max() < high_frequency_share(pixels).min()
    param = runs["data"]._param
    before = param.image().detach().clone()
    param.set_pixels(before)
    torch.testing.assert_close(param.image().detach(), before, atol=1e-5, rtol=0)


def test_the_data_preset_falls_back_to_pixels_without_the_datas_covariance(digits_cnn):
    run = OptimizationRun(digits_cnn, 0, SHAPE, starts=2, regularizers="auto", value_range=(0, 1))
    assert run.parametrization == "pixel" and run.regularizers == fit_regularizers("smooth", SHAPE)
    run = OptimizationRun(digits_cnn, 0, SHAPE, starts=2, regularizers="data", value_range=(0, 1))
    assert run.parametrization == "pixel"
    with pytest.raises(ValueError, match="needs dataset= with samples of the input's size"):
        OptimizationRun(digits_cnn, 0, SHAPE, parametrization="data", dataset=torch.rand(10, 1, 14, 14))


def test_the_default_preset_converges(digits_cnn, digits_data):
    """The objective of the images (without the random transforms) changes by under 1% over the
    last tenth of the steps: the preset's rate anneals along a cosine to 0 (before, up to 3%)."""
    images, labels = digits_data
    for label in (1, 5):
        run = default_run(digits_cnn, (images, labels), label)
        total = run.planned
        run.run(total - total // 10)
        before = run.evaluate()
        run.run(total // 10)
        after = run.evaluate()
        assert np.all(np.abs(after - before) < 0.01 * np.abs(after))
    assert run._optimizer.param_groups[0]["lr"] < 1e-4  # the last step's rate


def test_rate_anneals_along_a_cosine_over_the_planned_steps():
    ascent = ASCENTS["smooth"]
    assert ascent.anneal == 1.0 and ascent.floor == 0.0
    # a 4-step run: the rate of update k+1 is lr * (1 + cos(pi * (k + 1) / 4)) / 2
    expected = [0.5 * (1 + np.cos(np.pi * (k + 1) / 4)) for k in range(4)]
    np.testing.assert_allclose([ascent.factor(k, 4) for k in range(6)], expected + [0.0, 0.0], atol=1e-12)
    half = dataclasses.replace(ascent, anneal=0.5, floor=0.1)
    assert [half.factor(k, 8) for k in range(4)] == [1.0] * 4  # the first half at the full rate
    assert half.factor(7, 8) == pytest.approx(0.1) and half.factor(20, 8) == 0.1
    assert 0.1 < half.factor(5, 8) < 1.0
    with pytest.raises(ValueError, match="anneal"):
        dataclasses.replace(ascent, anneal=1.5)


def test_the_run_follows_the_schedule_and_scales_the_priors_with_it():
    """Each update uses lr x factor; the L2 decay shrinks by the same factor (so the priors do not
    wear the image away while the gradient steps become small)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    ascent = dataclasses.replace(ASCENTS["smooth"], kind="sgd", lr=0.1)
    run = OptimizationRun(model, ("1", 0), (1, 4, 4), starts=2, regularizers={"decay": 0.2}, optimizer=ascent, steps=4)
    w = model[1].weight[0].detach().reshape(1, 4, 4)
    x = run.inputs.clone()
    for k in range(4):
        factor = ascent.factor(k, 4)
        run.step()
        x = (x + 0.1 * factor * w) * (1 - 0.2 * factor)
        torch.testing.assert_close(run.inputs, x)
        assert run._optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * factor)


def test_the_viewer_plans_the_schedule_over_its_steps(digits_cnn, digits_data):
    images, labels = digits_data
    viewer = nbvis.OptimizationViewer(digits_cnn, objective=3, input_shape=SHAPE, steps=12, starts=2,
                                      dataset=(images, labels))
    viewer.wait()
    assert viewer.run.planned == 12 and viewer.run._optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    viewer.resume(6)  # going on plans the schedule over the longer run
    viewer.wait()
    assert viewer.run.planned == 18 and viewer.run.step_count == 18
    viewer.close()


def test_confidence_is_the_mean_over_every_small_shift(digits_cnn):
    """By default the confidence is the exact expectation under a uniformly random shift of up to
    ``shift`` px: the mean over all (2 shift + 1)^2 shifts, not a sample of a few."""
    x = maximize(digits_cnn, 0, SHAPE, steps=30, starts=2, value_range=(0, 1)).inputs
    quality = evaluate(digits_cnn, 0, x, shift=1)
    by_hand = sum(torch.softmax(digits_cnn(torch.roll(x, (dy, dx), (2, 3))).double(), 1)[:, 0].detach()
                  for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    np.testing.assert_allclose(quality.confidence, by_hand.numpy(), rtol=1e-9)
    with pytest.raises(ValueError, match="trials"):
        evaluate(digits_cnn, 0, x, trials=0)


def test_data_statistics_are_computed_once_per_sample_tensor(digits_data):
    """A view per click (the Explorer's optimizer) on the same samples passes over them once; a
    change in place is seen."""
    from nbvis.compute.optimize.data import data_statistics

    images = digits_data[0].clone()
    first = data_statistics((images, digits_data[1]))
    assert data_statistics(images) is first and data_statistics(first) is first
    images[0].fill_(1.0)
    changed = data_statistics(images)
    assert changed is not first
    torch.testing.assert_close(changed.mean, images.flatten(1).double().mean(0))
