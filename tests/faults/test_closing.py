"""Closed views are freed: nothing (anywidget's file watcher, jobs, hooks, timers, layouts)
keeps a view, or the Explorer and its children, alive after ``close()``."""

from __future__ import annotations

import gc
import os
import weakref

import torch
from ipywidgets.widgets.widget import _instances
from torch import nn

import nbvis
from nbvis.widgets.feature_importance import plotly_library


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def freed(make, figures, name):
    """Make a view, close it, drop it: it must be garbage, and leave no widget registered."""
    open_before = len(_instances)
    view = make()
    ref = weakref.ref(view)
    view.close()
    del view
    gc.collect()
    assert ref() is None, f"{name} is still alive after close()"
    assert len(_instances) == open_before, f"{name} left {len(_instances) - open_before} widgets open"
    figures.add("garbage-collected after close()", name, "yes, no widget left open")


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 20), nn.ReLU(), nn.Linear(20, 3))


def test_every_view_is_freed_after_close(figures):
    model = mlp()
    data = torch.rand(3000, 1, 8, 8)
    freed(lambda: nbvis.WeightGrid(model, "1", live=True), figures, "WeightGrid (live)")

    def heatmap_mid_scan():
        view = nbvis.ActivationHeatmap(model, data[0], dataset=data)
        view.selected = ("1", 2)  # a top-examples scan starts (on a thread here)
        return view

    freed(heatmap_mid_scan, figures, "ActivationHeatmap closed mid-scan")
    X, y = torch.randn(2000, 64), torch.randn(2000)
    plotly_library()  # plotly.js, sent once per kernel and shared by every chart: it stays
    freed(lambda: nbvis.FeatureImportance(nn.Sequential(nn.Linear(64, 1)), X, y, n_repeats=50), figures,
          "FeatureImportance closed mid-run")
    freed(lambda: nbvis.OptimizationViewer(model, ("1", 2), (1, 8, 8), steps=100_000), figures,
          "OptimizationViewer closed mid-run")


def test_the_explorer_closes_and_frees_its_children(figures):
    model = mlp()
    open_before = len(_instances)
    explorer = nbvis.Explorer(model, torch.rand(60, 1, 8, 8), steps=30, starts=1)
    refs = {"explorer": weakref.ref(explorer), "heatmap": weakref.ref(explorer.heatmap)}
    for unit in range(16):
        explorer.selected = ("2", unit)
        refs[f"optimizer {unit}"] = weakref.ref(explorer.optimizer)
    refs["grid"] = weakref.ref(explorer.grid)
    explorer.close()
    del explorer
    gc.collect()
    alive = sorted(name for name, ref in refs.items() if ref() is not None)
    assert alive == []
    assert len(_instances) == open_before
    figures.add("garbage-collected after close()", "Explorer after 16 selections",
                f"yes, with its heatmap, grid and {sum(1 for k in refs if k.startswith('optimizer'))} optimizers")


def cycles(make, n=100):
    gc.collect()
    start = rss_mb()
    for _ in range(n):
        view = make()
        view.close()
        del view
    gc.collect()
    return rss_mb() - start


def test_create_close_cycles_do_not_grow_memory(figures):
    torch.manual_seed(0)
    big = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    cycles(lambda: nbvis.WeightGrid(big, "0"), 3)  # warm up caches and allocator
    grown = cycles(lambda: nbvis.WeightGrid(big, "0"))
    figures.add("RSS growth over 100 create/close cycles", "WeightGrid 1024x1024", f"{grown:+.1f} MB")
    assert grown < 50
    x = torch.rand(1024)
    cycles(lambda: nbvis.ActivationHeatmap(big, x), 3)
    grown = cycles(lambda: nbvis.ActivationHeatmap(big, x))
    figures.add("RSS growth over 100 create/close cycles", "ActivationHeatmap 1024-1024-10", f"{grown:+.1f} MB")
    assert grown < 50
