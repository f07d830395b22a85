"""Explorer: a click on a unit to every panel updated, measured in JupyterLab + Chromium.

    python benchmarks/bench_explorer.py            # 15 clicks on the demo CNN's relu2 channels
    python benchmarks/bench_explorer.py --quick    # 5 clicks
    python benchmarks/bench_explorer.py --reference /path/to/other/checkout   # the same clicks on both, interleaved

A click on a channel of the large layer in the Explorer's dashboard is timed in the page from the
mouse press until every panel shows the new unit: the why map (its caption names the unit), the
enlarged channel, the top examples (scan done, with their guided-backprop and deconvnet maps),
the weight grid (the tile outlined) and the optimizer (a new run on the unit's pre-activation;
its preferred inputs keep streaming after that). Target: 300 ms. The machine's load average is
printed with the result: the kernel, the server and Chromium share its cores with everything else.

Each click selects a channel not selected before (a unit's first visit: nothing of it is cached
but the layer's activations over the dataset, which the first scan keeps). With ``--reference``,
a second JupyterLab runs the same notebook on another checkout of nbvis (its PYTHONPATH, its
built ``nbvis/static``), and the rounds alternate between the two pages, each click made once the
other page's preferred inputs are done streaming; the result is each one's median and p90 and
the median of the per-round ratios (this checkout / the reference).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rows import add_options, row  # noqa: E402

TARGET_MS = 300

CELLS = [
    "import nbvis\n"
    "model = nbvis.demo.digits_cnn()\n"
    "images, labels = nbvis.demo.digits()\n"
    "explorer = nbvis.Explorer(model, (images, labels), labels=nbvis.demo.DIGIT_LABELS, selected=('relu2', 0))\n"
    "explorer",
]

HEATMAP = ".nbvis-explorer .nbvis-activation-heatmap"

# the time of the mouse press, in the page's clock
MARK_PRESS = """() => {
    if (!window.__nbvisPress) {
        window.__nbvisPress = true;
        document.addEventListener('mousedown', () => { window.__nbvisPressAt = performance.now(); }, true);
    }
}"""

# Poll every frame until each panel shows the unit; each panel's time (ms after the press) when it first did.
WAIT_ALL = """async ({layer, source, unit}) => {
    const q = (s) => document.querySelector(s);
    const E = '.nbvis-explorer', H = E + ' .nbvis-activation-heatmap';
    const label = `${layer}[${unit}]`;
    const checks = {
        why: () => (q(H + ' .nbvis-ah-why')?.textContent || '').includes(label),
        enlarged: () => q(H + ' .nbvis-ah-zoompanel')?.dataset.unit === `${layer}:${unit}`,
        top: () => { const t = q(H + ' .nbvis-ah-toppanel');
                     return t && t.dataset.state === 'done' && !!t.dataset.maps && t.textContent.includes(`top examples for ${label}`); },
        grid: () => q(E + ' .nbvis-weight-grid')?.dataset.selected === String(unit),
        optimizer: () => (q(E + ' .nbvis-optimization-viewer strong')?.textContent || '').startsWith(`${source}[${unit}]`),
    };
    const times = {};
    const deadline = performance.now() + 30000;
    while (Object.keys(times).length < Object.keys(checks).length && performance.now() < deadline) {
        await new Promise((r) => requestAnimationFrame(r));
        const now = performance.now();
        for (const [name, check] of Object.entries(checks)) if (!(name in times) && check()) times[name] = now - window.__nbvisPressAt;
    }
    return times;
}"""


PANELS = ("why", "enlarged", "top", "grid", "optimizer")


def units_to_click(clicks: int) -> list[int]:
    """relu2 channels 1..15 in an order where each differs from every one before (channel 0 is
    selected when the Explorer opens); past 15 clicks the order repeats."""
    return [1 + (i * 7) % 15 for i in range(clicks)]


def start_server(pythonpath: str | None):
    """A Jupyter server whose kernels import nbvis from ``pythonpath`` (None: this checkout's)."""
    from harness import JupyterServer

    saved = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = pythonpath
    try:
        return JupyterServer().start()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def open_explorer(browser, server):
    from harness import open_notebook, run_all

    name = server.write_notebook("bench_explorer.ipynb", CELLS)
    page = open_notebook(browser, server, name, viewport=(1400, 900))
    run_all(page)
    page.wait_for_selector(f"{HEATMAP} .nbvis-ah-toppanel[data-state='done'][data-maps]", timeout=60_000)
    page.evaluate(MARK_PRESS)
    return page


def click(page, unit: int) -> dict:
    """Click relu2[unit] in the large layer; each panel's time (ms after the press) to show it."""
    from harness import grid_point

    canvas = page.locator(f"{HEATMAP} .nbvis-ah-large canvas")
    page.mouse.click(*grid_point(canvas, unit))
    times = page.evaluate(WAIT_ALL, {"layer": "relu2", "source": "conv2", "unit": unit})
    missing = [p for p in PANELS if p not in times]
    if missing:
        raise SystemExit(f"after a click on relu2[{unit}] these panels never showed it: {missing}")
    return times


def settle(page) -> None:
    """Wait until the page's preferred inputs are done streaming (they load the shared cores)."""
    page.wait_for_function(
        "() => document.querySelector('.nbvis-explorer .nbvis-optimization-viewer')?.dataset.state !== 'running'", timeout=60_000)


def summary(results: list[dict]) -> tuple[float, float]:
    every = [max(t.values()) for t in results]
    return statistics.median(every), sorted(every)[int(0.9 * (len(every) - 1))]


def browser_benchmark(clicks: int, reference: str | None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
    from harness import launch_browser
    from playwright.sync_api import sync_playwright

    servers = {"this": start_server(None)}
    results: dict[str, list[dict]] = {"this": []}
    if reference is not None:
        servers["reference"] = start_server(str(Path(reference).resolve()))
        results["reference"] = []
    try:
        with sync_playwright() as playwright:
            browser = launch_browser(playwright)
            pages = {key: open_explorer(browser, server) for key, server in servers.items()}
            for i, unit in enumerate(units_to_click(clicks)):
                order = list(pages) if i % 2 == 0 else list(reversed(pages))  # who goes first alternates
                for key in order:
                    for other in pages:
                        if other != key:
                            settle(pages[other])
                    results[key].append(click(pages[key], unit))
                    pages[key].wait_for_timeout(400)  # the next click comes later, as a person's
            browser.close()
    finally:
        for server in servers.values():
            server.stop()
    load = os.getloadavg()
    print(f"Explorer, demo CNN, JupyterLab + Chromium, {clicks} clicks on relu2 channels (load average {load[0]:.1f}, {os.cpu_count()} cores)")
    for key, runs in results.items():
        if reference is not None:
            print(f" {key}{'' if key == 'this' else ' (' + reference + ')'}:")
        for panel in PANELS:
            print(f"  {panel:<10} median {statistics.median(t[panel] for t in runs):7.1f} ms")
        median, p90 = summary(runs)
        print(f"  {'every panel':<10} median {median:7.1f} ms   p90 {p90:7.1f} ms   target < {TARGET_MS} ms: {'met' if median < TARGET_MS else 'NOT met'}")
    median, p90 = summary(results["this"])
    if reference is not None:
        ratios = [max(a.values()) / max(b.values()) for a, b in zip(results["this"], results["reference"])]
        print(f"  per-round ratio this / reference: median {statistics.median(ratios):.2f}")
    row(f"Explorer click -> every panel updated (demo CNN, JupyterLab + Chromium, load {load[0]:.1f} on {os.cpu_count()} cores)",
        f"{median:.0f} ms (p90 {p90:.0f} ms)", f"< {TARGET_MS} ms", median < TARGET_MS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser)
    parser.add_argument("--reference", help="another checkout of nbvis (with nbvis/static built) to compare with, interleaved")
    parser.add_argument("--clicks", type=int, help="clicks per checkout (default 15, 5 with --quick)")
    args = parser.parse_args()
    if args.no_browser:
        row("Explorer click -> every panel updated (demo CNN, JupyterLab + Chromium)", "not measured (--no-browser)", f"< {TARGET_MS} ms")
        return
    browser_benchmark(args.clicks or (5 if args.quick else 15), args.reference)


if __name__ == "__main__":
    main()
