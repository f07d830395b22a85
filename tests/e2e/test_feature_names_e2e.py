"""Feature names are text in the chart: plotly's HTML (bold, line breaks, links) is not applied."""

from __future__ import annotations

from harness import notebook_page, screenshot

ROOT = ".nbvis-feature-importance"
NAMES = ["<b>bold</b>", "a<br>b", '<a href="javascript:alert(1)">link</a>', "x & y"]

CELLS = [
    "import torch, nbvis\n"
    "torch.manual_seed(0)\n"
    "X = torch.randn(200, 4); y = X @ torch.tensor([3.0, 2.0, 1.0, 0.5])\n"
    "model = torch.nn.Linear(4, 1)\n"
    "with torch.no_grad(): model.weight.copy_(torch.tensor([[3.0, 2.0, 1.0, 0.5]])); model.bias.zero_()\n"
    f"chart = nbvis.FeatureImportance(model, X, y, n_repeats=2, feature_names={NAMES!r})\n"
    "chart",
]


def test_feature_names_are_drawn_as_text(jupyter, browser):
    with notebook_page(browser, jupyter, "feature_names_html.ipynb", CELLS, app="lab", timeout=300) as page:
        page.wait_for_selector(f'{ROOT}[data-state="done"]')
        page.wait_for_function(
            "(sel) => document.querySelector(sel).querySelectorAll('.ytick text').length === 4", arg=ROOT
        )
        chart = page.locator(ROOT).first
        texts = chart.locator(".ytick text").evaluate_all("(nodes) => nodes.map((n) => n.textContent)")
        assert texts == NAMES  # the characters themselves, in importance order (the weights' order)
        # nothing became markup: no link, no bold run, no second line in any tick
        assert chart.locator(".ytick a").count() == 0 and chart.locator("svg a").count() == 0
        bold = chart.locator(".ytick tspan").evaluate_all("(nodes) => nodes.filter((n) => n.style.fontWeight === 'bold').length")
        assert bold == 0
        lines = chart.locator(".ytick text").evaluate_all("(nodes) => nodes.map((n) => n.querySelectorAll('tspan.line').length)")
        assert all(count <= 1 for count in lines), lines
        screenshot(chart, "feature_names_html.png")
