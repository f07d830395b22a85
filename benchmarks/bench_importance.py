"""Permutation importance: nbvis against scikit-learn on the same torch model, side by side;
and what one FeatureImportance chart costs over the wire and in a saved notebook.

The baseline is what a user would write: the torch model wrapped as a scikit-learn estimator and
passed to ``sklearn.inspection.permutation_importance`` (same random_state, so the same
permutations: the max |difference| checks that both compute the same numbers). The floor is
one batched forward pass over every perturbed row (n_samples * n_features * n_repeats rows), in
chunks through a reused buffer, without building any perturbation.

Each round times nbvis, scikit-learn and the floor one after the other; the reported ratio is
the median over rounds of each round's ratio, so load on a shared machine moves both sides alike.
Both sides run on one torch thread (``--threads``) and are timed in CPU time of this process (on a
shared machine other work inflates wall time at random; wall time is printed beside it). Where a
CUDA GPU is available the same cases run there too, timed in wall time (the GPU rows say so where not).

The chart's cost is compared with plotly's own FigureWidget drawing the same bars (it ships its
multi-MB JavaScript bundle inside every instance's state).

Run:  python benchmarks/bench_importance.py [--quick] [--rounds N] [--threads 1] [--bytes-only]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_diabetes
from sklearn.inspection import permutation_importance as sklearn_importance
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nbvis  # noqa: E402
from nbvis.compute.importance import MEMORY_BUDGET  # noqa: E402
from _rows import add_options, median_ratio, no_cuda, row  # noqa: E402
from sklearn_estimators import TorchClassifier, TorchRegressor  # noqa: E402


def floor(model: nn.Module, X: torch.Tensor, rows: int) -> float:
    """Seconds for one forward pass over ``rows`` rows, chunked as nbvis chunks them."""
    per_row = X[:1].numel() * 4 + sum(p.shape[0] * 4 for p in model.parameters() if p.dim() == 2)
    chunk = max(256, MEMORY_BUDGET // per_row)
    buf = X.repeat((chunk // len(X)) + 1, *([1] * (X.dim() - 1)))[:chunk].contiguous()
    start = clock(buf.is_cuda)
    with torch.no_grad():
        done = 0
        while done < rows:
            n = min(chunk, rows - done)
            model(buf[:n])
            done += n
    if buf.is_cuda:
        torch.cuda.synchronize()
    return clock(buf.is_cuda) - start


def mlp(*widths: int) -> nn.Module:
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def fit(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.mse_loss(model(X)[:, 0], y).backward()
        opt.step()
    return model.eval()


def clock(cuda: bool = False) -> float:
    """CPU seconds of this process (wall seconds for work on a GPU)."""
    return time.perf_counter() if cuda else time.process_time()


def timed(fn, cuda: bool = False) -> tuple[float, float, object]:
    """(clock seconds, wall seconds, value) of ``fn()``."""
    start, wall = clock(cuda), time.perf_counter()
    value = fn()
    return clock(cuda) - start, time.perf_counter() - wall, value


def case(title, model, X, y, estimator, scoring, n_repeats, rounds, target, device="cpu"):
    """Rounds of nbvis, scikit-learn and the floor side by side; print and report the median ratios."""
    model = model.to(device)
    Xt = torch.as_tensor(X, dtype=torch.float32, device=device)
    flat = np.asarray(X).reshape(len(X), -1)

    def ours():
        result = nbvis.permutation_importance(model, Xt, y, scoring=scoring, n_repeats=n_repeats, random_state=0)
        if device != "cpu":
            torch.cuda.synchronize()
        return result

    def reference():
        return sklearn_importance(estimator, flat, y, scoring=scoring, n_repeats=n_repeats, random_state=0)

    ours()  # warm up
    cuda = device != "cpu"
    times = {"nbvis": [], "sklearn": [], "floor": []}
    walls = {"nbvis": [], "sklearn": []}
    for _ in range(rounds):
        t, w, result = timed(ours, cuda)
        times["nbvis"].append(t)
        walls["nbvis"].append(w)
        t, w, ref = timed(reference, cuda)
        times["sklearn"].append(t)
        walls["sklearn"].append(w)
        times["floor"].append(floor(model, Xt, len(X) * len(result.groups) * n_repeats))
    diff = float(np.abs(ref.importances - result.importances).max())
    speedup = median_ratio(times["sklearn"], times["nbvis"])
    over_floor = median_ratio(times["nbvis"], times["floor"])
    median = {k: statistics.median(v) for k, v in times.items()}
    wall = median_ratio(walls["sklearn"], walls["nbvis"])
    print(
        f"{title} [{device}, {rounds} round(s), {'wall' if cuda else 'CPU'} time]\n  scikit-learn {median['sklearn']:7.3f} s | "
        f"nbvis {median['nbvis']:7.3f} s | speed-up x{speedup:6.2f} (median of per-round ratios; wall time x{wall:.2f}) | "
        f"floor (one batched forward over all "
        f"{len(X) * len(result.groups) * n_repeats:,} perturbed rows) {median['floor']:7.3f} s: nbvis/floor {over_floor:5.2f} | "
        f"max |nbvis - sklearn| {diff:.1e}"
    )
    met = None if target is None else bool(speedup >= target and diff <= 1e-5)
    label = f"{title}, vs scikit-learn" + (" (CUDA)" if device != "cpu" else "")
    value = f"{speedup:.2f}x faster ({over_floor:.2f}x the one-batch floor; max diff {diff:.0e})"
    row(label, value, "" if target is None else f">= {target:g}x, same numbers", met)
    return speedup


def state_bytes(widget) -> tuple[int, int]:
    """(JSON bytes, binary buffer bytes) of a widget's full state: what opening it sends."""
    from ipywidgets.widgets.widget import _remove_buffers

    state, _paths, buffers = _remove_buffers(widget.get_state())
    return len(json.dumps(state)), sum(len(b) for b in buffers)


def saved_bytes(widgets) -> int:
    """Bytes of the widget state a notebook saves for ``widgets`` (and the widgets they refer to)."""
    from ipywidgets.embed import dependency_state

    return len(json.dumps(dependency_state(widgets, drop_defaults=False)))


def chart_cost() -> None:
    import plotly.graph_objects as go

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = fit(mlp(10, 32, 1), torch.tensor(X.values, dtype=torch.float32), torch.tensor(y.values, dtype=torch.float32), 50)
    charts = [nbvis.FeatureImportance(model, X, y, n_repeats=5, scoring=s) for s in ("r2", "neg_mean_squared_error", "r2")]
    for chart in charts:
        chart.wait()
    images, labels = nbvis.demo.digits(28)
    pixels = nbvis.FeatureImportance(nbvis.demo.digits_mlp(), images, labels, scoring="accuracy", n_repeats=2)
    pixels.wait()
    library = charts[0]._library
    result = charts[0].result
    order = result.ranking()
    figures = [
        go.FigureWidget(
            data=[go.Bar(x=result.importances_mean[order], y=[result.feature_names[i] for i in order], orientation="h",
                         error_x=dict(type="data", array=result.importances_std[order]))]
        )
        for _ in range(3)
    ]
    js, buf = state_bytes(charts[0])
    pjs, pbuf = state_bytes(pixels)
    fjs, fbuf = state_bytes(figures[0])
    one, three = saved_bytes(charts[:1]), saved_bytes(charts)
    fone, fthree = saved_bytes(figures[:1]), saved_bytes(figures)
    kb = 1024
    print("\nWhat one chart costs (diabetes, 10 bars; digits, 784 pixel bars + 28x28 map)")
    print(f"  nbvis FeatureImportance, over the wire per chart: {(js + buf) / kb:7.1f} KB "
          f"({js / kb:.1f} KB JSON, of which {len(charts[0].get_state()['_esm']) / kb:.1f} KB view code; "
          f"{buf} B binary); digits pixel chart {(pjs + pbuf) / kb:.1f} KB")
    print(f"  plotly.js, once per kernel for every chart (gzipped, binary): {len(library.source) / kb:7.1f} KB")
    print(f"  plotly FigureWidget of the same bars, per chart:              {(fjs + fbuf) / kb:7.1f} KB")
    print(f"  saved notebook widget state, 1 chart / 3 charts: nbvis {one / kb:7.1f} / {three / kb:7.1f} KB, "
          f"FigureWidget {fone / kb:7.1f} / {fthree / kb:7.1f} KB (each extra chart: nbvis {(three - one) / 2 / kb:.1f} KB, "
          f"FigureWidget {(fthree - fone) / 2 / kb:.1f} KB)")
    row("FeatureImportance chart over the wire, vs a plotly FigureWidget of the same bars",
        f"{(fjs + fbuf) / (js + buf):.0f}x smaller ({(js + buf) / kb:.1f} KB vs {(fjs + fbuf) / kb:.1f} KB)")
    row("each extra chart in a saved notebook, vs a plotly FigureWidget",
        f"{(fthree - fone) / max(1, three - one):.0f}x smaller ({(three - one) / 2 / kb:.1f} KB vs {(fthree - fone) / 2 / kb:.1f} KB)")
    for widget in [*charts, pixels, *figures]:
        widget.close()


def cases():
    """(title, model, X, y, estimator, scoring, n_repeats, rounds, quick rounds, target) of each case."""
    # 1. a 20000 x 50 table, 50-64-64-1 MLP, r2, n_repeats=10
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 50)).astype(np.float32)
    y = (X[:, 0] * 2 + np.sin(X[:, 1] * 2) + X[:, 2] * X[:, 3] + 0.1 * rng.normal(size=20000)).astype(np.float32)
    model = fit(mlp(50, 64, 64, 1), torch.from_numpy(X), torch.from_numpy(y), 100)
    yield "permutation importance, 20000x50 table, MLP 50-64-64-1, 10 repeats", model, X, y, TorchRegressor(model), "r2", 10, 3, 1, 2.5

    # 2. diabetes, 442 x 10, MLP 10-64-64-1, r2, n_repeats=10
    X, y = load_diabetes(return_X_y=True)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    model = fit(mlp(10, 64, 64, 1), torch.from_numpy(X), torch.from_numpy(y), 200)
    yield "permutation importance, diabetes 442x10, MLP 10-64-64-1, 10 repeats", model, X, y, TorchRegressor(model), "r2", 10, 9, 3, 7

    # 3. pixel importance of the digits MLP (784-100-10), 1797 digits at 28x28, accuracy, n_repeats=5
    images, labels = nbvis.demo.digits(28)
    model = nbvis.demo.digits_mlp()
    est = TorchClassifier(model, input_shape=(1, 28, 28)).fit(None, labels.numpy())
    yield ("pixel importance, digits 1797x28x28, MLP 784-100-10, 5 repeats", model, images.numpy(), labels.numpy(), est,
           "accuracy", 5, 3, 1, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    parser.add_argument("--rounds", type=int, default=None, help="rounds per case (default: 3, 9 for diabetes; --quick: 1, 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps CPU time meaningful)")
    parser.add_argument("--bytes-only", action="store_true", help="only measure what a chart costs")
    args = parser.parse_args()
    if args.bytes_only:
        chart_cost()
        return
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    missing = no_cuda()
    for title, model, X, y, est, scoring, n_repeats, rounds, quick, target in cases():
        rounds = args.rounds or (quick if args.quick else rounds)
        case(title, model, X, y, est, scoring, n_repeats, rounds, target)
        if missing:
            row(f"{title}, vs scikit-learn (CUDA)", missing)
        else:
            case(title, model, X, y, est, scoring, n_repeats, rounds, None, device="cuda")
            model.cpu()
    chart_cost()


if __name__ == "__main__":
    main()
