"""Applications of an edge-preserving smoother: detail magnification and image abstraction.

Both work on a smoother's output as given, so any method of the package (or any other
smoother) can feed them. Images are (H, W, C) float32 in [0, 1]; every function is pure and
works under `jit` and `vmap` (the Gaussian widths fix kernel sizes, so they must be Python
numbers, static under `jit`). Texture removal needs no function here: it is the smoothing
itself with texture-suited settings (see the launcher's `--app=texture`).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Detail gain k of `detail_magnification`. The detail layer of a smoothed photograph is mostly
# a few hundredths of the range, so ×3 makes it clearly visible, while a mid-grey pixel clips
# only where its detail exceeds 1/6 of the range; much larger gains clip much of the texture.
DETAIL_GAIN = 3.0

# ITU-R BT.601 luma weights of R, G, B.
_LUMA = (0.299, 0.587, 0.114)


def detail_magnification(image: jax.Array, base: jax.Array, *,
                         k: float | jax.Array = DETAIL_GAIN) -> jax.Array:
  """Boosts the detail layer: clip(base + k·(image − base), 0, 1).

  The smoothed image is the base layer and image − base the detail layer (Xu et al. 2011,
  Fan et al. 2018); an edge-preserving base keeps strong edges out of the detail layer, so
  magnifying it sharpens texture without halos at those edges.

  Args:
    image: (H, W, C) float32 input in [0, 1].
    base: (H, W, C) float32 smoothed image in [0, 1], same shape as `image`.
    k: detail gain (default 3, see DETAIL_GAIN): 0 gives the base, 1 the input, > 1 enhances.
      May be a traced value.

  Returns:
    (H, W, C) float32 in [0, 1].
  """
  if image.shape != base.shape:
    raise ValueError(f"image {image.shape} and base {base.shape} differ in shape")
  # (1 − k)·base + k·image is base + k·(image − base), exact at k = 0 and k = 1.
  return jnp.clip((1.0 - k) * base + k * image, 0.0, 1.0)


def gaussian_kernel(sigma: float, *, truncate: float = 3.0) -> np.ndarray:
  """Normalised 1-D Gaussian weights: (2r + 1,) float32 summing to 1, r = ⌈truncate·σ⌉ ≥ 1.

  Args:
    sigma: standard deviation in pixels, > 0 (a Python number: it sets the kernel size).
    truncate: half-width of the kernel in standard deviations.
  """
  if not (math.isfinite(sigma) and sigma > 0 and math.isfinite(truncate) and truncate > 0):
    raise ValueError(f"need finite sigma > 0 and truncate > 0, got {sigma}, {truncate}")
  radius = max(1, math.ceil(truncate * sigma))
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  weights = np.exp(-0.5 * (x / sigma) ** 2)
  return (weights / weights.sum()).astype(np.float32)


def gaussian_blur(image: jax.Array, sigma: float, *, truncate: float = 3.0) -> jax.Array:
  """Separable Gaussian blur with reflect padding: (H, W, C) -> (H, W, C), channels apart.

  Args:
    image: (H, W, C) float array.
    sigma: standard deviation in pixels, > 0 (static; see `gaussian_kernel`).
    truncate: half-width of the kernel in standard deviations.
  """
  weights = gaussian_kernel(sigma, truncate=truncate)
  radius = len(weights) // 2
  out = image
  for axis in (0, 1):
    n = out.shape[axis]
    pad = [(0, 0)] * out.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(out, pad, mode="reflect")  # mirrors without repeating the border pixel
    out = sum(float(w) * lax.slice_in_dim(padded, i, i + n, axis=axis)
              for i, w in enumerate(weights))
  return out


def luminance(image: jax.Array) -> jax.Array:
  """(H, W, C) -> (H, W, 1): BT.601 luma for C = 3, the channel mean otherwise."""
  if image.shape[-1] == 3:
    return image @ jnp.asarray(_LUMA, image.dtype)[:, None]
  return jnp.mean(image, axis=-1, keepdims=True)


def dog_lines(smoothed: jax.Array, *, sigma: float = 1.0, k: float = 1.6,
              threshold: float = 0.005, sharpness: float = 100.0) -> jax.Array:
  """Difference-of-Gaussians line map (Winnemöller et al. 2006): (H, W, C) -> (H, W, 1).

  D = G_σ * Y − G_{kσ} * Y on the luminance Y ∈ [0, 1]; D < 0 on the dark side of an edge.
  The map is 1 where D ≥ −threshold and 1 + tanh(sharpness·(D + threshold)) ∈ (0, 1) below,
  a soft threshold that is continuous at −threshold and darkens towards 0 on strong edges.
  A step of height h gives min D ≈ −0.11·h (σ = 1, k = 1.6), so the defaults ignore steps
  below about 0.045 (12 grey levels) and draw near-black lines on steps above about 0.3.

  Args:
    smoothed: (H, W, C) float32 smoothed image in [0, 1].
    sigma: σ_e, width in pixels of the centre Gaussian (sets the line width), static.
    k: ratio of the surround Gaussian's width to σ_e (1.6 approximates the Laplacian of
      Gaussian, Marr & Hildreth), static.
    threshold: ε ≥ 0, the |D| below which no line is drawn (luminance units).
    sharpness: φ > 0, the slope of the soft threshold (Winnemöller's φ_e ∈ [0.75, 5] on a
      0–100 luminance scale is 75–500 here).

  Returns:
    (H, W, 1) float32 in (0, 1]: 1 where there is no line.
  """
  y = luminance(smoothed)
  d = gaussian_blur(y, sigma) - gaussian_blur(y, k * sigma)
  return jnp.where(d >= -threshold, 1.0, 1.0 + jnp.tanh(sharpness * (d + threshold)))


def abstraction(smoothed: jax.Array, *, sigma: float = 1.0, k: float = 1.6,
                threshold: float = 0.005, sharpness: float = 100.0) -> jax.Array:
  """Image abstraction: the smoothed colours darkened along DoG edge lines.

  The smoother supplies the flat colour regions (no colour quantisation is applied) and
  `dog_lines`, computed on the smoothed image so that texture and noise draw no lines, the
  strokes: output = smoothed · lines. A constant image is returned unchanged.

  Args:
    smoothed: (H, W, C) float32 smoothed image in [0, 1].
    sigma, k, threshold, sharpness: the line parameters of `dog_lines` (defaults σ_e = 1 px,
      k = 1.6, ε = 0.005, φ = 100).

  Returns:
    (H, W, C) float32 in [0, 1].
  """
  lines = dog_lines(smoothed, sigma=sigma, k=k, threshold=threshold, sharpness=sharpness)
  return jnp.clip(smoothed * lines, 0.0, 1.0)
