"""What the WeightGrid says about its tiles, in a real JupyterLab: the header counts what is shown,
a multi-channel conv tile's hover names the input channel and kernel offset, tiles can carry
their unit index, RGB filters get no diverging legend."""

from __future__ import annotations

from harness import canvas_stats, notebook_page, screenshot

import nbvis

CELLS = [
    "import torch, nbvis\n"
    "cnn = nbvis.demo.digits_cnn()\n"
    "grid = nbvis.WeightGrid(cnn, 'conv2')\n"
    "grid",
    "torch.manual_seed(0)\n"
    "rgb = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5))\n"
    "nbvis.WeightGrid(rgb, '0')",
]

GRID = ".nbvis-weight-grid"


def test_grid_header_hover_indices_and_rgb_legend(jupyter, browser):
    with notebook_page(browser, jupyter, "weight_grid_labels.ipynb", CELLS) as page:
        first = page.locator(GRID).nth(0)
        page.wait_for_selector(f"{GRID}[data-draws]")
        assert first.locator("strong").first.text_content() == "conv2 \u00b7 16 units"

        # conv2 has 8 input channels of k x k, laid out 3 per row with 1-pixel gaps
        weights = nbvis.demo.digits_cnn().conv2.weight.detach()
        k = weights.shape[-1]
        side = 3 * (k + 1) - 1
        cell_w, cell_h = side + 2, side + 2
        cols = int(first.get_attribute("data-cols"))
        canvas = first.locator("canvas")
        box = canvas.bounding_box()
        scale = canvas.evaluate("(c) => c.width / c.getBoundingClientRect().width")
        zoom = canvas.evaluate("(c) => c.width") / (cols * cell_w)
        tile, channel, ky, kx = 1, 3, 2, 1
        y = (channel // 3) * (k + 1) + ky
        x = (channel % 3) * (k + 1) + kx
        px = ((tile % cols) * cell_w + 1 + x + 0.5) * zoom / scale
        py = ((tile // cols) * cell_h + 1 + y + 0.5) * zoom / scale
        page.mouse.move(box["x"] + px, box["y"] + py)
        tip = page.locator(".nbvis-tooltip").filter(has_text="unit 1")
        tip.wait_for()
        text = tip.text_content()
        weight = weights[tile, channel, ky, kx].item()
        assert f"input channel {channel}, kernel offset ({ky}, {kx})" in text, text
        assert f"{weight:.3g}"[:4] in text or f"{weight:.3f}" in text, (text, weight)

        # top k: the header says how many of the units are shown
        top_k = first.locator("label", has_text="top k").locator("input")
        top_k.click()
        top_k.press("Control+a")
        page.keyboard.type("6")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"{GRID}[data-tiles='6']")
        assert first.locator("strong").first.text_content() == "conv2 \u00b7 6 of 16 units"

        # unit numbers drawn on the tiles
        before = canvas_stats(page, f"{GRID} canvas")
        draws = int(first.get_attribute("data-draws"))
        first.locator("label", has_text="unit numbers").locator("input").check()
        page.wait_for_function(f"(n) => Number(document.querySelector('{GRID}').dataset.draws) > n", arg=draws)
        after = canvas_stats(page, f"{GRID} canvas")
        assert after["colors"] > before["colors"]  # white digits on dark plates
        screenshot(first, "weight_grid_conv2_indices.png")

        # an RGB filter grid: no diverging colorbar, a note on how the colors read instead
        second = page.locator(GRID).nth(1)
        assert second.locator(".nbvis-legend").is_hidden()
        assert "RGB weights, gray = 0" in second.locator(".nbvis-rgb-note").text_content()
        assert first.locator(".nbvis-legend").is_visible() and first.locator(".nbvis-rgb-note").is_hidden()
        screenshot(second, "weight_grid_rgb.png")

