"""What the launchers share: flags, the method table, clean errors."""

import dataclasses
import math
import sys
import time
from collections.abc import Callable

import jax
import numpy as np
from absl import flags, logging

import dipl0_jax
from dipl0_jax import image_io

METHODS = ("l0",)
DEFAULT_LAMBDA = {"l0": 0.02}

_METHOD = flags.DEFINE_enum("method", "l0", METHODS, "Smoothing method.")
_LAMBDA = flags.DEFINE_float(
    "lambda_", None, "λ, weight of the ℓ0 gradient term (default: the method's paper value).")
_KAPPA = flags.DEFINE_float("kappa", 2.0, "β growth factor of the FFT ℓ0 solver (> 1).")
_BETA_MAX = flags.DEFINE_float("beta_max", 1e5, "Final β of the FFT ℓ0 solver.")
SEED = flags.DEFINE_integer("seed", 0, "PRNG seed (methods with randomness).")
_BACKGROUND = flags.DEFINE_list(
    "background", ["0", "0", "0"], "RGB in [0, 1] that transparent pixels are composited over.")


class UsageError(Exception):
  """A problem with the user's input: reported in one line with exit code 2."""


def fail(message: str) -> None:
  """Prints `message` on stderr and exits with code 2 (no traceback)."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
  """absl `flags_parser` that reports bad flags in one line with exit code 2."""
  try:
    argv = flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))
  # absl logs at INFO under app.run; JAX's backend probing messages are noise to a user.
  logging.set_verbosity(logging.WARNING)
  return argv


def check_positive(name: str, value: float, *, above: float = 0.0, allow_equal: bool = False):
  if value is None or not math.isfinite(value) or value < above or (
      value == above and not allow_equal):
    relation = "≥" if allow_equal else ">"
    raise UsageError(f"--{name}={value}: must be a finite number {relation} {above:g}")


def background() -> tuple[float, ...]:
  try:
    rgb = tuple(float(c) for c in _BACKGROUND.value)
  except ValueError:
    rgb = ()
  if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
    raise UsageError(f"--background={','.join(_BACKGROUND.value)}: want three numbers in [0, 1]")
  return rgb


def read(path: str) -> np.ndarray:
  """Reads an input image as (H, W, C) float32, raising UsageError on failure."""
  try:
    return image_io.read_image(path, background=background())
  except image_io.ImageError as e:
    raise UsageError(str(e)) from None


@dataclasses.dataclass(frozen=True)
class Method:
  """A smoothing method as the launchers see it.

  Attributes:
    name: the --method value.
    settings: the parameters that define its output (printed and logged).
    smooth: (image (H, W, C) float32 in [0, 1], key) -> dict of named float32 images; the
      entry "output" is the result.
  """

  name: str
  settings: dict
  smooth: Callable[[np.ndarray, jax.Array], dict[str, np.ndarray]]


def build_method() -> Method:
  """The method and settings that the flags select, validated."""
  name = _METHOD.value
  lam = DEFAULT_LAMBDA[name] if _LAMBDA.value is None else _LAMBDA.value
  check_positive("lambda_", lam, allow_equal=True)
  check_positive("kappa", _KAPPA.value, above=1.0)
  check_positive("beta_max", _BETA_MAX.value)
  if name == "l0":
    kappa, beta_max = _KAPPA.value, _BETA_MAX.value
    solve = jax.jit(lambda x, lam: dipl0_jax.l0_smooth(x, lam=lam, kappa=kappa, beta_max=beta_max))

    def smooth(image, key):
      del key  # deterministic
      return {"output": np.asarray(solve(image, lam))}

    return Method(name, {"lambda_": lam, "kappa": kappa, "beta_max": beta_max}, smooth)
  raise UsageError(f"--method={name}: unknown method")


def timed(fn, *args):
  """Runs fn(*args), returning (result, seconds)."""
  start = time.perf_counter()
  result = fn(*args)
  return result, time.perf_counter() - start
