"""Ctrl-C at random moments: the model comes back exactly as it was, the interrupt reaches the
caller, and a job is "done" only when it finished.

A one-shot ``SIGALRM`` whose handler sends ``SIGINT`` (a real Ctrl-C, through the SIGINT handler
set then) fires at a random moment within a few milliseconds while an entry point runs over and
over; after each interrupt the model is compared with its state before: parameters, buffers
(BatchNorm running statistics), ``requires_grad``, ``.grad``, every module's mode and hooks, and
the grad mode. An interrupt that Python drops (it landed in a destructor or a weakref callback of
some object dying then, "Exception ignored") is counted apart: it cannot reach anyone.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import textwrap
import traceback

import numpy as np
import pytest
import torch

import nbvis
from nbvis.widgets._jobs import Job, JobView
from faultkit import (DroppedInterrupts, alarm_interrupt, assert_same, bn_cnn, bn_mlp, full_state,
                      interrupt_at_instruction, interrupt_repeatedly)

N = 30  # interrupts per entry point (capture gets more: it is the quickest)


@pytest.fixture
def cnn():
    return bn_cnn()


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.rand(40, 1, 8, 8)


def campaign(figures, name, model, call, n=N, max_delay=0.004):
    before = full_state(model)
    identical = []

    def check():
        assert_same(model, before)
        identical.append(True)

    reached, dropped = interrupt_repeatedly(call, n, max_delay, check)
    figures.add("interrupts (reached the caller; model identical after each)", name,
                f"{reached} reached, model identical {len(identical)}/{reached + dropped}"
                + (f" ({dropped} dropped by Python in a destructor)" if dropped else ""))
    assert reached == n and len(identical) == reached + dropped


def test_capture_on_a_batchnorm_model(cnn, images, figures):
    campaign(figures, "capture", cnn, lambda: nbvis.capture(cnn, images[:4]), n=300, max_delay=0.003)


def test_gradient_and_guided_backprop(cnn, images, figures):
    campaign(figures, "gradient", cnn, lambda: nbvis.gradient(cnn, images[:2], of=("4", 3), wrt="input"))
    campaign(figures, "guided_backprop", cnn, lambda: nbvis.guided_backprop(cnn, images[:2], of=("4", 3)))


def test_maximize(cnn, figures):
    campaign(figures, "maximize", cnn, lambda: nbvis.maximize(cnn, ("4", 3), (1, 8, 8), steps=20, starts=2))


def test_permutation_importance(figures):
    model = bn_mlp()
    X, y = torch.randn(200, 6), torch.randn(200)
    campaign(figures, "permutation_importance", model,
             lambda: nbvis.permutation_importance(model, X, y, n_repeats=3), max_delay=0.01)


def test_top_examples(cnn, images, figures):
    campaign(figures, "top_examples", cnn, lambda: nbvis.top_examples(cnn, "0", 1, images, k=3, batch_size=8))


def test_weight_grid_refresh(cnn, figures):
    grid = nbvis.WeightGrid(cnn, "4", input_shape=(4, 6, 6))
    campaign(figures, "WeightGrid.refresh", cnn, grid.refresh)
    grid.refresh()  # still usable
    assert grid.error == "" and grid.n_units == 10
    grid.close()


#: the code a view's wait() runs before and after the job's own wait
WAIT_CODES = {Job.wait.__code__, JobView.wait.__code__, JobView._wait_for.__code__}


def _in_job_wait(interrupt: BaseException) -> bool:
    """Whether the interrupt landed in a wait() (the view's or its job's), not before it ran."""
    return any(frame.f_code in WAIT_CODES for frame, _ in traceback.walk_tb(interrupt.__traceback__))


def _job_campaign(figures, name, model, start, wait, state, finished, stop, max_delay=0.01):
    """Inside a loop (as in a kernel): start a view's job, then Ctrl-C while ``wait()`` runs it."""
    before = full_state(model)
    states = []
    early = []

    def check():
        assert state() in ("stopped", "done", "error"), state()
        if state() == "done":
            assert finished(), f"{name} says done but did not finish"
        states.append(state())
        assert_same(model, before)

    async def main(dropped):
        rng = random.Random(0)
        reached = 0
        for _ in range(10 * N):  # bounded: an interrupt that is swallowed fails the count below
            if reached == N:
                break
            start()
            try:
                with alarm_interrupt(rng.uniform(1e-4, max_delay)):
                    wait()
            except KeyboardInterrupt as interrupt:
                if not _in_job_wait(interrupt):  # it came before wait() ran (in the alarm's own setup)
                    stop()
                    early.append(1)
                    continue
                reached += 1
            check()
        start()
        wait()  # still usable afterwards
        assert state() == "done" and finished()
        return reached

    loop = asyncio.new_event_loop()  # as in a kernel; asyncio.run would turn Ctrl-C into a cancel
    try:
        with DroppedInterrupts() as dropped:
            reached = loop.run_until_complete(main(dropped))
    finally:
        loop.close()
    figures.add("interrupts of a view's job in a loop (never done unless finished; model identical after each)", name,
                f"{reached} reached, ended {states.count('stopped')} stopped, {states.count('done')} done (finished),"
                f" model identical {len(states)}/{len(states)}" + (f", {dropped.count} dropped by Python" if dropped.count else "")
                + (f", {len(early)} before wait() ran (not counted)" if early else ""))
    assert reached == N and states.count("stopped") > 0


def test_feature_importance_job(figures):
    model = bn_mlp()
    # enough rows that most alarms (0.1-10 ms) land while the job runs, however fast its passes get
    X, y = torch.randn(3000, 6), torch.randn(3000)
    view = nbvis.FeatureImportance(model, X, y, n_repeats=8, autostart=False)
    _job_campaign(figures, "FeatureImportance", model, view.start, view.wait, lambda: view.state,
                  lambda: bool(np.isfinite(view.importances).all()), view.stop)
    view.close()


def test_optimization_viewer_job(cnn, figures):
    view = nbvis.OptimizationViewer(cnn, ("4", 3), (1, 8, 8), steps=60, starts=2, autostart=False)
    _job_campaign(figures, "OptimizationViewer", cnn, view.start, view.wait, lambda: view.state,
                  lambda: view.run.step_count == 60, view.stop)
    view.close()


def test_heatmap_top_examples_job(cnn, figures):
    torch.manual_seed(1)
    images = torch.rand(400, 1, 8, 8)
    view = nbvis.ActivationHeatmap(cnn, images[0], dataset=images)
    view.selected = ("0", 1)
    view.top_job.wait()  # the first scan ran on a thread (no loop here)
    _job_campaign(figures, "ActivationHeatmap top examples", cnn, view.scan_top, lambda: view.top_job.wait(),
                  lambda: view.top_job.state, lambda: view.top.scanned == len(images), lambda: view.top_job.stop(),
                  max_delay=0.004)
    assert view.top_state == "done"
    view.close()


def test_ctrl_c_in_wait_outside_a_kernel_stops_the_thread_job(cnn, figures):
    view = nbvis.OptimizationViewer(cnn, ("4", 3), (1, 8, 8), steps=100_000, starts=1, autostart=False)
    before = full_state(cnn)
    reached = 0
    for _ in range(5):
        view.start()
        try:
            with alarm_interrupt(0.05):
                view.wait()
        except KeyboardInterrupt:
            reached += 1
        assert view.state == "stopped" and 0 < view.run.step_count < 100_000
        assert "KeyboardInterrupt" in view.error
        assert_same(cnn, before)
    assert reached == 5
    view.close()


def _views_of(model, where):
    """(name, view, whether it finished) of each kind of view wait: one that returns itself, one that
    returns its result; on a thread they run long enough to be running when wait() begins."""
    steps, repeats = (20, 2) if where == "loop" else (200, 200)
    X, y = torch.randn(200, 6), torch.randn(200)
    mlp = bn_mlp()
    optimizer = nbvis.OptimizationViewer(model, ("4", 3), (1, 8, 8), steps=steps, starts=1, autostart=False)
    importance = nbvis.FeatureImportance(mlp, X, y, n_repeats=repeats, autostart=False)
    return [("OptimizationViewer", optimizer, model, lambda: optimizer.run.step_count == steps),
            ("FeatureImportance", importance, mlp, lambda: bool(np.isfinite(importance.importances).all()))]


@pytest.mark.parametrize("where", ["loop", "thread"])
def test_a_ctrl_c_at_any_instruction_of_a_views_wait_stops_the_job(cnn, where, figures):
    """A Ctrl-C at the n-th instruction of a view's wait(), for every n: before it reaches the job's
    own wait (its first instructions) and after it (the campaigns above interrupt the job's wait
    itself): the job is stopped (never left running, never "done" unless it finished), the
    interrupt reaches the caller, the model is as it was."""

    def campaign(name, view, model, finished):
        before = full_state(model)
        ended = []
        for n in range(1, 200):
            view.start()
            with interrupt_at_instruction(WAIT_CODES - {Job.wait.__code__}, n) as raised:
                try:
                    view.wait()
                except KeyboardInterrupt:
                    assert raised, "an interrupt that was not raised here"
            if not raised:  # n is past wait's last instruction: it returned normally
                assert view.state == "done" and finished()
                break
            assert view.state in ("stopped", "done"), f"{name}: a Ctrl-C at instruction {n} ({raised[0]}) left it {view.state}"
            if view.state == "done":
                assert finished(), f"{name} says done but did not finish"
            else:
                assert "KeyboardInterrupt" in view.error
            ended.append(view.state)
            assert_same(model, before)
        assert ended.count("stopped") >= 5, ended
        figures.add("Ctrl-C at each instruction of a view's wait() (job stopped, or done when it had finished)",
                    f"{name} ({where})", f"{len(ended)} instructions: {ended.count('stopped')} stopped, "
                    f"{ended.count('done')} done (finished), model identical after each")
        view.close()

    async def in_loop():
        for case in _views_of(cnn, "loop"):
            campaign(*case)

    if where == "loop":
        loop = asyncio.new_event_loop()  # as in a kernel
        try:
            loop.run_until_complete(in_loop())
        finally:
            loop.close()
    else:
        for case in _views_of(cnn, "thread"):
            campaign(*case)


_SCRIPT_MODEL = """
import asyncio, torch, nbvis
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
"""


def _run_to_exit(script: str) -> str:
    """Run ``script`` in a fresh interpreter (after a small BatchNorm ``model``); it must exit
    cleanly (no abort, rc 134, while it finalizes what it left running); its output."""
    done = subprocess.run([sys.executable, "-c", _SCRIPT_MODEL + textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Abort(BaseException):
    """Not an Exception: what a callable may raise (SystemExit, GeneratorExit, a framework's own)."""


def test_a_scoring_callable_that_raises_a_base_exception_ends_the_job(figures):
    model = bn_mlp()
    X, y = torch.randn(100, 6), torch.randn(100)
    calls = []

    def scoring(kind):
        def score(y_true, y_pred):
            calls.append(1)
            if len(calls) > 3:
                raise kind()
            return float(-((y_true - y_pred.reshape(-1)) ** 2).mean())
        return score

    for kind, state in ((KeyboardInterrupt, "stopped"), (Abort, "error")):
        calls.clear()
        view = nbvis.FeatureImportance(model, X, y, scoring=scoring(kind), n_repeats=4)
        with pytest.raises(kind):
            view.wait()
        assert view.state == state and kind.__name__ in view.error
        assert np.isnan(view.importances).any()  # not done: some importances were never computed
        view.close()
    figures.add("BaseException from user code", "FeatureImportance scoring", "KeyboardInterrupt -> stopped, other -> error")


def test_an_objective_that_raises_a_base_exception_ends_the_job_and_the_process_exits_cleanly(cnn):
    calls = []

    def objective(acts):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return acts["4"][:, 3]

    view = nbvis.OptimizationViewer(cnn, objective, (1, 8, 8), steps=50, starts=1)
    with pytest.raises(KeyboardInterrupt):
        view.wait()
    assert view.state == "stopped" and view.run.step_count < 50 and "KeyboardInterrupt" in view.error
    view.close()
    # in a fresh interpreter, left running at exit: no abort (rc 134) while it finalizes
    out = _run_to_exit(
        """
        calls = []
        def objective(acts):
            calls.append(1)
            if len(calls) > 3:
                raise KeyboardInterrupt
            return acts["4"][:, 3]
        view = nbvis.OptimizationViewer(model, objective, (1, 8, 8), steps=10_000, starts=1)
        other = nbvis.OptimizationViewer(model, ("4", 2), (1, 8, 8), steps=10_000_000, starts=1)
        print("started", flush=True)
        """
    )
    assert "started" in out


@pytest.mark.parametrize("where", ["borrow exit", "session exit"])
def test_a_ctrl_c_at_the_first_instruction_of_the_restore_waits_for_it(cnn, where, figures):
    """The worst moment: the first instruction of the ``__exit__`` that gives the model back
    (Python's own ``with`` machinery gives no chance to catch it there)."""
    from nbvis.compute.optimize.session import Session
    from nbvis.compute.borrow import _Borrow

    code = (_Borrow if where == "borrow exit" else Session).__exit__.__code__
    before = full_state(cnn)
    with pytest.raises(KeyboardInterrupt), interrupt_at_instruction({code}, 0) as sent:
        if where == "borrow exit":
            nbvis.capture(cnn, torch.rand(2, 1, 8, 8))
        else:
            nbvis.maximize(cnn, ("4", 3), (1, 8, 8), steps=3)
    assert sent
    assert_same(cnn, before)
    figures.add("Ctrl-C at the first instruction of the restore", where, "model given back, then the interrupt")


def test_a_loop_job_left_half_way_at_exit_does_not_abort_the_process():
    out = _run_to_exit(
        """
        view = nbvis.OptimizationViewer(model, ("4", 3), (1, 8, 8), steps=100_000, starts=2, autostart=False)

        async def main():  # in a loop, as in a kernel: the job is a task that runs a few runs of steps
            view.start()
            for _ in range(5):
                view._job._advance()

        asyncio.new_event_loop().run_until_complete(main())
        print("left running", view.state, flush=True)
        """
    )
    assert "left running running" in out
