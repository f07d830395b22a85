"""Exports opened in Chromium with the network blocked: every view draws from its saved state."""

from __future__ import annotations

import io

import numpy as np
import pytest
from harness import canvas_stats, offline_page, screenshot
from PIL import Image
from test_activation_heatmap_e2e import tooltip_text, unit_center

import nbvis


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    mlp, cnn = nbvis.demo.digits_mlp(), nbvis.demo.digits_cnn()
    images, labels = nbvis.demo.digits()
    views = {
        "grid": nbvis.WeightGrid(mlp, "fc1", page_size=25),
        "heatmap": nbvis.ActivationHeatmap(mlp, images[0], labels=nbvis.demo.DIGIT_LABELS),
        "optimizer": nbvis.OptimizationViewer(cnn, ("conv2", 5), input_shape=(1, 28, 28), steps=8, starts=3),
        "importance": nbvis.FeatureImportance(mlp, images[:150], labels[:150], scoring="accuracy", n_repeats=2,
                                              feature_groups=7, top_k=5),
        "explorer": nbvis.Explorer(mlp, (images, labels), labels=nbvis.demo.DIGIT_LABELS, steps=8, page_size=16),
    }
    views["optimizer"].start()
    views["optimizer"].wait()
    views["importance"].wait()
    views["explorer"].selected = ("fc1", 7)
    views["explorer"].optimizer.wait()
    paths = {name: view.to_html(folder / f"{name}.html") for name, view in views.items()}
    yield views, paths
    for view in views.values():
        view.close()


def test_weight_grid_export_draws_and_hovers_offline(browser, exports):
    views, paths = exports
    grid = views["grid"]
    page, blocked = offline_page(browser, paths["grid"])
    try:
        root = page.wait_for_selector(".nbvis-weight-grid[data-draws]")
        assert root.get_attribute("data-tiles") == "25" and root.get_attribute("data-static") == "1"
        cols = int(root.get_attribute("data-cols"))
        stats = canvas_stats(page, ".nbvis-weight-grid canvas")
        assert stats["colors"] > 50, stats
        zoom = stats["width"] // (cols * 30)
        box = page.locator(".nbvis-weight-grid canvas").bounding_box()
        tile, row, col = 7, 4, 19
        page.mouse.move(box["x"] + ((tile % cols) * 30 + 1 + col + 0.5) * zoom,
                        box["y"] + ((tile // cols) * 30 + 1 + row + 0.5) * zoom)
        text = tooltip_text(page)
        assert "unit 7" in text and f"pixel ({row}, {col})" in text
        shown = float(text.split("weight ")[1].split()[0])
        assert shown == pytest.approx(float(grid.tiles()[7, row, col, 0]), rel=1e-3, abs=1e-6)
        # what needs the kernel is disabled and says so; the PNG download works without it
        assert page.locator(".nbvis-weight-grid select").first.is_disabled()
        assert "static export" in page.locator(".nbvis-weight-grid .nbvis-footer").inner_text()
        with page.expect_download() as download:
            page.click(".nbvis-weight-grid .nbvis-download")
        png = np.asarray(Image.open(io.BytesIO(open(download.value.path(), "rb").read())).convert("RGB"))
        assert png.shape[1] == round(root.bounding_box()["width"]) or abs(png.shape[1] - root.bounding_box()["width"]) <= 1
        assert len(np.unique(png.reshape(-1, 3), axis=0)) > 50  # the tiles, not a blank image
        screenshot(page, "export_weight_grid.png")
        assert not blocked, blocked
    finally:
        page.close()


def test_heatmap_export_hovers_from_state(browser, exports):
    views, paths = exports
    heatmap = views["heatmap"]
    page, blocked = offline_page(browser, paths["heatmap"])
    try:
        page.wait_for_selector(".nbvis-activation-heatmap[data-draws]")
        assert canvas_stats(page, ".nbvis-activation-heatmap [data-layer='sigmoid'] canvas")["colors"] > 20
        assert page.locator(".nbvis-activation-heatmap [data-layer='fc2']").get_attribute("data-kind") == "bars"
        reference = heatmap.activations["sigmoid"]
        for unit in (3, 64):
            page.mouse.move(*unit_center(page, "sigmoid", unit))
            text = tooltip_text(page)
            assert f"sigmoid \u00b7 unit {unit}" in text, text
            assert float(text.split("value ")[1].split()[0]) == pytest.approx(float(reference[unit]), rel=1e-3, abs=1e-6)
        screenshot(page, "export_activation_heatmap.png")
        assert not blocked, blocked
    finally:
        page.close()


def test_optimizer_and_chart_exports_draw(browser, exports):
    views, paths = exports
    page, blocked = offline_page(browser, paths["optimizer"])
    try:
        root = page.wait_for_selector(".nbvis-optimization-viewer[data-step=\"8\"]")
        assert root.get_attribute("data-step") == "8"
        assert page.locator(".nbvis-optimization-viewer button", has_text="Start").first.is_disabled()
        assert canvas_stats(page, ".nbvis-optimization-viewer canvas")["colors"] > 10
        screenshot(page, "export_optimization_viewer.png")
    finally:
        page.close()
    chart = views["importance"]
    page, blocked_chart = offline_page(browser, paths["importance"])
    try:
        root = page.wait_for_selector('.nbvis-feature-importance[data-bars="6"]', timeout=30_000)
        assert root.get_attribute("data-map") == "28x28"  # the importance map over the sample too
        best = int(np.nanargmax(chart.importances_mean))
        first = page.locator(".nbvis-feature-importance .barlayer .point path").first.bounding_box()
        page.mouse.move(first["x"] + first["width"] / 2, first["y"] + first["height"] / 2)
        hover = page.locator(".hoverlayer .hovertext").first
        hover.wait_for()
        text = hover.text_content()
        assert chart.result.feature_names[best] in text
        shown = float(text.split("importance ")[1].split()[0])
        assert shown == pytest.approx(float(chart.importances_mean[best]), rel=1e-3, abs=1e-6)
        screenshot(page, "export_feature_importance.png")
    finally:
        page.close()
    assert not blocked and not blocked_chart, (blocked, blocked_chart)


def test_explorer_export_draws_every_view(browser, exports):
    views, paths = exports
    explorer = views["explorer"]
    page, blocked = offline_page(browser, paths["explorer"])
    try:
        page.wait_for_selector(".nbvis-explorer .nbvis-activation-heatmap[data-draws]")
        grid = page.wait_for_selector(".nbvis-explorer .nbvis-weight-grid[data-draws]")
        assert grid.get_attribute("data-tiles") == "16"
        page.wait_for_selector(".nbvis-explorer .nbvis-optimization-viewer[data-step=\"8\"]")
        assert canvas_stats(page, ".nbvis-explorer .nbvis-optimization-viewer canvas")["colors"] > 10
        assert "fc1" in page.locator(".nbvis-explorer").inner_text()
        assert explorer.selected == ("fc1", 7)
        screenshot(page, "export_explorer.png")
        assert not blocked, blocked
    finally:
        page.close()
