"""Explorer: the views linked around one selected unit (the Deep Visualization Toolbox in a notebook).

Yosinski et al. 2015: feed an input, watch every unit react, select a unit to see its incoming
weights, its preferred (synthesized) input and its top dataset examples. Here that is an
:class:`ActivationHeatmap` over a dataset, a :class:`WeightGrid` of the layer whose weights produce
the selected unit, and an :class:`OptimizationViewer` that maximizes it, joined by Python
observers in ipywidgets containers.
"""

from __future__ import annotations

import html
import time
from typing import Callable, Optional, Sequence

import ipywidgets
import torch
import traitlets
from torch import nn

from ..compute import structure, units
from ..compute.optimize import OptimizationRun, objective
from ..compute.optimize.arguments import positive_int
from ..compute.optimize.data import data_range
from ..compute.probe import LayerRef, capture
from ..compute.weights import infer_input_shape
from ._base import close_parts
from ._export import Exportable
from ._explorer_blocks import BlocksPanel
from ._guard import ErrorGuard
from ._linking import Linking
from .activation_heatmap import ActivationHeatmap
from .optimization_viewer import OptimizationViewer
from .weight_grid import WeightGrid

__all__ = ["Explorer"]

HINT = "Click a unit in the layers: its why map, top dataset examples, preferred input and weights appear at the right."
#: seconds at most that a new unit's optimization waits for its top examples (with their maps)
#: to be found and sent: every panel shows the unit first, then the preferred inputs stream
PANELS_FIRST = 1.0
#: the optimizer pane of a model that reads token ids
NO_TOKENS = ("no preferred input: this model reads token ids (integers), which activation maximization cannot "
             "optimize; the top dataset examples show what the unit responds to")


class Explorer(Exportable, ErrorGuard, ipywidgets.VBox):
    """Navigate a model by clicking: one selected unit, shown in every view.

    ``model``: any ``nn.Module``. ``dataset``: the samples to look at and to scan for top examples
    (a tensor or array of samples, an ``(inputs, targets)`` pair, or a map-style torch Dataset).
    ``labels``, ``layers``, ``preprocess``, ``index``, ``top_k``: as in :class:`ActivationHeatmap`.
    ``selected``: a first ``(layer, unit)`` to select. ``page_size``: weight tiles per page.

    The preferred input of the selected unit is synthesized from ``input_shape`` (one model input
    without the batch axis; default: the shape of a dataset sample) by a run of ``steps`` steps
    from ``starts`` random inputs with ``regularizers`` and ``seed`` (changes made in the view
    carry over to the next unit). ``value_range=(low, high)`` keeps the inputs in that range and
    draws them on that scale; by default they are free and each is drawn on its own scale.
    ``preactivation``: when only rising layers (activation functions, pooling, batch norm with a
    positive scale) lie between the selected unit and the Linear or Conv layer that computes it,
    maximize that layer's unit instead (``fc1[12]`` for ``sigmoid[12]``, ``conv2[5]`` for
    ``relu2[5]``): pushing it up can only raise the selected unit, and its gradient reaches the
    input even where a ReLU is off for every start or a sigmoid is saturated (exactly 1 in float32
    from about 17 on), where the selected unit's own gradient is zero. For a dense unit the
    preferred input is the same.

    For a model with conv layers, :attr:`blocks` holds a :class:`NeuronGroups` of the current input
    and a :class:`SemanticDictionary` linked to the selection (``building_blocks=False`` leaves them
    out): a unit selected at a conv layer is selected in the dictionary, and a channel clicked there
    is selected here.

    Clicking a unit in the heatmap (or setting :attr:`selected`) selects it everywhere: the heatmap
    shows its gradient and scans the dataset for its top examples; :attr:`grid` shows the incoming
    weights of the layer that computes it (``fc1`` for the ``sigmoid`` after it) with the unit
    outlined; :attr:`optimizer` synthesizes its preferred input (the previous run is stopped).
    Clicking a tile in the grid selects that unit back in the heatmap.

    A model that reads token ids (a text model's dataset of integers) has no preferred input: the
    heatmap, its top examples and the weights are shown, and :attr:`optimizer` stays None.
    """

    # what close() stops and closes (class defaults: close() may run on a half-built instance)
    _optimizer: Optional[OptimizationViewer] = None
    _grids: dict = {}
    _owned: tuple = ()
    blocks = None  # the BlocksPanel (neuron groups and semantic dictionary), or None

    def __init__(
        self,
        model: nn.Module,
        dataset,
        *,
        labels: Optional[Sequence[str]] = None,
        layers: Optional[Sequence[LayerRef]] = None,
        preprocess: Optional[Callable] = None,
        input_shape: Optional[Sequence[int]] = None,
        value_range: Optional[tuple[float, float]] = None,
        index: int = 0,
        selected=None,
        steps: int = 128,
        starts: int = 3,
        regularizers="auto",
        seed: Optional[int] = None,
        preactivation: bool = True,
        page_size: int = 36,
        top_k: int = 9,
        building_blocks: bool = True,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        if dataset is None:
            raise TypeError("Explorer needs a dataset to look at: samples, an (inputs, targets) pair or a torch Dataset")
        steps = positive_int("steps", steps)
        self.model = model
        self._labels = None if labels is None else [str(label) for label in labels]
        self._page_size = page_size
        self._preactivation = bool(preactivation)
        known = dataset if preprocess is None else None  # samples the model reads as they are
        if value_range is None and known is not None:
            value_range = data_range(known)  # once: the preferred inputs stay inside it
        self._run_options = dict(
            steps=steps, starts=starts, regularizers=regularizers, seed=seed, value_range=value_range, dataset=known
        )
        self.heatmap = ActivationHeatmap(
            model, layers=layers, labels=labels, dataset=dataset, preprocess=preprocess, index=index, top_k=top_k,
            dashboard=True, rank="preactivation" if preactivation else "unit",
        )
        self._owned = (self.heatmap,)
        try:
            sample = self.heatmap.input
            self._input_shape = None  # token ids: nothing to optimize
            if sample.is_floating_point():
                self._input_shape = self._check_run(tuple(sample.shape) if input_shape is None else input_shape)
            self._chain = self._layer_chain(sample)
            self._shown_shapes = {name: act.shape for name, act in self.heatmap.activations.items()}
        except Exception:
            self.close()
            raise
        self._sources: dict[str, Optional[str]] = {}  # shown layer -> the weighted layer computing it
        self._grids: dict[str, WeightGrid] = {}
        self._follows: set[str] = set()  # grid layers whose input * weights follow the heatmap's input
        self._grid: Optional[WeightGrid] = None
        self._linking = Linking()

        self._caption = ipywidgets.HTML()
        self._grid_note = ipywidgets.HTML()
        self._optimizer_note = ipywidgets.HTML()
        # One screen, as the Deep Visualization Toolbox: the heatmap's dashboard (the input, the
        # layers, the selected unit's why map and top examples) and beside it the unit's preferred
        # input and incoming weights; on a narrow page the columns wrap. What comes after a click
        # (the new unit's optimizer view, its streamed inputs) fills space kept for it: the views
        # keep their place (see optimization_viewer.js, top_examples.js), nothing moves.
        self._grid_slot = ipywidgets.VBox()
        self._optimizer_slot = ipywidgets.VBox()
        self._side = ipywidgets.VBox(
            [self._optimizer_slot, self._grid_slot],
            layout=ipywidgets.Layout(flex="0 1 330px", min_width="240px", margin="0 0 0 12px", grid_gap="8px"),
        )
        self._side.add_class("nbvis-explorer-side")
        self.heatmap.layout.flex = "0 1 auto"
        self._row = ipywidgets.HBox(
            [self.heatmap, self._side], layout=ipywidgets.Layout(flex_flow="row wrap", align_items="flex-start")
        )
        self._error = ipywidgets.HTML(layout=ipywidgets.Layout(display="none"))
        super().__init__([self._caption, self._row, self._error])
        self._owned = (self.heatmap, self._caption, self._grid_note, self._optimizer_note, self._grid_slot,
                       self._optimizer_slot, self._side, self._row, self._error)
        try:  # conv models: the neuron groups of the input and a dictionary linked to the selection
            self.blocks = BlocksPanel.attach(self, dataset, labels) if building_blocks else None
        except Exception:
            self.close()
            raise
        if self.blocks is not None:  # below the dashboard, folded until asked for
            self._blocks_fold = ipywidgets.Accordion([self.blocks], titles=("building blocks: neuron groups and semantic dictionary",),
                                                     selected_index=None, layout=ipywidgets.Layout(margin="8px 0 0 0"))
            self._owned += (self.blocks, self._blocks_fold)
            self.children = (self._caption, self._row, self._blocks_fold, self._error)
        self.add_class("nbvis-explorer")
        self.observe(self._show_error, names=["error"])
        self.heatmap.observe(self._on_heatmap_selected, names=["selected"])
        self.heatmap.observe(self._on_heatmap_input, names=["_acts"])
        try:
            self._link(None)
            if selected is not None:
                self.selected = selected
        except Exception:
            self.close()
            raise

    # ----- public API --------------------------------------------------------------------------

    @property
    def selected(self) -> Optional[tuple[str, int]]:
        """The selected ``(layer, unit)`` (``""`` names the model's output), or None."""
        value = self.heatmap.selected
        return None if value is None else tuple(value)

    @selected.setter
    def selected(self, value) -> None:
        try:
            self.heatmap.selected = value
        except traitlets.TraitError as err:
            raise ValueError(str(err)) from None

    @property
    def grid(self) -> Optional[WeightGrid]:
        """The weight grid shown (None while the selected unit is not computed by a Linear or Conv layer)."""
        return self._grid

    @property
    def optimizer(self) -> Optional[OptimizationViewer]:
        """The activation-maximization view of the selected unit (None before a unit is selected)."""
        return self._optimizer

    def weighted_layer(self, layer: LayerRef) -> Optional[str]:
        """The Linear or Conv layer whose units become ``layer``'s units (``layer`` itself when it
        is one; ``fc1`` for an activation after ``fc1``), or None when no single one does."""
        name = self._shown_name(layer)
        if name not in self._sources:
            self._sources[name] = self._find_source(name)
        return self._sources[name]

    def _snapshot_target(self):
        return self.heatmap, "explorer"  # the heatmap's view captures the whole Explorer around it

    def _picture(self):
        from ._picture import row, stack

        side = [view._picture() for view in (self._grid, self._optimizer) if view is not None]
        return row([self.heatmap._picture(), stack(side) if side else None], gap=16)

    def close(self):
        """Close the dashboard and every view in it (runs and scans stop), so that all are freed."""
        if self._optimizer is not None:
            self._optimizer.close()
        notes = [getattr(self, name, None) for name in ("_grid_note", "_optimizer_note")]  # maybe not shown now
        for widget in (*self._grids.values(), *self._owned, *[n for n in notes if n is not None]):
            close_parts(widget)
            widget.close()
        close_parts(self)
        super().close()

    # ----- model structure -----------------------------------------------------------------------

    def _check_run(self, input_shape) -> tuple:
        """Build one optimization run now, so that bad options (or an input_shape the model cannot
        take) raise here rather than at the first click; return the checked input shape."""
        options = {k: v for k, v in self._run_options.items() if k != "steps" and v is not None}
        starts = options.get("starts", 1)
        # the layers with one row per start (not a window attention's rows of windows times starts)
        every_layer = objective(
            lambda acts: sum(
                a.reshape(starts, -1).sum(1) for a in acts.values() if a.is_floating_point() and a.dim() and len(a) == starts
            ),
            description="every layer",
        )
        return OptimizationRun(self.model, every_layer, input_shape, **options).input_shape

    def _layer_chain(self, sample: torch.Tensor) -> structure.Structure:
        """Every leaf call of the model on the current input, with which call feeds which."""
        return structure.trace(self.model, sample.unsqueeze(0).clone())

    def _shown_name(self, layer: LayerRef) -> str:
        """The heatmap's name of a shown layer ("" for the model's output); ValueError otherwise."""
        name = units.parse_layer(self.model, layer).name
        if name not in self._shown_shapes:
            raise ValueError(f"layer {layer!r} is not shown; the layers are {self.heatmap.layers}")
        return name

    def _find_source(self, name: str) -> Optional[str]:
        """The Linear or Conv call that computes ``name``'s units (see :func:`structure.weighted_source`)."""
        if name == units.OUTPUT:
            calls = self._chain.calls
            if not calls or calls[-1].shape != tuple(self._shown_shapes[name]):
                return None
            name = calls[-1].name
        return structure.weighted_source(self._chain, name, self._shown_shapes.get(name))

    def _grid_shape(self, layer: str) -> Optional[tuple]:
        """How a Linear layer's inputs form an image (see :func:`structure.grid_shape`); a row of
        them in a model of token ids (a hidden size of 16 is no 4 x 4 picture)."""
        module = units.parse_layer(self.model, layer).module
        if not isinstance(module, nn.Linear):
            return None
        shape = structure.grid_shape(self._chain, layer, module.in_features)
        if shape is not None:
            return shape
        if self._input_shape is not None and infer_input_shape(module.in_features):
            return None  # the grid's own guess: a square (or three) of pixels
        return (module.in_features,)

    def _reads_input(self, layer: str) -> bool:
        """Whether the layer's inputs are the model's input itself, so that input * weights means
        something (always true of a conv grid, which uses the input only to rank units)."""
        module = units.parse_layer(self.model, layer).module
        if not isinstance(module, nn.Linear):
            return True
        x = self.heatmap.input
        seen = capture(self.model, x.unsqueeze(0), [layer], inputs=True)[layer]
        return seen.numel() == x.numel() and torch.equal(seen.reshape(-1), x.reshape(-1))

    # ----- linking -------------------------------------------------------------------------------

    def _show_error(self, change) -> None:
        self._error.value = (
            f'<div style="color:#a00;background:#fdecea;border:1px solid #f5c2c0;border-radius:3px;'
            f'padding:4px 8px;white-space:pre-wrap">{html.escape(change["new"])}</div>'
        )
        self._error.layout.display = "" if change["new"] else "none"

    def _on_heatmap_selected(self, change) -> None:
        with self._guard():
            self._link(change["new"])

    def _link(self, selection) -> None:
        """Show ``selection`` (the heatmap's ``(name, unit)`` or None) in the grid and the optimizer."""
        self._caption.value = self._caption_html(selection)
        try:
            self._show_grid(selection)
        finally:  # even when the grid fails, the previous unit's run must not go on
            self._start_optimizer(selection)

    def _show_grid(self, selection) -> None:
        if selection is None:
            if self._grid is None:
                layer = self._default_grid_layer()
                if layer is not None:
                    self._put_grid(layer)
            else:
                with self._linking:
                    self._grid.selected = None
            return
        layer, unit = selection
        source = self.weighted_layer(layer)
        if source is None:
            label = units.layer_label(layer)
            self._put_note(f"{label} has no incoming weights of its own: its units are not computed by one Linear or Conv layer.")
            return
        grid = self._put_grid(source)
        if grid is not None:
            channel = unit[0] if isinstance(unit, tuple) else unit  # a position's filter is its channel's
            with self._linking:
                self._bring_into_view(grid, channel)
                grid.selected = channel

    def _put_grid(self, layer: str) -> Optional[WeightGrid]:
        try:
            grid = self._grid_for(layer)
        except ValueError as err:  # weights that cannot be drawn as tiles: say why in its place
            self._put_note(f"the weights of {layer} cannot be shown: {err}")
            return None
        self._grid = grid
        if tuple(self._grid_slot.children) != (grid,):
            self._grid_slot.children = (grid,)
        return grid

    def _put_note(self, text: str) -> None:
        self._grid = None
        self._grid_note.value = _muted(text)
        self._grid_slot.children = (self._grid_note,)

    def _default_grid_layer(self) -> Optional[str]:
        return next((c.name for c in self._chain.calls if isinstance(c.module, structure.WEIGHTED)), None)

    def _grid_for(self, layer: str) -> WeightGrid:
        grid = self._grids.get(layer)
        if grid is None:
            follows = self._reads_input(layer)
            grid = WeightGrid(
                self.model, layer, self._grid_shape(layer), x=self.heatmap.input if follows else None,
                labels=self._labels, page_size=self._page_size,
            )
            grid.observe(self._on_grid_selected, names=["selected"])
            self._grids[layer] = grid
            if follows:
                self._follows.add(layer)
        elif layer in self._follows and not torch.equal(grid.input, self.heatmap.input):
            grid.input = self.heatmap.input
        return grid

    @staticmethod
    def _bring_into_view(grid: WeightGrid, unit: int) -> None:
        """Turn the grid's page (and lift its top-k) so that the tile of ``unit`` is drawn."""
        order = list(grid.units())
        if unit not in order and grid.top_k:
            grid.top_k = 0
            order = list(grid.units())
        page = order.index(unit) // grid.units_per_page
        if page != grid.page:
            grid.page = page

    def _on_grid_selected(self, change) -> None:
        if self._linking or change["new"] is None:
            return
        with self._guard():
            grid = change["owner"]
            self.heatmap.selected = (self._heatmap_layer_for(grid.layer), int(change["new"]))

    def _heatmap_layer_for(self, grid_layer: str) -> str:
        """The heatmap layer a click in the grid of ``grid_layer`` selects: the selected one when it
        is computed by that grid's layer, else that layer itself, else the first one computed by it."""
        current = self.heatmap.selected
        if current is not None and self.weighted_layer(current[0]) == grid_layer:
            return current[0]
        names = list(self.heatmap.layers)
        if grid_layer in names:
            return grid_layer
        for name in names:
            if self.weighted_layer(name) == grid_layer:
                return name
        raise ValueError(f"the heatmap shows no layer computed by {grid_layer!r}; it shows {self.heatmap.layers}")

    def _on_heatmap_input(self, _change) -> None:
        grid = self._grid
        if grid is not None and grid.layer in self._follows:
            with self._guard():
                grid.input = self.heatmap.input

    def _start_optimizer(self, selection) -> None:
        old, self._optimizer = self._optimizer, None
        options = dict(self._run_options)
        if old is not None:  # keep what the person set in it
            regularizers = old.preset if old.preset != "custom" else dict(old.regularizers)  # a preset keeps its optimizer
            options.update(steps=old.steps, seed=old.seed, regularizers=regularizers, fps=old.fps)
        if old is not None:
            old.close()  # stops its run
        if selection is None:
            self._optimizer_note.value = _muted(HINT)
            self._optimizer_slot.children = (self._optimizer_note,)
            return
        if self._input_shape is None:
            self._optimizer_note.value = _muted(NO_TOKENS)
            self._optimizer_slot.children = (self._optimizer_note,)
            return
        try:
            self._optimizer = OptimizationViewer(
                self.model, objective=self._objective(*selection), input_shape=self._input_shape, compact=True,
                autostart=False, **options
            )
        except Exception:
            self._optimizer_note.value = _muted("no preferred input for this unit: see the error below")
            self._optimizer_slot.children = (self._optimizer_note,)
            raise
        self._optimizer._give_way(self._panels_busy())
        self._optimizer.resume()  # its run starts (and waits for the panels)
        self._optimizer_slot.children = (self._optimizer,)

    def _panels_busy(self) -> Callable[[], bool]:
        """Whether the new unit's top examples are still being found (for at most PANELS_FIRST
        seconds): the optimization, which would compete with them for the kernel, waits."""
        heatmap, deadline = self.heatmap, time.monotonic() + PANELS_FIRST
        return lambda: heatmap.top_state == "running" and time.monotonic() < deadline

    def _objective(self, layer: str, unit) -> tuple:
        """What the optimizer maximizes for the selected unit (see ``preactivation``); for a unit
        that saturates, that is also what its top examples are ranked by."""
        return self.heatmap.preactivation(layer, unit) if self._preactivation else (layer, unit)

    def _caption_html(self, selection) -> str:
        if selection is None:
            return f"<b>Explorer</b> &middot; {HINT}"
        layer, unit = selection
        text = f"<b>selected: {html.escape(units.unit_label(layer, unit))}</b>"
        if self._labels and layer == self.heatmap.output_layer and isinstance(unit, int) and unit < len(self._labels):
            text += f" (class {html.escape(self._labels[unit])})"
        source = self.weighted_layer(layer)
        if source is not None:
            text += f" &middot; incoming weights of <code>{html.escape(source)}</code>"
        target, ranked = self._objective(layer, unit), self.heatmap.ranked_unit(layer, unit)
        if target == (layer, unit):
            return text
        what = "preferred input and top examples" if ranked == target else "preferred input"
        return text + f" &middot; {what} by <code>{html.escape(units.unit_label(*target))}</code>, its pre-activation"


def _muted(text: str) -> str:
    return f'<span style="color:#666">{html.escape(text)}</span>'
