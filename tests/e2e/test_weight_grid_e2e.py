"""WeightGrid in a real JupyterLab and Notebook 7, driven by Chromium."""

from __future__ import annotations

import pytest
from harness import canvas_stats, grid_point, layout_of, notebook_page, screenshot

import nbvis

SETUP = [
    "import nbvis\nmodel = nbvis.demo.digits_mlp()",
    "grid = nbvis.WeightGrid(model, 'fc1', page_size=25)\n"
    "grid.observe(lambda c: open('selected.txt', 'w').write(str(c['new'])), names=['selected'])\n"
    "grid",
]


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_grid_draws_hovers_and_clicks(jupyter, browser, app):
    with notebook_page(browser, jupyter, f"weight_grid_{app}.ipynb", SETUP, app=app) as page:
        root = page.wait_for_selector(".nbvis-weight-grid[data-draws]")
        assert root.get_attribute("data-tiles") == "25"
        cols = int(root.get_attribute("data-cols"))
        assert cols == 5
        canvas = ".nbvis-weight-grid canvas"
        stats = canvas_stats(page, canvas)
        zoom = 2  # 64 px / 28 px, rounded
        cell_w, cell_h = 28 + 2, 28 + 2
        assert stats["width"] == cols * cell_w * zoom and stats["height"] == 5 * cell_h * zoom
        assert stats["colors"] > 50, stats  # a real diverging image, not a blank canvas

        # Hover pixel (row 10, col 20) of the third tile and read the tooltip.
        reference = nbvis.demo.digits_mlp().fc1.weight.detach().numpy()
        tile, row, col = 2, 10, 20
        layout = layout_of(page.locator(canvas))
        assert layout["zoom"] == zoom and layout["cols"] == cols and layout["pitch"] == [cell_w, cell_h]
        x, y = grid_point(page.locator(canvas), tile, row, col)
        page.mouse.move(x, y)
        tip = page.locator(".nbvis-tooltip").first
        tip.wait_for(state="visible")
        text = tip.inner_text()
        assert "unit 2" in text and f"pixel ({row}, {col})" in text
        shown = float(text.split("weight ")[1].split()[0])
        assert shown == pytest.approx(reference[2, row * 28 + col], rel=1e-3, abs=1e-6)
        screenshot(page.locator(".nbvis-weight-grid"), f"weight_grid_{app}.png")

        # Click a tile: grid.selected changes in the kernel.
        page.mouse.click(x, y)
        assert jupyter.wait_for_file("selected.txt", content="2") == "2"


def test_live_grid_follows_training_in_another_cell(jupyter, browser):
    cells = [
        "import time, torch, nbvis\ntorch.manual_seed(0)\nmodel = nbvis.demo._mlp()\n"
        "images, labels = nbvis.demo.digits()\n"
        "grid = nbvis.WeightGrid(model, 'fc1', page_size=4, live=True)\ngrid",
        "opt = torch.optim.SGD(model.parameters(), lr=5.0)\n"
        "for i in range(12):\n"
        "    opt.zero_grad()\n"
        "    torch.nn.functional.cross_entropy(model(images[:256]), labels[:256]).backward()\n"
        "    opt.step()\n"
        "    time.sleep(0.15)\n"
        "grid.live = False\n"
        "torch.save(model.fc1.weight.detach().clone(), 'final.pt')",
    ]
    with notebook_page(browser, jupyter, "weight_grid_live.ipynb", cells) as page:
        root = page.wait_for_selector(".nbvis-weight-grid[data-draws]")
        # Redrawn while the training cell ran (throttled to 4 per second), not only at the end.
        page.wait_for_function("(el) => Number(el.dataset.draws) >= 4", arg=root)
        final = __import__("torch").load(jupyter.root / "final.pt")
        box = page.locator(".nbvis-weight-grid canvas").bounding_box()
        zoom, row, col = 2, 14, 9
        page.mouse.move(box["x"] + (1 + col + 0.5) * zoom, box["y"] + (1 + row + 0.5) * zoom)
        tip = page.locator(".nbvis-tooltip").first
        tip.wait_for(state="visible")
        shown = float(tip.inner_text().split("weight ")[1].split()[0])
        assert shown == pytest.approx(float(final[0, row * 28 + col]), rel=1e-3, abs=1e-6)
