"""Exports opened in Chromium with the network blocked: every view draws from its saved state."""

from __future__ import annotations

import io

import numpy as np
import pytest
from harness import block_network, canvas_stats, offline_page, screenshot
from PIL import Image
from test_activation_heatmap_e2e import tooltip_text, unit_center

import nbvis
from nbvis.compute.blocks import FeatureCache


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    mlp, cnn = nbvis.demo.digits_mlp(), nbvis.demo.digits_cnn()
    images, labels = nbvis.demo.digits()
    cache = FeatureCache(cnn, (1, 28, 28), steps=16, every=8)  # the building blocks' icons, in memory
    views = {
        "grid": nbvis.WeightGrid(mlp, "fc1", page_size=25),
        "heatmap": nbvis.ActivationHeatmap(mlp, images[0], labels=nbvis.demo.DIGIT_LABELS),
        "optimizer": nbvis.OptimizationViewer(cnn, ("conv2", 5), input_shape=(1, 28, 28), steps=8, starts=3),
        "importance": nbvis.FeatureImportance(mlp, images[:150], labels[:150], scoring="accuracy", n_repeats=2,
                                              feature_groups=7, top_k=5),
        "explorer": nbvis.Explorer(mlp, (images, labels), labels=nbvis.demo.DIGIT_LABELS, steps=8, page_size=16),
        "groups": nbvis.NeuronGroups(cnn, images[0], layer="relu2", k=4, dataset=(images, labels),
                                     labels=nbvis.demo.DIGIT_LABELS, icons=cache),
        "dictionary": nbvis.SemanticDictionary(cnn, images[0], layer="relu2", k=4, dataset=images, icons=cache),
    }
    views["groups"].wait_icons(180)
    views["dictionary"].wait_icons(180)
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


def test_neuron_groups_export_draws_and_hovers_offline(browser, exports):
    views, paths = exports
    groups = views["groups"]
    page, blocked = offline_page(browser, paths["groups"])
    try:
        root = page.wait_for_selector(".nbvis-neuron-groups[data-draws]")
        assert root.get_attribute("data-static") == "1" and root.get_attribute("data-k") == "4"
        assert page.locator(".nbvis-neuron-groups .nbvis-ng-group").count() == 4
        assert page.locator(".nbvis-ng-legend").get_attribute("data-icons-done") == "4"
        assert canvas_stats(page, ".nbvis-neuron-groups canvas.nbvis-ng-maps")["colors"] > 20
        assert page.locator(".nbvis-neuron-groups .nbvis-ng-table tr[data-group]").count() == 4
        # hovering the maps shows each group's value at the position, from the saved state
        canvas = page.locator(".nbvis-neuron-groups canvas.nbvis-ng-maps")
        box = canvas.bounding_box()
        maps = groups.maps
        _, mh, mw = maps.shape
        for row, col in [(3, 4), (9, 10)]:
            page.mouse.move(box["x"] + (col + 0.5) * box["width"] / mw, box["y"] + (row + 0.5) * box["height"] / mh)
            text = tooltip_text(page)
            assert f"position ({row}, {col})" in text, text
            for i in range(4):
                assert f"group {i}: {maps[i, row, col]:.2f}" in text, (i, text)
        # hovering a legend entry isolates its group without the kernel
        page.locator(".nbvis-neuron-groups .nbvis-ng-group[data-group='2']").hover()
        page.wait_for_selector(".nbvis-neuron-groups[data-isolated='2']")
        screenshot(page, "export_neuron_groups.png")
        # what needs the kernel is disabled: the k slider, the layer picker, the sample, the upload
        for selector in ("input.nbvis-ng-k", "select.nbvis-bk-layer", "input[type=file]"):
            assert page.locator(f".nbvis-neuron-groups {selector}").first.is_disabled(), selector
        assert "static export" in page.locator(".nbvis-neuron-groups .nbvis-footer").inner_text()
        assert not blocked, blocked
    finally:
        page.close()


def test_semantic_dictionary_export_follows_the_pointer_offline(browser, exports):
    views, paths = exports
    dictionary = views["dictionary"]
    page, blocked = offline_page(browser, paths["dictionary"])
    try:
        root = page.wait_for_selector(".nbvis-semantic-dictionary[data-draws]")
        assert root.get_attribute("data-static") == "1" and root.get_attribute("data-icons-done") == "16"
        assert (int(root.get_attribute("data-row")), int(root.get_attribute("data-col"))) == tuple(dictionary.position)
        canvas = page.locator(".nbvis-semantic-dictionary canvas.nbvis-sd-reticle")
        box = canvas.bounding_box()
        rows, cols = dictionary.grid
        for row, col in [(3, 4), (7, 7), (12, 11)]:
            page.mouse.move(box["x"] + (col + 0.5) * box["width"] / cols, box["y"] + (row + 0.5) * box["height"] / rows)
            page.wait_for_selector(f".nbvis-semantic-dictionary[data-row='{row}'][data-col='{col}']", timeout=5000)
            entries = page.locator(".nbvis-semantic-dictionary .nbvis-sd-entry")
            expected = dictionary.entries((row, col))
            assert entries.count() == len(expected) == 4
            for j, (channel, value, share) in enumerate(expected):
                entry = entries.nth(j)
                assert int(entry.get_attribute("data-channel")) == channel
                shown = entry.inner_text()
                assert f"({share * 100:.0f}% of max)" in shown, shown
                assert float(shown.split("\n")[-1].split(" (")[0]) == pytest.approx(value, rel=1e-3, abs=1e-6)
        screenshot(page, "export_semantic_dictionary.png")
        assert page.locator(".nbvis-semantic-dictionary select.nbvis-bk-layer").is_disabled()
        assert page.locator(".nbvis-semantic-dictionary input[type=file]").is_disabled()
        assert not blocked, blocked
    finally:
        page.close()


def test_export_without_decompression_stream_says_what_it_needs(browser, exports):
    """The manager is packed with gzip: a browser without DecompressionStream gets a note, not a blank page."""
    _views, paths = exports
    page = browser.new_page()
    try:
        page.add_init_script("delete window.DecompressionStream;")
        blocked = block_network(page)
        page.goto(paths["grid"].resolve().as_uri())
        note = page.wait_for_selector("p:has-text('DecompressionStream')")
        assert "Firefox 113" in note.inner_text()
        assert page.locator(".nbvis-weight-grid").count() == 0
        assert not blocked, blocked
    finally:
        page.close()
