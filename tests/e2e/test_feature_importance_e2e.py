"""FeatureImportance in a real JupyterLab and Notebook 7, driven by Chromium."""

from __future__ import annotations

import json

import pytest
from harness import canvas_stats, notebook_page, screenshot

ROOT = ".nbvis-feature-importance"

CELLS = [
    "import json, torch, nbvis\n"
    "from sklearn.datasets import load_diabetes\n"
    "X, y = load_diabetes(return_X_y=True, as_frame=True)\n"
    "X, y = (X - X.mean()) / X.std(), (y - y.mean()) / y.std()\n"
    "torch.manual_seed(0)\n"
    "model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))\n"
    "opt = torch.optim.Adam(model.parameters(), lr=1e-2)\n"
    "Xt, yt = torch.tensor(X.values, dtype=torch.float32), torch.tensor(y.values, dtype=torch.float32)\n"
    "for _ in range(200):\n"
    "    opt.zero_grad(); torch.nn.functional.mse_loss(model(Xt)[:, 0], yt).backward(); opt.step()\n"
    "chart = nbvis.FeatureImportance(model, X, y, n_repeats=5, top_k=5)\n"
    "chart.observe(lambda c: open('selected.txt', 'w').write(str(c['new'])), names=['selected'])\n"
    "chart",
    "result = chart.wait()\n"
    "json.dump([chart.feature_names[i] for i in result.ranking()], open('order.json', 'w'))",
]

IMAGE_CELLS = [
    "images, labels = nbvis.demo.digits()\n"
    "pixels = nbvis.FeatureImportance(nbvis.demo.digits_mlp(), images, labels, scoring='accuracy', n_repeats=2,\n"
    "                                 feature_groups=4, top_k=8, sample=3)\n"
    "pixels",
    "pixels.wait()\n"
    "json.dump({'names': pixels.feature_names, 'mean': pixels.importances_mean.tolist()}, open('pixels.json', 'w'))",
]


def bar_center(page, chart, index: int):
    """Page coordinates of the middle of bar ``index`` (top to bottom) of a chart."""
    box = chart.locator(".barlayer .point path").nth(index).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def ticks(chart) -> list[str]:
    return chart.locator(".ytick text").evaluate_all("(nodes) => nodes.map((n) => n.textContent.trim())")


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_bar_chart_sorted_with_top_k_and_click(jupyter, browser, app):
    cells = CELLS + (IMAGE_CELLS if app == "lab" else [])
    with notebook_page(browser, jupyter, f"feature_importance_{app}.ipynb", cells, app=app, timeout=300) as page:
        order = json.loads(jupyter.wait_for_file("order.json"))
        chart = page.locator(ROOT).first
        page.wait_for_selector(f'{ROOT}[data-state="done"][data-bars="6"]')
        # five most important features, then the rest collapsed into one bar, top to bottom
        page.wait_for_function(
            "([sel, n]) => document.querySelector(sel).querySelectorAll('.barlayer .point').length === n", arg=[ROOT, 6]
        )
        expected = order[:5] + ["5 others (mean)"]
        page.wait_for_function(
            "([sel, want]) => [...document.querySelector(sel).querySelectorAll('.ytick text')]"
            ".map(t => t.textContent.trim()).join('|') === want",
            arg=[ROOT, "|".join(expected)],
        )
        assert ticks(chart) == expected
        widths = [chart.locator(".barlayer .point path").nth(i).bounding_box()["width"] for i in range(5)]
        assert widths == sorted(widths, reverse=True) and widths[0] > 10  # longest bar first
        assert "decrease in r2" in chart.locator(".xtitle").text_content()
        assert chart.locator(".errorbar").count() >= 5  # error bars over the repeats
        screenshot(chart, f"feature_importance_{app}.png")

        # click the second bar: chart.selected is that feature in the kernel
        page.mouse.click(*bar_center(page, chart, 1))
        second = order[1]
        names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
        assert jupyter.wait_for_file("selected.txt", content=str(names.index(second))) == str(names.index(second))
        # click the collapsed bar: more features appear (top_k doubles); plotly reads two clicks
        # within 300 ms as a double click, so wait a little first
        page.wait_for_timeout(500)
        page.mouse.click(*bar_center(page, chart, 5))
        page.wait_for_selector(f'{ROOT}[data-bars="10"]')
        assert ticks(chart) == order

        if app == "lab":
            pixels = page.locator(ROOT).nth(1)
            page.wait_for_selector(f'{ROOT}[data-map="28x28"][data-state="done"]')
            data = json.loads(jupyter.wait_for_file("pixels.json"))
            assert pixels.get_attribute("data-bars") == "9"  # 8 patches and the other 41
            canvas = f"{ROOT} >> nth=1 >> canvas"
            stats = canvas_stats(page, canvas)
            assert stats["width"] == 28 * 8 and stats["colors"] > 20
            # hover the patch at rows 12..16, columns 12..16: the tooltip names it with its importance
            page.locator(canvas).scroll_into_view_if_needed()
            box = page.locator(canvas).bounding_box()
            assert box["width"] == pytest.approx(28 * 8, abs=1)  # drawn at its own size
            page.mouse.move(box["x"] + 13.5 / 28 * box["width"], box["y"] + 13.5 / 28 * box["height"])
            tip = page.locator(".nbvis-tooltip:visible")  # each view has its own tooltip
            tip.wait_for(state="visible")
            k = data["names"].index("patch (12:16, 12:16)")
            assert "patch (12:16, 12:16)" in tip.inner_text()
            shown = float(tip.inner_text().split("importance ")[1].split()[0])
            assert shown == pytest.approx(data["mean"][k], rel=1e-3, abs=1e-6)
            # plotly.js came over the wire once for both charts
            assert page.evaluate("globalThis.__nbvisPlotlyLoads") == 1
            screenshot(pixels, "feature_importance_pixels.png")
