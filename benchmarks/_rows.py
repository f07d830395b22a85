"""The results every benchmark script reports to ``benchmarks/run_all.py``: one line per result.

A script prints its own readable output and, for each result, one line::

    BENCH-ROW {"measurement": "...", "value": "...", "target": "...", "met": true}

written by :func:`row`. ``met`` is true, false, or null when the result has no target (or was
not measured, e.g. a GPU row on a machine without one). Every script accepts ``--quick`` (fewer
rounds, same measurements) and ``--no-browser`` (skip what needs JupyterLab + Chromium); see
:func:`add_options`.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Optional

PREFIX = "BENCH-ROW "


def row(measurement: str, value: str, target: str = "", met: Optional[bool] = None) -> None:
    """Print one result line for run_all.py."""
    record = {"measurement": measurement, "value": value, "target": target, "met": None if met is None else bool(met)}
    print(PREFIX + json.dumps(record), flush=True)


def parse(line: str) -> Optional[dict]:
    """The result a line holds, or None for any other line."""
    if not line.startswith(PREFIX):
        return None
    return json.loads(line[len(PREFIX) :])


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options run_all.py passes to every script."""
    parser.add_argument("--quick", action="store_true", help="fewer rounds (the same measurements)")
    parser.add_argument("--no-browser", action="store_true", help="skip what needs JupyterLab + Chromium")


def median_ratio(slow: list[float], fast: list[float]) -> float:
    """The median over rounds of slow / fast, each round's pair measured side by side."""
    return statistics.median(s / f for s, f in zip(slow, fast))


def no_cuda() -> Optional[str]:
    """Why no GPU rows can be measured here (None when a CUDA device is available)."""
    import torch

    return None if torch.cuda.is_available() else "not measured: no CUDA GPU on this machine"
