"""Decoding uploaded images and raw pixels into model inputs."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from nbvis.compute.images import decode_image, image_layout, pixels_to_input


def encode(array: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with almost no data (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def digit(digits_data) -> np.ndarray:
    return (digits_data[0][0, 0].numpy() * 255).round().astype(np.uint8)


def test_lossless_round_trip_in_every_input_layout(digit):
    data = encode(digit)
    expected = digit.astype(np.float32) / 255
    np.testing.assert_array_equal(decode_image(data, (1, 28, 28))[0], expected)
    np.testing.assert_array_equal(decode_image(data, (28, 28)), expected)
    np.testing.assert_array_equal(decode_image(data, (784,)), expected.reshape(784))
    rgb = decode_image(data, (3, 28, 28))
    for channel in rgb:
        np.testing.assert_array_equal(channel, expected)
    assert decode_image(data, (1, 28, 28)).dtype == np.float32


def test_color_to_gray_and_channel_order():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
    gray = decode_image(encode(rgb), (1, 20, 20))[0]
    rgb = rgb.astype(np.int64)
    luma = (rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114) / 1000 / 255  # ITU-R 601
    np.testing.assert_allclose(gray, luma, atol=1 / 255 + 1e-6)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    out = decode_image(encode(red), (3, 8, 8))
    assert out[0].min() == 1.0 and out[1].max() == 0.0 and out[2].max() == 0.0


def test_resizing_and_fitting():
    quadrants = np.zeros((112, 112), np.uint8)
    quadrants[:56, 56:] = 100
    quadrants[56:, :56] = 200
    quadrants[56:, 56:] = 255
    out = decode_image(encode(quadrants), (1, 28, 28))[0] * 255
    for (r, c), value in {(5, 5): 0, (5, 22): 100, (22, 5): 200, (22, 22): 255}.items():
        assert abs(out[r, c] - value) < 0.5
    # a wide image: left third 0, middle 255, right third 0 -> crop keeps the middle
    wide = np.zeros((30, 90), np.uint8)
    wide[:, 30:60] = 255
    assert decode_image(encode(wide), (1, 10, 10), fit="crop").min() == 1.0
    padded = decode_image(encode(wide), (1, 30, 30), fit="pad")[0]
    assert padded[:9].max() == 0 and padded[-9:].max() == 0 and padded[15, 15] == 1.0
    stretched = decode_image(encode(wide), (1, 10, 30), fit="stretch")[0]
    assert stretched[:, 15].min() == 1.0 and stretched[:, 1].max() == 0.0


def test_transparency_inversion_and_orientation():
    rgba = np.zeros((16, 16, 4), np.uint8)  # transparent background
    rgba[4:12, 7:9] = (0, 0, 0, 255)  # an opaque black stroke
    data = encode(rgba)
    plain = decode_image(data, (1, 16, 16))[0]
    assert plain[0, 0] == 1.0 and plain[8, 8] == 0.0  # flattened onto white
    for invert in (True, "auto"):
        out = decode_image(data, (1, 16, 16), invert=invert)[0]
        assert out[0, 0] == 0.0 and out[8, 8] == 1.0
    light_on_dark = np.zeros((16, 16), np.uint8)
    light_on_dark[4:12, 7:9] = 255
    np.testing.assert_array_equal(decode_image(encode(light_on_dark), (1, 16, 16), invert="auto")[0], light_on_dark / 255)
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): the left half becomes the top half
    left = np.zeros((20, 40), np.uint8)
    left[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = decode_image(encode(left, exif=exif), (1, 40, 20), fit="stretch")[0]
    assert upright[:20].min() == 1.0 and upright[20:].max() == 0.0


def test_sixteen_bit_and_animated_images():
    ramp = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 200 + 1000).astype(np.uint16)
    out = decode_image(encode(ramp), (1, 16, 16))[0]
    assert out[0, 0] == 0.0 and out[-1, -1] == 1.0 and np.all(np.diff(out.reshape(-1)) >= 0)
    frames = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (10, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    first = decode_image(buffer.getvalue(), (1, 8, 8))
    assert abs(first.mean() * 255 - 10) < 1


def test_preprocess_hook(digit):
    data = encode(digit)
    seen = []

    def to_tensor(image):
        seen.append(image.size)
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255 * 2 - 1)[None]

    out = decode_image(data, (784,), preprocess=to_tensor)
    assert seen == [(28, 28)] and out.shape == (784,)
    np.testing.assert_allclose(out, digit.reshape(784) / 255 * 2 - 1, atol=1e-6)
    with pytest.raises(ValueError, match=r"preprocess returned shape \(1, 28, 28\); the model's input has shape \(3, 8, 8\)"):
        decode_image(data, (3, 8, 8), preprocess=to_tensor)
    with pytest.raises(TypeError, match="array or tensor of numbers"):
        decode_image(data, (1, 28, 28), preprocess=lambda image: {"not": "numbers"})


def test_bad_files_give_clear_errors(digit, tmp_path):
    with pytest.raises(ValueError, match=r"not an image file.*a text file \('hello, world"):
        decode_image(b"hello, world\nthis is text", (1, 28, 28))
    with pytest.raises(ValueError, match="an empty file"):
        decode_image(b"", (1, 28, 28))
    with pytest.raises(ValueError, match="not an image file"):
        decode_image(bytes(range(256)) * 4, (1, 28, 28))
    png = encode(np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8))
    with pytest.raises(ValueError, match="damaged or truncated"):
        decode_image(png[: len(png) // 2], (1, 28, 28))
    with pytest.raises(ValueError, match=r"the file is .* MiB; the limit is"):
        decode_image(png, (1, 28, 28), max_bytes=1000)
    with pytest.raises(ValueError, match=r"the image is 64x64 = 4,096 pixels; the limit is 1,000"):
        decode_image(png, (1, 28, 28), max_pixels=1000)
    with pytest.raises(TypeError, match="bytes"):
        decode_image(12, (1, 28, 28))
    with pytest.raises(ValueError, match=r"cannot be turned into an input of shape \(5, 28, 28\)"):
        decode_image(encode(digit), (5, 28, 28))
    with pytest.raises(ValueError, match="fit must be one of"):
        decode_image(encode(digit), (1, 28, 28), fit="zoom")
    path = tmp_path / "digit.png"
    path.write_bytes(encode(digit))
    np.testing.assert_array_equal(decode_image(path, (1, 28, 28)), decode_image(encode(digit), (1, 28, 28)))
    with pytest.raises(ValueError, match="the limit is"):
        decode_image(str(path), (1, 28, 28), max_bytes=10)


def test_decompression_bombs_are_refused_before_decoding():
    # 8000 x 8000 = 64 M pixels: over our limit, under Pillow's own warning threshold
    with pytest.raises(ValueError, match=r"8000x8000 = 64,000,000 pixels; the limit is 40,000,000"):
        decode_image(png_header_only(8000, 8000), (1, 28, 28))
    # 10^10 pixels: Pillow refuses it on opening
    with pytest.raises(ValueError, match="larger than the limit"):
        decode_image(png_header_only(100_000, 100_000), (1, 28, 28))


def test_pixels_from_a_canvas(digit):
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = digit[..., None]
    rgba[..., 3] = 255
    np.testing.assert_array_equal(pixels_to_input(rgba, (1, 28, 28)), decode_image(encode(digit), (1, 28, 28)))
    np.testing.assert_array_equal(pixels_to_input(digit, (784,)), digit.reshape(784) / np.float32(255))
    big = np.kron(digit, np.ones((4, 4), np.uint8))  # a 112 x 112 canvas
    small = pixels_to_input(big, (1, 28, 28))[0]
    np.testing.assert_allclose(small, digit / 255, atol=1e-6)  # area averaging of 4 x 4 blocks
    with pytest.raises(TypeError, match="uint8"):
        pixels_to_input(digit.astype(np.float32), (1, 28, 28))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) or \(H, W, 4\); got \(28, 28, 2\)"):
        pixels_to_input(np.zeros((28, 28, 2), np.uint8), (1, 28, 28))


def test_layouts():
    assert image_layout((3, 32, 32)) == (3, 32, 32)
    assert image_layout((28, 28)) == (1, 28, 28)
    assert image_layout((784,)) == (1, 28, 28)
    with pytest.raises(ValueError, match="square number"):
        image_layout((10,))
