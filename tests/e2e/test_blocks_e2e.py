"""NeuronGroups and SemanticDictionary in a real JupyterLab, driven by Chromium."""

from __future__ import annotations

import time

import pytest
from harness import notebook_page, screenshot

import nbvis

GROUPS = ".nbvis-neuron-groups"
DICT = ".nbvis-semantic-dictionary"

SETUP = (
    "import json, os\n"
    "import nbvis\n"
    "from nbvis.compute.blocks import FeatureCache\n"
    "model = nbvis.demo.digits_cnn()\n"
    "images, labels = nbvis.demo.digits()\n"
    "def dump(name, value):\n"
    "    json.dump(value, open(name + '.tmp', 'w'))\n"
    "    os.replace(name + '.tmp', name)\n"
)

PIXELS = """(c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const out = [];
    for (let i = 0; i < d.length; i += 4) out.push([d[i], d[i + 1], d[i + 2]]);
    return out;
}"""


def rgb(hex_color: str):
    n = int(hex_color[1:], 16)
    return (n >> 16) & 255, (n >> 8) & 255, n & 255


def hue_counts(pixels, hues):
    """How many bright pixels of the canvas are a multiple of each hue (a pixel where one group alone shows)."""
    counts = [0] * len(hues)
    for r, g, b in pixels:
        top = max(r, g, b)
        if top < 60:
            continue
        for i, hue in enumerate(hues):
            scale = top / max(hue)
            if all(abs(v - scale * c) <= 12 for v, c in zip((r, g, b), hue)):
                counts[i] += 1
    return counts


def test_neuron_groups_hues_isolation_and_icons(jupyter, browser):
    cells = [SETUP + (
        "view = nbvis.NeuronGroups(model, images[0], layer='relu2', k=3, dataset=(images, labels), labels=nbvis.demo.DIGIT_LABELS,\n                          icons=FeatureCache(model, (1, 28, 28), steps=96))  # in memory: computed in this test\n"
        "view.observe(lambda c: dump('groups.json', {'selected': view.selected}), names=['selected'])\n"
        "dump('hues.json', view.hues)\n"
        "icon_states = [list(view._icon_state)]  # what the kernel streamed: as it was drawn first, then every change\n"
        "view.observe(lambda c: (icon_states.append(list(c['new'])), dump('icon_states.json', icon_states)), names=['_icon_state'])\n"
        "dump('icon_states.json', icon_states)\n"
        "view"
    )]
    with notebook_page(browser, jupyter, "blocks_groups.ipynb", cells, ready=f"{GROUPS}[data-draws]", fresh=("groups.json", "hues.json", "icon_states.json")) as page:
        hues = [rgb(h) for h in jupyter.wait_for_json("hues.json", lambda v: len(v) == 3)]
        # icons arrive progressively: first the top dataset examples (or a forming icon), then the visualizations
        seen_states, seen_steps = set(), set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            icons = page.eval_on_selector_all(f"{GROUPS} .nbvis-ng-legend canvas.nbvis-bk-icon", "(cs) => cs.map((c) => [c.dataset.state, Number(c.dataset.step)])")
            seen_states.update(s for s, _ in icons)
            seen_steps.update(step for s, step in icons if s == "running")
            if len(icons) == 3 and all(s == "done" for s, _ in icons):
                break
            page.wait_for_timeout(100)
        assert all(s == "done" for s, _ in icons), icons
        # the browser may poll only after the icons finished: the kernel's record shows the way there too
        for states in jupyter.wait_for_json("icon_states.json", lambda v: v and all(x == "done" for x in v[-1])):
            seen_states.update(states)
        assert "example" in seen_states or "running" in seen_states, seen_states
        assert page.locator(f"{GROUPS} .nbvis-ng-legend").get_attribute("data-icons-done") == "3"

        # the map canvas shows the three hues
        pixels = page.eval_on_selector(f"{GROUPS} canvas.nbvis-ng-maps", PIXELS)
        counts = hue_counts(pixels, hues)
        assert all(c > 50 for c in counts), counts
        page.locator(GROUPS).scroll_into_view_if_needed()
        screenshot(page.locator(GROUPS), "neuron_groups_lab.png")

        # hovering a group isolates it: only its hue is left on the map
        page.locator(f"{GROUPS} .nbvis-ng-group[data-group='1']").hover()
        page.wait_for_selector(f"{GROUPS}[data-isolated='1']")
        pixels = page.eval_on_selector(f"{GROUPS} canvas.nbvis-ng-maps", PIXELS)
        counts = hue_counts(pixels, hues)
        bright = sum(1 for p in pixels if max(p) >= 60)
        assert counts[1] == bright > 50 and counts[0] == counts[2] == 0, (counts, bright)
        screenshot(page.locator(GROUPS), "neuron_groups_isolated.png")
        # the table row of the group is highlighted with it, and a click selects the group in Python
        page.locator(f"{GROUPS} tr[data-group='2']").click()
        assert jupyter.wait_for_json("groups.json", lambda v: v["selected"] == 2)["selected"] == 2
        page.mouse.move(5, 5)
        page.wait_for_selector(f"{GROUPS}[data-isolated='']")
        # the k slider reaches the kernel and redraws with k hues
        page.eval_on_selector(f"{GROUPS} input.nbvis-ng-k", "(s) => { s.value = '4'; s.dispatchEvent(new Event('change')); }")
        page.wait_for_selector(f"{GROUPS}[data-k='4']")
        assert page.locator(f"{GROUPS} .nbvis-ng-group").count() == 4
        assert page.locator(f"{GROUPS} .nbvis-error").inner_text() == ""


def test_semantic_dictionary_follows_the_pointer_and_selects(jupyter, browser):
    cells = [SETUP + (
        "view = nbvis.SemanticDictionary(model, images[0], layer='relu2', k=4, dataset=images, icons=FeatureCache(model, (1, 28, 28), steps=48))\n"
        "view.observe(lambda c: dump('dict.json', {'selected': view.selected}), names=['selected'])\n"
        "view"
    )]
    with notebook_page(browser, jupyter, "blocks_dictionary.ipynb", cells, ready=f"{DICT}[data-draws]", fresh=("dict.json",)) as page:
        reference = nbvis.semantic_dictionary(nbvis.demo.digits_cnn(), nbvis.demo.digits()[0][0], "relu2", k=4)
        root = page.locator(DICT)
        # the first position is the one with the largest activation
        assert (int(root.get_attribute("data-row")), int(root.get_attribute("data-col"))) == reference.start
        canvas = page.locator(f"{DICT} canvas.nbvis-sd-reticle")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        for row, col in [(3, 4), (7, 7), (10, 2), (12, 11)]:
            page.mouse.move(box["x"] + (col + 0.5) * box["width"] / 14, box["y"] + (row + 0.5) * box["height"] / 14)
            page.wait_for_selector(f"{DICT}[data-row='{row}'][data-col='{col}']", timeout=5000)
            shown = [int(c) for c in page.eval_on_selector_all(f"{DICT} .nbvis-sd-entry", "(es) => es.map((e) => e.dataset.channel)")]
            assert shown == [c for c, _, _ in reference.at(row, col)], (row, col, shown)
        screenshot(root, "semantic_dictionary_lab.png")
        # leaving the input shows the pinned position again; a click on a channel reaches the kernel
        page.mouse.move(box["x"] + box["width"] + 400, box["y"] - 40)
        page.wait_for_selector(f"{DICT}[data-row='{reference.start[0]}'][data-col='{reference.start[1]}']", timeout=5000)
        entry = page.locator(f"{DICT} .nbvis-sd-entry").nth(1)
        channel = int(entry.get_attribute("data-channel"))
        entry.click()
        value = jupyter.wait_for_json("dict.json", lambda v: v["selected"] is not None)
        assert value["selected"] == ["relu2", channel]
        # icons arrive: every channel's visualization is done in the end
        page.wait_for_selector(f"{DICT}[data-icons-done='16']", timeout=120_000)
        states = page.eval_on_selector_all(f"{DICT} .nbvis-sd-entry canvas", "(cs) => cs.map((c) => c.dataset.state)")
        assert states and all(s == "done" for s in states), states
        screenshot(root, "semantic_dictionary_icons.png")
        assert page.locator(f"{DICT} .nbvis-error").inner_text() == ""
