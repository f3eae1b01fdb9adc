"""Timing helpers shared by the benchmark scripts."""

import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import jax
import numpy as np
from PIL import Image

from dipl0_jax import image_io


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
  """Median wall time of `repeats` calls of fn (its result blocked on)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def test_image(width: int, height: int) -> np.ndarray:
  """The shipped picture resized to width × height, (H, W, 3) float32 in [0, 1]."""
  with Image.open(image_io.EXAMPLE_IMAGE) as im:
    return np.asarray(im.convert("RGB").resize((width, height), Image.BICUBIC), np.float32) / 255


def machine() -> dict:
  """What the numbers were measured on, including the load at the time."""
  return {
      "platform": platform.platform(),
      "cpu_count": os.cpu_count(),
      "load_average": os.getloadavg(),
      "jax": jax.__version__,
      "backend": jax.default_backend(),
  }


def write_json(path: str, payload: dict) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(payload, f, indent=2)
  print(f"wrote {path}")
