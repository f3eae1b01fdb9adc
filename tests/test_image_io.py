"""Reading and writing images: formats, bit depths, alpha, errors."""

import os

import numpy as np
import png
import pytest
from PIL import Image

from dipl0_jax import image_io


def _rgb(h=12, w=10, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("BMP", "bmp"), ("TIFF", "tif")])
def test_lossless_formats_round_trip(tmp_path, fmt, ext):
  data = _rgb()
  path = tmp_path / f"x.{ext}"
  Image.fromarray(data).save(path, format=fmt)
  got = image_io.read_image(path)
  assert got.dtype == np.float32 and got.shape == (12, 10, 3)
  np.testing.assert_array_equal(image_io.to_uint8(got), data)


def test_jpeg_reads_close_to_source(tmp_path):
  data = np.full((16, 16, 3), 120, np.uint8)
  Image.fromarray(data).save(tmp_path / "x.jpg", quality=95)
  got = image_io.read_image(tmp_path / "x.jpg")
  assert np.abs(got * 255 - 120).max() < 3


def test_grayscale_keeps_one_channel_or_repeats(tmp_path):
  data = _rgb()[..., 0]
  Image.fromarray(data).save(tmp_path / "g.png")
  assert image_io.read_image(tmp_path / "g.png").shape == (12, 10, 1)
  rgb = image_io.read_image(tmp_path / "g.png", grayscale_to_rgb=True)
  assert rgb.shape == (12, 10, 3)
  np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_16bit_grayscale_and_colour_png(tmp_path):
  rng = np.random.default_rng(1)
  grey = rng.integers(0, 65536, (6, 7), dtype=np.uint16)
  colour = rng.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
  png.from_array(grey, "L;16").save(tmp_path / "g16.png")
  png.from_array(colour.reshape(6, 21), "RGB;16").save(tmp_path / "c16.png")
  np.testing.assert_allclose(image_io.read_image(tmp_path / "g16.png")[..., 0], grey / 65535,
                             atol=1e-6)
  np.testing.assert_allclose(image_io.read_image(tmp_path / "c16.png"), colour / 65535, atol=1e-6)


@pytest.mark.parametrize("bg", [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.2, 0.4, 0.6)])
def test_rgba_composited_over_background(tmp_path, bg):
  rgba = np.zeros((4, 4, 4), np.uint8)
  rgba[..., :3] = (200, 100, 50)
  rgba[..., 3] = np.array([0, 85, 170, 255], np.uint8)[None, :]
  Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
  got = image_io.read_image(tmp_path / "a.png", background=bg)
  alpha = rgba[..., 3:] / 255.0
  expected = rgba[..., :3] / 255.0 * alpha + (1 - alpha) * np.asarray(bg)
  np.testing.assert_allclose(got, expected, atol=1e-6)


def test_write_rounds_to_nearest_and_is_atomic(tmp_path):
  image = np.array([[[0.0, 0.5, 1.0], [0.2, 1.5, -1.0]]], np.float32)
  path = tmp_path / "sub" / "out.png"
  image_io.write_png(path, image)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), [[[0, 128, 255], [51, 255, 0]]])
  assert os.listdir(tmp_path / "sub") == ["out.png"]


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_unreadable_files_raise_image_error(tmp_path, content):
  path = tmp_path / "bad.png"
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(image_io.ImageError, match="bad.png"):
    image_io.read_image(path)


def test_truncated_png_raises_image_error(tmp_path):
  Image.fromarray(_rgb(64, 64)).save(tmp_path / "full.png")
  data = (tmp_path / "full.png").read_bytes()
  (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
  with pytest.raises(image_io.ImageError, match="cut.png"):
    image_io.read_image(tmp_path / "cut.png")


def test_unsupported_format_raises(tmp_path):
  Image.fromarray(_rgb()).save(tmp_path / "x.gif")
  with pytest.raises(image_io.ImageError, match="unsupported image format GIF"):
    image_io.read_image(tmp_path / "x.gif")


def test_float_tiff_values_outside_the_range_are_clipped_unless_asked_and_nan_is_refused(tmp_path):
  values = np.linspace(-1.0, 5.0, 24, dtype=np.float32).reshape(4, 6)
  Image.fromarray(values).save(tmp_path / "f.tif")
  np.testing.assert_array_equal(image_io.read_image(tmp_path / "f.tif")[..., 0],
                                np.clip(values, 0, 1))
  np.testing.assert_array_equal(image_io.read_image(tmp_path / "f.tif", clip=False)[..., 0],
                                values)
  values[1, 2] = np.nan
  Image.fromarray(values).save(tmp_path / "nan.tif")
  with pytest.raises(image_io.ImageError, match="NaN or infinite"):
    image_io.read_image(tmp_path / "nan.tif")
