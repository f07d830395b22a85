"""Every example notebook runs top to bottom in a real kernel, so none of them can rot, and the
lessons they teach are checked on what they print."""

from __future__ import annotations

import json
import re
from pathlib import Path

import importlib.util

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "example_notebooks").glob("*.ipynb"))
SOURCES = Path(__file__).resolve().parent.parent / "scripts" / "notebook_sources"

# After the last cell: the ids of the widgets still open in the kernel (a closed one draws nothing).
_OPEN_WIDGETS = "import json\nfrom ipywidgets.widgets.widget import _instances\nprint(json.dumps(sorted(_instances)))"

_RUNS: dict = {}


def _outline_reader():
    spec = importlib.util.spec_from_file_location("make_notebook", SOURCES.parent / "make_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cells_from_outline


cells_from_outline = _outline_reader()


class Run:
    def __init__(self, nb, open_widgets):
        self.cells = [cell for cell in nb.cells if cell.cell_type == "code"]
        self.open_widgets = set(open_widgets)

    def outputs(self):
        return [output for cell in self.cells for output in cell.get("outputs", [])]

    def text(self) -> str:
        return "".join(o.get("text", "") for o in self.outputs() if o.get("output_type") == "stream")

    def displayed_widgets(self) -> list[str]:
        return [
            o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
            for o in self.outputs()
            if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        ]


def executed(path: Path, tmp_path_factory) -> Run:
    """Run the notebook once per test session (several tests read the same run)."""
    if path not in _RUNS:
        nb = nbformat.read(path, as_version=4)
        workdir = tmp_path_factory.mktemp(path.stem)
        client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            probe = nbformat.v4.new_code_cell(_OPEN_WIDGETS)
            nb.cells.append(probe)
            client.execute_cell(probe, len(nb.cells) - 1)
            nb.cells.pop()
        open_widgets = json.loads("".join(o.get("text", "") for o in probe.outputs if o.get("output_type") == "stream"))
        _RUNS[path] = Run(nb, open_widgets)
    return _RUNS[path]


def _notebook(name: str) -> Path:
    return next(p for p in NOTEBOOKS if p.name.startswith(name))


def test_there_are_example_notebooks():
    assert NOTEBOOKS, "example_notebooks/ has no notebooks"


SOURCED = sorted(SOURCES.glob("*.py"))


@pytest.mark.parametrize("source", SOURCED, ids=[p.name for p in SOURCED])
def test_notebooks_are_generated_from_their_sources(source):
    path = source.parent.parent.parent / "example_notebooks" / f"{source.stem}.ipynb"
    assert path.exists(), f"{source.name} has no notebook: python scripts/make_notebook.py {source} {path}"
    nb = nbformat.read(path, as_version=4)
    expected = cells_from_outline(source.read_text())
    assert [(c.cell_type, c.source) for c in nb.cells] == [(c.cell_type, c.source) for c in expected], (
        f"{path.name} differs from {source.name}: python scripts/make_notebook.py {source} {path}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_committed_with_outputs_cleared(path):
    nb = nbformat.read(path, as_version=4)
    assert not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_and_every_view_stays_open(path, tmp_path_factory):
    run = executed(path, tmp_path_factory)
    errors = [output for output in run.outputs() if output.get("output_type") == "error"]
    assert not errors, errors
    shown = run.displayed_widgets()
    assert shown, f"{path.name} displays no widget"
    closed = [model_id for model_id in shown if model_id not in run.open_widgets]
    assert not closed, f"{path.name} closes {len(closed)} of the views it displays: after Run All they are empty"


@pytest.mark.notebooks
def test_live_weight_grid_demo_trains_long_enough_and_ends_on_the_final_weights(tmp_path_factory):
    text = executed(_notebook("01_"), tmp_path_factory).text()
    epochs = int(re.search(r"loss after (\d+) epochs", text).group(1))
    assert epochs >= 1
    assert "the grid shows the final weights: True" in text


@pytest.mark.notebooks
def test_diabetes_importance_is_held_out_on_a_model_that_generalizes(tmp_path_factory):
    text = executed(_notebook("03_"), tmp_path_factory).text()
    train = float(re.search(r"R2 on the training rows: (-?[\d.]+)", text).group(1))
    held_out = float(re.search(r"R2 on the held-out rows: (-?[\d.]+)", text).group(1))
    linear = float(re.search(r"linear model: R2 [-\d.]+ on the training rows, (-?[\d.]+) held out", text).group(1))
    assert held_out > 0.3 and train - held_out < 0.2, (train, held_out)
    assert held_out >= linear - 0.05  # as good as the linear model on unseen patients
    rows = re.findall(r"^\s*(\w+)\s+(-?[\d.]+) \+/- ([\d.]+)\s+(-?[\d.]+) \+/- ([\d.]+)$", text, flags=re.M)
    assert len(rows) == 10
    mlp = {name: float(m) for name, m, _, _, _ in rows}
    reference = {name: float(r) for name, _, _, r, _ in rows}
    # both models rank bmi among their top three, and neither needs age
    assert "bmi" in sorted(mlp, key=mlp.get)[-3:] and "bmi" in sorted(reference, key=reference.get)[-3:]
    assert abs(mlp["age"]) < 0.02 and abs(reference["age"]) < 0.02


@pytest.mark.notebooks
def test_pixel_importance_is_on_patches_well_above_their_error_bars(tmp_path_factory):
    text = executed(_notebook("03_"), tmp_path_factory).text()
    drops = re.findall(r"patch \((\d+):(\d+), (\d+):(\d+)\): accuracy drops by ([\d.]+) \+/- ([\d.]+)", text)
    assert len(drops) == 5
    for r0, r1, c0, c1, mean, std in drops:
        assert int(r1) - int(r0) >= 4 and int(c1) - int(c0) >= 4  # patches, not single pixels
        assert float(mean) > 0.01 and float(mean) > 3 * float(std), (mean, std)
        assert not (int(r0) == 0 and int(c0) == 0)  # the empty corner is not among the top


@pytest.mark.notebooks
def test_building_blocks_notebook_factorizes_well_and_refuses_a_negative_layer(tmp_path_factory):
    text = executed(_notebook("06_"), tmp_path_factory).text()
    r2 = float(re.search(r"R\^2 = ([\d.]+)", text).group(1))
    assert 0.8 < r2 <= 1.0
    assert "layer 'conv2' has negative activations" in text and "use the non-negative layer 'relu2'" in text
    entries = re.search(r"position \[(\d+), (\d+)\] entries (\[.*\])", text)
    values = [v for _, v in eval(entries.group(3))]
    assert len(values) == 5 and values == sorted(values, reverse=True)
