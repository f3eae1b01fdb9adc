"""`--app`: what launch.run makes of a method's output, for every method alike.

detail       OUT_detail.png = clip(OUT + k·(input − OUT)), k = --detail_gain
abstraction  OUT_abstraction.png = OUT darkened along difference-of-Gaussians lines
texture      OUT.png only: the smoothing itself, with texture-suited defaults where the method
             has them (l0: λ = TEXTURE_LAMBDA; fan2018: the texture model, TEXTURE_MODEL)
"""

import os

import jax
import numpy as np
from absl import flags

from dipl0_jax import applications, image_io
from launch import common

APPS = ("detail", "abstraction", "texture")

# --app=texture: l0's λ unless --lambda_ is given. 0.05 (2.5× the default) removes fur-like
# texture on the shipped picture and still keeps its strong outlines.
TEXTURE_LAMBDA = {"l0": 0.05}
# fan2018's model trained with the "texture" energy (`launch.train --energy=texture`), used
# unless --model is given, once it is shipped beside the "smoothing" one.
TEXTURE_MODEL = os.path.join(os.path.dirname(image_io.EXAMPLE_IMAGE), "fan2018_texture.msgpack")

APP = flags.DEFINE_enum(
    "app", None, APPS, "Application of the smoothed result (default: none, plain smoothing): "
    "detail also writes OUT_detail.png, abstraction OUT_abstraction.png; texture smooths with "
    "texture-suited defaults (l0: --lambda_=0.05).")
_DETAIL_GAIN = flags.DEFINE_float(
    "detail_gain", applications.DETAIL_GAIN, "--app=detail: detail gain k (0: the smoothed "
    "image, 1: the input, > 1: enhanced).")


def prepare() -> list[str]:
  """Checks the --app flags and sets the texture defaults; call before building the method.

  Returns:
    Notes for the console: the defaults --app=texture set, or that the method has none.
  """
  if flags.FLAGS["detail_gain"].present and APP.value != "detail":
    raise common.UsageError("--detail_gain goes with --app=detail")
  if APP.value == "detail":
    common.check_positive("detail_gain", _DETAIL_GAIN.value, allow_equal=True)
    if common.TASK.value != "denoise":
      raise common.UsageError(f"--app=detail needs --task=denoise: input − result is no detail "
                              f"layer with --task={common.TASK.value}")
  if APP.value != "texture":
    return []
  method = flags.FLAGS.method
  if method in TEXTURE_LAMBDA:
    defaults = {"lambda_": TEXTURE_LAMBDA[method]}
  elif method == "fan2018":  # without a shipped texture model, `check_method` says so
    defaults = {"model": TEXTURE_MODEL} if os.path.exists(TEXTURE_MODEL) else {}
  else:
    return [f"--app=texture: {method} has no texture setting; plain smoothing"]
  defaults = {k: v for k, v in defaults.items() if not flags.FLAGS[k].present}
  for name, value in defaults.items():
    setattr(flags.FLAGS, name, value)
  if not defaults:
    return []
  return ["--app=texture: " + " ".join(f"--{k}={v}" for k, v in defaults.items())]


def check_method(settings: dict) -> list[str]:
  """Notes on the built method's settings: a fan2018 model trained for another energy."""
  energy = settings.get("energy")
  if APP.value == "texture" and isinstance(energy, str) and energy != "texture":
    return [f"--app=texture: the model was trained with the {energy!r} energy, not 'texture' "
            "(train one with launch.train --energy=texture and pass --model)"]
  return []


def outputs() -> list[str]:
  """Names of the images the app adds: OUT_<name>.png beside OUT.png."""
  return [APP.value] if APP.value in ("detail", "abstraction") else []


def apply(images: np.ndarray, results: np.ndarray) -> dict[str, np.ndarray]:
  """The app's images of a batch: {name: (B, H, W, C) float32 in [0, 1]} (empty if none).

  Args:
    images: (B, H, W, C) inputs in [0, 1].
    results: (B, H', W', C) the method's outputs (H' × W' = H × W unless --task=sr).
  """
  if APP.value == "detail":
    if results.shape != images.shape:
      raise common.UsageError(f"--app=detail: result {results.shape[1:3]} and input "
                              f"{images.shape[1:3]} differ in size")
    return {"detail": np.asarray(_detail(images, results, _DETAIL_GAIN.value))}
  if APP.value == "abstraction":
    return {"abstraction": np.asarray(_abstraction(results))}
  return {}


_detail = jax.jit(jax.vmap(lambda x, b, k: applications.detail_magnification(x, b, k=k),
                           in_axes=(0, 0, None)))
_abstraction = jax.jit(jax.vmap(applications.abstraction))
