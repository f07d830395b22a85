"""Explorer in a real JupyterLab, driven by Chromium: a click on a unit in the heatmap reaches the
weight grid and the optimization view, and a click on a tile in the grid comes back to the heatmap."""

from __future__ import annotations

import time

from harness import assert_no_console_errors, canvas_stats, grid_point, layout_of, notebook_page, screenshot
from test_activation_heatmap_e2e import position_center, unit_center

EXPLORER = ".nbvis-explorer"
HEATMAP = f"{EXPLORER} .nbvis-activation-heatmap"
GRID = f"{EXPLORER} .nbvis-weight-grid"
OPTIMIZER = f"{EXPLORER} .nbvis-optimization-viewer"

# what the kernel knows, written to state.json whenever the heatmap's selection or scan changes
DUMP = (
    "def dump(change=None):\n"
    "    opt, grid = explorer.optimizer, explorer.grid\n"
    "    state = {'selected': explorer.selected, 'grid_layer': grid and grid.layer, 'grid_selected': grid and grid.selected,\n"
    "             'objective': opt and opt.objective_text, 'optimizer_state': opt and opt.state,\n"
    "             'top': explorer.heatmap.top_state, 'error': explorer.error}\n"
    "    json.dump(state, open('state.tmp', 'w'))\n"
    "    os.replace('state.tmp', 'state.json')\n"
    "explorer.heatmap.observe(dump, names=['selected', 'top_state'])\n"
    "explorer"
)

CELLS = [
    "import json, os, nbvis\n"
    "model = nbvis.demo.digits_mlp()\n"
    "images, labels = nbvis.demo.digits()\n"
    "explorer = nbvis.Explorer(model, (images, labels), labels=nbvis.demo.DIGIT_LABELS, steps=100_000)\n" + DUMP,
]

# Where the grid outlines the selected tile: the bounding box of its orange pixels, in canvas pixels.
OUTLINE = """(c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let x0 = Infinity, y0 = Infinity, x1 = -1, y1 = -1;
    for (let i = 0; i < d.length; i += 4) {
        if (d[i] === 255 && d[i + 1] === 153 && d[i + 2] === 0) {
            const p = i / 4, x = p % c.width, y = Math.floor(p / c.width);
            x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
        }
    }
    return x1 < 0 ? null : {x0, y0, x1, y1};
}"""



def tile_center(page, position: int, tile: int = 28):
    """Page coordinates of the middle of the tile at ``position`` on the grid's page (tiles of
    ``tile`` x ``tile`` weights), from the grid's data-layout."""
    canvas = page.locator(f"{GRID} canvas")
    assert layout_of(canvas)["tile"] == [tile, tile]
    return grid_point(canvas, position)


def wait_for_outline(page, position: int, tile: int = 28, timeout: float = 60) -> dict:
    """Wait until the grid outlines exactly the tile at ``position`` (tiles of ``tile`` x ``tile``
    weights); return the outline's box."""
    deadline = time.monotonic() + timeout
    box = None
    while time.monotonic() < deadline:
        layout = layout_of(page.locator(f"{GRID} canvas"))
        assert layout["tile"] == [tile, tile], layout
        cell_w, cell_h = (p * layout["zoom"] for p in layout["pitch"])
        col, row = position % layout["cols"], position // layout["cols"]
        box = page.eval_on_selector(f"{GRID} canvas", OUTLINE)
        if box and box["x0"] // cell_w == box["x1"] // cell_w == col and box["y0"] // cell_h == box["y1"] // cell_h == row:
            return box
        time.sleep(0.1)
    raise AssertionError(f"the grid does not outline tile {position}; orange pixels at {box}")


def bar_center(page, layer: str, unit: int):
    """Page coordinates of a unit's bar in an output panel drawn as bars, from its data-layout."""
    return grid_point(page.locator(f"{HEATMAP} [data-layer='{layer}'] canvas"), unit)


def optimizer_title(page) -> str:
    return page.locator(f"{OPTIMIZER} strong").first.inner_text()


def test_a_click_in_the_heatmap_selects_the_unit_everywhere_and_back(jupyter, browser):
    with notebook_page(browser, jupyter, "explorer_lab.ipynb", CELLS, app="lab", viewport=(1600, 2000), ready=f"{HEATMAP}[data-draws]", fresh=("state.json",)) as page:
        page.wait_for_selector(f"{GRID}[data-draws]")
        assert page.locator(OPTIMIZER).count() == 0  # nothing runs before a unit is chosen
        assert page.eval_on_selector(f"{GRID} canvas", OUTLINE) is None
        assert "Click a unit in the layers" in page.locator(EXPLORER).inner_text()

        # click hidden unit 12 in the heatmap: the grid of fc1 outlines its tile, the optimizer starts on it
        page.mouse.click(*unit_center(page, "sigmoid", 12))
        state = jupyter.wait_for_json("state.json", lambda s: s["selected"] == ["sigmoid", 12] and s["top"] == "done", timeout=60)
        assert state["grid_layer"] == "fc1" and state["grid_selected"] == 12
        assert state["objective"] == "fc1[12]" and state["optimizer_state"] == "running" and not state["error"]
        wait_for_outline(page, 12)
        page.wait_for_selector(f"{OPTIMIZER}[data-state='running']")
        page.wait_for_function(f"() => Number(document.querySelector('{OPTIMIZER}')?.dataset.frames) >= 3")
        assert optimizer_title(page).startswith("fc1[12]")
        assert canvas_stats(page, f"{OPTIMIZER} canvas.nbvis-images")["colors"] > 20
        assert page.locator(f"{HEATMAP} .nbvis-ah-toppanel").get_attribute("data-count") == "9"
        assert "selected: sigmoid[12]" in page.locator(EXPLORER).inner_text()
        time.sleep(1.0)  # let the preferred input form a little for the picture
        screenshot(page.locator(EXPLORER), "explorer_lab.png")

        # click the tile of unit 20 in the grid: the heatmap selects sigmoid[20], a new run replaces the old one
        page.mouse.click(*tile_center(page, 20))
        state = jupyter.wait_for_json("state.json", lambda s: s["selected"] == ["sigmoid", 20] and s["objective"] == "fc1[20]", timeout=30)
        assert state["grid_selected"] == 20 and state["optimizer_state"] == "running"
        wait_for_outline(page, 20)
        page.wait_for_function(f"() => document.querySelector('{OPTIMIZER} strong')?.textContent.startsWith('fc1[20]')")
        assert page.locator(OPTIMIZER).count() == 1  # the old view is gone with its run
        page.wait_for_function(
            f"() => document.querySelector('{HEATMAP} .nbvis-ah-why')?.textContent.includes('sigmoid[20]')"
        )

        # a unit of the output layer: the grid switches to fc2
        page.mouse.click(*bar_center(page, "fc2", 3))
        state = jupyter.wait_for_json("state.json", lambda s: s["selected"] == ["fc2", 3] and s["objective"] == "fc2[3]", timeout=30)
        assert state["grid_layer"] == "fc2" and state["grid_selected"] == 3
        page.wait_for_function(f"() => document.querySelector('{GRID}')?.textContent.includes('fc2 \u00b7 10 units')")
        assert_no_console_errors(page)


CNN_CELLS = [
    "import json, os, nbvis\n"
    "model = nbvis.demo.digits_cnn()\n"
    "images, labels = nbvis.demo.digits()\n"
    "explorer = nbvis.Explorer(model, (images, labels), labels=nbvis.demo.DIGIT_LABELS, selected=('relu2', 5))\n" + DUMP,
]


def test_conv_channels_select_their_filters_in_notebook_7(jupyter, browser):
    with notebook_page(browser, jupyter, "explorer_cnn.ipynb", CNN_CELLS, app="notebook", viewport=(1600, 2000), fresh=("state.json",)) as page:
        # selected from Python before the views existed: they draw it
        page.wait_for_selector(f"{GRID}[data-draws]")
        assert page.locator(GRID).get_attribute("data-tiles") == "16"
        wait_for_outline(page, 5, tile=11)  # conv2's 8 input channels of 3 x 3, side by side: 11 x 11
        # relu2[5] is off everywhere for random starts: its preferred input is searched for through conv2[5]
        page.wait_for_function(f"() => document.querySelector('{OPTIMIZER} strong')?.textContent.startsWith('conv2[5]')")
        # the run streams its inputs (however long its 128 steps take on a busy machine)
        page.wait_for_function(f"() => Number(document.querySelector('{OPTIMIZER}')?.dataset.frames) >= 3")
        assert canvas_stats(page, f"{OPTIMIZER} canvas.nbvis-images")["colors"] > 20
        page.wait_for_function(f"() => document.querySelector('{HEATMAP} .nbvis-ah-toppanel')?.dataset.count === '9'")
        screenshot(page.locator(EXPLORER), "explorer_notebook_cnn.png")

        # click channel 2 of pool1 in the heatmap: conv1's filter 2
        page.mouse.click(*position_center(page, "pool1", 2, 7, 7))
        state = jupyter.wait_for_json("state.json", lambda s: s["selected"] == ["pool1", 2] and s["objective"] == "conv1[2]", timeout=120)
        assert state["grid_layer"] == "conv1" and state["grid_selected"] == 2
        # the browser has it all before the next click: the grid of conv1 with its tile outlined,
        # the optimizer on conv1[2], the top examples of pool1[2]
        page.wait_for_selector(f"{GRID}[data-selected='2'][data-tiles='8']")
        wait_for_outline(page, 2, tile=5)
        page.wait_for_function(f"() => document.querySelector('{OPTIMIZER} strong')?.textContent.startsWith('conv1[2]')")
        page.wait_for_function(f"""() => {{ const t = document.querySelector('{HEATMAP} .nbvis-ah-toppanel');
            return t?.dataset.state === 'done' && t.textContent.includes('top examples for pool1[2]'); }}""")
        # and back: filter 6 in the grid selects pool1's channel 6
        page.mouse.click(*tile_center(page, 6, tile=5))
        state = jupyter.wait_for_json("state.json", lambda s: s["selected"] == ["pool1", 6] and s["objective"] == "conv1[6]", timeout=120)
        assert state["grid_selected"] == 6
        assert_no_console_errors(page)


TEXT_CELLS = [
    "import json, os, torch, nbvis, transformers\n"
    "torch.manual_seed(0)\n"
    "config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,\n"
    "                                 intermediate_size=32, max_position_embeddings=16, num_labels=3)\n"
    "model = transformers.BertForSequenceClassification(config).eval()\n"
    "tokens = torch.randint(1, 50, (24, 8), generator=torch.Generator().manual_seed(1))\n"
    "explorer = nbvis.Explorer(model, tokens, selected=('bert.encoder.layer.0.intermediate.dense', 9))\n" + DUMP,
    "alone = nbvis.ActivationHeatmap(model, tokens[3], dataset=tokens)\nalone",
    # 600 ids of five digits: 24 rows of them, the last cell says how many more there are
    "long = nbvis.ActivationHeatmap(torch.nn.Sequential(torch.nn.Embedding(50000, 4), torch.nn.Linear(4, 2)),\n"
    "                               torch.randint(10000, 50000, (600,), generator=torch.Generator().manual_seed(2)))\nlong",
]


def test_a_text_model_shows_its_layers_weights_and_top_examples_without_a_preferred_input(jupyter, browser):
    """A Hugging Face BERT reads token ids: the Explorer shows the heatmap, the unit's top examples
    and the weights that compute it, and says why there is no preferred input. Token ids are
    categories: the input and each top example are their ids as text (one example a line), not
    colors; a hidden Linear's 16 weights are a row, not a 4 x 4 picture."""
    with notebook_page(browser, jupyter, "explorer_text.ipynb", TEXT_CELLS, app="lab", viewport=(1600, 3000),
                       ready=f"{HEATMAP}[data-draws]", fresh=("state.json",)) as page:
        page.wait_for_selector(f"{GRID}[data-draws]")
        page.wait_for_function(f"() => document.querySelector('{HEATMAP} .nbvis-ah-toppanel')?.dataset.count === '9'")
        text = page.locator(EXPLORER).inner_text()
        assert "no preferred input: this model reads token ids" in text
        assert "selected: bert.encoder.layer.0.intermediate.dense[9]" in text
        assert page.locator(OPTIMIZER).count() == 0
        assert page.locator(GRID).get_attribute("data-selected") == "9"
        assert layout_of(page.locator(f"{GRID} canvas"))["tile"] == [16, 1]
        tokens = page.locator(f"{HEATMAP} [data-layer='input'] .nbvis-ah-stack canvas:not(.nbvis-ah-overlay)").first
        shown = layout_of(tokens)
        assert shown["count"] == 8 and shown["tile"][1] == 16  # eight cells of text
        page.mouse.move(*grid_point(tokens, 3))
        tip = page.wait_for_selector(".nbvis-tooltip:visible", timeout=10000).inner_text()
        assert tip.startswith("token 3\nid ")
        # the heatmap on its own (not in a dashboard) draws them too
        alone = page.locator(".nbvis-activation-heatmap:not(.nbvis-ah-dashboard) [data-layer='input'] .nbvis-ah-stack canvas:not(.nbvis-ah-overlay)").first
        alone.wait_for()
        assert layout_of(alone)["count"] == 8 and alone.bounding_box()["width"] > 100
        long = page.locator(".nbvis-activation-heatmap:not(.nbvis-ah-dashboard) [data-layer='input'] .nbvis-ah-stack canvas:not(.nbvis-ah-overlay)").nth(1)
        long.wait_for()
        cells = layout_of(long)
        assert cells["rows"] == 24 and cells["count"] == 24 * cells["cols"] < 600
        page.mouse.move(*grid_point(long, cells["count"] - 1))
        more = page.wait_for_selector(".nbvis-tooltip:visible", timeout=10000).inner_text()
        assert more == f"{600 - cells['count'] + 1} more tokens"
        page.mouse.move(0, 0)
        screenshot(page.locator(".nbvis-activation-heatmap:not(.nbvis-ah-dashboard)").nth(1), "heatmap_tokens_long.png")
        examples = page.locator(f"{HEATMAP} .nbvis-ah-top.nbvis-ah-tokens figure")
        assert examples.count() == 9
        assert examples.first.locator("figcaption").inner_text().startswith("#")
        screenshot(page.locator(EXPLORER), "explorer_text.png")
        assert_no_console_errors(page)
