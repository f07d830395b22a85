"""Activation maximization: objectives, regularizers, parametrizations, runs, and the borrowed model."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

import nbvis
from nbvis.compute import optimize
from nbvis.compute.optimize import (
    PRESETS,
    OptimizationRun,
    Regularizers,
    affine_resample,
    as_objective,
    blur,
    iter_maximize,
    logit,
    maximize,
    objective,
    small_pixel_mask,
    to_uint8,
    total_variation,
    unit,
)
from nbvis.compute.optimize.diversity import diversity_penalty
from nbvis.compute.probe import capture

SHAPE = (1, 28, 28)


def rises(history: np.ndarray) -> None:
    """The objective rises: every start ends well above where it began, and on average it goes up
    with the step index (rank correlation)."""
    steps = len(history)
    head, tail = history[: max(1, steps // 10)].mean(0), history[-max(1, steps // 10) :].mean(0)
    assert np.all(tail > head + 1e-3), (head, tail)
    ranks = np.argsort(np.argsort(history, axis=0), axis=0)
    index = np.arange(steps) - (steps - 1) / 2
    for column in ranks.T:
        column = column - column.mean()
        assert (column @ index) / np.sqrt((column @ column) * (index @ index)) > 0.5


def high_frequency_share(images: torch.Tensor) -> float:
    """The share of spectral energy above half the Nyquist frequency, over all images and channels."""
    spectrum = np.abs(np.fft.fft2(images.detach().cpu().double().numpy())) ** 2
    fy = np.abs(np.fft.fftfreq(images.shape[-2]))[:, None]
    fx = np.abs(np.fft.fftfreq(images.shape[-1]))[None, :]
    high = np.maximum(fy, fx) > 0.25
    spectrum[..., 0, 0] = 0
    return float(spectrum[..., high].sum() / spectrum.sum())


# ------------------------------------------------------------------------------------ rising


def test_objective_rises_on_mlp_output_and_hidden_unit(digits_mlp, unchanged):
    with unchanged(digits_mlp):
        result = maximize(digits_mlp, ("fc2", 3), SHAPE, steps=60, starts=3)
        rises(result.history)
        hidden = maximize(digits_mlp, ("fc1", 17), (784,), steps=60, starts=2, regularizers="yosinski2015-2", optimizer="adam")
        rises(hidden.history)
    assert result.history.shape == (60, 3)
    assert result.inputs.shape == (3, *SHAPE)
    # the synthesized input is classified as the target class
    assert (digits_mlp(result.inputs).argmax(1) == 3).all()


def test_objective_rises_on_cnn_channel_position_and_logit(digits_cnn, unchanged):
    with unchanged(digits_cnn):
        # the priors of the paper's sets with Adam: their plain gradient ascent, at the paper's rate
        # for an input of width 1, moves these units too little in 48 steps to rise from every seed
        for spec, regs in [(("conv2", 5), "yosinski2015"), (("conv1", 2, (14, 14)), "yosinski2015-1"), (7, "none")]:
            rises(maximize(digits_cnn, spec, SHAPE, steps=48, starts=2, regularizers=regs, optimizer="adam").history)
        rises(maximize(digits_cnn, ("conv2", 5), SHAPE, steps=48, parametrization="fourier", regularizers="lucid").history)


def test_plain_gradient_ascent_matches_finite_differences():
    """optimizer='sgd' is the paper's x <- x + lr * d a_i / dx, checked against central differences."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4)).double()
    lr = 0.1
    run = OptimizationRun(model, ("2", 1), (6,), optimizer="sgd", lr=lr)
    x0 = run.inputs.clone()
    run.step()
    ascent = (run.inputs - x0)[0] / lr

    def a(x):
        with torch.no_grad():
            return model(x[None])[0, 1].item()

    eps = 1e-6
    rows = [(a(x0[0] + eps * e) - a(x0[0] - eps * e)) / (2 * eps) for e in torch.eye(6, dtype=torch.float64)]
    numeric = torch.tensor(rows, dtype=torch.float64)
    torch.testing.assert_close(ascent, numeric, atol=1e-7, rtol=1e-6)


# ------------------------------------------------------------------------------------ objectives


def test_objective_values_match_captured_activations(digits_cnn):
    run = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, starts=3, seed=4)
    step = run.step()
    acts = capture(digits_cnn, step.inputs, ["conv2", "conv1", "fc"])
    np.testing.assert_allclose(step.values, acts["conv2"][:, 5].mean((1, 2)).numpy(), rtol=1e-5, atol=1e-6)
    assert run.history.shape == (1, 3)
    np.testing.assert_allclose(run.history[0], step.values)

    combined = unit("conv2", 5) - 0.5 * unit("conv1", 1, (3, 4)) + logit(2)
    run = OptimizationRun(digits_cnn, combined, SHAPE, starts=2)
    step = run.step()
    acts = capture(digits_cnn, step.inputs, ["conv2", "conv1", "fc"])
    expected = acts["conv2"][:, 5].mean((1, 2)) - 0.5 * acts["conv1"][:, 1, 3, 4] + acts["fc"][:, 2]
    np.testing.assert_allclose(step.values, expected.numpy(), rtol=1e-5, atol=1e-5)
    assert combined.description == "conv2[5] - 0.5*conv1[1, 3, 4] + model output[2]"


def test_negative_objective_lowers_the_unit(digits_mlp):
    result = maximize(digits_mlp, -unit("fc2", 3), SHAPE, steps=40)
    assert result.history[-1, 0] > result.history[0, 0]  # the objective (minus the logit) rises
    logits = digits_mlp(result.inputs)[0]
    assert logits[3] == logits.min()
    # the string form says the same
    assert as_objective("-fc2:3").description == "-fc2[3]"


def test_callable_objective_on_activations_and_sum_of_list(digits_cnn):
    fn = objective(lambda acts: acts["relu2"][:, 4].amax(dim=(1, 2)), layers=["relu2"], description="max relu2[4]")
    run = OptimizationRun(digits_cnn, fn, SHAPE, starts=2)
    step = run.step()
    acts = capture(digits_cnn, step.inputs, ["relu2"])
    np.testing.assert_allclose(step.values, acts["relu2"][:, 4].amax(dim=(1, 2)).numpy(), rtol=1e-6)
    # a bare callable sees every leaf layer, and the output under ""
    seen = {}

    def spy(acts):
        seen.update(acts)
        return acts[""][:, 1] + acts["conv1"][:, 0].mean((1, 2))

    OptimizationRun(digits_cnn, spy, SHAPE).step()
    assert {"conv1", "relu1", "pool1", "conv2", "fc", ""} <= set(seen)
    # a list is the sum of its terms
    listed = OptimizationRun(digits_cnn, [("fc", 1), ("fc", 2)], SHAPE, seed=1).step()
    acts = capture(digits_cnn, listed.inputs, ["fc"])["fc"]
    np.testing.assert_allclose(listed.values, (acts[:, 1] + acts[:, 2]).numpy(), rtol=1e-5)


def test_layer_given_as_module(digits_cnn):
    run = OptimizationRun(digits_cnn, unit(digits_cnn.conv2, 3), SHAPE)
    assert run.objective.description == "conv2[3]"
    with pytest.raises(ValueError, match="not part of this model"):
        OptimizationRun(digits_cnn, unit(nn.Conv2d(1, 1, 1), 0), SHAPE)


@pytest.mark.parametrize(
    "spec, error, message",
    [
        (("conv9", 1), ValueError, "unknown layer 'conv9'.*'conv1', 'relu1'"),
        (("conv2", 16), ValueError, r"unit 16 is out of range for layer 'conv2': it has 16 units \(0..15\)"),
        (("conv2", 1.5), TypeError, r"a unit index is an integer, not 1\.5 \(float\)"),
        (("conv2", True), TypeError, r"a unit index is an integer, not a bool \(True\)"),
        (("conv2", -1), ValueError, r"unit -1 is out of range for layer 'conv2': it has 16 units \(0..15\)"),
        (("conv2", 1, (20, 1)), ValueError, r"element \(1, 20, 1\) is out of range for layer 'conv2'.*\(16, 14, 14\)"),
        (("conv2", (1, 20, 1)), ValueError, r"element \(1, 20, 1\) is out of range for layer 'conv2'.*\(16, 14, 14\)"),
        (("conv2", 1, (1,)), ValueError, "has 3 indices"),
        (("fc", 1, (1, 1)), ValueError, "has 1 indices"),
        (12, ValueError, "out of range for layer 'model output'"),
        ("conv2", ValueError, "'layer:unit'"),
        ("conv2:x", ValueError, "must be an integer"),
        ((1, 2), TypeError, r"\(layer, unit\)"),
        (3.5, TypeError, "an objective is"),
        ([], ValueError, "empty list"),
        (lambda acts: 3.0, TypeError, "must return a tensor"),
        (lambda acts: acts["fc"], ValueError, r"one value per start, shape \(2,\); it gave shape \(2, 10\)"),
        (lambda acts: acts["fc"][:, 0].detach(), ValueError, "does not depend on the input"),
    ],
)
def test_bad_objectives_give_clear_errors(digits_cnn, unchanged, spec, error, message):
    with unchanged(digits_cnn):
        with pytest.raises(error, match=message):
            maximize(digits_cnn, spec, SHAPE, steps=1, starts=2)


def test_raising_objective_leaves_model_as_it_was(digits_cnn, unchanged):
    calls = []

    def flaky(acts):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("objective broke")
        return acts["fc"][:, 0]

    digits_cnn.train()
    digits_cnn.fc.weight.requires_grad_(False)
    try:
        with unchanged(digits_cnn):
            with pytest.raises(RuntimeError, match="objective broke"):
                maximize(digits_cnn, objective(flaky, ["fc"]), SHAPE, steps=10)
    finally:
        digits_cnn.eval()
        digits_cnn.fc.weight.requires_grad_(True)


# ------------------------------------------------------------------------------------ borrowed model


def test_model_untouched_between_steps_of_a_paused_run(digits_cnn, unchanged):
    """While a run is paused the model is its owner's: train mode, trainable, no hooks, no grads."""
    digits_cnn.train()
    handle = digits_cnn.conv1.register_forward_hook(lambda *a: None)
    try:
        with unchanged(digits_cnn):
            run = OptimizationRun(digits_cnn, ("conv2", 1), SHAPE, regularizers="yosinski2015")
            steps = run.iter(6)
            next(steps)
            assert digits_cnn.training and all(p.requires_grad for p in digits_cnn.parameters())
            assert all(p.grad is None for p in digits_cnn.parameters())
            # the owner trains a little while the run is paused
            opt = torch.optim.SGD(digits_cnn.parameters(), lr=0.0)
            digits_cnn(torch.rand(2, *SHAPE)).sum().backward()
            opt.zero_grad(set_to_none=True)
            for _ in steps:
                pass
            assert run.step_count == 6
    finally:
        handle.remove()
        digits_cnn.eval()


def test_steps_trace_the_feature_axes_once_and_see_a_layer_replaced_between_steps():
    """The steps of a run look the layers up and trace their axes once (a ReLU's axis takes a traced
    pass), yet a layer the owner replaces while the run is paused is the one the next step reads."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(proj=nn.Linear(4, 6), act=nn.ReLU(), head=nn.Linear(6, 3))).eval()
    hooks_seen = []  # forward hooks on the first Linear during each pass: a tracer adds one
    model.proj.register_forward_pre_hook(lambda m, args: hooks_seen.append(len(m._forward_hooks)))
    run = OptimizationRun(model, ("act", 2), (5, 4))  # (tokens, features): the ReLU's axis is the last
    for _ in range(4):
        run.step()
    # the check at creation traces (the first step's pass); the other steps reuse its axes
    assert hooks_seen == [1, 0, 0, 0]
    with torch.no_grad():
        model.head = nn.Linear(6, 3)  # not the objective's layer: the layers' names and axes stay right
        new_act = model.act = nn.Sequential(nn.ReLU())  # the objective's layer, replaced
        new_act.register_forward_hook(lambda m, args, out: out * 0 + 7.0)
    assert run.step().values.tolist() == [7.0]  # the new module's value, not the old ReLU's
    assert not any(m._forward_hooks for m in model.modules() if m is not new_act)
    assert len(new_act._forward_hooks) == 1  # the owner's hook only


def test_eval_mode_inside_a_step():
    """Dropout is off during the run (eval mode), so the objective is deterministic per input."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.9), nn.Linear(16, 2)).train()
    run = OptimizationRun(model, ("2", 0), (8,))
    step = run.step()
    with torch.no_grad():
        expected = model.eval()(step.inputs)[:, 0]
    model.train()
    np.testing.assert_allclose(step.values, expected.numpy(), rtol=1e-6)
    assert model.training


# ------------------------------------------------------------------------------------ regularizers


def one_step(model, regs, **kw):
    run = OptimizationRun(model, ("conv2", 5), SHAPE, starts=2, seed=3, regularizers=regs, **kw)
    x0 = run.inputs.clone()
    run.step()
    return x0, run.inputs


def test_decay_shrinks_after_the_update(digits_cnn):
    _, plain = one_step(digits_cnn, None)
    _, decayed = one_step(digits_cnn, {"decay": 0.3})
    torch.testing.assert_close(decayed, 0.7 * plain)


def test_blur_matches_scipy_and_lowers_high_frequencies(digits_cnn):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 3, 17, 20))
    for sigma in (0.5, 1.0, 2.0):
        ours = blur(torch.from_numpy(images), sigma).numpy()
        ref = np.stack([[scipy.ndimage.gaussian_filter(c, sigma, mode="mirror") for c in im] for im in images])
        np.testing.assert_allclose(ours, ref, atol=1e-10)
    # blurring every step in a run: the result has far less high-frequency energy
    sharp = maximize(digits_cnn, ("conv1", 3), SHAPE, steps=30, starts=2).inputs
    smooth = maximize(digits_cnn, ("conv1", 3), SHAPE, steps=30, starts=2, regularizers={"blur_width": 1.0, "blur_every": 1}).inputs
    assert high_frequency_share(smooth) < 0.5 * high_frequency_share(sharp)
    # and a blur every 4 steps is applied on steps 0, 4, 8, ... (the paper's schedule)
    _, blurred = one_step(digits_cnn, {"blur_width": 1.0, "blur_every": 4})
    _, plain = one_step(digits_cnn, None)
    torch.testing.assert_close(blurred, blur(plain, 1.0))


def test_small_norm_clipping_zeroes_the_right_pixels():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    kw = dict(starts=2, seed=5)
    plain = OptimizationRun(model, ("1", 2), (3, 10, 12), **kw).run(1).inputs.numpy()
    clipped = OptimizationRun(model, ("1", 2), (3, 10, 12), regularizers={"norm_pct": 30}, **kw).run(1).inputs.numpy()
    for x, y in zip(plain, clipped):
        norms = np.linalg.norm(x, axis=0)
        small = norms < np.percentile(norms, 30)
        assert small.sum() == 36  # 30% of 120 pixels
        np.testing.assert_array_equal(y[:, small], 0.0)
        np.testing.assert_allclose(y[:, ~small], x[:, ~small], rtol=1e-6)


def test_small_contribution_clipping_zeroes_the_right_pixels():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 10, 3))
    kw = dict(starts=2, seed=2)
    start = OptimizationRun(model, ("3", 1), (3, 10, 12), **kw)
    x0 = start.inputs.clone().requires_grad_(True)
    grad = torch.autograd.grad(model(x0)[:, 1].sum(), x0)[0].numpy()
    plain = start.run(1).inputs.numpy()
    clipped = OptimizationRun(model, ("3", 1), (3, 10, 12), regularizers={"contribution_pct": 75}, **kw).run(1).inputs.numpy()
    for x, g, y in zip(plain, grad, clipped):
        contribution = np.abs((x * g).sum(axis=0))
        small = contribution < np.percentile(contribution, 75)
        assert small.sum() == 90
        np.testing.assert_array_equal(y[:, small], 0.0)
        np.testing.assert_allclose(y[:, ~small], x[:, ~small], rtol=1e-6)


def test_small_pixel_mask_is_numpy_percentile():
    rng = np.random.default_rng(1)
    for pct in (0.5, 10, 25, 50, 90, 99.9):
        for n in (1, 2, 7, 64):
            score = rng.random((3, n, 3))
            expected = np.stack([s < np.percentile(s, pct) for s in score])
            np.testing.assert_array_equal(small_pixel_mask(torch.from_numpy(score), pct).numpy(), expected)


def test_small_pixel_mask_with_ties_and_nan_holds_the_ranks_up_to_the_percentile():
    # zeroed pixels tie (as after a clipping) and NaN ranks last; float32 and float64 on the CPU
    # take numpy's sort, float16 torch's kthvalue. The mask holds the values at the ranks up to
    # k = floor(position) (below the value at k when the position falls on k): numpy's
    # percentile mask wherever the values at ranks k and k + 1 differ
    rng = np.random.default_rng(3)
    score = rng.random((4, 20, 20))
    score[0, :15] = 0.0  # 75% zeros: the ranks of 50 and 90 fall inside and outside the ties
    score[1] = rng.integers(0, 3, (20, 20))  # three values
    score[2, 3, :5] = np.nan
    for dtype in (torch.float64, torch.float32, torch.float16):
        values = torch.from_numpy(score).to(dtype)
        reference = values.double().numpy()
        for pct in (10, 50, 75, 90):
            found = small_pixel_mask(values, pct).numpy()
            for s, mask in zip(reference, found):
                ranked = np.sort(s.ravel())  # NaN last
                position = pct / 100 * (ranked.size - 1)
                k = int(np.floor(position))
                np.testing.assert_array_equal(mask, s <= ranked[k] if position > k else s < ranked[k])
                if not np.isnan(s).any() and ranked[k] != ranked[k + 1]:
                    np.testing.assert_array_equal(mask, s < np.percentile(s, pct))
            assert found[0].sum() == (300 if pct <= 75 else 360)  # the ties at 0, then 90% of 400


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_zero_pixels_is_masked_fill_bit_for_bit(dtype):
    from nbvis.compute.optimize.transforms import zero_pixels

    torch.manual_seed(0)
    images = torch.randn(3, 4, 6, 5).to(dtype)
    images[0, 1, 2] = torch.tensor([-0.0, float("inf"), float("-inf"), float("nan"), 1e-40]).to(dtype)
    mask = torch.rand(3, 6, 5) < 0.5
    mask[0, 2] = torch.tensor([True, True, False, True, False])
    expected = images.clone().masked_fill_(mask[:, None], 0.0)
    found = images.clone()
    zero_pixels(found, mask)
    bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[images.element_size()]
    assert torch.equal(found.view(bits), expected.view(bits))  # +0.0 where masked, every other bit kept
    strided = images.clone().transpose(2, 3)  # a view that is not contiguous
    zero_pixels(strided, mask.transpose(1, 2))
    assert torch.equal(strided.transpose(2, 3).view(bits), expected.view(bits))
    if dtype == torch.float64:  # in a graph: the gradient is masked_fill_'s (0 where zeroed)
        leaf = images.clone().requires_grad_(True)
        inner = leaf * 1.0
        zero_pixels(inner, mask)
        (grad,) = torch.autograd.grad(inner.sum(), leaf)
        torch.testing.assert_close(grad, (~mask[:, None]).expand_as(grad).double())


def test_total_variation_by_hand_and_in_a_run(digits_cnn):
    x = torch.tensor([[[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]]])
    # vertical |2-0|,|2-1|,|2-3| mean 4/3; horizontal |1|,|2|,|0|,|0| mean 3/4
    torch.testing.assert_close(total_variation(x), torch.tensor([4 / 3 + 3 / 4]))
    plain = maximize(digits_cnn, ("conv2", 5), SHAPE, steps=30, starts=2).inputs
    smooth = maximize(digits_cnn, ("conv2", 5), SHAPE, steps=30, starts=2, regularizers={"tv": 5.0}).inputs
    assert (total_variation(smooth) < 0.5 * total_variation(plain)).all()


def test_jitter_shifts_the_input_the_model_sees():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1))
    run = OptimizationRun(model, ("0", 1, (4, 5)), (1, 12, 12), regularizers={"jitter": 2}, seed=9)
    shifts = set()
    for _ in range(12):
        step = run.step()
        with torch.no_grad():
            candidates = {
                (dy, dx): model(torch.roll(step.inputs, (dy, dx), dims=(2, 3)))[0, 1, 4, 5].item()
                for dy in range(-2, 3)
                for dx in range(-2, 3)
            }
        unshifted = model(step.inputs)[0, 1, 4, 5].item()
        match = [s for s, v in candidates.items() if abs(v - step.values[0]) < 1e-6]
        assert match, (step.values, unshifted)
        shifts.update(match)
    assert len(shifts) > 3  # the shifts vary


def test_affine_resample_identity_and_quarter_turn():
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(affine_resample(x, 1.0, 0.0), x, atol=1e-5, rtol=1e-5)
    turned = affine_resample(x, 1.0, 90.0)
    assert min(
        (turned - torch.rot90(x, k, dims=(2, 3))).abs().max().item() for k in (1, -1)
    ) < 1e-4
    zoomed = affine_resample(torch.ones(1, 1, 8, 8), 1.3, 10.0)
    torch.testing.assert_close(zoomed, torch.ones(1, 1, 8, 8))  # a constant image stays constant


def test_presets_are_the_papers_four_sets():
    assert PRESETS["yosinski2015-1"] == Regularizers(blur_width=0.5, blur_every=4, norm_pct=50)
    assert PRESETS["yosinski2015-2"] == Regularizers(decay=0.3, norm_pct=20)
    assert PRESETS["yosinski2015-3"] == Regularizers(decay=1e-4, blur_width=1.0, blur_every=4)
    assert PRESETS["yosinski2015-4"] == Regularizers(blur_width=0.5, blur_every=4, contribution_pct=90)
    assert PRESETS["yosinski2015"] == PRESETS["yosinski2015-3"]
    assert PRESETS["none"].active() == []


def test_value_range_clips_pixels(digits_cnn):
    result = maximize(digits_cnn, ("conv2", 5), SHAPE, steps=20, starts=2, value_range=(0.0, 1.0), lr=0.5)
    assert result.inputs.min() >= 0.0 and result.inputs.max() <= 1.0
    assert (result.inputs == 1.0).any()  # the ascent pushes into the bound


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(regularizers="yosinski"), ValueError, "unknown regularizer preset 'yosinski'.*yosinski2015-1"),
        (dict(regularizers={"blur": 1}), ValueError, "unknown regularizer.*'blur'.*blur_width"),
        (dict(regularizers={"decay": 1.5}), ValueError, r"decay must be in \[0, 1\)"),
        (dict(regularizers={"norm_pct": -1}), ValueError, r"norm_pct must be in \[0, 100\)"),
        (dict(regularizers={"blur_every": 2.5, "blur_width": 1}), ValueError, "whole number"),
        (dict(regularizers={"tv": "a lot"}), TypeError, "tv must be a number"),
        (dict(regularizers=3), TypeError, "preset name"),
        (dict(parametrization="fourier", regularizers={"norm_pct": 10}), ValueError, "act on pixels"),
        (dict(parametrization="wavelet"), ValueError, "'pixel', 'fourier' or 'data'"),
            (dict(parametrization="data"), ValueError, "needs dataset= with samples of the input's size"),
        (dict(input_shape=(1, 28, 28, 1)), ValueError, "input_shape is the shape of one input"),
        (dict(input_shape=(0, 28)), ValueError, "positive sizes"),
        (dict(input_shape=(3, 28, 28)), ValueError, r"could not run on an input of shape \(1, 3, 28, 28\)"),
        (dict(starts=0), ValueError, "starts must be an integer >= 1"),
        (dict(steps=-1), ValueError, "steps must be an integer >= 0"),
        (dict(lr=0), ValueError, "lr must be a positive number"),
        (dict(optimizer="lbfgs"), ValueError, "'adam' or 'sgd'"),
        (dict(value_range=(1, 0)), ValueError, "low < high"),
        (dict(seed=-1), ValueError, "seed must be an integer >= 0"),
        (dict(init=torch.zeros(2, 2)), ValueError, r"init must have shape \(1, 28, 28\)"),
    ],
)
def test_bad_arguments_give_clear_errors(digits_cnn, unchanged, kwargs, error, message):
    args = dict(input_shape=SHAPE) | kwargs
    with unchanged(digits_cnn):
        with pytest.raises(error, match=message):
            maximize(digits_cnn, ("conv2", 1), args.pop("input_shape"), steps=args.pop("steps", 2), **args)


def test_vector_inputs_refuse_image_priors_but_presets_adapt():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match="blur_every, jitter act on images, and this input is a vector"):
        maximize(model, ("2", 1), (5,), regularizers={"blur_width": 1, "blur_every": 2, "jitter": 1})
    with pytest.raises(ValueError, match="Fourier parametrization needs an image"):
        maximize(model, ("2", 1), (5,), parametrization="fourier")
    run = OptimizationRun(model, ("2", 1), (5,), starts=3, regularizers="yosinski2015-1", lr=0.05)
    assert run.regularizers == Regularizers(norm_pct=50)  # the blur of the preset does not apply
    rises(run.run(40).history)
    assert run.images.shape == (3, 1, 5, 1)


# ------------------------------------------------------------------------------------ parametrizations


def test_fourier_parametrization_is_bounded_smooth_and_decorrelated():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    fourier = OptimizationRun(model, ("1", 0), (3, 32, 32), starts=2, parametrization="fourier", value_range=(-1, 2))
    pixel = OptimizationRun(model, ("1", 0), (3, 32, 32), starts=2)
    x = fourier.inputs
    assert x.shape == (2, 3, 32, 32) and x.min() > -1 and x.max() < 2
    # the 1/f spectrum starts smoother than white noise
    assert high_frequency_share(x) < 0.5 * high_frequency_share(pixel.inputs)
    # colours are correlated through the decorrelation matrix (white noise would give ~0)
    channels = x[0].reshape(3, -1).numpy()
    assert np.corrcoef(channels)[0, 1] > 0.5
    rises(fourier.run(40).history)
    assert OptimizationRun(model, ("1", 0), (3, 9, 11), parametrization="fourier").inputs.shape == (1, 3, 9, 11)
    gray_model = nn.Sequential(nn.Unflatten(1, (1, 12)), nn.Conv2d(1, 2, 3))  # (N, H, W) -> (N, 1, H, W)
    gray = OptimizationRun(gray_model, ("1", 0), (12, 15), parametrization="fourier")
    assert gray.inputs.shape == (1, 12, 15)


def test_fourier_image_is_the_scaled_decorrelated_spectrum_and_shifts_as_a_roll():
    from nbvis.compute.optimize.parametrizations import _COLOR_SQRT, Fourier

    for shape, value_range in [((3, 16, 12), (-1.0, 2.0)), ((3, 9, 11), None), ((10, 7), (0.0, 1.0))]:
        fourier = Fourier(shape, 2, torch.Generator().manual_seed(1), torch.device("cpu"), torch.float64, value_range)
        h, w = shape[-2:]
        # numpy, written from the definition: 1/f amplitudes, inverse FFT / 4, colour matrix, sigmoid
        fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
        spectrum = fourier.param.detach().numpy()
        coefficients = (spectrum[..., 0] + 1j * spectrum[..., 1]) / np.maximum(np.sqrt(fx**2 + fy**2), 1 / max(h, w))
        image = np.fft.irfft2(coefficients, s=(h, w), norm="ortho") / 4
        if len(shape) == 3:
            image = np.einsum("dc,nchw->ndhw", _COLOR_SQRT, image)
        low, high = value_range or (0.0, 1.0)
        expected = (low + (high - low) / (1 + np.exp(-image))).reshape(2, *shape)
        with torch.no_grad():
            np.testing.assert_allclose(fourier.image().numpy(), expected, rtol=0, atol=1e-12)
            for shift in [(1, 0), (0, -3), (-2, 5)]:
                rolled = torch.roll(fourier.image(), shift, dims=(-2, -1))
                np.testing.assert_allclose(fourier.image(shift).numpy(), rolled.numpy(), rtol=0, atol=1e-12)


def test_fourier_gradient_is_the_gradient_of_its_formula():
    """The image's gradient with respect to the spectrum, against the same formula written with
    torch's out-of-place operations (the image is made with in-place ones)."""
    from nbvis.compute.optimize.parametrizations import Fourier

    for shape, value_range in [((3, 12, 10), (-1.0, 2.0)), ((9, 11), None), ((1, 8, 8), None)]:
        fourier = Fourier(shape, 2, torch.Generator().manual_seed(4), torch.device("cpu"), torch.float64, value_range)
        weights = torch.randn(2, *shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        for shift in [(0, 0), (2, -1)]:
            (got,) = torch.autograd.grad((fourier.image(shift) * weights).sum(), [fourier.param])
            spectrum = fourier.param.detach().clone().requires_grad_(True)
            factor = torch.polar(fourier.scale, fourier.turn_y * shift[0] + fourier.turn_x * shift[1])
            image = torch.fft.irfftn(torch.view_as_complex(spectrum) * factor, s=fourier.size, norm="ortho")
            if fourier.color is not None:
                image = torch.einsum("dc,nchw->ndhw", fourier.color, image)
            low, high = value_range or (0.0, 1.0)
            image = (low + (high - low) * torch.sigmoid(image)).reshape(2, *shape)
            (expected,) = torch.autograd.grad((image * weights).sum(), [spectrum])
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_a_shifted_fourier_step_shows_the_image_it_evaluated():
    """Jitter on the Fourier spectrum (a phase ramp, not a roll of the image): the Step still holds
    the unshifted image, and the run's objective is that of the rolled image."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).eval()
    run = OptimizationRun(model, ("1", 0, (3, 4)), (3, 12, 12), parametrization="fourier", regularizers={"jitter": 3}, seed=2)
    kept = []
    for _ in range(6):
        before, state = run.inputs, random_state(run)
        step = run.step()
        dy, dx = state.randint(-3, 3), state.randint(-3, 3)
        kept.append((step, before, (dy, dx)))
        if len(kept) % 2:  # the others are read only after the later steps moved the spectrum
            torch.testing.assert_close(step.inputs, before, rtol=0, atol=1e-6)
        with torch.no_grad():
            expected = model(torch.roll(before, (dy, dx), dims=(2, 3)))[:, 0, 3, 4]
        torch.testing.assert_close(torch.as_tensor(step.values, dtype=torch.float32), expected, rtol=1e-5, atol=1e-6)
    assert any(shift != (0, 0) for _, _, shift in kept[1::2])
    for step, before, _ in kept:
        torch.testing.assert_close(step.inputs, before, rtol=0, atol=1e-6)


def test_a_fourier_run_with_transforms_gives_the_images_of_the_full_phase_ramp(monkeypatch):
    """Jitter, zoom and rotation on the Fourier parametrization: the images, step by step, are those
    that the shift's phase written over the whole spectrum, exp(-2 pi i (fy dy + fx dx)), gives."""
    from nbvis.compute.optimize.parametrizations import Fourier

    def full_ramp(self, shift=(0, 0)):
        factor = torch.polar(self.scale, self.turn_y * shift[0] + self.turn_x * shift[1])
        image = torch.fft.irfftn(torch.view_as_complex(self.param) * factor, s=self.size, norm="ortho")
        if self.color is not None:
            image = torch.einsum("dc,nchw->ndhw", self.color, image)
        return (self.low + self.span * torch.sigmoid(image)).reshape(self.shape)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).eval()

    def images():
        regularizers = {"jitter": 4, "scale": 0.1, "rotate": 10}
        run = OptimizationRun(model, ("1", 0), (3, 20, 24), starts=2, parametrization="fourier", regularizers=regularizers, seed=3)
        return [step.inputs for step in run.iter(12)]

    got = images()
    monkeypatch.setattr(Fourier, "image", full_ramp)
    expected = images()
    assert not torch.equal(got[0], got[-1])
    for new, old in zip(got, expected):
        torch.testing.assert_close(new, old, rtol=0, atol=1e-5)


def random_state(run):
    import random

    state = random.Random()
    state.setstate(run._random.getstate())
    return state


def test_affine_resample_is_affine_grid_and_grid_sample():
    import itertools
    import math

    import torch.nn.functional as F

    for shape, dtype in itertools.product([(1, 3, 32, 32), (3, 1, 9, 14), (2, 2, 1, 5), (1, 3, 7, 1)], [torch.float64, torch.float32]):
        x = torch.rand(shape, dtype=dtype)
        for zoom, degrees in [(1.07, 4.0), (0.9, -10.0), (1.0, 0.0), (0.6, -45.0), (1.3, 170.0)]:
            c, s = math.cos(math.radians(degrees)) / zoom, math.sin(math.radians(degrees)) / zoom
            theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=dtype).expand(shape[0], 2, 3)
            grid = F.affine_grid(theta, list(shape), align_corners=False)
            x.requires_grad_(True)
            expected = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
            found = affine_resample(x, zoom, degrees)
            assert torch.equal(found, expected)
            # and the same gradient (every start and channel sampled with the one grid)
            weights = torch.rand(shape, dtype=dtype)
            (expected_grad,) = torch.autograd.grad(expected, [x], weights)
            (found_grad,) = torch.autograd.grad(found, [x], weights)
            assert torch.equal(found_grad, expected_grad)
            x.requires_grad_(False)


# ------------------------------------------------------------------------------------ runs


def test_seeded_runs_reproduce_and_starts_differ(digits_cnn):
    kw = dict(steps=12, starts=3, regularizers={"jitter": 2, "scale": 0.1, "rotate": 5, "blur_width": 0.5, "blur_every": 2})
    a = maximize(digits_cnn, ("conv2", 5), SHAPE, seed=7, **kw)
    b = maximize(digits_cnn, ("conv2", 5), SHAPE, seed=7, **kw)
    c = maximize(digits_cnn, ("conv2", 5), SHAPE, seed=8, **kw)
    assert torch.equal(a.inputs, b.inputs) and np.array_equal(a.history, b.history)
    assert not torch.equal(a.inputs, c.inputs)
    assert not torch.allclose(a.inputs[0], a.inputs[1])


def test_pausing_and_resuming_gives_the_same_run(digits_cnn):
    kw = dict(starts=2, seed=3, regularizers={"jitter": 2, "decay": 0.01, "blur_width": 1, "blur_every": 3})
    whole = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, **kw).run(10)
    parts = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, **kw)
    parts.run(4)
    assert parts.history.shape == (4, 2)
    parts.run(6)
    assert torch.equal(whole.inputs, parts.inputs)
    np.testing.assert_array_equal(whole.history, parts.history)


@pytest.mark.parametrize("parametrization", ["pixel", "fourier"])
def test_advance_does_the_steps_of_a_stepped_run(digits_cnn, unchanged, parametrization):
    """``run.advance(n, seconds)``: up to ``n`` steps in one borrow, the same numbers as stepping
    one ``step()`` at a time; its Step is the last one's; ``seconds`` ends it early (one step at least)."""
    regs = {"jitter": 2, "scale": 0.1, "rotate": 5, "decay": 0.01}
    if parametrization == "pixel":
        regs.update(blur_width=1, blur_every=3)
    kw = dict(starts=2, seed=3, parametrization=parametrization, regularizers=regs)
    stepped = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, **kw)
    steps = list(stepped.iter(9))
    with unchanged(digits_cnn):
        run = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, **kw)
        assert run.advance(0) is None and run.step_count == 0
        first = run.advance(5, seconds=0.0)  # the time is up after the first step
        assert run.step_count == 1 and first.index == 1
        last = run.advance(8, seconds=60.0)
    assert run.step_count == 9 and last.index == 9
    assert torch.equal(first.inputs, steps[0].inputs)
    assert torch.equal(last.inputs, steps[-1].inputs)  # the inputs the last step evaluated
    np.testing.assert_array_equal(last.values, steps[-1].values)
    assert torch.equal(run.inputs, stepped.inputs)
    np.testing.assert_array_equal(run.history, stepped.history)
    with pytest.raises(ValueError, match="steps"):
        run.advance(-1)
    for seconds in (float("nan"), -1.0, "1"):
        with pytest.raises(ValueError, match="seconds must be a number >= 0"):
            run.advance(2, seconds=seconds)
    assert run.step_count == 9


@pytest.mark.parametrize("how", ["advance", "run"])
def test_every_step_of_a_run_of_steps_runs_in_eval_mode(digits_cnn, unchanged, how):
    """An owner's thread that switches the model to train mode while a run of steps goes on
    (outside ``nbvis.exclusive``) does not get Dropout or BatchNorm updates into the next steps:
    ``advance`` (a streamed run's) and ``run`` (``maximize``'s) alike."""
    modes = []
    watch = digits_cnn.register_forward_pre_hook(lambda m, args: modes.append(m.training))

    def owner_switches(acts):
        if len(modes) == 2:
            digits_cnn.train()  # what the owner's thread may do between two of the job's steps
        return acts["conv2"][:, 5].mean(dim=(1, 2))

    try:
        with unchanged(digits_cnn):
            run = OptimizationRun(digits_cnn, optimize.objective(owner_switches, layers=["conv2"]), SHAPE, _check=False)
            getattr(run, how)(5)
            digits_cnn.eval()
    finally:
        watch.remove()
    assert modes == [False] * 5


def test_advance_holds_the_model_for_all_its_steps(digits_cnn, unchanged):
    """The steps of one ``advance`` call are one borrow: ``nbvis.exclusive`` (the owner's turn)
    comes before or after all of them, never in between, as it does between ``step()`` calls."""
    started = threading.Event()

    def slow_first(acts):
        if not started.is_set():
            started.set()
            time.sleep(0.2)  # the owner asks for its turn meanwhile
        return acts["conv2"][:, 5].mean(dim=(1, 2))

    failed = []

    def advance():
        try:
            run.advance(12)
        except BaseException as exc:  # reported by the test, not lost with the thread
            failed.append(exc)
            started.set()

    with unchanged(digits_cnn):
        run = OptimizationRun(digits_cnn, optimize.objective(slow_first, layers=["conv2"]), SHAPE, _check=False)
        worker = threading.Thread(target=advance)
        worker.start()
        assert started.wait(5)
        with nbvis.exclusive(digits_cnn):
            seen = run.step_count
        worker.join(10)
    assert not failed and not worker.is_alive()
    assert seen == 12 and run.step_count == 12


@pytest.mark.parametrize(
    "kw",
    [
        dict(),  # pixels, no priors
        dict(parametrization="fourier", regularizers={"decay": 0.01}),
        dict(regularizers={"jitter": 2, "blur_width": 1, "blur_every": 3}, value_range=(0, 1)),
        dict(starts=3, diversity=0.5),
        dict(parametrization="fourier", regularizers={"jitter": 2, "scale": 0.1, "rotate": 5}),
        dict(regularizers={"tv": 1e-3, "jitter": 1}),
    ],
    ids=["pixel", "fourier", "transforms", "diversity", "fourier-transforms", "tv"],
)
def test_maximize_runs_the_model_once_per_step_and_equals_a_run(digits_cnn, unchanged, kw):
    """maximize checks the objective with its first step's forward pass, transforms or not (the
    first step's own pass): one pass per step, and the same numbers as a run checked when it is
    made, whose check is its first step's pass, kept for that step (one pass per step too)."""
    kw = dict(kw, starts=kw.get("starts", 2), seed=5)
    passes = []
    watch = digits_cnn.register_forward_pre_hook(lambda m, args: passes.append(1))
    try:
        with unchanged(digits_cnn):
            result = maximize(digits_cnn, ("conv2", 5), SHAPE, steps=6, **kw)
        assert len(passes) == 6
        run = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, **kw)
        assert len(passes) == 7  # a run made for stepping later checks when it is made
        run.run(6)
    finally:
        watch.remove()
    assert len(passes) == 12
    assert torch.equal(result.inputs, run.inputs)
    np.testing.assert_array_equal(result.history, run.history)


def _bn_net() -> nn.Module:
    """A small CNN with a BatchNorm (buffers that a forward pass reads), in eval mode."""
    torch.manual_seed(3)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 6, 3, padding=1), bn=nn.BatchNorm2d(6), relu=nn.ReLU(), conv2=nn.Conv2d(6, 8, 3, padding=1),
    ))
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _train_one_step(net):
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    net(torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))).square().mean().backward()
    optimizer.step()
    optimizer.zero_grad()
    net.eval()


MODEL_CHANGES = {
    "weights changed in place": lambda net: torch.no_grad()(net.conv1.weight.mul_)(1.5),
    "a training step (weights and statistics)": _train_one_step,
    "statistics only (a forward pass in train mode)": lambda net: (net.train(), net(torch.randn(8, *SHAPE)), net.eval()),
    "load_state_dict": lambda net: net.load_state_dict({k: v * 0.5 for k, v in net.state_dict().items()}),
    "a parameter replaced": lambda net: setattr(net.conv2, "bias", nn.Parameter(net.conv2.bias.detach() + 1)),
    "a module replaced": lambda net: setattr(net, "relu", nn.Tanh()),
    "a forward hook added": lambda net: net.relu.register_forward_hook(lambda m, args, out: out * 2),
}


#: changes that give a parameter new data in place of the old without a new version (nn.Module._apply)
DATA_SWAPS = {
    "half, then float again": lambda net: net.half().float(),
    "channels last": lambda net: net.to(memory_format=torch.channels_last),
}
FIRST_STEP_KW = dict(starts=2, seed=5, parametrization="fourier", regularizers={"jitter": 2, "scale": 0.1, "rotate": 5})


def _plain_net() -> nn.Module:
    """A small CNN without buffers."""
    torch.manual_seed(4)
    return nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 6, 3, padding=1), relu=nn.ReLU(), conv2=nn.Conv2d(6, 8, 3, padding=1))).eval()


def _steps_on_the_model_as_it_is(net, change) -> None:
    run = OptimizationRun(net, ("conv2", 5), SHAPE, **FIRST_STEP_KW)
    change(net)
    run.run(3)
    fresh = OptimizationRun(net, ("conv2", 5), SHAPE, **FIRST_STEP_KW).run(3)
    assert torch.equal(run.inputs, fresh.inputs)
    np.testing.assert_array_equal(run.history, fresh.history)


@pytest.mark.parametrize("change", list(MODEL_CHANGES), ids=list(MODEL_CHANGES))
def test_a_run_made_before_the_model_changed_steps_on_the_model_as_it_is(change):
    """A run's first step uses the pass made when the run was made only while the model is the
    same: changed weights, statistics, modules or hooks in between, and the first step makes its
    own pass, on the same transforms: the numbers of a run made after the change."""
    _steps_on_the_model_as_it_is(_bn_net(), MODEL_CHANGES[change])


@pytest.mark.parametrize("change", list(DATA_SWAPS), ids=list(DATA_SWAPS))
def test_a_run_made_before_the_parameters_got_new_data_steps_on_the_new_data(change):
    """``model.half().float()`` (weights rounded) and ``.to(memory_format=...)`` swap each
    parameter's data, same object and version: the first step sees it all the same."""
    _steps_on_the_model_as_it_is(_plain_net(), DATA_SWAPS[change])


def test_a_model_with_a_tensor_of_inference_mode_runs_as_maximize_runs_it():
    """A buffer made under ``torch.inference_mode`` keeps no version: the run can tell nothing
    about it, and its first step makes its own pass (the numbers of ``maximize``)."""
    net = _plain_net()
    with torch.inference_mode():
        offset = torch.full((1, 1, 1), 0.1)
    net.conv1.register_buffer("offset", offset)
    net.conv1.register_forward_hook(lambda m, args, out: out + m.offset)
    run = OptimizationRun(net, ("conv2", 5), SHAPE, **FIRST_STEP_KW).run(3)
    result = maximize(net, ("conv2", 5), SHAPE, steps=3, **FIRST_STEP_KW)
    assert torch.equal(run.inputs, result.inputs)


def test_a_run_made_under_autocast_and_stepped_outside_it_steps_in_full_precision():
    """A run made inside ``torch.autocast`` checked its objective in bfloat16: its first step,
    outside it, makes its own pass (the numbers of a run made outside)."""
    net = _plain_net()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        run = OptimizationRun(net, ("conv2", 5), SHAPE, **FIRST_STEP_KW)
    run.run(3)
    fresh = OptimizationRun(net, ("conv2", 5), SHAPE, **FIRST_STEP_KW).run(3)
    assert torch.equal(run.inputs, fresh.inputs)
    np.testing.assert_array_equal(run.history, fresh.history)


def test_a_run_whose_regularizers_change_before_its_first_step_draws_the_new_transforms(digits_cnn):
    """Regularizers set between making a run and its first step: the first step makes its own pass
    with the transforms of the new ones, drawn from the start of the random stream (the numbers
    of a run made with them)."""
    kw = dict(starts=2, seed=5, parametrization="fourier")
    run = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, regularizers={"jitter": 2}, **kw)
    run.regularizers = {"jitter": 3, "rotate": 8}
    run.run(3)
    fresh = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, regularizers={"jitter": 3, "rotate": 8}, **kw).run(3)
    assert torch.equal(run.inputs, fresh.inputs)
    np.testing.assert_array_equal(run.history, fresh.history)
    # the same regularizers set again (as the OptimizationViewer does before it starts): the kept pass stays
    passes = []
    watch = digits_cnn.register_forward_pre_hook(lambda m, args: passes.append(1))
    try:
        run = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, regularizers={"jitter": 2}, **kw)
        run.regularizers = {"jitter": 2}
        run.run(3)
    finally:
        watch.remove()
    assert len(passes) == 3


def test_a_run_made_before_the_model_moved_to_float64_steps_in_float64():
    """The model converted between making the run and its first step (same parameters, same
    versions): the first step makes its own pass, in the model's new dtype, the numbers of a run
    that checks with its first step."""
    net = _plain_net()
    run = OptimizationRun(net, ("conv2", 5), SHAPE, **FIRST_STEP_KW)
    unchecked = OptimizationRun(net, ("conv2", 5), SHAPE, **FIRST_STEP_KW, _check=False)
    net.double()
    run.run(3)
    unchecked.run(3)
    assert run.inputs.dtype == torch.float64
    assert torch.equal(run.inputs, unchecked.inputs)
    np.testing.assert_array_equal(run.history, unchecked.history)


@pytest.mark.parametrize("kw", [{}, {"regularizers": {"tv": 1e-3}}, {"diversity": 0.5}], ids=["plain", "tv", "diversity"])
def test_a_run_is_the_hand_written_adam_loop_bit_for_bit(digits_cnn, kw):
    """Every step ascends -sum(objective) (+ the penalties): the same inputs as hooks, autograd and
    Adam written by hand, to the last bit, with or without penalty terms in the loss."""
    run = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, starts=3, seed=2, redirect=0, **kw)
    x = run.inputs.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=run.lr)
    seen = {}
    handle = digits_cnn.conv2.register_forward_hook(lambda m, i, o: seen.__setitem__("a", o))
    try:
        for p in digits_cnn.parameters():
            p.requires_grad_(False)
        for _ in range(4):
            digits_cnn(x)
            values = seen["a"][:, 5].flatten(1).mean(1)
            loss = -values.sum()
            if "regularizers" in kw:
                loss = loss + 1e-3 * total_variation(x).sum()
            if "diversity" in kw:
                loss = loss + diversity_penalty(0.5, values, seen["a"], x)
            (x.grad,) = torch.autograd.grad(loss, [x])
            optimizer.step()
    finally:
        handle.remove()
        for p in digits_cnn.parameters():
            p.requires_grad_(True)
    run.run(4)
    assert torch.equal(run.inputs, x.detach())


def test_the_first_step_redirects_when_its_own_pass_finds_the_unit_off(unchanged):
    """The first step's own pass (on the jittered input it sees) tells whether it redirects: a
    unit that is off moves from the first step on, and stays put without the redirect."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU())
    with torch.no_grad():
        model[0].bias[1] = -5.0  # channel 1 is off everywhere for inputs near 0
    with unchanged(model):
        runs = [OptimizationRun(model, ("1", 1), (1, 8, 8), starts=2, regularizers={"jitter": 1}, redirect=r) for r in (16, 0)]
        starts = [run.inputs.clone() for run in runs]
        steps = [run.step() for run in runs]
    assert all(np.all(step.values == 0.0) for step in steps)
    assert not torch.equal(runs[0].inputs, starts[0])  # redirected: the unit gets a gradient
    assert torch.equal(runs[1].inputs, starts[1])  # no gradient reaches the input


def test_maximize_with_a_bad_objective_still_fails_before_any_update(digits_cnn, unchanged):
    with unchanged(digits_cnn), pytest.raises(ValueError, match="does not depend on the input"):
        maximize(digits_cnn, objective(lambda acts: torch.ones(1), layers=["conv2"]), SHAPE, steps=3)
    with unchanged(digits_cnn), pytest.raises(ValueError, match="unit 99 is out of range"):
        maximize(digits_cnn, ("conv2", 99), SHAPE, steps=3)


def test_starts_are_optimized_independently(digits_cnn):
    init = torch.rand(3, *SHAPE)
    together = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, starts=3, init=init, regularizers="yosinski2015-1")
    alone = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, starts=1, init=init[1], regularizers="yosinski2015-1")
    together.run(8)
    alone.run(8)
    torch.testing.assert_close(together.inputs[1], alone.inputs[0], atol=1e-5, rtol=1e-4)


def test_regularizers_change_between_steps(digits_cnn):
    run = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, regularizers="none")
    run.run(2)
    run.regularizers = {"decay": 0.5}
    before = run.inputs.clone()
    run.step()
    assert run.inputs.abs().sum() < before.abs().sum()
    assert run.regularizers.replace(jitter=1).jitter == 1
    with pytest.raises(ValueError, match="unknown regularizer preset"):
        run.regularizers = "nope"


def test_iter_maximize_streams_steps_and_checks_arguments_at_once(digits_mlp):
    with pytest.raises(ValueError, match="unknown layer"):
        iter_maximize(digits_mlp, ("fc3", 1), SHAPE)  # raised at the call, not at the first next()
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        iter_maximize(digits_mlp, ("fc2", 4), SHAPE, steps=-1)
    steps = list(iter_maximize(digits_mlp, ("fc2", 4), SHAPE, steps=5, starts=2))
    assert [s.index for s in steps] == [1, 2, 3, 4, 5]
    assert steps[0].images.shape == (2, 28, 28, 1) and steps[0].images.dtype == np.uint8
    assert steps[0].values.shape == (2,)
    # each step keeps its own inputs (a snapshot, not a view of the changing parameter)
    assert not torch.equal(steps[0].inputs, steps[-1].inputs)
    np.testing.assert_allclose(digits_mlp(steps[2].inputs)[:, 4].detach().numpy(), steps[2].values, rtol=1e-5)


def test_to_uint8_per_start_and_fixed_range():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]], [[[-1.0, -1.0], [1.0, 0.0]]]])  # (2, 1, 2, 2)
    images = to_uint8(x)
    assert images.shape == (2, 2, 2, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[0, :, :, 0], [[0, 64], [128, 255]])  # 255 * [0, .25, .5, 1]
    np.testing.assert_array_equal(images[1, :, :, 0], [[0, 0], [255, 128]])
    fixed = to_uint8(x, value_range=(0, 2))
    np.testing.assert_array_equal(fixed[1, :, :, 0], [[0, 0], [128, 0]])
    rgb = torch.rand(3, 3, 5, 7)
    out = to_uint8(rgb)
    assert out.shape == (3, 5, 7, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out[1, 2, 3], np.round((255 * (rgb[1, :, 2, 3] - rgb[1].min()) / (rgb[1].max() - rgb[1].min())).numpy()))
    assert to_uint8(torch.zeros(2, 4)).shape == (2, 1, 4, 1)  # vectors: a 1-pixel-high strip; constant -> 0
    assert to_uint8(np.zeros((1, 6, 5))).shape == (1, 6, 5, 1)
    with pytest.raises(ValueError, match="expected inputs of shape"):
        to_uint8(torch.zeros(3))


def test_public_name_and_result_unpacking(digits_mlp):
    assert nbvis.maximize is maximize
    inputs, history = nbvis.maximize(digits_mlp, 2, (784,), steps=3)
    assert inputs.shape == (1, 784) and history.shape == (3, 1)
    assert optimize.Result(inputs, history).images.shape == (1, 1, 784, 1)


def test_double_precision_model():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).double()
    result = maximize(model, ("1", 0), (1, 8, 8), steps=3)
    assert result.inputs.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_models_device(unchanged):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).cuda()
    with unchanged(model):
        result = maximize(model, ("1", 0), (3, 16, 16), steps=5, starts=2, regularizers="yosinski2015-1")
        assert result.inputs.is_cuda
        fourier = maximize(model, ("1", 0), (3, 16, 16), steps=5, parametrization="fourier", regularizers="lucid")
        assert fourier.inputs.is_cuda
    run = OptimizationRun(model.cpu(), ("1", 0), (3, 16, 16))
    run.step()
    model.cuda()  # moved while the run was paused
    run.step()
    assert run.inputs.is_cuda


def test_a_paused_run_follows_a_model_cast_to_float64():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU())
    for parametrization in ("pixel", "fourier"):
        run = OptimizationRun(model, ("0", 1), (1, 12, 12), starts=2, parametrization=parametrization)
        run.run(3)
        model.double()
        run.run(3)  # would fail with a dtype mismatch if the run stayed in float32
        assert run.inputs.dtype == torch.float64 and run.history.shape == (6, 2)
        model.float()
