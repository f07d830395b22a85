"""Number boxes and sliders inside a notebook: Enter applies (clamped, shown), arrow keys move
sliders, typing a value and clicking Run runs once. JupyterLab and Notebook 7 read keystrokes on
the document, so these fail unless the controls keep their keys to themselves."""

from __future__ import annotations

import time

import pytest
from harness import notebook_page, screenshot

FI = ".nbvis-feature-importance"
OPT = ".nbvis-optimization-viewer"
GRID = ".nbvis-weight-grid"

CELLS = [
    "import json, torch, nbvis\n"
    "torch.manual_seed(0)\n"
    "X = torch.randn(200, 6)\n"
    "y = 2 * X[:, 0] + X[:, 1]\n"
    "model = torch.nn.Linear(6, 1)\n"
    "chart = nbvis.FeatureImportance(model, X, y, n_repeats=2)\n"
    "runs = []\n"
    "def record(change):\n"
    "    if change['name'] == 'state' and change['new'] == 'running':\n"
    "        runs.append(chart.n_repeats)\n"
    "    json.dump({'runs': runs, 'n_repeats': chart.n_repeats, 'top_k': chart.top_k, 'state': chart.state},\n"
    "              open('chart.json', 'w'))\n"
    "chart.observe(record, names=['state', 'n_repeats', 'top_k'])\n"
    "chart",
    "cnn = nbvis.demo.digits_cnn()\n"
    "viewer = nbvis.OptimizationViewer(cnn, objective=('conv2', 5), input_shape=(1, 28, 28), steps=4, starts=1)\n"
    "viewer.observe(lambda c: json.dump({'jitter': c['new'].get('jitter'), 'steps': viewer.steps},\n"
    "               open('viewer.json', 'w')), names=['regularizers'])\n"
    "viewer.observe(lambda c: json.dump({'jitter': viewer.regularizers.get('jitter'), 'steps': c['new']},\n"
    "               open('viewer.json', 'w')), names=['steps'])\n"
    "viewer",
    "grid = nbvis.WeightGrid(nbvis.demo.digits_mlp(), 'fc1', page_size=25)\n"
    "grid.observe(lambda c: open('top_k.txt', 'w').write(str(c['new'])), names=['top_k'])\n"
    "grid",
]


def box(page, root: str, label: str):
    return page.locator(f"{root} label", has_text=label).locator("input").first


def type_and(page, control, text: str, key: str | None = "Enter"):
    control.click()
    control.press("Control+a")
    page.keyboard.type(text)
    if key:
        page.keyboard.press(key)


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_enter_applies_clamped_values_and_arrow_keys_move_sliders(jupyter, browser, app):
    with notebook_page(browser, jupyter, f"keyboard_{app}.ipynb", CELLS, app=app, ready=f"{FI}[data-state='done']") as page:
        cells_before = page.locator(".jp-Notebook .jp-Cell").count()

        # Enter applies the typed value (the box keeps focus: no blur involved)
        repeats = box(page, FI, "repeats")
        type_and(page, repeats, "5")
        state = jupyter.wait_for_json("chart.json", lambda v: v["n_repeats"] == 5 and v["state"] == "done")
        assert repeats.evaluate("(b) => document.activeElement === b")
        # out of range: clamped to the smallest value, and the box shows what was applied
        type_and(page, repeats, "-3")
        jupyter.wait_for_json("chart.json", lambda v: v["n_repeats"] == 1 and v["state"] == "done")
        assert repeats.input_value() == "1"
        top_k = box(page, FI, "top k")
        type_and(page, top_k, "5000")
        jupyter.wait_for_json("chart.json", lambda v: v["top_k"] == 6)  # clamped to the 6 features
        assert top_k.input_value() == "6"
        # the notebook did not take the keys: no cell was added, changed or run by them
        assert page.locator(".jp-Notebook .jp-Cell").count() == cells_before

        # typing a new repeats value and clicking Run runs once, with that value
        runs_before = len(jupyter.wait_for_json("chart.json", lambda v: True)["runs"])
        type_and(page, repeats, "3", key=None)
        page.locator(f"{FI} button", has_text="Run").click()
        state = jupyter.wait_for_json("chart.json", lambda v: v["n_repeats"] == 3 and v["state"] == "done")
        time.sleep(1.5)  # a second run, if one were sent, would have started by now
        state = jupyter.wait_for_json("chart.json", lambda v: v["state"] == "done")
        assert state["runs"][runs_before:] == [3], state

        # Enter in the optimizer's steps box; an arrow key on a regularizer slider
        steps = box(page, OPT, "steps")
        type_and(page, steps, "7")
        jupyter.wait_for_json("viewer.json", lambda v: v["steps"] == 7)
        jitter = page.locator(f"{OPT} input[type=range][data-name='jitter']")
        before = float(jitter.input_value())
        jitter.focus()
        page.keyboard.press("ArrowUp")  # the notebook's own shortcut for "select the cell above"
        page.keyboard.press("ArrowRight")
        jupyter.wait_for_json("viewer.json", lambda v: v["jitter"] == before + 2)
        assert float(jitter.input_value()) == before + 2

        # Enter in the grid's top-k box
        grid_top = box(page, GRID, "top k")
        type_and(page, grid_top, "7")
        jupyter.wait_for_file("top_k.txt", content="7")
        page.wait_for_selector(f"{GRID}[data-tiles='7']")
        type_and(page, grid_top, "999")
        jupyter.wait_for_file("top_k.txt", content="100")  # clamped to the 100 units
        assert grid_top.input_value() == "100"
        assert page.locator(".jp-Notebook .jp-Cell").count() == cells_before
        screenshot(page.locator(OPT).first, f"keyboard_optimizer_{app}.png")
