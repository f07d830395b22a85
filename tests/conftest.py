"""Shared fixtures: small models and a check that nbvis leaves a model exactly as it was."""

from __future__ import annotations

import os
import signal
import tempfile

import pytest
import torch

from modelcheck import assert_unchanged, model_state

# Demo models are trained once per test session into a private cache.
os.environ.setdefault("NBVIS_CACHE", os.path.join(tempfile.gettempdir(), "nbvis-test-cache"))


def pytest_addoption(parser):
    parser.addoption(
        "--nbvis-base64", action="store_true",
        help="send arrays as base64 text, as in Colab (sets NBVIS_BASE64=1 for the tests, their Jupyter "
        "servers and kernels); meant for the browser tests: `pytest tests/e2e --nbvis-base64`",
    )


def pytest_configure(config):
    if config.getoption("--nbvis-base64"):
        os.environ["NBVIS_BASE64"] = "1"
    # Ctrl-C as in a terminal or a kernel: a shell that starts the tests in the background (nohup,
    # `&` without job control) hands Python SIGINT ignored, and the interrupt campaigns' Ctrl-Cs
    # would then never arrive
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_report_header(config):
    from nbvis._arrays import base64_transport

    return f"nbvis array transport: {'base64 text (forced)' if base64_transport() else 'binary buffers'}"


@pytest.fixture(autouse=True)
def _stop_jobs_left_running():
    """A view a test leaves open may still run its job on a thread (outside a kernel) on a shared
    model (the session's demo models): stopped after the test, so no other test sees its steps."""
    yield
    from nbvis.widgets import _jobs

    for job in list(_jobs._RUNNING):
        if job.running:
            job.stop()


@pytest.fixture
def unchanged():
    """``with unchanged(model): ...`` asserts the block left the model exactly as it was."""
    import contextlib

    @contextlib.contextmanager
    def check(model):
        before = model_state(model)
        try:
            yield model
        finally:
            assert_unchanged(model, before)

    return check


@pytest.fixture(scope="session")
def digits_mlp():
    import nbvis

    return nbvis.demo.digits_mlp()


@pytest.fixture(scope="session")
def digits_cnn():
    import nbvis

    return nbvis.demo.digits_cnn()


@pytest.fixture(scope="session")
def digits_data():
    import nbvis

    return nbvis.demo.digits(28)


# ----- figures of the fault campaign (tests/faults), printed in the terminal summary ----------

_FIGURES: dict = {}


class Figures:
    """``figures.add(kind, what, value)``: one line of the summary, under ``kind``."""

    def add(self, kind: str, what: str, value) -> None:
        _FIGURES.setdefault(kind, {})[what] = value


@pytest.fixture
def figures() -> Figures:
    return Figures()


def pytest_terminal_summary(terminalreporter):
    if not _FIGURES:
        return
    terminalreporter.section("fault campaign")
    for kind, rows in _FIGURES.items():
        terminalreporter.write_line(f"{kind}:")
        for what, value in rows.items():
            terminalreporter.write_line(f"  {what}: {value}")
