"""Argument checks shared by the library's entry points (static: they work under `jit`; only
`finite`, for the entry points that take host arrays, reads values)."""

import numpy as np


def float_image(x, name: str, *, ndim: int = 3):
  """Raises unless x is a non-empty float array of rank `ndim` ((H, W, C), or (B, H, W, C) for
  4); returns x unchanged.

  Raises:
    TypeError: x is not floating point (an 8-bit image would be taken as values 0 … 255).
    ValueError: x has another rank, or a side of length 0.
  """
  if not np.issubdtype(x.dtype, np.floating):
    raise TypeError(f"{name} expects a float image in [0, 1], got {x.dtype} (divide an 8-bit "
                    "image by 255)")
  if x.ndim != ndim:
    layout = "an (H, W, C) image" if ndim == 3 else "a (B, H, W, C) batch"
    raise ValueError(f"{name} expects {layout}, got shape {x.shape}")
  if 0 in x.shape[-3:]:
    raise ValueError(f"{name} got an empty image, shape {x.shape}")
  return x


def finite(x: np.ndarray, name: str) -> np.ndarray:
  """Raises ValueError if host array x holds NaN or ±inf; returns x unchanged.

  One such value can spread over the whole result of an ℓ0 solve: the FFT solver spreads it
  over every pixel of its channel, Region Fusion over the region it merges into. Jitted entry
  points cannot check values: their NaN inputs give NaN outputs.
  """
  ok = np.isfinite(x)
  if not ok.all():
    raise ValueError(f"{name}: the image holds {ok.size - np.count_nonzero(ok)} NaN or "
                     "infinite values (they can spread over the whole result)")
  return x


def observation(y, operator, shape: tuple[int, ...] | None, output_channels: int,
                name: str) -> None:
  """Checks observation y against the generator and the operator, which maps `shape` (the
  generator's (H, W, C), default y's) to y's shape.

  Raises:
    TypeError, ValueError: y is not a float (H', W', C) image (`float_image`), its C is not
      the generator's output_channels, or the operator does not map `shape` to y's.
  """
  float_image(y, name)
  shape = tuple(shape or y.shape)
  if y.shape[-1] != output_channels:
    raise ValueError(f"{name}: y has {y.shape[-1]} channels, the generator makes "
                     f"{output_channels} (GeneratorConfig.output_channels)")
  if tuple(operator.observed_shape(shape)) != tuple(y.shape):
    raise ValueError(f"{name}: the operator maps {shape} to {operator.observed_shape(shape)}, "
                     f"not to y's {y.shape} (pass shape=, the image's (H, W, C))")
