"""OptimizationViewer in a real JupyterLab and Notebook 7, driven by Chromium: frames arrive and change,
Stop stops, Resume resumes, the preset menu reaches Python."""

from __future__ import annotations

import time

import pytest
from harness import CHECKSUM, assert_no_console_errors, bar_point, canvas_stats, notebook_page, screenshot

VIEW = ".nbvis-optimization-viewer"
IMAGES = f"{VIEW} canvas.nbvis-images"

SETUP = [
    "import nbvis\nmodel = nbvis.demo.digits_cnn()",
    "viewer = nbvis.OptimizationViewer(model, objective=('conv2', 5), input_shape=(1, 28, 28), steps=1_000_000,\n"
    "                                  starts=3, fps=8)\n"
    "def record(change):\n"
    "    open(change['name'] + '.txt', 'w').write(str(change['new']))\n"
    "viewer.observe(record, names=['state', 'preset'])\n"
    "viewer",
]

def frames(page) -> int:
    return int(page.get_attribute(VIEW, "data-frames") or 0)


def shown_step(page) -> int:
    return int(page.get_attribute(VIEW, "data-step") or 0)


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_frames_arrive_change_and_stop_stops(jupyter, browser, app):
    with notebook_page(browser, jupyter, f"optimization_viewer_{app}.ipynb", SETUP, app=app, ready=f"{VIEW}[data-state='running']") as page:
        # frames keep arriving while the run goes on in the kernel, and the images change
        page.wait_for_function(f"() => Number(document.querySelector('{VIEW}')?.dataset.frames) >= 3")
        first = page.eval_on_selector(IMAGES, CHECKSUM)
        step_then, frames_then = shown_step(page), frames(page)
        page.wait_for_function(
            f"(n) => Number(document.querySelector('{VIEW}')?.dataset.frames) >= n + 3", arg=frames_then
        )
        assert page.eval_on_selector(IMAGES, CHECKSUM) != first
        assert shown_step(page) > step_then
        stats = canvas_stats(page, IMAGES)
        assert stats["width"] == 3 * 30 * 5 and stats["height"] == 30 * 5  # 3 starts of 28 px + border, zoom 5
        assert stats["colors"] > 20, stats
        curve = canvas_stats(page, f"{VIEW} canvas.nbvis-curve")
        assert curve["colors"] >= 4  # three colored lines and the frame
        # a slider being dragged stays where the pointer put it while frames arrive
        slider = page.locator(f"{VIEW} input[type=range][data-name='decay']")
        slider.evaluate("(s) => { s.value = '0.4'; s.dispatchEvent(new Event('input')); }")
        # the tooltip over a start follows its live objective
        box = page.locator(IMAGES).bounding_box()
        page.mouse.move(box["x"] + 20, box["y"] + 20)
        tip = page.locator(".nbvis-tooltip").first
        tip.wait_for(state="visible")
        hovered = tip.inner_text()
        assert "start 1" in hovered and "objective" in hovered
        page.wait_for_function(
            f"(n) => Number(document.querySelector('{VIEW}')?.dataset.frames) >= n + 3", arg=frames(page)
        )
        assert float(slider.input_value()) == pytest.approx(0.4)
        assert tip.inner_text() != hovered
        page.mouse.move(0, 0)
        time.sleep(1.5)  # let the images form a little for the screenshot
        screenshot(page.locator(VIEW), f"optimization_viewer_{app}.png")

        # Stop: the kernel's run ends, and nothing more arrives
        page.locator(f"{VIEW} button", has_text="Stop").click()
        assert jupyter.wait_for_file("state.txt", content="stopped") == "stopped"
        page.wait_for_selector(f"{VIEW}[data-state='stopped']")
        stopped_step, stopped_frames = shown_step(page), frames(page)
        stopped_image = page.eval_on_selector(IMAGES, CHECKSUM)
        time.sleep(1.0)
        assert shown_step(page) == stopped_step and frames(page) == stopped_frames
        assert page.eval_on_selector(IMAGES, CHECKSUM) == stopped_image

        # Resume goes on from there
        page.locator(f"{VIEW} button", has_text="Resume").click()
        assert jupyter.wait_for_file("state.txt", content="running") == "running"
        page.wait_for_function(
            f"(n) => Number(document.querySelector('{VIEW}')?.dataset.step) > n", arg=stopped_step
        )
        page.locator(f"{VIEW} button", has_text="Stop").click()
        assert jupyter.wait_for_file("state.txt", content="stopped") == "stopped"

        # the preset menu reaches Python
        page.locator(f"{VIEW} select").select_option("yosinski2015-1")
        assert jupyter.wait_for_file("preset.txt", content="yosinski2015-1") == "yosinski2015-1"
        assert_no_console_errors(page)


def test_vector_inputs_are_drawn_as_bars_with_feature_names(jupyter, browser):
    cells = [
        "import torch, nbvis\ntorch.manual_seed(0)\n"
        "model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))\n"
        "viewer = nbvis.OptimizationViewer(model, objective=('2', 0), input_shape=(6,), steps=60, starts=2,\n"
        "                                  feature_names=['age', 'sex', 'bmi', 'bp', 's1', 's2'])\n"
        "viewer",
        "viewer.wait()\ntorch.save(viewer.inputs, 'bars.pt')",
    ]
    with notebook_page(browser, jupyter, "optimization_viewer_bars.ipynb", cells, app="notebook", ready=f"{VIEW}[data-state='done']") as page:  # one document per page
        final = __import__("torch").load(jupyter.root / "bars.pt")
        stats = canvas_stats(page, IMAGES)
        assert stats["colors"] >= 3  # red and blue bars on a clear background
        # hover the third bar of the first start: its feature name and value
        page.mouse.move(*bar_point(page.locator(IMAGES), 0, 2))
        tip = page.locator(".nbvis-tooltip").first
        tip.wait_for(state="visible")
        text = tip.inner_text()
        assert "start 1" in text and "bmi:" in text
        assert float(text.split("bmi: ")[1].split()[0]) == pytest.approx(float(final[0, 2]), rel=1e-3, abs=1e-4)
        screenshot(page.locator(VIEW), "optimization_viewer_bars.png")


def test_class_images_in_the_data_range_with_quality_row_and_new_seeds(jupyter, browser):
    """The digits CNN's class 3 with the dataset known: the range and the hovered pixel's value in
    data units are shown, the quality row appears when the run ends, and Start draws a new seed."""
    cells = [
        "import torch, nbvis\nmodel = nbvis.demo.digits_cnn()\nimages, labels = nbvis.demo.digits()\n"
        "viewer = nbvis.OptimizationViewer(model, objective=3, input_shape=(1, 28, 28), starts=4, steps=200,\n"
        "                                  dataset=(images, labels), seed=3)\n"
        "def record(change):\n"
        "    open(change['name'] + '.txt', 'w').write(str(change['new']))\n"
        "viewer.observe(record, names=['state', 'seed'])\n"
        "viewer",
        "viewer.wait()\ntorch.save(viewer.inputs, 'classes.pt')",
    ]
    with notebook_page(browser, jupyter, "optimization_viewer_classes.ipynb", cells, app="notebook", ready=f"{VIEW}[data-state='done'][data-quality='4']") as page:
        final = __import__("torch").load(jupyter.root / "classes.pt")
        assert float(final.min()) >= 0.0 and float(final.max()) <= 1.0
        note = page.locator(f"{VIEW} .nbvis-range").inner_text()
        assert "data range 0" in note and "1" in note
        table = page.locator(f"{VIEW} table.nbvis-quality").inner_text()
        assert "P(class)" in table and "nearest example" in table and "start 4" in table
        # hover pixel (14, 9) of start 2: its value in data units
        stats = canvas_stats(page, IMAGES)
        box = page.locator(IMAGES).bounding_box()
        zoom, cell = 5, 30
        y, x = 14, 9
        cx, cy = (cell + 1 + x) * zoom + zoom / 2, (1 + y) * zoom + zoom / 2
        page.mouse.move(box["x"] + cx * box["width"] / stats["width"], box["y"] + cy * box["height"] / stats["height"])
        tip = page.locator(".nbvis-tooltip").first
        tip.wait_for(state="visible")
        text = tip.inner_text()
        assert "start 2" in text and f"pixel ({y}, {x}):" in text, text
        shown = float(text.split(f"pixel ({y}, {x}): ")[1].split()[0])
        assert shown == pytest.approx(float(final[1, 0, y, x]), abs=1 / 255 + 1e-3)
        page.mouse.move(0, 0)
        screenshot(page.locator(VIEW), "optimization_viewer_classes.png")
        # Start draws a new seed, shown in the seed box
        page.locator(f"{VIEW} button", has_text="Start").click()
        deadline = time.monotonic() + 30
        seed = "3"
        while seed == "3" and time.monotonic() < deadline:
            time.sleep(0.2)
            seed = (jupyter.root / "seed.txt").read_text() if (jupyter.root / "seed.txt").exists() else "3"
        assert seed != "3"
        page.wait_for_function(
            f"(s) => [...document.querySelectorAll('{VIEW} input[type=number]')].some((i) => i.value === s)", arg=seed
        )
        assert_no_console_errors(page)


def test_huge_images_are_shown_averaged_down_and_hovered_in_input_pixels(jupyter, browser):
    """4 starts of 3 x 1024 x 1024 (12 MB of frames, over one message): drawn averaged 2 x 2, the
    note says so, and a hovered pixel names its block of input pixels and their mean in data units;
    ``inputs`` stay whole in Python."""
    from harness import grid_point

    cells = [
        "import torch, nbvis\nfrom torch import nn\ntorch.manual_seed(0)\n"
        "model = nn.Sequential(nn.Conv2d(3, 4, 64, stride=64), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 3)).eval()\n"
        "viewer = nbvis.OptimizationViewer(model, objective=('3', 1), input_shape=(3, 1024, 1024), starts=4, steps=3,\n"
        "                                  value_range=(0.0, 1.0), seed=1)\n"
        "viewer",
        "viewer.wait()\ntorch.save(viewer.inputs, 'huge.pt')",
    ]
    with notebook_page(browser, jupyter, "optimization_viewer_huge.ipynb", cells, ready=f"{VIEW}[data-state='done']") as page:
        deadline = time.monotonic() + 30
        while not (jupyter.root / "huge.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        final = __import__("torch").load(jupyter.root / "huge.pt")
        assert tuple(final.shape) == (4, 3, 1024, 1024)
        note = page.locator(f"{VIEW} .nbvis-range").inner_text()
        assert "shown averaged 2\u00d72 to fit the view" in note, note
        layout = __import__("json").loads(page.locator(IMAGES).get_attribute("data-layout"))
        assert layout["tile"] == [512, 512]
        page.mouse.move(*grid_point(page.locator(IMAGES), 1, 100, 150))
        tip = page.locator(".nbvis-tooltip").first
        tip.wait_for(state="visible")
        text = tip.inner_text()
        line = next(line for line in text.splitlines() if line.startswith("pixels rows "))
        place, values = line.split(": ")
        rows, cols = place.removeprefix("pixels ").removesuffix(" (mean of 2\u00d72)").split(", ")
        (top, bottom), (left, right) = (tuple(int(v) for v in part.split(" ")[1].split("\u2013")) for part in (rows, cols))
        assert "start 2" in text and bottom == top + 1 and right == left + 1 and abs(top - 200) <= 4 and abs(left - 300) <= 4, text
        shown = [float(v) for v in values.split(", ")]
        means = final[1, :, top:bottom + 1, left:right + 1].mean(dim=(1, 2)).tolist()
        assert shown == pytest.approx(means, abs=1 / 255 + 2e-3), (shown, means)
        page.mouse.move(0, 0)
        screenshot(page.locator(VIEW), "optimization_viewer_huge.png")
