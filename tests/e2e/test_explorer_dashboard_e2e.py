"""The Explorer as one screen in a real JupyterLab (1400 x 900 window): its size measured in the
page, nothing sticking out of its column; a click on one position of a channel map selects that
position; the keyboard moves the selection while the Explorer has the focus."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from harness import grid_point, layout_of, notebook_page, screenshot
from test_activation_heatmap_e2e import unit_center
from test_explorer_e2e import DUMP, EXPLORER, HEATMAP, OPTIMIZER

GRID = f"{EXPLORER} .nbvis-weight-grid"
WIDTH, HEIGHT = 1400, 900

MODELS = {
    "cnn": ("nbvis.demo.digits_cnn()", ("relu2", 5)),
    "mlp": ("nbvis.demo.digits_mlp()", ("sigmoid", 12)),
}


def cells(model: str, selected) -> list[str]:
    return [
        "import json, os, nbvis\n"
        f"model = {model}\n"
        "images, labels = nbvis.demo.digits()\n"
        f"explorer = nbvis.Explorer(model, (images, labels), labels=nbvis.demo.DIGIT_LABELS, selected={selected!r})\n" + DUMP,
    ]


# Everything drawn inside the Explorer that sticks out of the Explorer, or out of the column (the
# heatmap's dashboard columns, the side column of the optimizer and the grid) that holds it; and
# every box whose content is wider than the box (clipped or scrolled sideways).
MEASURE = """(root) => {
    const box = root.getBoundingClientRect();
    const columns = [...root.querySelectorAll('.nbvis-ah-col, .nbvis-explorer-side')];
    const name = (el) => el.tagName.toLowerCase() + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
    const out = [], clipped = [];
    for (const el of root.querySelectorAll('*')) {
        const r = el.getBoundingClientRect();
        if (r.width === 0 || r.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
        const folded = el.closest('details:not([open])');  // laid out but not drawn (content-visibility)
        if (folded && folded !== el && !el.closest('summary')) continue;
        if (r.right > box.right + 1 || r.left < box.left - 1 || r.bottom > box.bottom + 1) out.push([name(el), 'explorer', Math.round(r.right - box.right)]);
        const column = columns.find((c) => c !== el && c.contains(el));
        if (column) {
            const c = column.getBoundingClientRect();
            if (r.right > c.right + 1 || r.left < c.left - 1) out.push([name(el), name(column), Math.round(r.right - c.right)]);
        }
        const style = getComputedStyle(el);
        const control = ['INPUT', 'SELECT', 'TEXTAREA', 'BUTTON'].includes(el.tagName);  // their inner scroll is their own
        if (!control && el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0 && style.overflowX !== 'visible') clipped.push([name(el), el.scrollWidth, el.clientWidth]);
    }
    const output = root.closest('.jp-OutputArea-output');
    return {width: box.width, height: box.height, out: out.slice(0, 12), clipped: clipped.slice(0, 12),
            output: output && {scroll: output.scrollWidth, client: output.clientWidth},
            columns: columns.map((c) => { const r = c.getBoundingClientRect(); return [name(c), Math.round(r.left - box.left), Math.round(r.top - box.top), Math.round(r.width), Math.round(r.height)]; })};
}"""


def collapse_left_sidebar(page) -> None:
    """Fold JupyterLab's file browser, as a user who wants the notebook's width does."""
    tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if tab.count():
        tab.first.click()
        page.wait_for_function("() => !document.querySelector('.jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current')")


@contextlib.contextmanager
def explorer_page(jupyter, browser, kind: str, viewport=(WIDTH, HEIGHT), collapse=True):
    """A page on an Explorer of the ``kind`` model, drawn, its top examples found, frames coming."""
    model, selected = MODELS[kind]
    with notebook_page(browser, jupyter, f"explorer_dashboard_{kind}.ipynb", cells(model, selected), viewport=viewport,
                       fresh=("state.json",), opened=collapse_left_sidebar if collapse else None,
                       ready=f"{HEATMAP}[data-draws]") as page:
        page.wait_for_selector(f"{GRID}[data-draws]")
        page.wait_for_selector(f"{HEATMAP} .nbvis-ah-toppanel[data-state='done'][data-maps]", timeout=60_000)
        page.wait_for_function(f"() => Number(document.querySelector('{OPTIMIZER}')?.dataset.frames) >= 3")
        yield page


def assert_fits(page, kind: str, label: str) -> dict:
    size = page.eval_on_selector(EXPLORER, MEASURE)
    print(kind, label, json.dumps(size))
    assert size["width"] <= WIDTH and size["height"] <= HEIGHT, size
    assert not size["out"], size["out"]
    assert not size["clipped"], size["clipped"]
    assert size["output"]["scroll"] <= size["output"]["client"] + 1, size["output"]
    return size


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_the_explorer_fits_one_screen(jupyter, browser, kind):
    with explorer_page(jupyter, browser, kind) as page:
        # the preferred inputs' quality row comes when their run ends, in the place kept for it
        box = page.locator(f"{OPTIMIZER} .nbvis-quality-box").bounding_box()
        page.wait_for_selector(f"{OPTIMIZER}[data-state='done'][data-quality='3']", timeout=120_000)
        quality = page.locator(f"{OPTIMIZER} table.nbvis-quality")
        assert quality.is_visible()
        text = quality.inner_text()
        assert "start 3" in text and "nearest example" in text and "high freq." in text, text
        assert "objective" not in text  # the curve's legend has it
        kept = page.locator(f"{OPTIMIZER} .nbvis-quality-box").bounding_box()
        assert all(abs(kept[key] - box[key]) <= 1 for key in ("x", "y", "height")), (kept, box)  # subpixel settling only
        table = quality.bounding_box()
        assert table["y"] + table["height"] <= box["y"] + box["height"] + 0.5, (table, box, text)  # nothing cut off
        size = assert_fits(page, kind, "selected")
        # the whole view in one picture: JupyterLab's own bars take part of the 900 px
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT + 200})
        page.wait_for_timeout(300)
        screenshot(page.locator(EXPLORER), f"explorer_dashboard_{kind}.png")
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
        # three dashboard columns and the side column, side by side at this width
        tops = {round(c[2]) for c in size["columns"]}
        assert len(size["columns"]) == 4 and len(tops) == 1, size["columns"]
        # the selected layer large, the others as thumbnails; the top examples with their maps beside
        large = page.locator(f"{HEATMAP} .nbvis-ah-large")
        assert large.get_attribute("data-layer") == MODELS[kind][1][0]
        thumbs = page.locator(f"{HEATMAP} .nbvis-ah-thumb")
        assert thumbs.count() == (7 if kind == "cnn" else 3)
        maps = page.locator(f"{HEATMAP} .nbvis-ah-toppanel").get_attribute("data-maps")
        assert maps == ("guided deconvnet" if kind == "cnn" else "gradient")
        assert page.locator(f"{HEATMAP} .nbvis-ah-topgroup").count() == (3 if kind == "cnn" else 2)
        # a sigmoid saturates: its examples are ranked by its pre-activation, which is maximized too;
        # a ReLU channel has no ties at the top: by itself
        ranked = page.locator(f"{HEATMAP} .nbvis-ah-ranked").inner_text()
        assert ranked == ("" if kind == "cnn" else "ranked by fc1[12], its pre-activation")
        # the optimizer's many sliders are folded: its column stays short
        assert page.locator(f"{OPTIMIZER} details.nbvis-ov-regs").get_attribute("open") is None
        screenshot(page, f"explorer_dashboard_{kind}_page.png")

        if kind != "mlp":
            return
        # input x weights (fc1 reads the input) draws a wider grid: it still fits its column
        page.locator(f"{GRID} label", has_text="input \u00d7 weights").locator("input").check()
        page.wait_for_function(f"() => document.querySelector('{GRID} canvas') && Number(document.querySelector('{GRID}').dataset.draws) > 1")
        page.wait_for_timeout(500)
        assert_fits(page, kind, "input x weights")
        screenshot(page.locator(EXPLORER), f"explorer_dashboard_{kind}_xw.png")


def test_the_dashboard_wraps_its_columns_on_a_narrow_page(jupyter, browser):
    with explorer_page(jupyter, browser, "cnn", viewport=(1100, 900), collapse=False) as page:  # beside the file browser
        size = page.eval_on_selector(EXPLORER, MEASURE)
        print("narrow", json.dumps(size))
        assert not size["out"], size["out"]
        assert size["output"]["scroll"] <= size["output"]["client"] + 1, size["output"]
        tops = sorted({c[2] for c in size["columns"]})
        assert len(tops) >= 2, size["columns"]  # some columns went below the others
        screenshot(page.locator(EXPLORER), "explorer_dashboard_narrow.png")


# what the kernel knows after a click on a position: the selection, what its why map covers
POSITION_DUMP = (
    "import numpy as np\n"
    "def dump_position(change=None):\n"
    "    g = explorer.heatmap.gradient_map\n"
    "    rows, cols = (None, None) if g is None else np.nonzero(np.abs(g).sum(0) > 0)\n"
    "    opt = explorer.optimizer\n"
    "    state = {'selected': explorer.selected, 'grid_selected': explorer.grid and explorer.grid.selected,\n"
    "             'objective': opt and opt.objective_text, 'caption': explorer.heatmap.grad_caption,\n"
    "             'support': None if g is None or not len(rows) else [int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1],\n"
    "             'top': explorer.heatmap.top_state}\n"
    "    json.dump(state, open('position.tmp', 'w'))\n"
    "    os.replace('position.tmp', 'position.json')\n"
    "explorer.heatmap.observe(dump_position, names=['selected', '_grad', 'top_state'])"
)


def zoom_point(page, row: int, col: int):
    """Page coordinates of position (row, col) on the enlarged channel map."""
    canvas = page.locator(f"{HEATMAP} canvas.nbvis-ah-zoom")
    zoom = float(canvas.get_attribute("data-zoom"))
    box = canvas.bounding_box()
    width = canvas.evaluate("(c) => c.width")
    scale = box["width"] / width
    return box["x"] + (col + 0.5) * zoom * scale, box["y"] + (row + 0.5) * zoom * scale


def test_a_click_on_a_position_selects_it_and_its_receptive_field(jupyter, browser):
    model, selected = MODELS["cnn"]
    with notebook_page(browser, jupyter, "explorer_position.ipynb", cells(model, selected) + [POSITION_DUMP],
                       viewport=(WIDTH, HEIGHT), fresh=("position.json",), opened=collapse_left_sidebar,
                       ready=f"{HEATMAP} .nbvis-ah-zoompanel[data-unit='relu2:5']") as page:
        # hovering a position outlines what it sees on the input
        page.mouse.move(*zoom_point(page, 3, 4))
        overlay = page.locator(f"{HEATMAP} canvas.nbvis-ah-overlay")
        page.wait_for_function(f"() => document.querySelector('{HEATMAP} canvas.nbvis-ah-overlay').dataset.field")
        field = json.loads(overlay.get_attribute("data-field"))
        page.mouse.click(*zoom_point(page, 3, 4))
        # (settled: the dump also runs on the heatmap's gradient, which may come in before the
        # Explorer has seen the new selection and started its optimizer)
        state = jupyter.wait_for_json(
            "position.json", lambda s: s["selected"] == ["relu2", [5, 3, 4]] and s["support"] and s["top"] == "done"
            and s["objective"] != "conv2[5]", timeout=60)
        # the filter of the position's channel, the optimizer on that one position
        assert state["grid_selected"] == 5 and state["objective"] == "conv2[5, 3, 4]"
        assert state["caption"] == "gradient of relu2[5, 3, 4] over the input"
        # the receptive field of relu2 (5x5 conv, pool, 3x3 conv): 10 x 10 input pixels; the
        # map of one position is zero outside it, and it stays outlined after the pointer left
        from nbvis.compute.fields import field_geometry
        import nbvis
        geometry = field_geometry(nbvis.demo.digits_cnn(), "relu2", (1, 28, 28))
        (top, bottom), (left, right) = geometry.box((3, 4))
        assert field == [[top, bottom], [left, right]]
        r0, r1, c0, c1 = state["support"]
        assert top <= r0 and r1 <= bottom and left <= c0 and c1 <= right, (state["support"], field)
        assert (r1 - r0) * (c1 - c0) < 28 * 28 / 4  # localized: a corner of the input, not all of it
        page.mouse.move(5, 5)
        page.wait_for_function(
            f"() => document.querySelector('{HEATMAP} canvas.nbvis-ah-overlay').dataset.field === {json.dumps(json.dumps(field, separators=(',', ':')))}")
        # the unit panel follows: its top examples are the position's
        page.wait_for_function(f"() => document.querySelector('{HEATMAP} .nbvis-ah-toppanel')?.textContent.includes('relu2[5, 3, 4]')")
        assert page.locator(f"{HEATMAP} .nbvis-ah-why select.nbvis-ah-reduce").is_hidden()  # one position: nothing to gather
        screenshot(page.locator(EXPLORER), "explorer_position.png")


def wait_until_still(page, locator, timeout: float = 30.0) -> None:
    """Wait until ``locator``'s box is the same over half a second (the layout has settled)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        box = locator.bounding_box()
        if box is not None and box == last:
            return
        last = box
        page.wait_for_timeout(500)
    raise AssertionError(f"the element kept moving for {timeout} s (last box {last})")


def test_arrow_keys_move_the_unit_and_page_keys_the_layer_in_the_explorer(jupyter, browser):
    with explorer_page(jupyter, browser, "mlp") as page:
        # a click on a unit of the large layer selects it and gives the Explorer the focus
        page.mouse.click(*grid_point(page.locator(f"{HEATMAP} .nbvis-ah-large canvas"), 40))
        jupyter.wait_for_json("state.json", lambda s: s["selected"] == ["sigmoid", 40])
        cols = layout_of(page.locator(f"{HEATMAP} .nbvis-ah-large canvas"))["cols"]
        steps = [("ArrowRight", ["sigmoid", 41]), ("ArrowDown", ["sigmoid", 41 + cols]), ("ArrowLeft", ["sigmoid", 40 + cols]),
                 ("PageUp", ["fc1", 40 + cols]), ("PageUp", ["flatten", 40 + cols]), ("PageDown", ["fc1", 40 + cols])]
        for key, expected in steps:
            page.keyboard.press(key)
            jupyter.wait_for_json("state.json", lambda s: s["selected"] == expected)
            label = f"{expected[0]}[{expected[1]}]"  # the browser has it too, before the next key
            page.wait_for_function(f"() => document.querySelector('{HEATMAP} .nbvis-ah-why')?.textContent.includes('{label}')")
        # the large layer follows the selection's layer
        page.wait_for_selector(f"{HEATMAP} .nbvis-ah-large[data-layer='fc1']")
        # a click on a weight tile selects its unit and leaves the keys to the Explorer too
        # (the grid shows the page of fc1[50]: 36 units from 36 on). Click once the grid has
        # drawn that selection and stopped moving (the panels above it fill in as runs start).
        page.wait_for_selector(f"{GRID}[data-selected='{40 + cols}']")
        grid_canvas = page.locator(f"{GRID} canvas")
        wait_until_still(page, grid_canvas)
        page.mouse.click(*grid_point(grid_canvas, 3))
        jupyter.wait_for_json("state.json", lambda s: s["selected"] == ["fc1", 39])
        page.wait_for_function(f"() => document.querySelector('{HEATMAP} .nbvis-ah-why')?.textContent.includes('fc1[39]')")
        page.keyboard.press("ArrowRight")
        jupyter.wait_for_json("state.json", lambda s: s["selected"] == ["fc1", 40] and s["grid_selected"] == 40)
        # the notebook did not take the keys: the same cell is still the active one, in command mode
        assert page.locator(".jp-Notebook .jp-Cell.jp-mod-active").count() == 1


# The boxes (page px) of every panel of the dashboard, and of the Explorer itself.
BOXES = """(root) => {
    const rect = (el) => { if (!el) return null; const r = el.getBoundingClientRect();
                           return [r.x, r.y, r.width, r.height].map((v) => Math.round(v * 2) / 2); };
    const q = (s) => root.querySelector(s);
    return {explorer: rect(root), grid: rect(q('.nbvis-weight-grid canvas')), optimizer: rect(q('.nbvis-optimization-viewer')),
            why: rect(q('.nbvis-ah-why')), top: rect(q('.nbvis-ah-toppanel')), layers: rect(q('.nbvis-ah-col-layers'))};
}"""

# From now on, at every frame the page draws: the boxes, when they changed, and whether the grid shows `unit`.
TRACK = """([root, unit]) => {
    const boxes = %s;
    const frames = window.__frames = [];
    window.__tracking = true;
    let last = null;
    const step = () => {
        const now = JSON.stringify(boxes(root));
        const shown = root.querySelector('.nbvis-weight-grid')?.dataset.selected === String(unit);
        if (now !== last || (shown && !frames.some((f) => f.shown))) frames.push({boxes: JSON.parse(now), shown});
        last = now;
        if (window.__tracking) requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
}""" % BOXES


def test_nothing_moves_while_a_units_panels_fill_in(jupyter, browser):
    # After a click every panel shows the new unit at once; what comes later (the top examples and
    # their maps, the preferred inputs and their values, the run's end) fills space kept for it:
    # from the frame where the grid shows the unit to the end of the stream, no box moves.
    with explorer_page(jupyter, browser, "cnn") as page:
        large = page.locator(f"{HEATMAP} .nbvis-ah-large canvas")
        root = page.locator(EXPLORER).element_handle()
        for unit in (9, 2, 12):
            page.evaluate(TRACK, [root, unit])
            page.mouse.click(*grid_point(large, unit))
            page.wait_for_function(
                f"() => (document.querySelector('{HEATMAP} .nbvis-ah-toppanel')?.textContent || '').includes('top examples for relu2[{unit}]')")
            page.wait_for_selector(f"{HEATMAP} .nbvis-ah-toppanel[data-state='done'][data-maps]")
            page.wait_for_function(f"() => (document.querySelector('{OPTIMIZER} strong')?.textContent || '').startsWith('conv2[{unit}]')")
            page.wait_for_selector(f"{OPTIMIZER}[data-state='done']", timeout=120_000)
            page.wait_for_timeout(200)  # a frame or two after the end
            frames = page.evaluate("() => { window.__tracking = false; return window.__frames; }")
            first = next(i for i, f in enumerate(frames) if f["shown"])
            settled = {}  # each panel's box from the frame where it is first there (the new optimizer view comes a moment later)
            moved = []
            for frame in frames[first:]:
                for name, box in frame["boxes"].items():
                    if box is not None and settled.setdefault(name, box) != box:
                        moved.append((name, settled[name], box))
            print(unit, len(frames), first, json.dumps(settled))
            assert not moved, (unit, moved[:4])
            assert set(settled) == {"explorer", "grid", "optimizer", "why", "top", "layers"}
        screenshot(page.locator(EXPLORER), "explorer_settled.png")


HEATMAP_CELLS = [
    "import nbvis\n"
    "images, labels = nbvis.demo.digits()\n"
    "view = nbvis.ActivationHeatmap(nbvis.demo.digits_cnn(), images[0], labels=nbvis.demo.DIGIT_LABELS, dataset=(images, labels))\n"
    "view",
]


def test_the_heatmap_alone_keeps_its_input_in_view_while_any_layer_is_hovered(jupyter, browser):
    from test_activation_heatmap_e2e import ROOT, position_center

    with notebook_page(browser, jupyter, "heatmap_input_in_view.ipynb", HEATMAP_CELLS, app="lab", viewport=(WIDTH, HEIGHT), ready=f"{ROOT}[data-draws]") as page:
        for layer in ("conv1", "pool2"):  # the first layer and the last map, far below it
            page.mouse.move(*position_center(page, layer, 1, 3, 3))
            page.wait_for_function(f"() => document.querySelector('{ROOT} canvas.nbvis-ah-overlay').dataset.field")
            box = page.locator(f"{ROOT} canvas.nbvis-ah-draw").bounding_box()
            notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer").bounding_box()
            assert box["y"] >= notebook["y"] and box["y"] + box["height"] <= notebook["y"] + notebook["height"], (layer, box, notebook)
        screenshot(page, "heatmap_input_in_view.png")
