"""The input of a view that shows one sample: set from Python, from an image file, or picked from
its dataset by the ``index`` trait (ActivationHeatmap, NeuronGroups, SemanticDictionary).

A view using :class:`DatasetInput` holds ``_batch`` (the current input, a batch of one),
``_dataset`` and ``_targets`` (from :func:`nbvis.compute.samples.as_samples`) and an ``index``
trait, and provides ``_set_input(x, caption)`` and ``_decode(data)`` (an image file's bytes to an
input). A pick the view cannot show is raised (and shown under the view) with the index put back,
so the index always names the input on screen.
"""

from __future__ import annotations

import numpy as np
import torch
import traitlets

from ..compute.dataset import sample_tensor


class DatasetInput:
    _restoring_index = False  # True while a failed dataset pick puts the index back

    @property
    def input(self) -> torch.Tensor:
        """The current input (one sample, on the model's device)."""
        return self._batch[0].clone()

    @input.setter
    def input(self, x) -> None:
        self._set_input(x, "set from Python")

    def load_image(self, data) -> None:
        """Use an image file (bytes or a path) as the input, decoded like an upload."""
        self._set_input(self._decode(data), "image file")

    def _sample(self, index: int):
        n = len(self._dataset)
        if not 0 <= index < n:
            raise ValueError(f"index {index} is out of range: the dataset has {n} samples (0..{n - 1})")
        return sample_tensor(self._dataset[index])

    def _target_text(self, index: int) -> str:
        """`` (label …)`` for dataset item ``index``, named by the view's ``labels`` where it has them."""
        if self._targets is None:
            return ""
        target = self._targets[index]
        value = target.item() if hasattr(target, "item") and np.size(target) == 1 else target
        if isinstance(value, str) and value == "":
            return ""
        labels = getattr(self, "labels", None) or None
        if labels and isinstance(value, (int, np.integer)) and 0 <= int(value) < len(labels):
            return f" (label {labels[int(value)]})"
        return f" (label {value})"

    @traitlets.validate("index")
    def _check_index(self, proposal):
        value = proposal["value"]
        n = 0 if self._dataset is None else len(self._dataset)
        if not 0 <= value < max(n, 1):
            raise traitlets.TraitError(f"index must be in 0..{max(n - 1, 0)}, not {value}")
        return value

    def _on_index(self, change) -> None:
        if self._dataset is None or self._restoring_index:
            return
        index = change["new"]
        try:
            with self._guard():  # a bad dataset item is shown in the view, not only raised
                self._set_input(self._sample(index), f"dataset #{index}{self._target_text(index)}")
        except Exception:
            # The input shown is still the old sample's (or a drawing): so is the index.
            self._restoring_index = True
            try:
                self.index = change["old"]
            finally:
                self._restoring_index = False
            raise
