"""JupyterLab's dark theme: the views' text, axes, tooltips and charts stay readable."""

from __future__ import annotations

import re

import numpy as np
import pytest
from harness import JupyterServer, open_notebook, run_all, screenshot

CELLS = [
    "import nbvis\nmodel = nbvis.demo.digits_mlp()\nimages, labels = nbvis.demo.digits()",
    "grid = nbvis.WeightGrid(model, 'fc1', page_size=16)\ngrid",
    "nbvis.ActivationHeatmap(model, images[0], labels=nbvis.demo.DIGIT_LABELS)",
    "chart = nbvis.FeatureImportance(model, images[:100], labels[:100], scoring='accuracy', n_repeats=2, "
    "feature_groups=7, top_k=5)\nchart",
    "chart.wait();",
]


def rgb(css: str) -> tuple[float, float, float]:
    values = [float(v) for v in re.findall(r"[\d.]+", css)[:3]]
    if len(values) < 3:
        raise ValueError(f"not an rgb() color: {css!r}")
    return tuple(values)


def luminance(color) -> float:
    channels = []
    for v in color:
        c = v / 255
        channels.append(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]


def contrast(a, b) -> float:
    """WCAG contrast ratio of two colors (1: the same, 21: black on white)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.fixture(scope="module")
def dark_lab():
    server = JupyterServer(theme="JupyterLab Dark").start()
    yield server
    server.stop()


def test_views_are_readable_in_the_dark_theme(dark_lab, browser):
    name = dark_lab.write_notebook("dark.ipynb", CELLS)
    page = open_notebook(browser, dark_lab, name)
    try:
        run_all(page)
        page.wait_for_selector(".nbvis-feature-importance[data-bars='6']", timeout=60_000)
        page.wait_for_selector(".nbvis-activation-heatmap[data-draws]")
        background = rgb(page.eval_on_selector(".jp-NotebookPanel-notebook", "(el) => getComputedStyle(el).backgroundColor"))
        assert luminance(background) < 0.1, background  # the page really is dark
        # the views' own text (toolbars, captions, legends) is light on the dark page
        for selector in (".nbvis-weight-grid", ".nbvis-activation-heatmap .nbvis-muted", ".nbvis-feature-importance"):
            color = rgb(page.eval_on_selector(selector, "(el) => getComputedStyle(el).color"))
            assert contrast(color, background) > 4.5, (selector, color, background)
        # plotly's tick labels and axis title follow the theme
        for selector in (".nbvis-feature-importance .ytick text", ".nbvis-feature-importance .xtitle"):
            fill = rgb(page.eval_on_selector(selector, "(el) => getComputedStyle(el).fill"))
            assert contrast(fill, background) > 4.5, (selector, fill, background)
        # labels drawn on the output bars' canvas: their gray pixels stand out from the page
        pixels = np.array(page.eval_on_selector(
            ".nbvis-activation-heatmap [data-layer='fc2'] canvas",
            "(c) => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)",
        ), dtype=float).reshape(-1, 4)
        gray = pixels[(pixels[:, 3] > 200) & (np.ptp(pixels[:, :3], axis=1) < 12)][:, :3]
        assert len(gray) > 50, "no text on the bars canvas"
        values, counts = np.unique(gray.round(-1), axis=0, return_counts=True)
        text = values[np.argmax(counts)]
        assert contrast(text, background) > 3, (text, background)
        # a tooltip: its text contrasts with its own background
        box = page.locator(".nbvis-weight-grid canvas").bounding_box()
        page.mouse.move(box["x"] + 20, box["y"] + 20)
        tip = page.locator(".nbvis-tooltip").first
        tip.wait_for(state="visible")
        tip_text = rgb(tip.evaluate("(el) => getComputedStyle(el).color"))
        tip_back = rgb(tip.evaluate("(el) => getComputedStyle(el).backgroundColor"))
        assert contrast(tip_text, tip_back) > 4.5, (tip_text, tip_back)
        screenshot(page, "dark_theme.png")
    except Exception:
        screenshot(page, "dark_theme_failure.png")
        raise
    finally:
        page.close()
