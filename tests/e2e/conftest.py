"""Session fixtures for the end-to-end tests: one Jupyter server and one Chromium for all of them."""

from __future__ import annotations

import pytest
from harness import JupyterServer, launch_browser


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def jupyter():
    server = JupyterServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_kernels(request):
    """After each browser test, its kernels are shut down (the server and the browser stay)."""
    yield
    if "jupyter" in request.fixturenames:
        request.getfixturevalue("jupyter").shutdown_kernels()


@pytest.fixture(scope="module")
def browser():
    # Module scope: Playwright's sync API keeps an event loop running on the main thread while it
    # is open, which must not leak into the tests that run after the browser tests.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_browser(playwright)
        yield chromium
        chromium.close()
