"""ActivationHeatmap in a real JupyterLab and Notebook 7, driven by Chromium."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from harness import canvas_stats, grid_point, layout_of, notebook_page, screenshot

import nbvis

ROOT = ".nbvis-activation-heatmap"

MLP_CELLS = [
    "import json, nbvis\n"
    "model = nbvis.demo.digits_mlp()\n"
    "images, labels = nbvis.demo.digits()\n"
    "view = nbvis.ActivationHeatmap(model, images[0], labels=nbvis.demo.DIGIT_LABELS, dataset=(images, labels))\n"
    "def dump(change=None):\n"
    "    state = {'index': view.index, 'caption': view.input_caption, 'selected': view.selected,\n"
    "             'fc2': view.activations['fc2'].tolist(), 'input': view.input.reshape(-1).tolist(),\n"
    "             'grad': None if view.gradient_map is None else view.gradient_map.reshape(-1).tolist()}\n"
    "    json.dump(state, open('state.tmp', 'w'))\n"
    "    __import__('os').replace('state.tmp', 'state.json')\n"
    "view.observe(dump, names=['_acts', 'selected', '_grad'])\n"
    "view",
]

COUNT_SENDS = """() => {
    if (window.__nbvisSends === undefined) {
        window.__nbvisSends = 0;
        const original = WebSocket.prototype.send;
        WebSocket.prototype.send = function (...args) { window.__nbvisSends += 1; return original.apply(this, args); };
    }
    return window.__nbvisSends;
}"""


def layer_canvas(page, layer: str):
    return page.locator(f"{ROOT} [data-layer='{layer}'] canvas").first


def unit_center(page, layer: str, unit: int):
    """Page coordinates of a unit's cell in a dense layer's grid (or its bar), from its data-layout."""
    return grid_point(layer_canvas(page, layer), unit)


def position_center(page, layer: str, channel: int, row: int, col: int):
    """Page coordinates of one position of one channel map of a conv layer, from its data-layout."""
    return grid_point(layer_canvas(page, layer), channel, row, col)


def assert_no_view_errors(page) -> None:
    """Nothing failed in the view: its status line and error area are empty, and no console error
    came from the view's code (JupyterLab and Notebook 7 log errors of their own)."""
    assert page.locator(f"{ROOT} .nbvis-ah-status").inner_text() == ""
    assert page.locator(f"{ROOT} .nbvis-error").inner_text() == ""
    ours = [m for m in page.console_messages if m.startswith(("pageerror", "error")) and "activation_heatmap" in m]
    assert not ours, ours


def tooltip_text(page) -> str:
    tip = page.locator(".nbvis-tooltip").first
    tip.wait_for(state="visible")
    return tip.inner_text()


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_heatmaps_hover_draw_and_slider(jupyter, browser, app):
    with notebook_page(browser, jupyter, f"activation_heatmap_{app}.ipynb", MLP_CELLS, app=app, fresh=("state.json",)) as page:
        root = page.wait_for_selector(f"{ROOT}[data-draws]")
        page.wait_for_selector(f"{ROOT} [data-layer='fc1'] canvas")
        # heatmaps drawn: a 10x10 grid for the 100 hidden units, bars for the 10 classes
        layout = layout_of(layer_canvas(page, "sigmoid"))
        assert layout["cols"] == 10
        stats = canvas_stats(page, f"{ROOT} [data-layer='sigmoid'] canvas")
        zoom = layout["zoom"]
        assert stats["width"] == 10 * zoom and stats["height"] == 10 * zoom and stats["colors"] > 20, stats
        assert canvas_stats(page, f"{ROOT} [data-layer='input'] canvas")["colors"] > 5
        assert page.locator(f"{ROOT} [data-layer='fc2']").get_attribute("data-kind") == "bars"

        # hover: the value shown is the activation, and no message goes to the kernel
        model = nbvis.demo.digits_mlp()
        images, labels = nbvis.demo.digits()
        reference = nbvis.capture(model, images[:1], ["sigmoid"])["sigmoid"][0].numpy()
        page.evaluate(COUNT_SENDS)
        page.wait_for_timeout(500)
        before = page.evaluate(COUNT_SENDS)
        for unit in (37, 0, 99, 55):
            page.mouse.move(*unit_center(page, "sigmoid", unit))
            text = tooltip_text(page)
            assert f"sigmoid \u00b7 unit {unit}" in text, text
            shown = float(text.split("value ")[1].split()[0])
            assert shown == pytest.approx(float(reference[unit]), rel=1e-3, abs=1e-6)
        for step in range(40):  # sweep across the whole grid
            x, y = unit_center(page, "sigmoid", (step * 7) % 100)
            page.mouse.move(x + 1, y + 1)
        page.wait_for_timeout(300)
        assert page.evaluate(COUNT_SENDS) == before, "hovering sent messages to the kernel"
        screenshot(page.locator(ROOT), f"activation_heatmap_{app}.png")

        # the dataset slider changes the input
        slider = page.locator(f"{ROOT} .nbvis-ah-dataset input[type=range]")
        slider.fill("42")
        state = jupyter.wait_for_json("state.json", lambda s: s["index"] == 42, timeout=20)
        assert state["caption"] == f"dataset #42 (label {int(labels[42])})"
        np.testing.assert_allclose(state["input"], images[42].reshape(-1).numpy(), atol=1e-6)
        page.wait_for_function(
            "(el) => el.querySelector('.nbvis-ah-panel[data-layer=input] span.nbvis-muted')?.textContent.startsWith('dataset #42')",
            arg=root,
        )

        # drawing on the canvas changes the input and the output bars
        page.locator(f"{ROOT} button", has_text="clear").click()
        cleared = jupyter.wait_for_json("state.json", lambda s: s["caption"] == "drawing" and max(s["input"]) == 0, timeout=20)
        canvas = page.locator(f"{ROOT} [data-layer='input'] canvas.nbvis-ah-draw")
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.15)
        page.mouse.down()
        for i in range(1, 21):
            page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * (0.15 + 0.035 * i))
        page.mouse.up()
        drawn = jupyter.wait_for_json("state.json", lambda s: s["caption"] == "drawing" and sum(s["input"]) > 20, timeout=20)
        # the stroke is a vertical line in the middle columns
        ink = np.array(drawn["input"]).reshape(28, 28)
        assert ink[:, 12:16].sum() > 0.9 * ink.sum()
        # the bars follow the kernel's output for the drawn input
        expected = model(torch.tensor(drawn["input"], dtype=torch.float32).reshape(1, 1, 28, 28))[0].detach().numpy()
        np.testing.assert_allclose(drawn["fc2"], expected, rtol=1e-4, atol=1e-4)
        assert not np.allclose(drawn["fc2"], cleared["fc2"])
        best = int(np.argmax(drawn["fc2"]))
        page.wait_for_function(
            "([el, best]) => el.querySelector('[data-layer=fc2]')?.dataset.best === String(best)", arg=[root, best]
        )
        trips = page.evaluate("(el) => el.nbvisDebug.roundTrips", root)
        assert trips and all(t > 0 for t in trips)

        # clicking a unit selects it in Python and draws its gradient over the input
        page.mouse.click(*unit_center(page, "sigmoid", 12))
        state = jupyter.wait_for_json("state.json", lambda s: s["selected"] == ["sigmoid", 12] and s["grad"] is not None, timeout=20)
        assert len(state["grad"]) == 784
        page.wait_for_function("(el) => el.querySelector('canvas.nbvis-ah-grad')?.width > 0", arg=root)
        screenshot(page.locator(ROOT), f"activation_heatmap_{app}_drawn.png")
        assert_no_view_errors(page)


CNN_CELLS = [
    "import json, nbvis\n"
    "model = nbvis.demo.digits_cnn()\n"
    "images, labels = nbvis.demo.digits()\n"
    "view = nbvis.ActivationHeatmap(model, images[3], labels=nbvis.demo.DIGIT_LABELS, dataset=(images, labels))\n"
    "view.observe(lambda c: open('top.txt', 'w').write(view.top_state), names=['top_state'])\n"
    "view",
]


def test_conv_channels_receptive_fields_and_top_examples(jupyter, browser):
    # Notebook 7 shows one notebook per page (JupyterLab would restore the tabs of earlier tests)
    with notebook_page(browser, jupyter, "activation_heatmap_cnn.ipynb", CNN_CELLS, app="notebook") as page:
        root = page.wait_for_selector(f"{ROOT}[data-draws]")
        layout = layout_of(layer_canvas(page, "conv2"))
        cols = layout["cols"]
        mw, mh = layout["tile"]
        assert (mh, mw) == (14, 14) and cols == 4
        channel, row, col = 5, 3, 9
        x, y = position_center(page, "conv2", channel, row, col)
        page.evaluate(COUNT_SENDS)
        before = page.evaluate(COUNT_SENDS)
        page.mouse.move(x, y)
        text = tooltip_text(page)
        model = nbvis.demo.digits_cnn()
        images, _ = nbvis.demo.digits()
        value = float(nbvis.capture(model, images[3:4], ["conv2"])["conv2"][0, channel, row, col])
        assert f"channel {channel} \u00b7 position ({row}, {col})" in text, text
        assert float(text.split("value ")[1].split()[0]) == pytest.approx(value, rel=1e-3, abs=1e-6)
        # the receptive field of (3, 9) in conv2: rows 2..11, cols 14..23 of the input
        assert "sees input rows 2\u201311, cols 14\u201323" in text, text
        overlay = canvas_stats(page, f"{ROOT} canvas.nbvis-ah-overlay")
        assert overlay["opaque"] > 50, overlay
        # the hovered channel is shown enlarged
        assert page.locator(f"{ROOT} canvas.nbvis-ah-zoom").evaluate("(c) => c.width") >= 14 * 8
        assert page.evaluate(COUNT_SENDS) == before
        screenshot(page.locator(ROOT), "activation_heatmap_cnn_hover.png")

        # click: gradient map and top examples with progress
        page.mouse.click(*position_center(page, "conv2", channel, row, col))  # the screenshot scrolled
        assert jupyter.wait_for_file("top.txt", content="done", timeout=60) == "done"
        page.wait_for_function("(el) => el.querySelector('.nbvis-ah-toppanel')?.dataset.count === '9'", arg=root)
        page.wait_for_function("(el) => el.querySelector('canvas.nbvis-ah-grad')?.width > 0", arg=root)
        page.locator(f"{ROOT} select").first.select_option("guided")
        page.wait_for_function(
            "(el) => el.querySelector('.nbvis-ah-why')?.textContent.includes('guided backprop of conv2[5]')", arg=root
        )
        screenshot(page.locator(ROOT), "activation_heatmap_cnn_selected.png")
        # a top example is clickable: it becomes the input
        page.locator(f"{ROOT} .nbvis-ah-top figure").first.click()
        page.wait_for_function(
            "(el) => el.querySelector('.nbvis-ah-panel[data-layer=input] span.nbvis-muted')?.textContent.startsWith('dataset #')",
            arg=root,
        )
        assert_no_view_errors(page)


def test_example_notebook_draws_its_views(jupyter, browser):
    from pathlib import Path

    source = Path(__file__).resolve().parents[2] / "example_notebooks" / "02_activation_heatmap.ipynb"
    with notebook_page(browser, jupyter, "activation_heatmap_example.ipynb", source=source, app="notebook") as page:
        page.wait_for_function(f"() => document.querySelectorAll('{ROOT}[data-draws]').length === 2")
        assert page.locator(f"{ROOT} .nbvis-error.nbvis-shown").count() == 0
        second = page.locator(ROOT).nth(1)
        second.scroll_into_view_if_needed()
        # the CNN view starts with conv2[5] selected: its guided backprop map and top examples show
        page.wait_for_function(
            "(el) => el.querySelector('.nbvis-ah-toppanel')?.dataset.count === '9'", arg=second.element_handle()
        )
        assert "guided backprop of conv2[5]" in second.locator(".nbvis-ah-why").inner_text()
        screenshot(second, "activation_heatmap_example_cnn.png")


def test_webcam_frames_feed_the_model(jupyter, browser):
    from harness import CHROMIUM, CHROMIUM_ARGS

    # Chromium's fake camera (a moving test pattern) stands in for a webcam; permission is granted
    camera = browser.browser_type.launch(
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
    )
    cells = [
        "import nbvis\n"
        "view = nbvis.ActivationHeatmap(nbvis.demo.digits_mlp(), nbvis.demo.digits()[0][0], webcam_fps=5)\n"
        "view.observe(lambda c: open('webcam.txt', 'w').write(c['new']), names=['input_caption'])\n"
        "view"
    ]
    try:
        with notebook_page(camera, jupyter, "activation_heatmap_webcam.ipynb", cells, app="notebook",
                           ready=f"{ROOT}[data-draws]") as page:
            button = page.locator(f"{ROOT} button", has_text="webcam")
            button.click()
            assert jupyter.wait_for_file("webcam.txt", content="webcam", timeout=30) == "webcam"
            root = page.locator(ROOT).element_handle()
            page.wait_for_function("(el) => (el.nbvisDebug?.roundTrips || []).length >= 3", arg=root, timeout=30_000)
            page.locator(f"{ROOT} button", has_text="stop webcam").click()
            assert page.locator(f"{ROOT} .nbvis-ah-status").inner_text() == ""
            screenshot(page.locator(ROOT), "activation_heatmap_webcam.png")
    finally:
        camera.close()
