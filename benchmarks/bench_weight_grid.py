"""WeightGrid over the wire and in the browser.

Prints, for a 100x784 and a 4096x784 Linear layer:
- bytes that leave the kernel for what the view draws (binary buffers) versus the same weights
  as a JSON list (what a widget that syncs `weight.tolist()` sends), as a ratio;
- the time to draw a page in Chromium (real JupyterLab), versus the time the browser needs just to
  JSON.parse the same weights (the cost the JSON route pays before it can draw anything).

Run: .venv/bin/python benchmarks/bench_weight_grid.py [--quick] [--no-browser]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from ipywidgets.widgets.widget import _remove_buffers
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nbvis  # noqa: E402
from _rows import add_options, row  # noqa: E402
from harness import JupyterServer, launch_browser, open_notebook, run_all  # noqa: E402


def wire_bytes(widget) -> int:
    state, _paths, buffers = _remove_buffers(widget.get_state())
    return len(json.dumps(state)) + sum(len(b) for b in buffers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    args = parser.parse_args()
    torch.manual_seed(0)
    cases = {"100x784": (100, 100), "4096x784": (4096, 256)}
    print("== bytes sent for the drawn page (binary buffers) vs the layer's weights as JSON ==")
    for label, (units, page_size) in cases.items():
        layer = nn.Linear(784, units)
        grid = nbvis.WeightGrid(layer, "", page_size=page_size)
        binary = wire_bytes(grid)
        as_json = len(json.dumps(layer.weight.detach().tolist()))
        page_json = len(json.dumps(layer.weight.detach()[:page_size].tolist()))
        print(
            f"{label}: nbvis {binary / 1e6:.2f} MB (page of {page_size}) | JSON all {as_json / 1e6:.2f} MB "
            f"-> {as_json / binary:.1f}x smaller | JSON same page {page_json / 1e6:.2f} MB -> {page_json / binary:.1f}x smaller"
        )
        row(f"bytes sent for a {label} layer (page of {page_size}), vs all its weights as JSON",
            f"{as_json / binary:.1f}x smaller ({binary / 1e6:.2f} MB vs {as_json / 1e6:.2f} MB)")

    if args.no_browser:
        for label, (units, page_size) in cases.items():
            row(f"drawing a page of {page_size} tiles of a {label} layer in Chromium", "not measured (--no-browser)")
        return

    print("\n== drawing in Chromium (JupyterLab), median of repeated redraws ==")
    server = JupyterServer().start()
    try:
        from playwright.sync_api import sync_playwright

        cells = ["import torch, nbvis\ntorch.manual_seed(0)"]
        for label, (units, page_size) in cases.items():
            cells.append(f"g{units} = nbvis.WeightGrid(torch.nn.Linear(784, {units}), '', page_size={page_size})\ng{units}")
        name = server.write_notebook("bench_weight_grid.ipynb", cells)
        with sync_playwright() as playwright:
            browser = launch_browser(playwright)
            page = open_notebook(browser, server, name)
            run_all(page)
            page.wait_for_selector(".nbvis-weight-grid[data-draws]")
            roots = page.locator(".nbvis-weight-grid")
            for i, (label, (units, page_size)) in enumerate(cases.items()):
                root = roots.nth(i)
                draws, parses = [], []
                for scale in ["tile", "shared"] * (2 if args.quick else 5):  # each change redraws the whole page
                    before = int(root.get_attribute("data-draws"))
                    root.locator("select").nth(2).select_option(scale)
                    page.wait_for_function(
                        "([el, n]) => Number(el.dataset.draws) > n", arg=[root.element_handle(), before]
                    )
                    draws.append(root.evaluate("(el) => el.nbvisDebug.lastDrawMs"))
                parses = page.evaluate(
                    """([n, per]) => {
                        const rows = Array.from({length: n}, (_, i) => Array.from({length: per}, (_, j) => Math.sin(i * per + j) * 0.05));
                        const text = JSON.stringify(rows);
                        const times = [];
                        for (let k = 0; k < 5; k++) { const t = performance.now(); JSON.parse(text); times.push(performance.now() - t); }
                        return times;
                    }""",
                    [page_size, 784],
                )
                draw_ms = statistics.median(draws)
                parse_ms = statistics.median(parses)
                print(
                    f"{label} (page of {page_size} tiles): draw {draw_ms:.1f} ms | JSON.parse of the same weights "
                    f"{parse_ms:.1f} ms | draw / parse = {draw_ms / parse_ms:.2f}"
                )
                row(f"drawing a page of {page_size} tiles of a {label} layer in Chromium, vs JSON.parse of the same weights",
                    f"{draw_ms:.1f} ms ({draw_ms / parse_ms:.2f}x the parse)")
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
