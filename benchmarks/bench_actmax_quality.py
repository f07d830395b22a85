"""Activation maximization quality on the demo digits: the figures of issue #12, each against its target.

On the demo digits CNN and MLP, all 10 class logits, 4 starts, the default preset for a known
dataset (``regularizers="auto"`` with ``dataset=``, i.e. ``"data"``: the pixels whitened by the
data's covariance, random shifts of up to 2 px, zoom and rotation scaled to 28 px, a diversity
penalty of 0.3, light L2 decay and blur, pixels clipped into the data's 0..1, 512 Adam steps with
the rate annealed along a cosine):

- nearest class mean (correlation) of each start's image is its own class, for 10/10 classes;
- how much the images look like digits, in two figures without a target yet: their mean
  correlation with their own class's mean digit (higher is closer), and the mean share of their
  variation about the data's mean outside the directions along which the digits vary (the data
  covariance's eigenvectors above 1e-3 of the largest; lower is closer: stripes and blobs where
  digits have no ink raise it);
- the model's probability of the class under random shifts of up to 2 px is >= 0.9 (its exact
  mean over all 25 shifts, each start; the minimum over starts and classes is printed);
- every pixel inside the data range;
- mean pairwise (1 - correlation) between starts >= 0.2, each start >= 80% of the best start's objective;
- the objective converged: relative change over the last 10% of steps < 1%, per start (the
  objective of the images themselves: without the random transforms of each step and without the
  diversity penalty, which is what the figures above are about);
- the L2-only preset ("yosinski2015-2", plain gradient ascent) on fc1 units: cosine with the
  unit's incoming weights >= 0.99;
- per-step time with diversity on within 1.15x of the bare PyTorch loop doing the same work
  (jitter, zoom/rotation, forward, the Gram penalty, backward, Adam, clipping), rounds
  interleaved, median of per-round ratios.

Convention shared by the benchmark scripts: ``rows()`` returns ``(name, value, target, met)``
tuples (``target`` a string such as ``">= 0.9"``, ``met`` a bool), and running the script prints
them as a table. Run: ``python benchmarks/bench_actmax_quality.py [--quick]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
import torch

import nbvis
from _rows import add_options, row
from nbvis.compute.optimize import OptimizationRun, fit_regularizers, maximize
from nbvis.compute.optimize.diversity import gram_similarity
from nbvis.compute.optimize.transforms import affine_resample

SHAPE = (1, 28, 28)
STARTS = 4


def correlations(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    a = x.flatten(1).double()
    b = y.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a @ b.T) / (a.norm(dim=1)[:, None] * b.norm(dim=1)[None]).clamp_min(1e-12)


def outside_share(x: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Per input: the share of its norm about the data's mean outside the directions along which
    the data vary (the covariance's eigenvectors with eigenvalues above 1e-3 of the largest)."""
    flat = images.flatten(1).double()
    mean = flat.mean(0)
    values, vectors = torch.linalg.eigh(torch.cov(flat.T, correction=0))
    span = vectors[:, values > 1e-3 * values[-1]]
    centred = x.flatten(1).double() - mean
    return (centred - centred @ span @ span.T).norm(dim=1) / centred.norm(dim=1).clamp_min(1e-12)


def class_figures(model, images, labels, steps=None):
    """Per class: (own class nearest for every start, min shifted confidence, in range, diversity,
    min/max objective, relative change over the last 10%, mean correlation with the class mean,
    mean share outside the data's directions)."""
    means = torch.stack([images[labels == c].mean(0) for c in range(10)])
    out = []
    for c in range(10):
        run = OptimizationRun(model, c, SHAPE, starts=STARTS, regularizers="auto", dataset=(images, labels), seed=c, steps=steps)
        total = run.planned
        run.run(total - total // 10)
        before = run.evaluate()  # the objective of the images themselves, without transforms
        result = run.run(total // 10).result()
        final = run.evaluate()
        quality = result.evaluate(model, (images, labels))
        similar = correlations(result.inputs, means)
        nearest = similar.argmax(1)
        change = np.abs(final - before) / np.abs(final).clip(1e-12)
        out.append(dict(
            own=bool((nearest == c).all()),
            confidence=float(quality.confidence.min()),
            inside=bool(result.inputs.min() >= 0 and result.inputs.max() <= 1),
            diversity=quality.mean_diversity,
            share=float(final.min() / final.max()),
            change=float(change.max()),
            resemblance=float(similar[:, c].mean()),
            outside=float(outside_share(result.inputs, images).mean()),
        ))
    return out


def l2_cosines(mlp, units=range(10)):
    cos = []
    for u in units:
        result = maximize(mlp, ("fc1", u), (784,), starts=2, regularizers="yosinski2015-2")
        w = mlp.fc1.weight[u].detach()
        cos.append(float(torch.nn.functional.cosine_similarity(result.inputs, w[None], dim=1).min()))
    return cos


def bare_diverse_loop(model, steps, regs, seed=0):
    """The same work as the "lucid" run, written by hand."""
    for p in model.parameters():
        p.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    x = (0.5 + 0.1 * torch.randn((STARTS, *SHAPE), generator=generator)).clamp(0, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=0.05)
    seen = {}
    handle = model.conv2.register_forward_hook(lambda m, i, o: seen.__setitem__("a", o)) if hasattr(model, "conv2") else None
    start = time.process_time()
    for _ in range(steps):
        dy, dx = rng.randint(-regs.jitter, regs.jitter), rng.randint(-regs.jitter, regs.jitter)
        moved = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        moved = affine_resample(moved, 1 + rng.uniform(-regs.scale, regs.scale), rng.uniform(-regs.rotate, regs.rotate))
        values = model(moved)[:, 3]
        size = values.detach().abs().mean()
        loss = -values.sum() + regs.diversity * STARTS * size * gram_similarity(None, moved)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    elapsed = time.process_time() - start
    if handle is not None:
        handle.remove()
    for p in model.parameters():
        p.requires_grad_(True)
    return elapsed


def nbvis_diverse_loop(model, steps, images, seed=0):
    run = OptimizationRun(model, 3, SHAPE, starts=STARTS, regularizers="lucid", value_range=(0.0, 1.0), seed=seed)
    start = time.process_time()
    run.run(steps)
    return time.process_time() - start


def step_time_ratio(model, images, steps=64, rounds=5):
    regs = fit_regularizers("lucid", SHAPE)
    bare_diverse_loop(model, 4, regs)
    nbvis_diverse_loop(model, 4, images)
    ratios = []
    for r in range(rounds):
        bare = bare_diverse_loop(model, steps, regs, seed=r)
        ours = nbvis_diverse_loop(model, steps, images, seed=r)
        ratios.append(ours / bare)
    return statistics.median(ratios)


def rows(quick: bool = False):
    torch.set_num_threads(1)
    images, labels = nbvis.demo.digits()
    cnn, mlp = nbvis.demo.digits_cnn(), nbvis.demo.digits_mlp()
    steps = 64 if quick else None
    out = []
    for name, model in (("CNN", cnn), ("MLP", mlp)):
        figures = class_figures(model, images, labels, steps)
        out += [
            (f"{name}: classes whose every start is nearest its class mean", sum(f["own"] for f in figures), ">= 10", sum(f["own"] for f in figures) >= 10),
            (f"{name}: min P(class) under +-2 px shifts", min(f["confidence"] for f in figures), ">= 0.9", min(f["confidence"] for f in figures) >= 0.9),
            (f"{name}: classes whose every start keeps P(class) >= 0.9 under the shifts", sum(f["confidence"] >= 0.9 for f in figures), "", None),
            (f"{name}: mean correlation with the class's mean digit", statistics.mean(f["resemblance"] for f in figures), "", None),
            (f"{name}: mean share of the images outside the digits' directions", statistics.mean(f["outside"] for f in figures), "", None),
            (f"{name}: classes with every pixel in the data range", sum(f["inside"] for f in figures), ">= 10", all(f["inside"] for f in figures)),
            (f"{name}: mean pairwise 1 - correlation", statistics.mean(f["diversity"] for f in figures), ">= 0.2", statistics.mean(f["diversity"] for f in figures) >= 0.2),
            (f"{name}: min start objective / best start's", min(f["share"] for f in figures), ">= 0.8", min(f["share"] for f in figures) >= 0.8),
            (f"{name}: max relative change over the last 10% of steps", max(f["change"] for f in figures), "< 0.01", max(f["change"] for f in figures) < 0.01),
        ]
    cos = l2_cosines(mlp, range(3) if quick else range(10))
    out.append(("MLP fc1 units, yosinski2015-2: min cosine with the incoming weights", min(cos), ">= 0.99", min(cos) >= 0.99))
    ratio = step_time_ratio(cnn, images, steps=16 if quick else 64, rounds=3 if quick else 5)
    out.append(("CNN, lucid + diversity: per-step time / bare PyTorch loop", ratio, "<= 1.15", ratio <= 1.15))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)  # --quick: fewer steps and units (a smoke run, not the figures)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, 1 thread; {STARTS} starts, all 10 class logits, default preset for a known dataset")
    for name, value, target, met in rows(args.quick):
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        verdict = "" if met is None else "met" if met else "NOT met"
        print(f"  {name:<72} {shown:>8}  target {target or '-':<7} {verdict}")
        row(name, shown, target, met)


if __name__ == "__main__":
    main()
