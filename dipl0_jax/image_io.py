"""Reading images into float32 [0, 1] arrays and writing 8-bit PNGs, through Pillow.

Read: PNG (8- and 16-bit, grey, grey+alpha, palette, RGB, RGBA), JPEG, BMP and TIFF. Alpha is
composited over a background colour (black by default, as the clip-art benchmarks expect).
Write: 8-bit PNG, rounded, written to a temporary file and renamed so that an interrupted
write never leaves a partial image behind.
"""

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np
import png
from PIL import Image, UnidentifiedImageError

FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
# The picture the package ships (240×160 RGB, CC0): the launchers' default input.
EXAMPLE_IMAGE = os.path.join(os.path.dirname(__file__), "data", "chelsea.png")


class ImageError(ValueError):
  """An image file that is missing, unreadable, of an unsupported kind, or unwritable."""


def _decode_16bit_png(path: str) -> np.ndarray:
  """Pillow truncates 16-bit colour PNGs to 8 bits; pypng decodes them losslessly."""
  width, height, rows, info = png.Reader(filename=path).asDirect()
  data = np.vstack([np.asarray(row, np.uint16) for row in rows])
  return data.reshape(height, width, info["planes"]).astype(np.float32) / 65535.0


def _to_float(im: Image.Image) -> np.ndarray:
  """Pillow image -> (H, W, C) float32 in [0, 1], C ∈ {1, 2, 3, 4} (alpha last)."""
  if im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
    return (np.asarray(im, np.float32) / 65535.0)[..., None]
  if im.mode == "I":  # 32-bit integer: Pillow's mode for some 16-bit greyscale files
    return (np.asarray(im, np.float32) / 65535.0)[..., None]
  if im.mode == "F":
    return np.asarray(im, np.float32)[..., None]
  if im.mode in ("1", "L"):
    return (np.asarray(im.convert("L"), np.float32) / 255.0)[..., None]
  if im.mode in ("LA", "RGB", "RGBA"):
    return np.asarray(im, np.float32) / 255.0
  if im.mode in ("P", "PA"):
    has_alpha = "transparency" in im.info or im.mode == "PA"
    return np.asarray(im.convert("RGBA" if has_alpha else "RGB"), np.float32) / 255.0
  return np.asarray(im.convert("RGB"), np.float32) / 255.0  # CMYK, YCbCr, LAB, ...


def read_image(
    path: str | os.PathLike,
    *,
    background: Sequence[float] = (0.0, 0.0, 0.0),
    grayscale_to_rgb: bool = False,
    clip: bool = True,
) -> np.ndarray:
  """Reads an image file as an (H, W, C) float32 array in [0, 1].

  Args:
    path: a PNG, JPEG, BMP or TIFF file.
    background: RGB colour in [0, 1] that alpha is composited over: out = α·c + (1 − α)·bg.
    grayscale_to_rgb: repeat a single channel three times.
    clip: clip to [0, 1]; False keeps the values of a float TIFF (or a 32-bit integer image)
      that lie outside, for the caller to see.

  Returns:
    (H, W, 1) for greyscale files (unless `grayscale_to_rgb`), (H, W, 3) otherwise.

  Raises:
    ImageError: the file is missing, is not an image, is truncated, is another format, or
      holds NaN or infinite values (a float TIFF can).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ImageError(f"{path}: no such file")
  try:
    with Image.open(path) as im:
      if im.format not in FORMATS:
        raise ImageError(f"{path}: unsupported image format {im.format} (use {', '.join(FORMATS)})")
      sixteen_bit_colour = im.format == "PNG" and im.mode in ("RGB", "RGBA") and any(
          str(tile.args).endswith(";16B") for tile in im.tile)
      im.load()
      data = _decode_16bit_png(path) if sixteen_bit_colour else _to_float(im)
  except ImageError:
    raise
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError, png.Error) as e:
    raise ImageError(f"{path}: cannot read image ({e})") from None
  if data.ndim != 3 or data.shape[0] == 0 or data.shape[1] == 0:
    raise ImageError(f"{path}: image is empty")
  if data.shape[-1] in (2, 4):  # composite alpha over the background
    alpha = data[..., -1:]
    colour = data[..., :-1]
    bg = np.asarray(background, np.float32)[: colour.shape[-1]]
    data = colour * alpha + (1.0 - alpha) * bg
  if not np.all(np.isfinite(data)):
    raise ImageError(f"{path}: image holds NaN or infinite values")
  if grayscale_to_rgb and data.shape[-1] == 1:
    data = np.repeat(data, 3, axis=-1)
  return (np.clip(data, 0.0, 1.0) if clip else data).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
  """(H, W, C) float in [0, 1] -> uint8 by clipping and rounding to nearest (NaN -> 0); a
  uint8 image is returned as it is. TypeError for other dtypes."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  if not np.issubdtype(image.dtype, np.floating):
    raise TypeError(f"expected a float image in [0, 1] or a uint8 one, got {image.dtype}")
  image = np.nan_to_num(image.astype(np.float32), nan=0.0)
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def quantize(image: np.ndarray) -> np.ndarray:
  """The float32 image that an 8-bit PNG of `image` holds (what scores are computed on)."""
  return to_uint8(image).astype(np.float32) / 255.0


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator:
  """Opens a temporary file beside `path` and renames it onto `path` when the block ends.

  Readers never see a half-written file, and an exception (or a kill) leaves any old file
  in place. The folder is created if needed.
  """
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
  try:
    with os.fdopen(fd, mode) as f:
      yield f
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; outputs are ordinary files
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):  # already renamed when interrupted late
      os.unlink(tmp)
    raise


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
  """Writes an (H, W, C) float [0, 1] image (or a uint8 one, as it is) as an 8-bit PNG,
  atomically.

  The folder is created if needed. C = 1 gives a greyscale PNG, C = 3 an RGB one.

  Raises:
    ImageError: the file cannot be written, or the image is of another dtype or holds NaN or
      infinite values.
  """
  path = os.fspath(path)
  image = np.asarray(image)
  if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
    raise ImageError(f"{path}: cannot write an image with NaN or infinite values")
  try:
    data = to_uint8(image)
  except TypeError as e:
    raise ImageError(f"{path}: cannot write: {e}") from None
  if data.ndim != 3 or data.shape[-1] not in (1, 3, 4):
    raise ImageError(f"{path}: cannot write an image of shape {data.shape}")
  try:
    with atomic_file(path) as f:
      Image.fromarray(data[..., 0] if data.shape[-1] == 1 else data).save(f, format="PNG")
  except OSError as e:
    raise ImageError(f"{path}: cannot write ({e.strerror or e})") from None
