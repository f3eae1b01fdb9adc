"""ℓ0 gradient minimisation by region fusion (Nguyen & Brown, ICCV 2015).

Approximately solves   min_S ‖S − I‖² + λ·#{4-neighbour pixel pairs (p, q) : S_p ≠ S_q}
on (H, W, C) images by greedy fusion of neighbouring groups of pixels (paper, Algorithm 1).
Every pixel starts as its own group (mean Y_i = its colour, size w_i = 1); groups i, j that
share c_ij neighbouring pixel pairs are fused when

  w_i·w_j·‖Y_i − Y_j‖² ≤ β·c_ij·(w_i + w_j),

i.e. when fusing costs at most β per removed boundary pair: the data term grows by
w_i·w_j/(w_i + w_j)·‖Y_i − Y_j‖² and c_ij differing pairs vanish. β is raised from 0 to λ
over K + 1 passes, β_k = λ·k/K, so cheap fusions happen first. In each pass every group
tests its neighbours in raster order, and the neighbours of an absorbed group join the
absorbing group's list and are tested in the same sweep.

Groups are stored as a union-find forest over pixel indices whose roots own neighbour lists
(root id, pixel-pair count) in one pooled array. Lists are updated lazily: a fusion only
folds the absorbed list into the absorbing one, so entries elsewhere may name dead groups;
they are resolved through the forest, and duplicates summed, whenever the owner is visited.
Groups that cannot fuse at the current β are skipped, which does not change the result.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numba
import numpy as np

from dipl0_jax import checks, sharding

# Group ids and offsets into the neighbour-list pool (< 8 entries per pixel) are int32.
_MAX_PIXELS = 2**27


@numba.njit(cache=True)
def _find(ints: np.ndarray, parent: int, i: int) -> int:
  """Root of pixel i's group (column `parent` of `ints`), halving the path on the way."""
  while ints[i, parent] != i:
    ints[i, parent] = ints[ints[i, parent], parent]
    i = ints[i, parent]
  return i


@numba.njit(cache=True)
def _fusion_beta(w_i: float, w_j: float, d2: float, c_ij: int) -> float:
  """Smallest β at which groups i, j fuse: w_i·w_j·‖Y_i − Y_j‖² / (c_ij·(w_i + w_j)).

  Both the fusion test and the skipping of groups use this one expression, so that a
  group is skipped exactly when all its tests would fail; it is symmetric in i and j
  bit for bit.
  """
  return w_i * w_j * d2 / (c_ij * (w_i + w_j))


@numba.njit(cache=True)
def _add_link(ints: np.ndarray, slot: int, t_links: np.ndarray, m: int, g: int,
              count: int) -> int:
  """Adds `count` pixel pairs to group g in the scratch list of m entries; returns its length.

  A group already listed (ints[g, slot] ≥ 0) has its count summed: that is how links to a
  common neighbour merge.
  """
  if ints[g, slot] >= 0:
    t_links[ints[g, slot], 1] += count
    return m
  ints[g, slot] = m
  t_links[m, 0] = g
  t_links[m, 1] = count
  return m + 1


# nogil: XLA runs independent `pure_callback`s (the finishing step's ~130 solves) on its own
# threads at once, and `_prox_host` spreads a batch over threads; with the GIL held they ran
# one at a time. The fast preset's finishing step at 512×384 takes 6.0–6.3 s instead of
# 7.8–10.3 s, with the same output (README, Time to quality).
@numba.njit(cache=True, nogil=True)
def _fuse(image: np.ndarray, lam: float, num_passes: int) -> np.ndarray:
  """Runs region fusion; (H, W, C) float32 in, (H, W, C) float32 group means out."""
  h, w, c = image.shape
  n = h * w
  # One record per group. A pass visits groups scattered over the image, so each record
  # touched is a likely cache miss: all of a group's fields share the record, which is one
  # aligned 64-byte cache line for C = 3. `rec` holds float64 fields: the mean (columns
  # [0, C); float64 keeps means of large groups exact to float32 precision), the size and
  # the wake β (see below). `ints` views the same memory as int32 for the fields after them:
  # union-find parent, scratch-list slot, and the (start, deg, cap) of the neighbour list.
  size, wake = c, c + 1
  parent, slot, start, deg, cap = 2 * c + 4, 2 * c + 5, 2 * c + 6, 2 * c + 7, 2 * c + 8
  width = c + 5
  flat = np.empty(n * width + 8, np.float64)
  offset = (-(flat.ctypes.data // 8)) % 8
  rec = flat[offset : offset + n * width].reshape(n, width)
  ints = rec.view(np.int32)

  # Pooled neighbour lists: group i owns links[start : start + deg] and may grow it in place
  # up to cap entries. A link is (neighbour, pixel-pair count). Interior pixels have 4.
  pool_size = 4 * n
  links = np.empty((pool_size, 2), np.int32)
  for i in range(n):
    for ch in range(c):
      rec[i, ch] = image[i // w, i % w, ch]
    rec[i, size] = 1.0
    rec[i, wake] = np.inf
    ints[i, parent] = i
    ints[i, slot] = -1
    ints[i, start] = 4 * i
    ints[i, deg] = 0
    ints[i, cap] = 4

  # Most groups wait many passes before β reaches the cost of their cheapest fusion, and
  # visiting them earlier only re-tests links that fail. rec[i, wake] is a lower bound on
  # min_j β_ij, where the test passes iff β ≥ β_ij (see `_fusion_beta`); groups with β below
  # it are skipped, as their tests would all fail. It is exact after a visit of i, is
  # lowered whenever a neighbour of i changes, and is ∞ for fused-away groups.
  for i in range(n):
    # Each pixel pair once: i with its right neighbour, then with the one below.
    for j, exists in ((i + 1, (i + 1) % w != 0), (i + w, i + w < n)):
      if not exists:
        continue
      d2 = 0.0
      for ch in range(c):
        d = rec[i, ch] - rec[j, ch]
        d2 += d * d
      beta_ij = _fusion_beta(1.0, 1.0, d2, 1)
      rec[i, wake] = min(rec[i, wake], beta_ij)
      rec[j, wake] = min(rec[j, wake], beta_ij)
      for a, b in ((i, j), (j, i)):
        links[ints[a, start] + ints[a, deg], 0] = b
        links[ints[a, start] + ints[a, deg], 1] = 1
        ints[a, deg] += 1
  pool_end = pool_size

  # Scratch copy of the visited group's list; ints[g, slot] is g's index in it, or -1, so
  # that links to a common neighbour are found in O(1) and their counts summed. A
  # deduplicated list has at most n entries.
  t_links = np.empty((n, 2), np.int32)
  # Groups in raster order, the paper's visiting order; fused-away ones are dropped lazily.
  active = np.arange(n, dtype=np.int32)
  num_active = n
  num_alive = n

  for k in range(num_passes + 1):
    beta = lam * k / num_passes
    for a in range(num_active):
      i = active[a]
      if beta < rec[i, wake]:
        continue
      m = 0
      resolved = False
      for e in range(ints[i, start], ints[i, start] + ints[i, deg]):
        g = _find(ints, parent, links[e, 0])
        resolved |= g != links[e, 0]
        if g != i:
          m = _add_link(ints, slot, t_links, m, g, links[e, 1])

      # Entries appended by fusions are visited in the same sweep, as in the paper, where
      # the absorbed group's neighbours join N_i.
      fused = False
      wake_i = np.inf
      p = 0
      while p < m:
        j = t_links[p, 0]
        d2 = 0.0
        for ch in range(c):
          d = rec[i, ch] - rec[j, ch]
          d2 += d * d
        wi, wj = rec[i, size], rec[j, size]
        beta_ij = _fusion_beta(wi, wj, d2, t_links[p, 1])
        if beta < beta_ij:
          wake_i = min(wake_i, beta_ij)
          p += 1
          continue
        fused = True
        for ch in range(c):
          rec[i, ch] = (wi * rec[i, ch] + wj * rec[j, ch]) / (wi + wj)
        rec[i, size] = wi + wj
        rec[j, wake] = np.inf
        ints[j, parent] = i
        num_alive -= 1
        # Drop j by moving the last entry into its place; that entry is still unvisited.
        ints[j, slot] = -1
        m -= 1
        if p < m:
          t_links[p, 0] = t_links[m, 0]
          t_links[p, 1] = t_links[m, 1]
          ints[t_links[p, 0], slot] = p
        for e in range(ints[j, start], ints[j, start] + ints[j, deg]):
          g = _find(ints, parent, links[e, 0])
          if g != i:
            m = _add_link(ints, slot, t_links, m, g, links[e, 1])
        ints[j, deg] = 0

      for q in range(m):
        ints[t_links[q, 0], slot] = -1
      if fused:
        # Y_i and w_i changed: recompute every β_ij, also for the neighbours' side.
        wake_i = np.inf
        for q in range(m):
          j = t_links[q, 0]
          d2 = 0.0
          for ch in range(c):
            d = rec[i, ch] - rec[j, ch]
            d2 += d * d
          beta_ij = _fusion_beta(rec[i, size], rec[j, size], d2, t_links[q, 1])
          wake_i = min(wake_i, beta_ij)
          rec[j, wake] = min(rec[j, wake], beta_ij)
      rec[i, wake] = wake_i

      if not (fused or resolved):
        continue  # The stored list is unchanged.
      if m > ints[i, cap]:
        if pool_end + m > pool_size:
          # Compact the live lists into a fresh pool with room to spare; blocks of fused
          # groups and outgrown blocks are garbage.
          live = m
          for b in range(num_active):
            g = active[b]
            if ints[g, parent] == g and g != i:
              live += ints[g, deg]
          pool_size = 2 * live
          new_links = np.empty((pool_size, 2), np.int32)
          pool_end = 0
          for b in range(num_active):
            g = active[b]
            if ints[g, parent] == g and g != i:
              for e in range(ints[g, deg]):
                new_links[pool_end + e, 0] = links[ints[g, start] + e, 0]
                new_links[pool_end + e, 1] = links[ints[g, start] + e, 1]
              ints[g, start] = pool_end
              ints[g, cap] = ints[g, deg]
              pool_end += ints[g, deg]
          links = new_links
        ints[i, start] = pool_end
        ints[i, cap] = m
        pool_end += m
      for q in range(m):
        links[ints[i, start] + q, 0] = t_links[q, 0]
        links[ints[i, start] + q, 1] = t_links[q, 1]
      ints[i, deg] = m

    if 4 * num_alive < 3 * num_active:
      kept = 0
      for a in range(num_active):
        if ints[active[a], parent] == active[a]:
          active[kept] = active[a]
          kept += 1
      num_active = kept

  out = np.empty((h, w, c), np.float32)
  for i in range(n):
    g = _find(ints, parent, i)
    for ch in range(c):
      out[i // w, i % w, ch] = rec[g, ch]
  return out


def region_fusion(image: np.ndarray, *, lam: float = 0.02, num_passes: int = 100) -> np.ndarray:
  """Smooths an image by region-fusion ℓ0 gradient minimisation (Nguyen & Brown 2015).

  (H, W, C) float image in [0, 1] → (H, W, C) float32 piecewise-constant image in which
  every 4-connected group of pixels carries the mean of the input over that group.

  Approximately minimises ‖S − I‖² + λ·#{4-neighbour pairs with S_p ≠ S_q}, summed over
  all pixels and channels (channels are fused jointly, any C ≥ 1). This counts differing
  pixel pairs, not pixels with a non-zero gradient as in Xu et al. 2011, so λ here is not
  interchangeable with `l0_smooth`'s.

  Args:
    image: (H, W, C) array, normally float in [0, 1].
    lam: λ ≥ 0, cost of one differing neighbour pair. λ = 0 returns the input.
    num_passes: K ≥ 1; β is raised linearly from 0 to λ over the K + 1 passes. The paper
      uses K = 100.

  Returns:
    (H, W, C) float32 smoothed image.

  Raises:
    TypeError: `image` is not floating point.
    ValueError: if `image` is not 3-D, is empty, holds NaN or infinite values or has more
      than 2²⁷ pixels, `lam` is negative or not finite, or `num_passes` is not an integer ≥ 1.
  """
  image = checks.float_image(np.asarray(image), "region_fusion")
  lam = float(lam)
  if not np.isfinite(lam) or lam < 0:
    raise ValueError(f"region_fusion needs a finite lam >= 0, got {lam}")
  if int(num_passes) != num_passes or num_passes < 1:
    raise ValueError(f"region_fusion needs an integer num_passes >= 1, got {num_passes}")
  if image.shape[0] * image.shape[1] > _MAX_PIXELS:
    raise ValueError(f"region_fusion handles at most {_MAX_PIXELS} pixels, got {image.shape}")
  checks.finite(image, "region_fusion")
  if lam == 0:
    return image.astype(np.float32)
  return _fuse(np.ascontiguousarray(image, np.float32), lam, int(num_passes))


def region_fusion_batch(images: np.ndarray, *, lam: float = 0.02,
                        num_passes: int = 100) -> np.ndarray:
  """`region_fusion` of each image of a (B, H, W, C) batch → (B, H, W, C) float32.

  The solves run on one thread per core and equal those of one image at a time. Raises as
  `region_fusion` does.
  """
  images = checks.finite(checks.float_image(np.asarray(images), "region_fusion_batch", ndim=4),
                         "region_fusion_batch")
  out = np.empty(images.shape, np.float32)

  def solve(b):
    out[b] = region_fusion(images[b], lam=lam, num_passes=num_passes)

  sharding.each_on_cores(solve, range(len(images)))
  return out


def _prox_host(x: np.ndarray, weight: np.ndarray, num_passes: int) -> np.ndarray:
  """Host side of `region_fusion_prox`: (*B, H, W, C), (*B,) → (*B, H, W, C) float32."""
  x = np.asarray(x, np.float32)
  weight = np.asarray(weight, np.float64)
  out = np.empty_like(x)

  def solve(b):
    # Exceptions must not escape a pure_callback, so bad input is mapped to outputs: NaN
    # flags a non-finite weight or x (a diverged iterate), weight ≤ 0 is the identity.
    if not (np.isfinite(weight[b]) and np.isfinite(x[b]).all()):
      out[b] = np.nan
    else:
      out[b] = region_fusion(x[b], lam=max(float(weight[b]), 0.0), num_passes=num_passes)

  sharding.each_on_cores(solve, list(np.ndindex(weight.shape)))
  return out


def region_fusion_prox(x: jax.Array, weight: jax.typing.ArrayLike, *,
                       num_passes: int = 50) -> jax.Array:
  """ℓ0 proximal step  v ≈ argmin_v weight·#{differing neighbour pairs of v} + ‖v − x‖².

  (H, W, C) float32 → (H, W, C) float32, by `region_fusion` with λ = weight run on the host
  through `jax.pure_callback`, so it works under `jax.jit` and `jax.vmap` (batched calls
  reach the host as one call and are solved there on one thread per core). Not
  differentiable.

  ADMM's v-update argmin_v λ·C(v) + (ρ/2)‖v − x‖² is this with weight = 2λ/ρ.

  Args:
    x: (H, W, C) float image.
    weight: scalar ≥ 0, may be traced or batched. weight ≤ 0 returns x; a non-finite
      weight returns NaNs (exceptions cannot be raised from inside a traced call).
    num_passes: K of `region_fusion`; fewer passes than the standalone default trade a
      little accuracy for speed, which suits an inner step repeated every iteration.

  Returns:
    (H, W, C) float32 piecewise-constant approximation of x.
  """
  x = checks.float_image(jnp.asarray(x), "region_fusion_prox").astype(jnp.float32)
  weight = jnp.asarray(weight, jnp.float32)
  if weight.ndim != 0:
    raise ValueError(f"region_fusion_prox expects a scalar weight, got shape {weight.shape}")

  def host(x_np, weight_np):
    return _prox_host(x_np, weight_np, num_passes)

  # broadcast_all hands the host fully batched (*B, H, W, C) and (*B,) arrays, so one call
  # serves the whole vmapped batch.
  return jax.pure_callback(host, jax.ShapeDtypeStruct(x.shape, jnp.float32), x, weight,
                           vmap_method="broadcast_all")


@dataclasses.dataclass(frozen=True)
class RegionFusionProx:
  """`region_fusion_prox` with K passes as an ADMM ℓ0 step (`DipL0Config.l0_step`).

  Compared and hashed by value, so a config that holds it is a stable static argument of
  `jax.jit` (equal configs share one compilation).
  """

  num_passes: int = 50

  def __call__(self, x: jax.Array, weight: jax.typing.ArrayLike) -> jax.Array:
    return region_fusion_prox(x, weight, num_passes=self.num_passes)
