"""The why map of a conv channel in a real JupyterLab: by default its positions are weighted by the
channel's own activation on this input (a map that sits on the digit); the menu switches to the
summed map, which differs and spreads over the whole input."""

from __future__ import annotations

import json

import numpy as np
from harness import CHECKSUM, grid_point, open_notebook, run_all, screenshot

ROOT = ".nbvis-activation-heatmap"

CELLS = [
    "import json, os, nbvis\n"
    "cnn = nbvis.demo.digits_cnn()\n"
    "images, labels = nbvis.demo.digits()\n"
    "view = nbvis.ActivationHeatmap(cnn, images[3], dataset=(images, labels))\n"
    "def dump(change=None):\n"
    "    grad = view.gradient_map\n"
    "    json.dump({'reduce': view.reduce, 'selected': view.selected, 'caption': view.grad_caption,\n"
    "               'grad': None if grad is None else grad.reshape(-1).tolist(),\n"
    "               'input': view.input.reshape(-1).tolist()}, open('why.tmp', 'w'))\n"
    "    os.replace('why.tmp', 'why.json')\n"
    "view.observe(dump, names=['_grad', 'reduce', 'selected'])\n"
    "view",
]

def wait_for_drawn(page, state) -> None:
    """Wait until the view has drawn the map the kernel wrote in ``state``: the scale it drew in
    (``data-grad-max``, the largest absolute value of the map it received) is that map's. A caption
    or a trait that changed says nothing of the canvas: it may still show the map before."""
    largest = float(np.abs(np.array(state["grad"])).max())
    page.wait_for_function(
        "([sel, m]) => Math.abs(Number(document.querySelector(sel)?.dataset.gradMax) - m) <= 1e-6 * m",
        arg=[ROOT, largest],
    )


def on_ink(state) -> float:
    grad = np.abs(np.array(state["grad"]))
    ink = np.array(state["input"]) > 0.2
    return float(grad[ink].sum() / grad.sum())


def test_weighted_why_map_differs_from_the_summed_one_and_is_localized(jupyter, browser):
    name = jupyter.write_notebook("heatmap_why.ipynb", CELLS)
    page = open_notebook(browser, jupyter, name)
    try:
        run_all(page)
        page.wait_for_selector(f"{ROOT}[data-draws]")
        x, y = grid_point(page.locator(f"{ROOT} [data-layer='conv2'] canvas").first, 5)
        page.mouse.click(x, y)
        weighted = jupyter.wait_for_json(
            "why.json", lambda v: v["selected"] == ["conv2", 5] and v["grad"] is not None and "weighted" in v["caption"])
        assert weighted["reduce"] == "weighted" and "weighted by its activation" in weighted["caption"]
        why = page.locator(f"{ROOT} canvas.nbvis-ah-grad")
        caption = page.locator(f"{ROOT} .nbvis-ah-why > span.nbvis-muted")
        page.wait_for_function(
            "(sel) => document.querySelector(sel).textContent.includes('(positions weighted by its activation)')",
            arg=f"{ROOT} .nbvis-ah-why > span.nbvis-muted",
        )
        wait_for_drawn(page, weighted)
        first = why.evaluate(CHECKSUM)
        screenshot(page.locator(f"{ROOT} .nbvis-ah-why"), "heatmap_why_weighted.png")

        menu = page.locator(f"{ROOT} select.nbvis-ah-reduce")
        assert menu.is_visible()
        menu.select_option("sum")
        summed = jupyter.wait_for_json("why.json", lambda v: v["reduce"] == "sum" and "summed" in v["caption"])
        page.wait_for_function(
            "(sel) => document.querySelector(sel).textContent.includes('(summed over positions)')",
            arg=f"{ROOT} .nbvis-ah-why > span.nbvis-muted",
        )
        assert "conv2[5]" in caption.inner_text()
        wait_for_drawn(page, summed)
        screenshot(page.locator(f"{ROOT} .nbvis-ah-why"), "heatmap_why_summed.png")
        assert why.evaluate(CHECKSUM) != first  # the drawn map changed
        a, b = np.array(weighted["grad"]), np.array(summed["grad"])
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cosine < 0.95, cosine
        assert on_ink(weighted) > 0.75 and on_ink(weighted) > on_ink(summed) + 0.15, (on_ink(weighted), on_ink(summed))

        # a dense unit has no positions: the menu is hidden
        page.mouse.click(*grid_point(page.locator(f"{ROOT} [data-layer='fc'] canvas").first, 2))
        jupyter.wait_for_json("why.json", lambda v: v["selected"] == ["fc", 2])
        page.wait_for_function("(sel) => document.querySelector(sel).style.display === 'none'", arg=f"{ROOT} select.nbvis-ah-reduce")
    finally:
        page.close()
