"""The binary transport helper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nbvis._arrays import pack, unpack


def test_pack_roundtrip_float64_and_torch():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]  # not contiguous
    packed = pack(a)
    assert packed["dtype"] == "float32" and packed["shape"] == [3, 2]
    assert isinstance(packed["data"], bytes) and len(packed["data"]) == 6 * 4
    np.testing.assert_array_equal(unpack(packed), a.astype(np.float32))
    t = torch.arange(6, dtype=torch.float32, requires_grad=True).reshape(2, 3)
    np.testing.assert_array_equal(unpack(pack(t)), t.detach().numpy())


def test_pack_uint8_checks_range_and_int32():
    assert unpack(pack(np.array([0, 255]), "uint8")).tolist() == [0, 255]
    with pytest.raises(ValueError, match="0..255"):
        pack(np.array([0.0, 300.0]), "uint8")
    assert unpack(pack([1, -2], "int32")).dtype == np.dtype("<i4")
    with pytest.raises(ValueError, match="dtype must be one of"):
        pack([1], "float64")
    with pytest.raises(ValueError, match="packed array is a dict"):
        unpack({"data": b""})


def test_pack_bfloat16_tensor():
    packed = pack(torch.tensor([[1.5, -2.0]], dtype=torch.bfloat16))
    np.testing.assert_array_equal(unpack(packed), np.array([[1.5, -2.0]], dtype=np.float32))
