"""Image quality metrics on (H, W, C) images: PSNR and SSIM as `skimage.metrics` defines them."""

import jax
import jax.numpy as jnp


def psnr(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike, *, data_range: float = 1.0) -> jax.Array:
  """Peak signal-to-noise ratio in dB: 10·log10(data_range² / mean((x − y)²)).

  Args:
    x, y: images of the same shape, on the scale given by `data_range` (1 or 255).
    data_range: the peak value.
  """
  x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
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
    data_range: float = 1.0,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
  """Mean structural similarity of two (H, W, C) images (Wang et al. 2004).

  Matches `skimage.metrics.structural_similarity(x, y, channel_axis=-1, data_range=...)`:
  a uniform win_size × win_size window, sample (N − 1) covariances, the border of
  (win_size − 1)/2 pixels left out, and the mean taken over pixels and channels.
  """
  x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
  cov_norm = win_size**2 / (win_size**2 - 1.0)
  mx, my = _box_mean(x, win_size), _box_mean(y, win_size)
  vx = cov_norm * (_box_mean(x * x, win_size) - mx * mx)
  vy = cov_norm * (_box_mean(y * y, win_size) - my * my)
  vxy = cov_norm * (_box_mean(x * y, win_size) - mx * my)
  c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
  s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
  return jnp.mean(s)
