"""The unsupervised smoothing energy of Fan, Yang, Wipf, Chen, Tong (ACM TOG 2018), §3.

For an input I and a network output T, both (H, W, 3) float32 in [0, 1],
  E(T; I) = E_d + λ_f·E_f + λ_e·E_e                                   (the training loss)
  E_d = 1/(3N) Σ_i Σ_c (T_ic − I_ic)²                                  (data term)
  E_e = 1/N_e Σ_i B_i·(E_i(T) − E_i(I))²                               (edge-preserving term)
  E_f = 1/(N·M) Σ_i Σ_{j ∈ h×h window of i, j ≠ i} w_ij Σ_c |T_ic − T_jc|^{p_i}   (flattening)
with N = H·W pixels, M = h² − 1 neighbours in a window, the edge response
E_i(X) = Σ_{j ∈ 4-neighbours of i} |Σ_c (X_ic − X_jc)|,
a binary map B of important edges of I (`edge_map`, N_e = Σ B) and, per pixel i,
  p_i = 2,   w_ij = α·exp(−‖i − j‖²/(2σ_s²))      where E_i(I) < c₁ and E_i(T) − E_i(I) > c₂,
  p_i = 0.8, w_ij = exp(−‖Y_i − Y_j‖²/(2σ_r²))     elsewhere (Y = the input in YUV).
The first case catches spurious edges the output creates in flat input regions and smooths them
with a quadratic penalty; the second flattens everything else while respecting input colours.

Scales. Responses are computed on the images' own [0, 1] scale, so E_e is commensurate with E_d;
the thresholds c₁, c₂ and `edge_threshold` are stated on the paper's 0–255 scale and divided by
255 before use. Normalisations: E_d is a mean over pixels and channels, E_f a mean over pixels
and window neighbours, E_e a mean over the N_e edge pixels (N_e ≥ 1), so no term depends on the
image size and E_f's scale does not depend on h.

Balance (measured; a departure from the paper). With E_f summed over the window (÷N only) and
the paper's λ_f = 1, intensities in [0, 1], the flattening term outweighs the data term by
orders of magnitude: a constant image has a lower energy than the ground truth (96×96 crop of
NKS S10_T10). Averaged over the window's M pairs, minimising the energy directly (150 Adam
steps from T = I) on 96×96 crops of four NKS validation images gives 24.2 dB against the
ground truth at λ_f = 1 (input: 26.7 dB), 25.4 at 0.5, 29.4 at 0.1 and 30.2 at 0.03, the
default here (all presets keep it).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax import lax

# The thresholds are given for 8-bit intensities; images here are in [0, 1].
INTENSITY_SCALE = 255.0

# ITU-R BT.601 RGB -> YUV (Y in [0, 1], U in ±0.436, V in ±0.615); rows are Y, U, V.
_RGB_TO_YUV = ((0.299, 0.587, 0.114),
               (-0.14713, -0.28886, 0.436),
               (0.615, -0.51499, -0.10001))


@dataclasses.dataclass(frozen=True)
class FanEnergyConfig:
  """Weights and thresholds of the energy; defaults are the paper's "smoothing" setting but λ_f.

  `edge_threshold` and `edge_window` belong to this module's edge detector (see `edge_map`) and
  are not from the paper. c₁, c₂ and `edge_threshold` are on the 0–255 edge-response scale.
  """

  lambda_f: float = 0.03  # weight of the flattening term (paper: 1, see the module docstring)
  lambda_e: float = 0.1  # weight of the edge-preserving term
  sigma_r: float = 0.1  # colour-affinity bandwidth, YUV in [0, 1] units
  sigma_s: float = 7.0  # spatial bandwidth, pixels
  alpha: float = 5.0  # boost of the spatial weights at spurious-edge pixels
  c1: float = 20.0  # E_i(I) below this: the input is flat at i
  c2: float = 10.0  # E_i(T) − E_i(I) above this: the output has an edge the input lacks
  window: int = 21  # h, odd side of the flattening neighbourhood
  p_flat: float = 0.8  # exponent where no spurious edge is detected (2 at spurious edges)
  # |x|^0.8 is evaluated as (x² + ε)^0.4 − ε^0.4: finite slope at 0 (at most ~ε^−0.1 ≈ 4),
  # exactly 0 at x = 0; √ε = 1e-3 is a quarter of one 8-bit grey level.
  epsilon: float = 1e-6
  edge_threshold: float = 60.0  # minimal E_i(I) of an important edge (a 20-level RGB step)
  edge_window: int = 3  # side of the window in which an important edge must be the maximum

  def __post_init__(self):
    if self.window < 1 or self.window % 2 == 0:
      raise ValueError(f"window must be a positive odd number, got {self.window}")
    if self.edge_window < 1 or self.edge_window % 2 == 0:
      raise ValueError(f"edge_window must be a positive odd number, got {self.edge_window}")
    if self.epsilon <= 0:
      raise ValueError(f"epsilon must be positive, got {self.epsilon}")


PRESETS: dict[str, FanEnergyConfig] = {
    "smoothing": FanEnergyConfig(),
    "texture": FanEnergyConfig(alpha=20.0, window=5),
    # c₁ = ∞ makes every pixel "flat", so p = 2 wherever the output adds edge response.
    "detail": FanEnergyConfig(alpha=15.0, c1=math.inf, c2=0.0),
}


def rgb_to_yuv(image: jax.Array) -> jax.Array:
  """(H, W, 3) RGB in [0, 1] -> (H, W, 3) BT.601 YUV (Y in [0, 1], U, V signed)."""
  return image @ jnp.asarray(_RGB_TO_YUV, image.dtype).T


def edge_response(x: jax.Array) -> jax.Array:
  """E_i(X) = Σ_{j ∈ 4-neighbours} |Σ_c (X_ic − X_jc)|: (H, W, C) -> (H, W), on X's scale.

  Borders use edge (replicate) padding: a neighbour outside the image is a copy of its
  border pixel and contributes 0. For [0, 1] images the value is in [0, 4C]; multiply by 255
  for the paper's scale.
  """
  s = jnp.pad(jnp.sum(x, axis=-1), 1, mode="edge")
  centre = s[1:-1, 1:-1]
  return (jnp.abs(centre - s[:-2, 1:-1]) + jnp.abs(centre - s[2:, 1:-1])
          + jnp.abs(centre - s[1:-1, :-2]) + jnp.abs(centre - s[1:-1, 2:]))


def edge_map(image: jax.Array, config: FanEnergyConfig = FanEnergyConfig()) -> jax.Array:
  """Binary map B of important input edges: (H, W, 3) in [0, 1] -> (H, W) float32 in {0, 1}.

  This module's heuristic (the paper leaves the detector open): pixel i is an important edge if
    1. E_i(I)·255 ≥ `edge_threshold` (a strong colour change next to i), and
    2. E_i(I) is the maximum of E(I) over the `edge_window`² window around i (ties count), so
       wide ramps and texture keep only their ridge, not every pixel of moderate response.
  On a step edge both pixels adjacent to the step have the same response and both are kept.
  Depends on the input alone, so it can be precomputed once per training image.
  """
  response = edge_response(image)
  r = config.edge_window // 2
  local_max = lax.reduce_window(
      jnp.pad(response, r, mode="edge"), -jnp.inf, lax.max,
      (config.edge_window, config.edge_window), (1, 1), "VALID")
  strong = response * INTENSITY_SCALE >= config.edge_threshold
  return (strong & (response >= local_max)).astype(jnp.float32)


def spurious_edges(output: jax.Array, image: jax.Array,
                   config: FanEnergyConfig = FanEnergyConfig()) -> jax.Array:
  """(H, W) bool: the output has an edge where the input is flat (E(I) < c₁, ΔE > c₂).

  Both images (H, W, 3) in [0, 1]; thresholds on the 0–255 scale. No gradient flows through
  the mask (it is a switch between two penalties, piecewise constant in T).
  """
  e_in = edge_response(image) * INTENSITY_SCALE
  e_out = edge_response(lax.stop_gradient(output)) * INTENSITY_SCALE
  return (e_in < config.c1) & (e_out - e_in > config.c2)


def exponent_map(output: jax.Array, image: jax.Array,
                 config: FanEnergyConfig = FanEnergyConfig()) -> jax.Array:
  """p_i of the flattening term, (H, W) float32: 2 at spurious edges, else `p_flat` (0.8)."""
  return jnp.where(spurious_edges(output, image, config), 2.0, config.p_flat)


def flattening(output: jax.Array, image: jax.Array,
               config: FanEnergyConfig = FanEnergyConfig()) -> jax.Array:
  """E_f = 1/(N·M) Σ_i Σ_{j ≠ i in the h×h window} w_ij Σ_c |T_ic − T_jc|^{p_i}, a scalar ≥ 0.

  Args:
    output: T, (H, W, 3) float32 in [0, 1].
    image: I, (H, W, 3) float32 in [0, 1]; gives the colour weights and the p map.
    config: h = `window`, σ_r, σ_s, α, c₁, c₂, ε.

  Only pairs with both pixels inside the image count (no padding artefacts at the border);
  the sum is divided by N·M, N = H·W pixels and M = h² − 1 window neighbours. The weights and
  |T_i − T_j| are symmetric in (i, j), so each
  unordered pair is visited once, through the (h² − 1)/2 offsets after the centre in raster
  order, and charged to both ends with each end's own p and weight. The offsets are visited
  one at a time by a `lax.fori_loop` whose body is rematerialised, so neither the forward pass
  nor the gradient holds more than a few (H, W, 3) arrays at once.
  """
  h, w, _ = output.shape
  r = config.window // 2
  spurious = spurious_edges(output, image, config)
  yuv = rgb_to_yuv(image)
  pad = ((r, r), (r, r), (0, 0))
  # Padded copies from which each offset's partners are cut with a fixed-size dynamic slice;
  # `inside` is 0 for padded pixels so that pairs leaving the image are dropped.
  t_pad = jnp.pad(output, pad)
  yuv_pad = jnp.pad(yuv, pad)
  spurious_pad = jnp.pad(spurious, r)
  inside = jnp.pad(jnp.ones((h, w), output.dtype), r)
  eps_term = config.epsilon ** (config.p_flat / 2)

  @jax.checkpoint
  def pair_energy(k, total):
    dy, dx = k // config.window, k % config.window
    t_j = lax.dynamic_slice(t_pad, (dy, dx, 0), output.shape)
    y_j = lax.dynamic_slice(yuv_pad, (dy, dx, 0), yuv.shape)
    spurious_j = lax.dynamic_slice(spurious_pad, (dy, dx), (h, w))
    valid = lax.dynamic_slice(inside, (dy, dx), (h, w))
    diff2 = jnp.square(output - t_j)
    colour_weight = jnp.exp(
        -jnp.sum(jnp.square(yuv - y_j), axis=-1) / (2 * config.sigma_r**2))
    lp = colour_weight * jnp.sum(
        (diff2 + config.epsilon) ** (config.p_flat / 2) - eps_term, axis=-1)
    dist2 = ((dy - r) ** 2 + (dx - r) ** 2).astype(output.dtype)
    quad = config.alpha * jnp.exp(-dist2 / (2 * config.sigma_s**2)) * jnp.sum(diff2, axis=-1)
    both_ends = jnp.where(spurious, quad, lp) + jnp.where(spurious_j, quad, lp)
    return total + jnp.sum(valid * both_ends)

  centre = r * config.window + r
  total = lax.fori_loop(centre + 1, config.window**2, pair_energy, jnp.zeros((), output.dtype))
  return total / (h * w * (config.window**2 - 1))


def energy(output: jax.Array, image: jax.Array, edges: jax.Array,
           config: FanEnergyConfig = FanEnergyConfig()) -> tuple[jax.Array, dict[str, jax.Array]]:
  """E(T; I) = E_d + λ_f·E_f + λ_e·E_e, differentiable in the output.

  Args:
    output: T, (H, W, 3) float32 in [0, 1] (values outside are allowed).
    image: I, (H, W, 3) float32 in [0, 1].
    edges: B = `edge_map(image, config)`, (H, W) in {0, 1}.
    config: weights and thresholds; static under `jax.jit` (it is hashable).

  Returns:
    The scalar total and a dict with the unweighted terms "data", "flattening", "edge".
  """
  data = jnp.mean(jnp.square(output - image))
  edges = edges.astype(output.dtype)
  # max(·, 1): an image without important edges has no edge term rather than 0/0.
  edge = jnp.sum(edges * jnp.square(edge_response(output) - edge_response(image))) / jnp.maximum(
      jnp.sum(edges), 1.0)
  flat = flattening(output, image, config)
  total = data + config.lambda_f * flat + config.lambda_e * edge
  return total, {"data": data, "flattening": flat, "edge": edge}
