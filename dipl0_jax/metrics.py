"""Image quality metrics on (H, W, C) images: PSNR and SSIM as `skimage.metrics` defines them."""

import jax
import jax.numpy as jnp


def _pair(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike, data_range: float | None,
          name: str) -> tuple[jax.Array, jax.Array, float]:
  """x and y as float32, checked to share a non-empty shape, and the data range: as given,
  else 1 for float images and the dtype's range for integer ones (255 for uint8), as skimage
  infers it."""
  x, y = jnp.asarray(x), jnp.asarray(y)
  if x.shape != y.shape:
    raise ValueError(f"{name} needs two images of the same shape, got {x.shape} and {y.shape}")
  if x.size == 0:
    raise ValueError(f"{name} got empty images, shape {x.shape}")
  if data_range is None:
    integer = [jnp.issubdtype(a.dtype, jnp.integer) for a in (x, y)]
    if integer[0] != integer[1] or (all(integer) and x.dtype != y.dtype):
      raise TypeError(f"{name}: {x.dtype} and {y.dtype} images have different scales; pass "
                      "data_range")
    info = jnp.iinfo(x.dtype) if integer[0] else None
    data_range = float(info.max) - float(info.min) if info else 1.0
  return x.astype(jnp.float32), y.astype(jnp.float32), data_range


def psnr(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike, *,
         data_range: float | None = None) -> jax.Array:
  """Peak signal-to-noise ratio in dB: 10·log10(data_range² / mean((x − y)²)).

  Args:
    x, y: images of the same shape.
    data_range: the peak value; default 1 for float images, the dtype's range for integer
      ones (255 for uint8), as `skimage.metrics` infers it.

  Raises:
    ValueError: the shapes differ or are empty.
    TypeError: data_range is not given and the images mix integer and float scales.
  """
  x, y, data_range = _pair(x, y, data_range, "psnr")
  mse = jnp.mean((x - y) ** 2)
  return 10.0 * jnp.log10(data_range**2 / mse)


def _box_mean(x: jax.Array, size: int) -> jax.Array:
  """Mean over size×size windows, VALID: (H, W, C) -> (H − size + 1, W − size + 1, C)."""
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (size, size, 1), (1, 1, 1), "VALID")
  return total / (size * size)


def ssim(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    data_range: float | None = None,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
  """Mean structural similarity of two (H, W, C) images (Wang et al. 2004).

  Matches `skimage.metrics.structural_similarity(x, y, channel_axis=-1, data_range=...)`:
  a uniform win_size × win_size window, sample (N − 1) covariances, the border of
  (win_size − 1)/2 pixels left out, and the mean taken over pixels and channels.
  `data_range` defaults as in `psnr`.

  Raises:
    ValueError: the images are not (H, W, C) of one shape, win_size is not an odd number
      ≥ 3, or a side is shorter than win_size (as skimage refuses them).
    TypeError: as `psnr`.
  """
  x, y, data_range = _pair(x, y, data_range, "ssim")
  if x.ndim != 3:
    raise ValueError(f"ssim expects (H, W, C) images, got shape {x.shape}")
  if win_size < 3 or win_size % 2 == 0:
    raise ValueError(f"ssim needs an odd win_size >= 3, got {win_size}")
  if min(x.shape[:2]) < win_size:
    raise ValueError(f"ssim: a {x.shape[1]}×{x.shape[0]} image is smaller than the "
                     f"{win_size}×{win_size} window")
  cov_norm = win_size**2 / (win_size**2 - 1.0)
  mx, my = _box_mean(x, win_size), _box_mean(y, win_size)
  vx = cov_norm * (_box_mean(x * x, win_size) - mx * mx)
  vy = cov_norm * (_box_mean(y * y, win_size) - my * my)
  vxy = cov_norm * (_box_mean(x * y, win_size) - mx * my)
  c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
  s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
  return jnp.mean(s)
