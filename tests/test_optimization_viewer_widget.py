"""The OptimizationViewer widget in Python: binary frames, start/stop/resume, errors, a real kernel."""

from __future__ import annotations

import asyncio
import textwrap
import threading
import time

import numpy as np
import pytest
import torch
import traitlets
from ipywidgets.widgets.widget import _remove_buffers
from torch import nn

import nbvis
from nbvis._arrays import unpack
from nbvis.compute.optimize import OptimizationRun, Regularizers, objective, to_uint8
from nbvis.compute.optimize.run import STREAM_SECONDS

SHAPE = (1, 28, 28)


def no_job_thread() -> bool:
    return not any(t.name == "nbvis-job" and t.is_alive() for t in threading.enumerate())


def test_frames_and_curve_are_binary_buffers(digits_cnn, unchanged):
    with unchanged(digits_cnn):
        viewer = nbvis.OptimizationViewer(digits_cnn, objective=("conv2", 5), input_shape=SHAPE, steps=30, starts=3)
        viewer.wait()
    assert viewer.state == "done" and viewer.step == 30
    state, paths, buffers = _remove_buffers(viewer.get_state())
    sizes = {tuple(p): len(b) for p, b in zip(paths, buffers)}
    assert sizes[("_frame", "data")] == 3 * 28 * 28  # uint8, starts x H x W x 1
    assert sizes[("_curve", "data")] == 30 * 3 * 4  # float32, steps x starts
    assert state["_frame"]["dtype"] == "uint8" and state["_frame"]["shape"] == [3, 28, 28, 1]
    # what is drawn is the final inputs, and .images / .history are the run's
    np.testing.assert_array_equal(unpack(viewer._frame), viewer.images)
    np.testing.assert_array_equal(viewer.images, to_uint8(viewer.inputs))
    assert viewer.images.shape == (3, 28, 28, 1) and viewer.images.dtype == np.uint8
    np.testing.assert_allclose(unpack(viewer._curve), viewer.history.astype(np.float32))
    np.testing.assert_array_equal(unpack(viewer._curve_steps), np.arange(1, 31))
    assert viewer.values == pytest.approx(list(viewer.history[-1]))
    assert viewer.objective_text == "conv2[5]" and viewer.n_starts == 3
    # the same as nbvis.maximize with the same settings
    reference = nbvis.maximize(digits_cnn, ("conv2", 5), SHAPE, steps=30, starts=3, regularizers="yosinski2015", seed=viewer.seed)
    torch.testing.assert_close(viewer.inputs, reference.inputs)


def test_long_curves_are_thinned(digits_mlp):
    viewer = nbvis.OptimizationViewer(digits_mlp, objective=("fc2", 1), input_shape=(784,), steps=2500, starts=1)
    viewer.wait()
    steps = unpack(viewer._curve_steps)
    assert len(steps) <= 1001 and steps[0] == 1 and steps[-1] == 2500
    np.testing.assert_allclose(unpack(viewer._curve)[:, 0], viewer.history[steps - 1, 0].astype(np.float32))


def test_stop_and_resume_in_a_thread_give_the_uninterrupted_run(digits_cnn):
    viewer = nbvis.OptimizationViewer(digits_cnn, objective=("conv2", 5), input_shape=SHAPE, steps=4000, starts=2)
    deadline = time.monotonic() + 30
    while viewer.step < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    viewer.stop()
    assert viewer.state == "stopped" and no_job_thread()
    stopped_at = viewer.run.step_count
    assert 0 < stopped_at < 4000 and viewer.step == stopped_at
    time.sleep(0.1)
    assert viewer.run.step_count == stopped_at  # nothing runs after stop
    viewer.resume(20).wait()
    assert viewer.state == "done" and viewer.run.step_count == stopped_at + 20 and no_job_thread()
    whole = OptimizationRun(digits_cnn, ("conv2", 5), SHAPE, starts=2, regularizers="yosinski2015", seed=viewer.seed)
    whole.run(stopped_at + 20)
    torch.testing.assert_close(viewer.inputs, whole.inputs)
    np.testing.assert_array_equal(viewer.history, whole.history)


def test_asyncio_run_yields_to_the_loop_and_caps_frames(digits_cnn, unchanged):
    async def main():
        viewer = nbvis.OptimizationViewer(
            digits_cnn, objective=("conv1", 2), input_shape=SHAPE, steps=100_000, starts=2, fps=5
        )
        assert viewer._job._task is not None  # a task on this loop, not a thread
        frames = []
        viewer.observe(lambda change: frames.append(viewer.step), names=["_frame"])
        ticks = []
        began = time.monotonic()
        while time.monotonic() - began < 1.0:
            ticks.append(time.monotonic())
            await asyncio.sleep(0)
        # the model is its owner's between steps
        assert all(p.requires_grad for p in digits_cnn.parameters())
        assert viewer.state == "running" and viewer.run.step_count > 10
        # the loop ran other work between the runs of steps, each of at most about STREAM_SECONDS and
        # one borrow of the model (many steps, where steps take a millisecond)
        gaps = np.diff([began, *ticks])
        assert len(ticks) >= 5 and gaps.max() < 4 * STREAM_SECONDS, (len(ticks), gaps.max())
        if viewer.run.step_count >= 100:  # steps of at most 10 ms (not a machine busy with other work): many a tick
            assert len(ticks) < viewer.run.step_count / 5, (len(ticks), viewer.run.step_count)
        # at most 5 frames a second: steps are skipped, not queued
        assert 2 <= len(frames) <= 8, frames
        assert viewer.run.step_count > 3 * len(frames)
        viewer.stop()  # from the loop's thread: ends at once
        assert viewer.state == "stopped"
        count = viewer.run.step_count
        await asyncio.sleep(0.05)
        assert viewer.run.step_count == count
        viewer.resume(5)
        viewer.wait()  # from the loop's thread: drives the remaining steps
        assert viewer.run.step_count == count + 5 and viewer.state == "done"
        return viewer

    with unchanged(digits_cnn):
        asyncio.run(main())
    assert no_job_thread()


def test_a_raising_objective_is_shown_and_raised_by_wait(digits_cnn, unchanged):
    def flaky(acts):
        flaky.calls += 1
        if flaky.calls > 6:  # (the check when the run is made is its first step's pass)
            raise RuntimeError("the objective broke at step 7")
        return acts["fc"][:, 1]

    flaky.calls = 0
    with unchanged(digits_cnn):
        viewer = nbvis.OptimizationViewer(
            digits_cnn, objective=objective(flaky, ["fc"]), input_shape=SHAPE, steps=50, starts=2
        )
        with pytest.raises(RuntimeError, match="the objective broke at step 7"):
            viewer.wait()
    assert viewer.state == "error"
    assert viewer.error == "RuntimeError: the objective broke at step 7"
    assert viewer.run.step_count == 6 and viewer.step == 6  # the view shows where it stopped
    assert no_job_thread()
    # a new start clears the error
    flaky.calls = -1000
    viewer.start().wait()
    assert viewer.state == "done" and viewer.error == ""


def test_a_view_that_waits_for_its_start_holds_no_activations(digits_cnn):
    """The run made when the view is made checks its objective with its first step's pass; a
    view that waits for its start does not hold that pass (its activations) meanwhile."""
    import gc
    import weakref

    values = []

    def logit(acts):
        value = acts["fc"][:, 1]
        values.append(weakref.ref(value))
        return value

    viewer = nbvis.OptimizationViewer(digits_cnn, objective=objective(logit, ["fc"]), input_shape=SHAPE, steps=3, autostart=False)
    gc.collect()
    assert len(values) == 1 and values[0]() is None
    viewer.start().wait()
    assert viewer.state == "done" and viewer.run.step_count == 3


def test_bad_arguments_raise_before_a_view_exists(digits_cnn):
    with pytest.raises(ValueError, match="unit 16 is out of range for layer 'conv2'"):
        nbvis.OptimizationViewer(digits_cnn, objective=("conv2", 16), input_shape=SHAPE)
    with pytest.raises(TypeError, match="needs objective=... and input_shape=..."):
        nbvis.OptimizationViewer(digits_cnn, objective=("conv2", 1))
    with pytest.raises(TypeError, match="unexpected keyword argument.*'colour'"):
        nbvis.OptimizationViewer(digits_cnn, objective=("conv2", 1), input_shape=SHAPE, colour="red", autostart=False)
    with pytest.raises(ValueError, match="unknown regularizer preset"):
        nbvis.OptimizationViewer(digits_cnn, objective=("conv2", 1), input_shape=SHAPE, regularizers="smoothest")
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        nbvis.OptimizationViewer(digits_cnn, objective=("conv2", 1), input_shape=SHAPE, steps=0)


def test_regularizer_controls_apply_on_the_next_run(digits_cnn):
    viewer = nbvis.OptimizationViewer(
        digits_cnn, objective=("conv2", 5), input_shape=SHAPE, steps=100_000, starts=1, autostart=False
    )
    assert viewer.state == "idle" and viewer.preset == "yosinski2015"
    assert viewer.adjustable == list(Regularizers().as_dict())
    viewer.resume(3).wait()
    viewer.resume(100_000)  # running in a thread
    changed = dict(viewer.regularizers, decay=0.25, jitter=2)
    viewer.set_state({"regularizers": changed})  # what a slider sends
    assert viewer.preset == "custom" and viewer.pending
    assert viewer.run.regularizers == Regularizers(decay=1e-4, blur_width=1.0, blur_every=4)  # not yet
    viewer.stop()
    viewer.resume(2).wait()
    assert viewer.run.regularizers == Regularizers(decay=0.25, blur_width=1.0, blur_every=4, jitter=2)
    assert not viewer.pending
    viewer.preset = "yosinski2015-2"
    assert viewer.regularizers == Regularizers(decay=0.3, norm_pct=20).as_dict()
    with pytest.raises(traitlets.TraitError, match="unknown regularizer preset"):
        viewer.preset = "blurry"
    with pytest.raises(traitlets.TraitError, match=r"decay must be in \[0, 1\)"):
        viewer.regularizers = dict(viewer.regularizers, decay=2.0)
    assert viewer.regularizers["decay"] == 0.3  # nothing lost


def test_a_stop_that_comes_after_the_last_step_keeps_done(digits_cnn):
    viewer = nbvis.OptimizationViewer(digits_cnn, objective=("conv2", 5), input_shape=SHAPE, steps=40, starts=1)
    job = viewer._job
    stop = job.stop

    def late_stop():  # the run ends on its own while the stop is on its way
        job.wait()
        stop()

    job.stop = late_stop
    viewer.stop()
    assert job.state == "done" and viewer.state == "done" and viewer.step == 40
    assert no_job_thread()


def test_bad_steps_and_seed_are_refused_and_keep_the_value(digits_cnn):
    viewer = nbvis.OptimizationViewer(digits_cnn, objective=("conv2", 5), input_shape=SHAPE, steps=256, seed=0, autostart=False)
    with pytest.raises(traitlets.TraitError):
        viewer.steps = 0
    with pytest.raises(traitlets.TraitError):
        viewer.seed = -1
    assert viewer.steps == 256 and viewer.seed == 0


def test_commands_from_the_view(digits_cnn):
    viewer = nbvis.OptimizationViewer(
        digits_cnn, objective=("conv2", 5), input_shape=SHAPE, steps=100_000, autostart=False
    )
    send = lambda name: viewer._on_custom_msg(viewer, {"type": "command", "name": name}, [])  # noqa: E731
    send("start")
    assert viewer.state == "running"
    time.sleep(0.05)
    send("stop")
    assert viewer.state == "stopped" and no_job_thread()
    at = viewer.run.step_count
    viewer.steps = at + 3
    send("resume")
    viewer.wait()
    assert viewer.run.step_count == at + 3
    send("explode")
    assert "unknown command 'explode'" in viewer.error


def test_vector_inputs_are_bar_data_with_feature_names():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    viewer = nbvis.OptimizationViewer(
        model, objective=("2", 1), input_shape=(4,), steps=40, starts=3, feature_names=["age", "bmi", "bp", "s1"]
    )
    viewer.wait()
    assert viewer.input_kind == "vector" and viewer._frame is None
    np.testing.assert_allclose(unpack(viewer._vector), viewer.inputs.numpy())
    assert viewer.adjustable == ["decay", "norm_pct", "contribution_pct"]
    assert viewer.regularizers["blur_every"] == 0  # the preset's blur does not apply to vectors
    assert viewer.images.shape == (3, 1, 4, 1)
    assert viewer.history[-1].mean() > viewer.history[0].mean()
    with pytest.raises(ValueError, match="one name per input feature"):
        nbvis.OptimizationViewer(model, objective=("2", 1), input_shape=(4,), feature_names=["a"])


def test_images_with_other_channel_counts_are_drawn_gray():
    model = nn.Sequential(nn.Conv2d(5, 3, 3), nn.ReLU())
    viewer = nbvis.OptimizationViewer(model, objective=("1", 0), input_shape=(5, 12, 12), steps=3, starts=2)
    viewer.wait()
    assert unpack(viewer._frame).shape == (2, 12, 12, 1)
    assert viewer.images.shape == (2, 12, 12, 5)


def test_the_kernel_answers_while_a_run_goes_on():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        setup = textwrap.dedent(
            """
            import threading, nbvis
            model = nbvis.demo.digits_cnn().train()  # the owner is training it
            viewer = nbvis.OptimizationViewer(model, objective=("conv2", 3), input_shape=(1, 28, 28),
                                              steps=100_000, starts=2)
            """
        )
        assert kc.execute_interactive(setup, timeout=60)["content"]["status"] == "ok"
        out = []
        hook = lambda m: out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None  # noqa: E731

        def ask(code):
            out.clear()
            assert kc.execute_interactive(code, timeout=60, output_hook=hook)["content"]["status"] == "ok"
            return "".join(out).strip()

        first = int(ask("import time; time.sleep(0.5); print(viewer.run.step_count)"))
        answer = ask(
            "print(viewer.state, model.training, all(p.requires_grad for p in model.parameters()), "
            "sum(t.name == 'nbvis-job' for t in threading.enumerate()), viewer.run.step_count)"
        )
        state, training, trainable, threads, count = answer.split()
        assert state == "running" and threads == "0"  # an asyncio task, not a thread
        assert training == "True" and trainable == "True"  # the model as its owner left it between steps
        assert 0 < first < int(count) < 100_000  # it went on while the kernel answered
        assert ask("viewer.stop(); print(viewer.state)") == "stopped"
        stopped = int(ask("print(viewer.run.step_count)"))
        assert int(ask("time.sleep(0.3); print(viewer.run.step_count)")) == stopped
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
