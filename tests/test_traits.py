"""The array trait types: validate, pack themselves, notify only on a real change."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import traitlets

from nbvis._arrays import unpack
from nbvis.widgets._traits import Array, ArrayDict


class Holder(traitlets.HasTraits):
    values = Array()
    codes = Array("uint8")
    named = ArrayDict(dtypes={"indices": "int32"})


def test_numpy_and_torch_are_packed_and_read_back():
    h = Holder()
    h.values = torch.arange(6.0, dtype=torch.float64).reshape(2, 3)
    assert h.values["dtype"] == "float32" and h.values["shape"] == [2, 3]
    np.testing.assert_array_equal(unpack(h.values), np.arange(6.0).reshape(2, 3))
    h.values = np.ones(3, dtype=np.int64)
    np.testing.assert_array_equal(unpack(h.values), [1.0, 1.0, 1.0])
    h.named = {"layer": "fc1", "unit": 3, "values": torch.tensor([0.5]), "indices": np.array([7])}
    assert h.named["layer"] == "fc1" and h.named["unit"] == 3
    assert unpack(h.named["indices"]).dtype == np.dtype("<i4") and unpack(h.named["values"]).tolist() == [0.5]
    h.values = None
    assert h.values is None


def test_bad_values_say_what_was_expected():
    h = Holder()
    with pytest.raises(traitlets.TraitError, match=r"Holder.values takes a numpy array or torch tensor of float32"):
        h.values = "not an array"
    with pytest.raises(traitlets.TraitError, match=r"Holder.codes .* uint8 .*0..255"):
        h.codes = np.array([300])
    with pytest.raises(traitlets.TraitError, match=r"Holder.named takes a dict of arrays, not list"):
        h.named = [1, 2]
    assert h.values is None and h.codes is None  # nothing half-set


def test_only_a_real_change_notifies():
    h = Holder()
    seen = []
    h.observe(lambda change: seen.append(change["name"]), names=["values", "named"])
    h.values = np.zeros((100, 100))
    h.values = torch.zeros(100, 100)  # the same bytes: nothing to send
    h.named = {"a": np.ones(3)}
    h.named = {"a": torch.ones(3)}
    assert seen == ["values", "named"]
    h.values = np.zeros((10, 1000))  # same bytes, another shape: a change
    h.named = {"a": np.ones(3), "b": 1}
    assert seen == ["values", "named", "values", "named"]
