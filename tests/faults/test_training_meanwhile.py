"""Outside a kernel a view's job runs on a thread, borrowing the model one step at a time: the
owner trains the model in the main thread meanwhile, and the job's results stay right.

A background borrow leaves ``requires_grad`` alone (the job keeps gradients off the parameters by
itself), so a plain training step works while a job runs; a training step inside
``nbvis.exclusive(model)`` sees the model exactly as its owner left it (train mode, no nbvis
hooks: its gradients equal those of a copy of the model that no job ever touched).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import nbvis


def mlp(features: int = 6) -> nn.Module:
    """Dropout: a forward in eval mode (as during a job's step) gives other gradients than the
    owner's forward in train mode."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(features, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 1)).train()


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(144, 10)).train()


def training_step(model, optimizer, x, y, seed):
    """A real training step; returns the gradients it applied."""
    torch.manual_seed(seed)  # the same dropout masks for the reference
    optimizer.zero_grad()
    loss = F.mse_loss(model(x).reshape(len(x), -1), y.reshape(len(x), -1))
    loss.backward()
    optimizer.step()
    return [p.grad.clone() for p in model.parameters()]


def train_while_running(model, optimizer, running, x, y, exclusive=False, minimum=5, seconds=60):
    """Training steps in this (the main) thread while ``running()``; each one's gradients are
    compared with those of a copy of the model when ``exclusive`` (taken inside the block).
    (The optimizer is made before the job starts: the first one made in a process imports for
    seconds.)"""
    lr = optimizer.param_groups[0]["lr"]
    steps, end = 0, time.monotonic() + seconds
    while (running() or steps < minimum) and time.monotonic() < end:
        if exclusive:
            with nbvis.exclusive(model):
                twin = copy.deepcopy(model)
                grads = training_step(model, optimizer, x, y, seed=steps)
            expected = training_step(twin, torch.optim.SGD(twin.parameters(), lr=lr), x, y, seed=steps)
            for got, want in zip(grads, expected):
                torch.testing.assert_close(got, want, rtol=0, atol=0)
        else:
            training_step(model, optimizer, x, y, seed=steps)
        steps += 1
    return steps


def test_a_plain_training_step_works_while_feature_importance_runs(figures):
    """The issue's case: ``FeatureImportance(m, X, y, n_repeats=20)``, then ``loss.backward()``."""
    model = mlp(64)  # 64 features: a job of a few seconds
    torch.manual_seed(1)
    X, y = torch.randn(5000, 64), torch.randn(5000)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    view = nbvis.FeatureImportance(model, X, y, n_repeats=20)
    assert view._job._thread is not None  # outside a kernel: on a thread
    overlapped = []
    def running():
        overlapped.append(view.state == "running")
        return overlapped[-1]

    steps = train_while_running(model, optimizer, running, X[:256], y[:256])
    view.wait(120)
    assert view.state == "done" and sum(overlapped) >= 2, "the training did not overlap the job"
    # lr 0: the weights never changed, so the job's results are those of the model as it is
    model.zero_grad(set_to_none=True)
    reference = nbvis.permutation_importance(model, X, y, n_repeats=20)
    np.testing.assert_allclose(view.importances, reference.importances, rtol=1e-5, atol=1e-7)
    assert all(p.requires_grad for p in model.parameters()) and model.training
    figures.add("training in the main thread while a job runs on a thread", "FeatureImportance (plain steps)",
                f"{steps} steps, {sum(overlapped)} while it ran, importances = a fresh run")
    view.close()


def test_training_steps_inside_exclusive_see_the_model_as_left_while_an_optimization_runs(figures):
    model = cnn()
    x, y = torch.rand(16, 1, 8, 8), torch.randn(16, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    view = nbvis.OptimizationViewer(model, ("4", 3), (1, 8, 8), steps=100_000, starts=2)
    assert view._job._thread is not None
    seen = []

    def running():
        seen.append(view.run.step_count)
        return len(seen) <= 20  # twenty training steps, with the job's steps in between

    steps = train_while_running(model, optimizer, running, x, y, exclusive=True)
    count = view.run.step_count
    view.stop()
    assert view.state == "stopped" and view.error == ""  # the job never failed meanwhile
    assert count > seen[0], "the job made no progress between the training steps"
    assert all(p.requires_grad for p in model.parameters()) and model.training
    assert all(not m._forward_hooks for m in model.modules())
    figures.add("training in the main thread while a job runs on a thread", "OptimizationViewer (inside exclusive)",
                f"{steps} steps, gradients = an untouched copy's every time; the job took {count - seen[0]} steps meanwhile")
    view.close()


def test_a_top_examples_scan_stays_right_while_the_owner_trains():
    model = cnn()
    torch.manual_seed(2)
    images = torch.rand(3000, 1, 8, 8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    view = nbvis.ActivationHeatmap(model, images[0], dataset=images)
    view.selected = ("0", 1)
    job = view.top_job
    assert job is not None and job._thread is not None
    train_while_running(model, optimizer, lambda: job.running, images[:16], torch.randn(16, 10), minimum=3)
    job.wait(120)
    assert job.state == "done"
    reference = nbvis.top_examples(model, "0", 1, images, k=len(view.top.indices))
    assert list(view.top.indices) == list(reference.indices)
    view.close()


@pytest.mark.parametrize("where", ["main thread", "other thread"])
def test_exclusive_takes_turns_with_a_borrow(where):
    import threading

    model = mlp()
    order = []
    with nbvis.exclusive(model):
        if where == "main thread":  # nested on one thread: fine
            nbvis.capture(model, torch.randn(2, 6))
            order.append("nested")
        else:
            worker = threading.Thread(target=lambda: (nbvis.capture(model, torch.randn(2, 6)), order.append("worker")))
            worker.start()
            time.sleep(0.3)
            order.append("owner")  # the worker waited for the block
    if where == "other thread":
        worker.join(10)
        assert order == ["owner", "worker"]
    else:
        assert order == ["nested"]
    assert model.training and all(p.requires_grad for p in model.parameters())
    with pytest.raises(TypeError, match="nn.Module"):
        nbvis.exclusive("model")


def test_plain_training_steps_never_break_an_optimization_that_runs_meanwhile(figures):
    """The owner's optimizer.step() changes the weights in place, maybe between the job's forward
    and its backward (which autograd refuses): that step of the job is done again."""
    model = cnn()
    x, y = torch.rand(16, 1, 8, 8), torch.randn(16, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    view = nbvis.OptimizationViewer(model, ("4", 3), (1, 8, 8), steps=100_000, starts=2)
    start = view.run.step_count
    steps = train_while_running(model, optimizer, lambda: True, x, y, minimum=0, seconds=3)
    assert view.state == "running", view.error
    view.stop()
    assert view.state == "stopped" and view.error == ""
    assert view.run.step_count > start and steps > 10
    figures.add("training in the main thread while a job runs on a thread", "OptimizationViewer (plain steps)",
                f"{steps} steps in 3 s, the job went on ({view.run.step_count - start} steps), no error")
    view.close()


def test_plain_training_steps_never_break_a_maximize_on_another_thread(figures):
    """``maximize`` (``run.run(n)``: all its steps in one borrow) on a thread of the owner's while
    the owner trains in the main thread: a step whose forward and backward straddle an
    ``optimizer.step()`` is done again, as a streamed run's step is."""
    import threading

    model = cnn()
    x, y = torch.rand(16, 1, 8, 8), torch.randn(16, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    outcome = {}

    def job():
        try:
            outcome["result"] = nbvis.maximize(model, ("4", 3), (1, 8, 8), steps=4000, starts=2)
        except BaseException as exc:  # reported by the test, not lost with the thread
            outcome["error"] = exc

    worker = threading.Thread(target=job)
    worker.start()
    steps = train_while_running(model, optimizer, worker.is_alive, x, y, minimum=0, seconds=120)
    worker.join(60)
    assert not worker.is_alive()
    assert "error" not in outcome, repr(outcome.get("error"))
    result = outcome["result"]
    assert result.history.shape == (4000, 2) and np.isfinite(result.history).all()
    assert steps > 10, "the training did not overlap the job"
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())
    figures.add("training in the main thread while a job runs on a thread", "maximize on a thread (plain steps)",
                f"{steps} training steps during a 4000-step maximize, no error")
