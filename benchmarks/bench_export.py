"""What the views cost out of the notebook: offline HTML files and saved notebooks.

Prints, for each view on the digits data and for the digits Explorer:
- the size of ``view.to_html()`` (one self-contained offline file), split into the runtime every
  file carries (require.js, the ipywidgets HTML manager gzip-compressed, anywidget's front end) and
  the view's own state, and the Explorer's size as a ratio of the 5 MB target;
- the bytes a saved notebook holds per view: the output (its PNG picture, the widget reference and
  the text) and, when the front end saves widget state too, that state;
- the time to write the file and to draw the picture.

Run: .venv/bin/python benchmarks/bench_export.py
"""

from __future__ import annotations

import argparse
import base64
import json
import time

import nbformat
from ipywidgets.embed import dependency_state

import nbvis
from _rows import add_options, row
from nbvis.compute.blocks import FeatureCache
from nbvis.widgets._export import ASSETS, _anywidget_frontend, packed_manager

TARGET = 5_000_000


def kb(n: int) -> str:
    return f"{n / 1000:,.1f} KB" if n < 1_000_000 else f"{n / 1e6:.2f} MB"


def output_bytes(view) -> tuple[int, int]:
    """(bytes of the saved output, of which the PNG picture), as nbformat writes them."""
    bundle = view._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    output = nbformat.v4.new_output("display_data", data=data)
    return len(json.dumps(output, indent=1)), len(base64.b64decode(data.get("image/png", "")))


def state_bytes(view) -> int:
    """The widget state a front end saves into the notebook's metadata for this view."""
    return len(json.dumps(dependency_state(view, drop_defaults=True)))


def main() -> None:
    mlp, cnn = nbvis.demo.digits_mlp(), nbvis.demo.digits_cnn()
    images, labels = nbvis.demo.digits()
    raw_manager = (ASSETS / "embed-amd.js").stat().st_size
    packed = len(packed_manager().encode())
    runtime = (ASSETS / "require.js").stat().st_size + packed + _anywidget_frontend().stat().st_size
    views = {
        "WeightGrid fc1 (100 units, page of 100)": nbvis.WeightGrid(mlp, "fc1"),
        "ActivationHeatmap (CNN, 9 layers)": nbvis.ActivationHeatmap(cnn, images[0], labels=nbvis.demo.DIGIT_LABELS),
        "OptimizationViewer (3 starts, 28x28)": nbvis.OptimizationViewer(cnn, ("conv2", 5), input_shape=(1, 28, 28), steps=32, starts=3),
        "FeatureImportance (49 patches, map)": nbvis.FeatureImportance(mlp, images[:300], labels[:300], scoring="accuracy",
                                                                       n_repeats=3, feature_groups=4),
    }
    cache = FeatureCache(cnn, (1, 28, 28), steps=64)  # in memory: the icons are computed here
    views["NeuronGroups (relu2, k=6, icons)"] = nbvis.NeuronGroups(cnn, images[0], layer="relu2", dataset=(images, labels),
                                                                    labels=nbvis.demo.DIGIT_LABELS, icons=cache)
    views["SemanticDictionary (relu2, 16 icons)"] = nbvis.SemanticDictionary(cnn, images[0], layer="relu2", dataset=images, icons=cache)
    for name in ("NeuronGroups (relu2, k=6, icons)", "SemanticDictionary (relu2, 16 icons)"):
        views[name].wait_icons()
    views["OptimizationViewer (3 starts, 28x28)"].start().wait()
    views["FeatureImportance (49 patches, map)"].wait()
    explorer = nbvis.Explorer(mlp, (images, labels), labels=nbvis.demo.DIGIT_LABELS, steps=32)
    explorer.selected = ("fc1", 12)
    explorer.optimizer.wait()
    if explorer.heatmap.top_job is not None:
        explorer.heatmap.top_job.wait()
    views["Explorer (digits MLP, fc1[12] selected)"] = explorer

    print(f"runtime inside every offline file: {kb(runtime)} (require.js, ipywidgets HTML manager, anywidget)")
    print(f"  of which the manager, gzip + base64: {kb(packed)} ({kb(raw_manager)} as plain JavaScript)")
    print("\n== view.to_html(): one offline file ==")
    print(f"{'view':44s} {'file':>10s} {'own state':>10s} {'write':>8s}")
    for name, view in views.items():
        start = time.perf_counter()
        page = view.to_html()
        seconds = time.perf_counter() - start
        size = len(page.encode())
        print(f"{name:44s} {kb(size):>10s} {kb(size - runtime):>10s} {seconds * 1000:6.0f} ms")
    size = len(explorer.to_html().encode())
    print(f"\ndigits Explorer file / 5 MB target: {size / TARGET:.2f}x ({'under' if size < TARGET else 'OVER'} the target)")
    row("digits Explorer as one offline HTML file (to_html)", kb(size), "< 5 MB", size < TARGET)

    print("\n== bytes per view in a saved notebook ==")
    print(f"{'view':44s} {'output':>10s} {'PNG':>10s} {'draw PNG':>9s} {'+ widget state':>15s}")
    for name, view in views.items():
        start = time.perf_counter()
        total, picture = output_bytes(view)
        seconds = time.perf_counter() - start
        print(f"{name:44s} {kb(total):>10s} {kb(picture):>10s} {seconds * 1000:7.0f} ms "
              f"{kb(state_bytes(view)):>15s}")
        row(f"saved notebook output of {name}", kb(total), "", None)
    for view in views.values():
        view.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)  # one pass either way: nothing here is timed in rounds
    parser.parse_args()
    main()
