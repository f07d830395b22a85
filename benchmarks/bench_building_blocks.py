"""Neuron groups, the semantic dictionary and their icons, timed on the digits CNN.

    .venv/bin/python benchmarks/bench_building_blocks.py [--quick] [--repeats N] [--steps S] [--threads T] [--no-baseline]

Prints one row per measurement: nbvis's time, the baseline's, their ratio (nbvis / baseline:
below 1 is faster) and the target:

* groups for one input at ``relu2`` (16 x 14 x 14): ``nbvis.neuron_groups`` (NMF k=6 and the
  attribution of every group to the 10 classes) against scikit-learn's ``NMF`` alone on activations
  captured by hand (target: under 0.5 s);
* the icons of a ``SemanticDictionary`` of that layer (16 channels, ``--steps`` steps each), from the
  view's construction: the first icon visible (a first optimization frame; target: within 2 s) and all
  16 done (target: within 30 s), against one ``nbvis.maximize`` run per channel, one after another
  (the loop a user would write);
* the one-time cost of the process's first torch optimizer (torch imports ``torch._dynamo`` then),
  measured before the icons so that it does not count as theirs;
* the view reopened on the same model: icons recomputed (target: 0) and the time until all 16 show;
  and a fresh cache reading the icons back from disk.

Each result is also a ``BENCH-ROW`` line for ``benchmarks/run_all.py`` (see ``_rows.py``); with a
CUDA GPU the icons are timed there too (a row of their own). ``--quick``: 3 rounds instead of 10.
``--threads`` sets torch's intra-op threads (default 1: on a shared machine more threads than free
cores slow these small batches down many times over).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

import nbvis
from nbvis.compute.blocks import FeatureCache

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _rows  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(ours, baseline, repeats: int) -> tuple[float, float, float]:
    """Median seconds of each, and the median of the per-round ratios (rounds interleave the two)."""
    ours(), baseline()
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(ours))
        b.append(timed(baseline))
    return statistics.median(a), statistics.median(b), _rows.median_ratio(a, b)


def row(what: str, ours: float, baseline: float | None, target: str, met=None, unit: str = "s") -> None:
    base = "-" if baseline is None else f"{baseline:.3f} {unit}"
    ratio = "-" if not baseline else f"{ours / baseline:.2f}"
    print(f"{what:<72} {ours:>9.3f} {unit}  baseline {base:>10}  ratio {ratio:>5}  target {target}")
    value = f"{ours:.3f} {unit}".strip() + ("" if baseline is None else f" (baseline {baseline:.3f} {unit}, ratio {ratio})")
    _rows.row(what, value, "" if target == "-" else target, met)


def sklearn_groups(model, x, k: int):
    from sklearn.decomposition import NMF

    act = nbvis.capture(model, x[None], ["relu2"])["relu2"][0]
    matrix = act.reshape(act.shape[0], -1).T.double().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        NMF(n_components=k, init="nndsvda", random_state=0, max_iter=500).fit_transform(matrix)


def icons(model, x, cache: FeatureCache, timeout: float = 600.0):
    """(seconds to the first icon frame, seconds to all done, the view) from the view's construction."""
    start = time.perf_counter()
    first = []

    view = nbvis.SemanticDictionary(model, x, layer="relu2", icons=cache)

    def seen(_change=None):
        if not first and any(s in ("running", "done") for s in view._icon_state):
            first.append(time.perf_counter() - start)

    view.observe(seen, names=["_icon_state"])
    seen()
    view.wait_icons(timeout)
    seen()
    return first[0], time.perf_counter() - start, view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _rows.add_options(parser)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 10)
    torch.set_num_threads(args.threads)
    model = nbvis.demo.digits_cnn()
    images, _ = nbvis.demo.digits()
    x = images[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); digits CNN, layer relu2 (16 x 14 x 14)")

    ours, base, _ = side_by_side(lambda: nbvis.neuron_groups(model, x, "relu2", k=6), lambda: sklearn_groups(model, x, 6), repeats)
    row("groups for one input (NMF k=6 + attribution to 10 classes)", ours, base, "< 0.5 s", ours < 0.5)

    # torch imports torch._dynamo when the first optimizer of the process is made (seconds on a
    # loaded machine): a one-time cost of any optimization in the kernel, timed on its own here.
    start = time.perf_counter()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    row("one-time: the process's first torch optimizer (imports torch._dynamo)", time.perf_counter() - start, None, "-")

    with tempfile.TemporaryDirectory() as folder:
        cache = FeatureCache(model, (1, 28, 28), steps=args.steps, directory=folder)
        first, done, view = icons(model, x, cache)
        baseline = None
        if not args.no_baseline:
            start = time.perf_counter()
            for channel in range(16):
                nbvis.maximize(model, ("conv2", channel), (1, 28, 28), steps=args.steps, regularizers="yosinski2015")
            baseline = time.perf_counter() - start
        row("first icon visible, from the view's construction", first, None, "< 2 s", first < 2)
        row(f"all 16 icons done ({args.steps} steps each)", done, baseline, "< 30 s", done < 30)
        computed = cache.computed
        view.close()
        _, again, reopened = icons(model, images[7], cache)
        row("view reopened: icons recomputed", cache.computed - computed, None, "0", cache.computed == computed, unit="")
        row("view reopened: all 16 icons shown", again, None, "-")
        reopened.close()
        fresh = FeatureCache(model, (1, 28, 28), steps=args.steps, directory=folder)
        _, from_disk, view = icons(model, x, fresh)
        row("a new cache on the same weights: icons recomputed", fresh.computed, None, "0", fresh.computed == 0, unit="")
        row("a new cache on the same weights: all 16 read from disk", from_disk, None, "-")
        view.close()

    why = _rows.no_cuda()
    if why:
        _rows.row("CUDA: all 16 icons done", why, "", None)
    else:
        gpu = nbvis.demo.digits_cnn().cuda()
        first, done, view = icons(gpu, x.cuda(), FeatureCache(gpu, (1, 28, 28), steps=args.steps))
        view.close()
        row("CUDA: first icon visible", first, None, "< 2 s", first < 2)
        row(f"CUDA: all 16 icons done ({args.steps} steps each)", done, None, "< 30 s", done < 30)


if __name__ == "__main__":
    main()
