"""The building-block views as a panel of the Explorer: the neuron groups of its current input and
a semantic dictionary linked to its selected unit."""

from __future__ import annotations

from typing import Optional

import ipywidgets

from ..compute.blocks.layer import default_layer, one_sample, spatial_layers
from ._linking import Linking
from .neuron_groups import NeuronGroups
from .semantic_dictionary import SemanticDictionary

__all__ = ["BlocksPanel"]


class BlocksPanel(ipywidgets.HBox):
    """``groups`` (a NeuronGroups) and ``dictionary`` (a SemanticDictionary) of the Explorer's input.

    The heatmap's input is theirs (a drawing, an upload, a dataset pick); picking a sample in either
    view picks it in the heatmap. A unit selected in the Explorer at a conv layer shows that layer
    in the dictionary with the unit selected; a channel clicked in the dictionary selects it in the
    Explorer (when the heatmap shows that layer).
    """

    def __init__(self, explorer, dataset, labels=None, k: int = 4, icon_steps: int = 128):
        heatmap = explorer.heatmap
        self._explorer = explorer
        self._linking = Linking()
        model, x = explorer.model, heatmap.input
        layer = default_layer(model, x)
        act = spatial_layers(model, one_sample(model, x))[layer]
        k = max(1, min(k, act.shape[1], act.shape[2] * act.shape[3]))
        self.groups = NeuronGroups(model, x, layer, k=k, labels=labels, dataset=dataset, icon_steps=icon_steps)
        try:
            self.dictionary = SemanticDictionary(model, x, layer, k=min(5, act.shape[1]), dataset=dataset, icon_steps=icon_steps)
        except Exception:
            self.groups.close()
            raise
        self.groups.layout.flex = "1 1 620px"
        self.dictionary.layout.flex = "1 1 560px"
        super().__init__([self.groups, self.dictionary],
                         layout=ipywidgets.Layout(flex_flow="row wrap", align_items="flex-start", margin="12px 0 0 0"))
        heatmap.observe(self._on_input, names=["_acts"])
        heatmap.observe(self._on_selected, names=["selected"])
        for view in (self.groups, self.dictionary):
            view.observe(self._on_index, names=["index"])
        self.dictionary.observe(self._on_dictionary_selected, names=["selected"])

    @classmethod
    def attach(cls, explorer, dataset, labels=None) -> Optional["BlocksPanel"]:
        """The panel for ``explorer``, or None when its model has no conv layer with non-negative
        values (what NMF needs) for its input."""
        batch = one_sample(explorer.model, explorer.heatmap.input) if explorer.heatmap.input.dim() == 3 else None
        if batch is None or not any(float(a.min()) >= 0 for a in spatial_layers(explorer.model, batch).values()):
            return None
        return cls(explorer, dataset, labels)

    def _on_input(self, _change) -> None:
        x = self._explorer.heatmap.input
        with self._linking:
            for view in (self.groups, self.dictionary):
                if not view.input.equal(x):
                    view.input = x

    def _on_index(self, change) -> None:
        if not self._linking:
            with self._linking:
                self._explorer.heatmap.index = change["new"]

    def _on_selected(self, change) -> None:
        selection = change["new"]
        if selection is None or self._linking or selection[0] not in self.dictionary.layers:
            return
        layer, unit = selection
        with self._linking:
            if self.dictionary.layer != layer:
                self.dictionary.layer = layer
            self.dictionary.selected = (layer, int(unit[0] if isinstance(unit, tuple) else unit))  # a position: its channel

    def _on_dictionary_selected(self, change) -> None:
        selection = change["new"]
        if selection is None or self._linking or selection[0] not in self._explorer.heatmap.layers:
            return
        with self._linking:
            self._explorer.selected = tuple(selection)

    def close(self):
        for view in (getattr(self, "groups", None), getattr(self, "dictionary", None)):
            if view is not None:
                view.close()
        super().close()
