"""``read_image`` for every PIL mode an image of CoOp's datasets can open as: 8-bit colour and grey
modes as CoOp reads them (``convert("RGB")``), high-bit-depth modes scaled to 8 bits, not clipped."""
import numpy as np
import pytest
from PIL import Image

from mutual_prompt.runtime.utils import read_image

GREY = np.array([[0, 1, 100, 128], [200, 254, 255, 7]], dtype=np.uint8)


def _saved(tmp_path, image, name):
    path = str(tmp_path / name)
    image.save(path)
    return path


def _rgb(path):
    image = read_image(path)
    assert image.mode == "RGB"
    return np.asarray(image)


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    path = _saved(tmp_path, Image.fromarray(GREY.astype(np.uint16) * 257), "grey16.png")
    assert Image.open(path).mode == "I;16"
    out = _rgb(path)
    assert np.array_equal(out[..., 0], GREY) and np.array_equal(out[..., 1], GREY) and np.array_equal(out[..., 2], GREY)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L"])
def test_16_bit_modes_in_tiff_keep_their_full_range(tmp_path, mode):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    byte_order = ">u2" if mode == "I;16B" else "<u2"
    image = Image.frombytes(mode, (4, 1), values.astype(byte_order).tobytes())
    path = _saved(tmp_path, image, f"grey_{mode.replace(';', '_')}.tif")
    assert Image.open(path).mode.startswith("I;16")
    assert np.array_equal(_rgb(path)[..., 0], [[0, 1, 128, 255]])


def test_32_bit_integer_image_holding_16_bit_values_is_scaled(tmp_path):
    path = _saved(tmp_path, Image.fromarray((GREY.astype(np.int32) * 257)), "int32.tif")
    assert Image.open(path).mode == "I"
    assert np.array_equal(_rgb(path)[..., 0], GREY)


def test_32_bit_integer_image_holding_8_bit_values_is_kept(tmp_path):
    path = _saved(tmp_path, Image.fromarray(GREY.astype(np.int32)), "int32_8bit.tif")
    assert np.array_equal(_rgb(path)[..., 0], GREY)


def test_float_image_in_unit_range_is_scaled(tmp_path):
    path = _saved(tmp_path, Image.fromarray(GREY.astype(np.float32) / 255), "float.tif")
    assert Image.open(path).mode == "F"
    assert np.array_equal(_rgb(path)[..., 0], GREY)


def test_image_beyond_16_bits_is_stretched_to_its_range(tmp_path):
    values = np.array([[-1000, 0, 99000]], dtype=np.int32)
    out = _rgb(_saved(tmp_path, Image.fromarray(values), "wide.tif"))[..., 0]
    assert out[0, 0] == 0 and out[0, 2] == 255 and 0 < out[0, 1] < 10


RGB = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], dtype=np.uint8)


@pytest.mark.parametrize("mode,fmt", [
    ("L", "png"), ("LA", "png"), ("P", "png"), ("P", "gif"), ("RGB", "jpg"), ("RGB", "png"),
    ("RGBA", "png"), ("CMYK", "jpg"), ("CMYK", "tif"), ("1", "png"), ("YCbCr", "jpg"), ("RGBX", "tif"),
])
def test_eight_bit_modes_read_as_coop_reads_them(tmp_path, mode, fmt):
    image = Image.fromarray(RGB).convert(mode)
    path = _saved(tmp_path, image, f"img_{mode}.{fmt}")
    expected = np.asarray(Image.open(path).convert("RGB"))  # CoOp's (Dassl's) reader
    assert np.array_equal(_rgb(path), expected)


def test_palette_with_alpha_reads_its_palette_colours(tmp_path):
    palette_image = Image.fromarray(RGB).convert("P")
    pa = palette_image.convert("PA")  # no file format stores PA; PIL makes it from P plus transparency
    path = _saved(tmp_path, palette_image, "p.png")
    assert np.array_equal(_rgb(path), np.asarray(pa.convert("RGB")))


def test_alpha_is_dropped_keeping_the_colour_as_coop_does(tmp_path):
    rgba = np.dstack([RGB, np.array([[0, 255], [128, 0]], dtype=np.uint8)])
    assert np.array_equal(_rgb(_saved(tmp_path, Image.fromarray(rgba), "rgba.png")), RGB)


def test_unreadable_file_is_named(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image")
    with pytest.raises(IOError, match="Cannot read image .*broken.png"):
        read_image(str(path))
