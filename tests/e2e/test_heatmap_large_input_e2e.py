"""An input too big for one message (3 x 1024 x 1024, 12 MB as float32) in a real JupyterLab: the
view gets it averaged 4 x 4 and says so; the receptive field of a conv position is still outlined
over the right input pixels, hovering reports input coordinates, the why map comes averaged the same
way, and drawing is off (a drawing would replace the photo by its blocks)."""

from __future__ import annotations

import json

import pytest
from harness import grid_point, notebook_page, screenshot

from test_activation_heatmap_e2e import ROOT, assert_no_view_errors, layer_canvas, tooltip_text

CELLS = [
    "import torch, nbvis\n"
    "from torch import nn\n"
    "torch.manual_seed(0)\n"
    "model = nn.Sequential(nn.Conv2d(3, 4, 64, stride=64), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 3)).eval()\n"
    "x = torch.full((3, 1024, 1024), 0.2)\n"
    "x[0, 320:384, 576:640] = 1.0  # a red square: the field of conv position (5, 9)\n"
    "x[:, 400:416, 600:616] = torch.tensor([0.1, 0.5, 0.9])[:, None, None]  # 4 x 4 shown pixels of one colour\n"
    "view = nbvis.ActivationHeatmap(model, x)\n"
    "view",
]

OPAQUE_BOX = """(c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let x0 = c.width, y0 = c.height, x1 = -1, y1 = -1;
    for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] === 0) continue;
        const p = i / 4, x = p % c.width, y = Math.floor(p / c.width);
        x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
    }
    return [x0, y0, x1, y1, c.width, c.height];
}"""


CONTENT_BOX = """(c) => {
    const r = c.getBoundingClientRect();
    return [r.left + c.clientLeft, r.top + c.clientTop, c.clientWidth, c.clientHeight, c.width, c.height];
}"""


def pixel_point(canvas, row: int, col: int) -> tuple[float, float]:
    """Page coordinates of the middle of pixel (row, col) of an image canvas (inside its border)."""
    canvas.scroll_into_view_if_needed()
    left, top, css_w, css_h, width, height = canvas.evaluate(CONTENT_BOX)
    return left + (col + 0.5) * css_w / width, top + (row + 0.5) * css_h / height


def input_point(page, row: int, col: int) -> tuple[float, float]:
    """Page coordinates of pixel (row, col) of the input as drawn (averaged down: one per block)."""
    return pixel_point(page.locator(f"{ROOT} .nbvis-ah-panel[data-layer=input] .nbvis-ah-stack canvas").first, row, col)


def block_of(place: str) -> tuple[int, int]:
    """(top, left) of "rows a–b, cols c–d (mean of 4×4)": a 4 x 4 block of input pixels in the patch."""
    assert place.endswith(" (mean of 4\u00d74)"), place
    rows, cols = place.removesuffix(" (mean of 4\u00d74)").split(", ")
    (top, bottom), (left, right) = (tuple(int(v) for v in part.split(" ")[1].split("\u2013")) for part in (rows, cols))
    assert bottom == top + 3 and right == left + 3 and top % 4 == 0 and left % 4 == 0, place
    assert 400 <= top <= 412 and 600 <= left <= 612, place  # inside the patch under the pointer
    return top, left


def test_a_huge_input_is_shown_averaged_down_with_fields_and_hover_in_input_pixels(jupyter, browser):
    with notebook_page(browser, jupyter, "heatmap_large_input.ipynb", CELLS, ready=f"{ROOT}[data-draws]") as page:
        caption = page.locator(f"{ROOT} .nbvis-ah-panel[data-layer=input] span.nbvis-muted")
        assert "shown averaged 4\u00d74 (3\u00d71024\u00d71024); drawing is off" in caption.inner_text()
        drawn = page.locator(f"{ROOT} .nbvis-ah-panel[data-layer=input] .nbvis-ah-stack canvas").first.evaluate("(c) => [c.width, c.height]")
        assert drawn == [256, 256]  # 1024 / 4 at zoom 1

        # hover conv position (5, 9) of channel 1: its field is input rows 320-383, cols 576-639
        page.mouse.move(*grid_point(layer_canvas(page, "0"), 1, 5, 9))
        text = tooltip_text(page)
        assert "sees input rows 320\u2013383, cols 576\u2013639" in text, text
        overlay = page.locator(f"{ROOT} canvas.nbvis-ah-overlay")
        assert json.loads(overlay.get_attribute("data-field")) == [[320, 384], [576, 640]]
        x0, y0, x1, y1, width, height = overlay.evaluate(OPAQUE_BOX)
        assert (width, height) == (256, 256)
        # the outline is drawn over the shown image's rows 80-95, cols 144-159 (input pixels / 4)
        assert abs(x0 - 144) <= 2 and abs(x1 - 160) <= 2 and abs(y0 - 80) <= 2 and abs(y1 - 96) <= 2, (x0, y0, x1, y1)
        screenshot(page.locator(ROOT), "heatmap_large_input_field.png")

        # hover the input: the block of input pixels under the pointer, and its mean
        page.mouse.move(*input_point(page, 101.5, 151.5))  # shown pixels are under one CSS px: aim at the patch's middle
        text = tooltip_text(page)
        top, left = block_of(text.splitlines()[0].removeprefix("input "))
        r, g, b = (float(text.split(f"{c} ")[1].split()[0]) for c in "RGB")
        assert (r, g, b) == pytest.approx((0.1, 0.5, 0.9), abs=1e-3), text  # one block of one colour: its mean

        # select a unit: its why map over the input comes averaged the same way, hovered in input pixels
        page.mouse.click(*grid_point(layer_canvas(page, "0"), 1, 5, 9))
        page.wait_for_function("(el) => el.querySelector('canvas.nbvis-ah-grad')?.width === 256", arg=page.locator(ROOT).element_handle())
        why = page.locator(f"{ROOT} canvas.nbvis-ah-grad")
        page.mouse.move(*pixel_point(why, 101.5, 151.5))
        block_of(tooltip_text(page).splitlines()[0])
        screenshot(page.locator(ROOT), "heatmap_large_input_why.png")
        assert_no_view_errors(page)


CONV_CELLS = [
    "import json, os, torch, nbvis\n"
    "from torch import nn\n"
    "torch.manual_seed(0)\n"
    "model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).eval()\n"
    "view = nbvis.ActivationHeatmap(model, torch.rand(3, 1024, 1024))\n"
    "view.observe(lambda c: (json.dump(view.selected, open('sel.tmp', 'w')), os.replace('sel.tmp', 'sel.json')), names=['selected'])\n"
    "view",
]


def test_conv_maps_averaged_down_outline_a_blocks_field_and_select_real_positions(jupyter, browser):
    """Three layers of 4 maps of 1024 x 1024 (48 MB): drawn averaged k x k. A hovered block names
    the layer positions it averages and outlines what they see together; a click on the enlarged map
    selects the block's first position of the layer itself."""
    with notebook_page(browser, jupyter, "heatmap_pooled_conv.ipynb", CONV_CELLS, ready=f"{ROOT}[data-draws]") as page:
        title = page.locator(f"{ROOT} [data-layer='2'] .nbvis-ah-title").inner_text()
        k = int(title.split("averaged ")[1].split("\u00d7")[0])
        assert k > 1 and "to fit the view" in title, title
        page.mouse.move(*grid_point(layer_canvas(page, "2"), 0, 20, 30))
        text = tooltip_text(page)
        place = text.splitlines()[0].split("position ")[1]
        rows, cols = place.removesuffix(f" (mean of {k}\u00d7{k})").split(", ")
        (top, bottom), (left, right) = (tuple(int(v) for v in part.split(" ")[1].split("\u2013")) for part in (rows, cols))
        assert bottom == top + k - 1 and right == left + k - 1 and top % k == 0 and left % k == 0, text
        # two 3 x 3 convs with padding 1: positions top..bottom see input rows top - 2 .. bottom + 2
        assert f"sees input rows {top - 2}\u2013{bottom + 2}, cols {left - 2}\u2013{right + 2}" in text, text
        overlay = page.locator(f"{ROOT} canvas.nbvis-ah-overlay")
        assert json.loads(overlay.get_attribute("data-field")) == [[top - 2, bottom + 3], [left - 2, right + 3]]
        screenshot(page.locator(ROOT), "heatmap_pooled_conv_field.png")
        # select channel 0; on its enlarged map a click selects the block's first position of the layer
        page.mouse.click(*grid_point(layer_canvas(page, "2"), 0, 20, 30))
        jupyter.wait_for_json("sel.json", lambda v: v == ["2", 0])
        zoom = page.locator(f"{ROOT} canvas.nbvis-ah-zoom")
        zoom.wait_for(state="visible")
        zoom.scroll_into_view_if_needed()
        zoom_factor = int(zoom.get_attribute("data-zoom"))
        left_px, top_px, css_w, css_h, width, height = zoom.evaluate(CONTENT_BOX)
        page.mouse.click(left_px + (30.5 * zoom_factor) * css_w / width, top_px + (20.5 * zoom_factor) * css_h / height)
        selected = jupyter.wait_for_json("sel.json", lambda v: v is not None and isinstance(v[1], list))
        assert selected[0] == "2" and selected[1][0] == 0, selected
        y, x = selected[1][1:]
        assert y % k == 0 and x % k == 0 and abs(y - 20 * k) <= k and abs(x - 30 * k) <= k, selected
        assert_no_view_errors(page)
