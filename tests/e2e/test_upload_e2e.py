"""Uploading an image file through the views' real file inputs (Playwright ``set_input_files``) in
JupyterLab: the kernel receives it and the view redraws from the new input, over binary buffers
and over the base64 text that Colab needs (forced in the kernel with NBVIS_BASE64=1)."""

from __future__ import annotations

import numpy as np
import pytest
from harness import canvas_stats, open_notebook, run_all, run_cell, screenshot
from PIL import Image

HEATMAP = ".nbvis-activation-heatmap"
GROUPS = ".nbvis-neuron-groups"


def cells(base64: bool) -> list:
    return [
        "import os\n"
        f"os.environ['NBVIS_BASE64'] = {'1' if base64 else '0'!r}  # the views read the transport when they are made\n"
        "import json, numpy as np, nbvis\n"
        "model = nbvis.demo.digits_mlp()\ncnn = nbvis.demo.digits_cnn()\nimages, labels = nbvis.demo.digits()\n"
        "def dump(name, value):\n"
        "    json.dump(value, open(name + '.tmp', 'w'))\n"
        "    os.replace(name + '.tmp', name)\n"
        "# what the kernel gets from load_image() of the same file: the reference for the uploads\n"
        "reference = nbvis.ActivationHeatmap(model, images[0])\nreference.load_image('stroke.png')\n"
        "reference_groups = nbvis.NeuronGroups(cnn, images[0], layer='relu2', k=3, icons=False)\n"
        "reference_groups.load_image('stroke.png')\n"
        "received = []\n"
        "def record(view, name):\n"
        "    def on_msg(_w, content, buffers):  # called after the view's own handler took the input\n"
        "        if isinstance(content, dict) and content.get('type') == 'input':\n"
        "            received.append({'view': name, 'data64': 'data64' in content, 'buffers': len(buffers or [])})\n"
        "            same = np.allclose(view.input.numpy(), (reference if name == 'heatmap' else reference_groups).input.numpy())\n"
        "            dump(name + '.json', {'caption': view.input_caption, 'error': view.error, 'received': received, 'same': bool(same)})\n"
        "    view.on_msg(on_msg)",
        "heatmap = nbvis.ActivationHeatmap(model, images[0], labels=nbvis.demo.DIGIT_LABELS)\n"
        "record(heatmap, 'heatmap')\nheatmap",
        "groups = nbvis.NeuronGroups(cnn, images[0], layer='relu2', k=3, icons=False)\n"
        "record(groups, 'groups')\ngroups",
    ]


def stroke_png(path) -> None:
    """A white vertical stroke on black (a "1"), unlike the dataset's first digit (a "0")."""
    digit = np.zeros((28, 28), np.uint8)
    digit[5:23, 12:16] = 255
    Image.fromarray(digit).save(path)


def pixels(page, selector: str) -> np.ndarray:
    data = page.eval_on_selector(selector, "(c) => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)")
    return np.array(data, np.uint8)


@pytest.mark.parametrize("transport", ["binary", "base64"])
def test_upload_reaches_the_kernel_and_the_view_redraws(jupyter, browser, transport):
    forced = transport == "base64"
    name = jupyter.write_notebook(f"upload_{transport}.ipynb", cells(forced))
    stroke_png(jupyter.root / "stroke.png")
    for f in ("heatmap.json", "groups.json"):
        (jupyter.root / f).unlink(missing_ok=True)
    page = open_notebook(browser, jupyter, name)
    try:
        run_all(page)
        for root, canvas, key in ((HEATMAP, f"{HEATMAP} canvas.nbvis-ah-draw", "heatmap"),
                                  (GROUPS, f"{GROUPS} canvas.nbvis-ng-maps", "groups")):
            page.wait_for_selector(f"{root}[data-draws]")
            before = pixels(page, canvas)
            page.locator(f"{root} input[type=file]").set_input_files(str(jupyter.root / "stroke.png"))
            state = jupyter.wait_for_json(f"{key}.json", lambda v: v["caption"] == "uploaded stroke.png")
            # the kernel decoded exactly what load_image() of the file gives, sent the way the transport says
            assert state["error"] == "" and state["same"], state
            mine = [r for r in state["received"] if r["view"] == key]
            assert mine and mine[-1] == {"view": key, "data64": forced, "buffers": 0 if forced else 1}, state
            # the view redrew from the new input
            page.wait_for_selector(f"{root} :text('uploaded stroke.png')")
            after = pixels(page, canvas)
            assert after.shape == before.shape and (after != before).mean() > 0.05
            assert canvas_stats(page, canvas)["colors"] >= 2  # not blank (the stroke is black and white)
            page.locator(root).scroll_into_view_if_needed()
            screenshot(page.locator(root), f"upload_{key}_{transport}.png")
        # the heatmap's input shows the stroke: bright in the middle columns, dark at the sides
        image = pixels(page, f"{HEATMAP} canvas.nbvis-ah-draw").reshape(-1, 4)
        width = page.eval_on_selector(f"{HEATMAP} canvas.nbvis-ah-draw", "(c) => c.width")
        gray = image[:, 0].reshape(-1, width).astype(int)
        h, w = gray.shape
        assert gray[h // 2, w * 14 // 28] > 200 and gray[h // 2, w * 4 // 28] < 50
        # the building-block view answers a snapshot too: what it drew after the upload
        out = run_cell(page, "image = await groups.snapshot()\nnp.save('groups.npy', image)\nprint(image.shape)")
        assert "Error" not in out, out
        snap = np.load(jupyter.root / "groups.npy")
        box = page.locator(GROUPS).bounding_box()
        assert abs(snap.shape[1] - box["width"]) <= 1 and abs(snap.shape[0] - box["height"]) <= 1
        assert len(np.unique(snap.reshape(-1, 4), axis=0)) > 50
    except Exception:
        screenshot(page, f"upload_{transport}_failure.png")
        raise
    finally:
        page.close()
