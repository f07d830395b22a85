"""ActivationHeatmap and keys, in JupyterLab and Notebook 7: Enter in the sample box, arrow keys on
the sample slider, arrow keys and PageUp/PageDown on the focused view move the selection; the why
map's colorbar has numbers; a CNN's flatten is drawn as its 16 maps of 7x7."""

from __future__ import annotations

import json

import pytest
from harness import grid_point, layout_of, notebook_page, screenshot

ROOT = ".nbvis-activation-heatmap"

CELLS = [
    "import json, os, nbvis\n"
    "cnn = nbvis.demo.digits_cnn()\n"
    "images, labels = nbvis.demo.digits()\n"
    "view = nbvis.ActivationHeatmap(cnn, images[0], labels=nbvis.demo.DIGIT_LABELS, dataset=(images, labels))\n"
    "def dump(change=None):\n"
    "    json.dump({'index': view.index, 'selected': view.selected}, open('keys.tmp', 'w'))\n"
    "    os.replace('keys.tmp', 'keys.json')\n"
    "view.observe(dump, names=['index', 'selected'])\n"
    "view",
]


def layer_canvas(page, layer: str):
    return page.locator(f"{ROOT} [data-layer='{layer}'] canvas").first


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_sample_box_slider_and_selection_keys(jupyter, browser, app):
    with notebook_page(browser, jupyter, f"heatmap_keys_{app}.ipynb", CELLS, app=app, ready=f"{ROOT}[data-draws]") as page:
        cells = page.locator(".jp-Notebook .jp-Cell").count()

        # Enter in the sample box applies, clamped to the dataset
        box = page.locator(f"{ROOT} .nbvis-ah-dataset input[type=number]")
        box.click()
        box.press("Control+a")
        page.keyboard.type("5000")
        page.keyboard.press("Enter")
        jupyter.wait_for_json("keys.json", lambda v: v["index"] == 1796)
        assert box.input_value() == "1796"
        box.press("Control+a")
        page.keyboard.type("12")
        page.keyboard.press("Enter")
        jupyter.wait_for_json("keys.json", lambda v: v["index"] == 12)

        # arrow keys on the slider step the sample (ArrowUp is the notebook's "cell above")
        slider = page.locator(f"{ROOT} .nbvis-ah-dataset input[type=range]")
        slider.focus()
        page.keyboard.press("ArrowUp")
        jupyter.wait_for_json("keys.json", lambda v: v["index"] == 13)
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        jupyter.wait_for_json("keys.json", lambda v: v["index"] == 11)

        # click a channel, then the keys move the selection while the view has focus
        x, y = grid_point(layer_canvas(page, "conv2"), 5)
        page.mouse.click(x, y)
        jupyter.wait_for_json("keys.json", lambda v: v["selected"] is not None and v["selected"][0] == "conv2")
        channel = json.loads((jupyter.root / "keys.json").read_text())["selected"][1]
        channel = channel if isinstance(channel, int) else channel[0]
        cols = layout_of(layer_canvas(page, "conv2"))["cols"]
        page.keyboard.press("ArrowRight")
        jupyter.wait_for_json("keys.json", lambda v: v["selected"] == ["conv2", channel + 1])
        page.keyboard.press("ArrowDown")
        jupyter.wait_for_json("keys.json", lambda v: v["selected"] == ["conv2", channel + 1 + cols])
        page.keyboard.press("PageDown")  # conv2 -> relu2, same channel
        jupyter.wait_for_json("keys.json", lambda v: v["selected"] == ["relu2", channel + 1 + cols])
        page.keyboard.press("PageUp")
        page.keyboard.press("PageUp")
        jupyter.wait_for_json("keys.json", lambda v: v["selected"] == ["pool1", min(7, channel + 1 + cols)])
        # none of these keys reached the notebook: no cell added, the notebook did not scroll away
        assert page.locator(".jp-Notebook .jp-Cell").count() == cells

        # the why map's colorbar says its range in numbers
        legend = page.locator(f"{ROOT} .nbvis-ah-why-legend")
        legend.wait_for()
        numbers = legend.locator("span").all_inner_texts()
        assert numbers[0].startswith("-") and float(numbers[0]) < 0 < float(numbers[2]), numbers

        # flatten (16 x 7 x 7) is drawn as 16 maps of 7 x 7, not as a 28 x 28 square
        flatten = page.locator(f"{ROOT} [data-layer='flatten']")
        assert "784 units (16 maps of 7\u00d77)" in flatten.locator(".nbvis-ah-title").inner_text()
        layout = layout_of(layer_canvas(page, "flatten"))
        assert layout["count"] == 16 and layout["tile"] == [7, 7]
        assert "16 channels of 14\u00d714" in page.locator(f"{ROOT} [data-layer='conv2'] .nbvis-ah-title").inner_text()
        assert page.locator(f"{ROOT} [data-layer='fc'] .nbvis-ah-title").inner_text() == "fc \u00b7 10 units"
        screenshot(flatten, f"heatmap_flatten_{app}.png")
