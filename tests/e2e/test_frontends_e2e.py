"""More front ends: Voila (a third widget manager, with a kernel), nbconvert's executed HTML (the
embedded state, no kernel), and snapshots read back from JupyterLab."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import nbformat
import numpy as np
from harness import ARTIFACTS, DONE, block_network, canvas_stats, notebook_page, screenshot


VIEWS = [
    "import json, numpy as np, nbvis\n"
    "model = nbvis.demo.digits_mlp()\ncnn = nbvis.demo.digits_cnn()\nimages, labels = nbvis.demo.digits()",
    "grid = nbvis.WeightGrid(model, 'fc1', page_size=16)\n"
    "grid.observe(lambda c: open('selected.txt', 'w').write(str(c['new'])), names=['selected'])\n"
    "grid",
    "heatmap = nbvis.ActivationHeatmap(model, images[0], labels=nbvis.demo.DIGIT_LABELS)\nheatmap",
    "viewer = nbvis.OptimizationViewer(cnn, ('conv2', 5), input_shape=(1, 28, 28), steps=8, starts=2)\n"
    "viewer.start()\nviewer",
    "chart = nbvis.FeatureImportance(model, images[:100], labels[:100], scoring='accuracy', n_repeats=2, "
    "feature_groups=7, top_k=5)\nchart",
    "explorer = nbvis.Explorer(model, (images, labels), steps=8, page_size=16)\nexplorer",
    "viewer.wait(); chart.wait()",
]


def assert_every_view_drawn(page) -> None:
    grid = page.wait_for_selector(".nbvis-weight-grid[data-draws]")
    assert grid.get_attribute("data-tiles") == "16"
    assert canvas_stats(page, ".nbvis-weight-grid canvas")["colors"] > 50
    page.wait_for_selector(".nbvis-activation-heatmap[data-draws]")
    assert canvas_stats(page, ".nbvis-activation-heatmap [data-layer='sigmoid'] canvas")["colors"] > 20
    page.wait_for_selector(".nbvis-optimization-viewer[data-step='8']", timeout=60_000)
    page.wait_for_selector(".nbvis-feature-importance[data-bars='6']", timeout=60_000)
    assert page.locator(".nbvis-explorer .nbvis-activation-heatmap").count() == 1


def test_voila_renders_every_view_and_clicks_reach_the_kernel(jupyter, browser):
    name = jupyter.write_notebook("voila_views.ipynb", VIEWS)
    (jupyter.root / "selected.txt").unlink(missing_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(90_000)
    try:
        page.goto(f"{jupyter.url}/voila/render/{name}?token={jupyter.token}")
        page.wait_for_selector(f"text={DONE}", timeout=180_000)
        assert_every_view_drawn(page)
        # a click in the view reaches the kernel: the tile of unit 5 selects it in Python
        cols = int(page.get_attribute(".nbvis-weight-grid", "data-cols"))
        stats = canvas_stats(page, ".nbvis-weight-grid canvas")
        zoom = stats["width"] // (cols * 30)
        box = page.locator(".nbvis-weight-grid canvas").first.bounding_box()
        page.mouse.click(box["x"] + ((5 % cols) * 30 + 15) * zoom, box["y"] + ((5 // cols) * 30 + 15) * zoom)
        assert jupyter.wait_for_file("selected.txt", content="5") == "5"
        screenshot(page, "voila_views.png")
    except Exception:
        screenshot(page, "voila_views_failure.png")
        raise
    finally:
        page.close()


def test_nbconvert_html_draws_from_the_embedded_state(browser, tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in VIEWS]
    nbformat.write(notebook, tmp_path / "views.ipynb")
    # python -m nbvis.offline_html: nbconvert's executed HTML, with require.js, the manager and
    # anywidget's front end written beside it (no CDN)
    subprocess.run(
        [sys.executable, "-m", "nbvis.offline_html", "views.ipynb", "--output-dir", "out"],
        cwd=tmp_path, check=True, capture_output=True, timeout=300,
    )
    folder = tmp_path / "moved"
    shutil.move(tmp_path / "out", folder)  # the files work together wherever they go
    assert sorted(p.name for p in folder.iterdir()) == ["anywidget.js", "embed-amd.js", "require.js", "views.html"]
    html = (folder / "views.html").read_text()
    assert "application/vnd.jupyter.widget-state+json" in html
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    try:
        blocked = block_network(page)
        page.goto((folder / "views.html").as_uri())
        assert_every_view_drawn(page)
        # no kernel behind the page: what needs one is disabled and says so, as in to_html()
        for root in (".nbvis-weight-grid", ".nbvis-activation-heatmap", ".nbvis-optimization-viewer", ".nbvis-feature-importance"):
            view = page.locator(root).first
            assert view.get_attribute("data-static") == "1", root
            assert "no kernel" in view.locator(".nbvis-footer").first.inner_text(), root
        assert page.locator(".nbvis-weight-grid select").first.is_disabled()
        assert page.locator(".nbvis-optimization-viewer button", has_text="Start").first.is_disabled()
        assert page.locator(".nbvis-activation-heatmap input[type=file]").first.is_disabled()
        assert page.locator(".nbvis-feature-importance input, .nbvis-feature-importance select").first.is_disabled()
        assert not page.locator(".nbvis-weight-grid .nbvis-download").first.is_disabled()  # the PNG needs no kernel
        assert all("mathjax" in url for url in blocked), blocked  # nothing the views need left the machine
        screenshot(page, "nbconvert_views.png")
        # without anywidget's front end beside it the manager asks jsDelivr, and offline each view
        # is an error line (what the README tells a user of plain nbconvert to expect)
        (folder / "anywidget.js").unlink()
        blocked.clear()
        page.reload()
        page.wait_for_selector(".jupyter-widgets:has-text('javascript error')")
        assert page.locator(".nbvis-weight-grid").count() == 0
        assert any(url.startswith("https://cdn.jsdelivr.net/npm/anywidget@") for url in blocked), blocked
    finally:
        page.close()


def test_snapshot_reads_the_drawn_image_back(jupyter, browser):
    cells = VIEWS[:3] + [
        "image = await grid.snapshot()\n"
        "np.save('grid.npy', image)",
        "picture = await heatmap.snapshot()\n"
        "np.save('heatmap.npy', picture)",
        "json.dump({'base64': nbvis._arrays.base64_transport(), 'tiles': type(grid._tiles['data']).__name__}, "
        "open('transport.json', 'w'))",
        "explorer = nbvis.Explorer(model, (images, labels), steps=8, page_size=16)\n"
        "explorer.selected = ('fc1', 3)\nexplorer",
        "explorer.optimizer.wait()\n"
        "whole = await explorer.snapshot()\n"
        "np.save('explorer.npy', whole)",
    ]
    with notebook_page(browser, jupyter, "snapshot.ipynb", cells) as page:
        root = page.locator(".nbvis-weight-grid").first
        image = np.load(jupyter.root / "grid.npy")
        assert image.dtype == np.uint8 and image.shape[2] == 4
        box = root.bounding_box()
        assert abs(image.shape[1] - box["width"]) <= 1 and abs(image.shape[0] - box["height"]) <= 1
        # the tiles are in it at their place: as many colours as the canvas itself has
        canvas = page.locator(".nbvis-weight-grid canvas").first.bounding_box()
        x0, y0 = round(canvas["x"] - box["x"]), round(canvas["y"] - box["y"])
        crop = image[y0 + 4:y0 + int(canvas["height"]) - 4, x0 + 4:x0 + int(canvas["width"]) - 4, :3]
        assert len(np.unique(crop.reshape(-1, 3), axis=0)) > 50
        heatmap = np.load(jupyter.root / "heatmap.npy")
        assert heatmap.shape[0] > 100 and len(np.unique(heatmap.reshape(-1, 4), axis=0)) > 50
        # the Explorer's snapshot is the whole dashboard: the heatmap and the side column, each at its place
        whole = np.load(jupyter.root / "explorer.npy")
        box = page.locator(".nbvis-explorer").first.bounding_box()
        assert abs(whole.shape[1] - box["width"]) <= 1 and abs(whole.shape[0] - box["height"]) <= 1
        for part in (".nbvis-explorer .nbvis-weight-grid canvas", ".nbvis-explorer .nbvis-optimization-viewer canvas",
                     ".nbvis-explorer .nbvis-activation-heatmap [data-layer='sigmoid'] canvas"):
            canvas = page.locator(part).first.bounding_box()
            x0, y0 = round(canvas["x"] - box["x"]), round(canvas["y"] - box["y"])
            crop = whole[y0 + 2:y0 + int(canvas["height"]) - 2, x0 + 2:x0 + int(canvas["width"]) - 2, :3]
            assert crop.size and len(np.unique(crop.reshape(-1, 3), axis=0)) > 10, part
        from PIL import Image

        Image.fromarray(whole).save(ARTIFACTS / "snapshot_explorer.png")  # to look at
        # the kernel used the transport this run asked for (--nbvis-base64: text, as in Colab)
        forced = os.environ.get("NBVIS_BASE64") == "1"
        transport = json.loads((jupyter.root / "transport.json").read_text())
        assert transport == {"base64": forced, "tiles": "str" if forced else "bytes"}

