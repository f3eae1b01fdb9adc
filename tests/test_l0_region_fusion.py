"""Tests for region-fusion ℓ0 smoothing (`dipl0_jax.l0_region_fusion`)."""

import collections
from concurrent import futures

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dipl0_jax import l0_region_fusion
from dipl0_jax.l0_region_fusion import region_fusion, region_fusion_prox


def objective(s: np.ndarray, image: np.ndarray, lam: float) -> float:
  """‖S − I‖² + λ·#{4-neighbour pixel pairs whose colours differ}, in float64."""
  s = np.asarray(s, np.float64)
  image = np.asarray(image, np.float64)
  differ = np.any(s[1:] != s[:-1], axis=-1).sum() + np.any(s[:, 1:] != s[:, :-1], axis=-1).sum()
  return float(np.sum((s - image) ** 2) + lam * differ)


def flat_regions(s: np.ndarray) -> np.ndarray:
  """(H, W) labels of the 4-connected regions of equal colour of an (H, W, C) image."""
  h, w, _ = s.shape
  labels = np.full((h, w), -1)
  count = 0
  for start in np.ndindex(h, w):
    if labels[start] >= 0:
      continue
    labels[start] = count
    queue = collections.deque([start])
    while queue:
      y, x = queue.popleft()
      for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
        if (0 <= yy < h and 0 <= xx < w and labels[yy, xx] < 0
            and np.array_equal(s[yy, xx], s[y, x])):
          labels[yy, xx] = count
          queue.append((yy, xx))
    count += 1
  return labels


def reference_region_fusion(image: np.ndarray, lam: float, num_passes: int) -> np.ndarray:
  """Slow, direct region fusion: (H, W, C) image → (H, W, C) float32.

  Visits every group in every pass and updates all neighbour lists at each fusion. Uses
  the module's neighbour order (initially up, left, right, down) and list updates (in the
  visited list an absorbed neighbour is replaced by the last entry; in other lists the
  absorbing group takes the earlier of the two entries), so the results must agree exactly.
  """
  h, w, c = image.shape
  n = h * w
  mean = image.reshape(n, c).astype(np.float64)
  size = np.ones(n)
  owner = np.arange(n)
  alive = np.ones(n, bool)
  nbrs = [[] for _ in range(n)]  # [[group, pixel-pair count], ...]
  for i in range(n):
    for j, exists in ((i + 1, (i + 1) % w != 0), (i + w, i + w < n)):
      if exists:
        nbrs[i].append([j, 1])
        nbrs[j].append([i, 1])
  for k in range(num_passes + 1):
    beta = lam * k / num_passes
    for i in np.flatnonzero(alive):
      if not alive[i]:
        continue
      links = nbrs[i]
      p = 0
      while p < len(links):
        j, c_ij = links[p]
        d2 = sum((mean[i, ch] - mean[j, ch]) ** 2 for ch in range(c))
        if beta < size[i] * size[j] * d2 / (c_ij * (size[i] + size[j])):
          p += 1
          continue
        mean[i] = (size[i] * mean[i] + size[j] * mean[j]) / (size[i] + size[j])
        size[i] += size[j]
        alive[j] = False
        owner[owner == j] = i
        links[p] = links[-1]
        links.pop()
        for g, c_jg in nbrs[j]:
          if g == i:
            continue
          entry = next((e for e in links if e[0] == g), None)
          if entry is None:
            links.append([g, c_jg])
          else:
            entry[1] += c_jg
          theirs = nbrs[g]
          pos_j = next(q for q, e in enumerate(theirs) if e[0] == j)
          pos_i = next((q for q, e in enumerate(theirs) if e[0] == i), None)
          if pos_i is None:
            theirs[pos_j][0] = i
          else:
            theirs[min(pos_i, pos_j)] = [i, theirs[pos_i][1] + theirs[pos_j][1]]
            del theirs[max(pos_i, pos_j)]
        nbrs[j] = []
  return mean[owner].reshape(h, w, c).astype(np.float32)


def smooth_image(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:
  """Smooth colour waves plus gaussian noise, σ = 0.05."""
  yy, xx = np.mgrid[0:h, 0:w]
  waves = np.stack([0.5 + 0.3 * np.sin(xx / 5 + ch) * np.cos(yy / 7) for ch in range(c)], -1)
  return (waves + 0.05 * rng.standard_normal((h, w, c))).astype(np.float32)


def block_image(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:
  """Random 4×4 blocks plus gaussian noise, σ = 0.03."""
  blocks = rng.random((h // 4 + 1, w // 4 + 1, c))
  image = np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)[:h, :w]
  return (image + 0.03 * rng.standard_normal((h, w, c))).astype(np.float32)


def two_halves(rng: np.random.Generator, c: int) -> np.ndarray:
  """32×32: left half 0.2, right half 0.8, plus gaussian noise, σ = 0.05."""
  image = np.full((32, 32, c), 0.2, np.float32)
  image[:, 16:] = 0.8
  return (image + 0.05 * rng.standard_normal(image.shape)).astype(np.float32)


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("lam", [0.03, 0.1])
def test_output_is_piecewise_constant_with_region_means(c, lam):
  image = smooth_image(np.random.default_rng(0), 40, 48, c)
  out = region_fusion(image, lam=lam)
  assert out.shape == image.shape and out.dtype == np.float32
  labels = flat_regions(out)
  assert labels.max() + 1 < image.shape[0] * image.shape[1] // 10
  for label in range(labels.max() + 1):
    region = labels == label
    np.testing.assert_allclose(out[region], np.broadcast_to(
        image[region].mean(axis=0, dtype=np.float64), out[region].shape), atol=2e-6)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("num_passes", [1, 10, 100])
def test_matches_direct_transcription(seed, num_passes):
  # The module skips groups that cannot fuse and updates neighbour lists lazily; neither
  # may change the result. Quantised colours make many fusion tests exact ties.
  rng = np.random.default_rng(seed)
  images = [rng.random((9, 11, 3)), np.round(rng.random((12, 10, 1)) * 4) / 4,
            block_image(rng, 11, 12, 2)]
  for image in images:
    image = image.astype(np.float32)
    for lam in (0.02, 0.2):
      np.testing.assert_array_equal(region_fusion(image, lam=lam, num_passes=num_passes),
                                    reference_region_fusion(image, lam, num_passes))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lam_zero_returns_input(dtype):
  image = np.random.default_rng(1).random((16, 20, 3)).astype(dtype)
  out = region_fusion(image, lam=0.0)
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, image.astype(np.float32))


@pytest.mark.parametrize("c", [1, 3])
def test_noisy_two_regions_are_recovered(c):
  image = two_halves(np.random.default_rng(2), c)
  out = region_fusion(image, lam=0.1)
  for half in (np.s_[:, :16], np.s_[:, 16:]):
    expected = image[half].mean(axis=(0, 1), dtype=np.float64)
    np.testing.assert_allclose(out[half], np.broadcast_to(expected, out[half].shape), atol=1e-6)
  assert not np.array_equal(out[0, 0], out[0, -1])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lam", [0.003, 0.03, 0.3, 3.0])
@pytest.mark.parametrize("num_passes", [1, 10, 100])
def test_objective_beats_the_input(seed, lam, num_passes):
  # Guaranteed: after pass 0 (β = 0) the objective equals the input's, and every fusion
  # lowers it since β ≤ λ. Uniform noise, the hardest case, is included.
  rng = np.random.default_rng(seed)
  for image in (rng.random((20, 24, 3)).astype(np.float32), smooth_image(rng, 24, 20, 1),
                block_image(rng, 17, 23, 3)):
    out = region_fusion(image, lam=lam, num_passes=num_passes)
    assert objective(out, image, lam) <= objective(image, image, lam) * (1 + 1e-9)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lam", [0.003, 0.03, 0.1])
def test_objective_beats_the_constant_image_on_structured_images(seed, lam):
  # Not a guarantee of the greedy fusion: on unstructured noise with λ near the noise
  # variance (where the constant image is about optimal) it can end slightly above it.
  rng = np.random.default_rng(seed)
  for image in (smooth_image(rng, 24, 20, 3), block_image(rng, 17, 23, 1)):
    out = region_fusion(image, lam=lam)
    constant = np.broadcast_to(image.mean(axis=(0, 1), dtype=np.float64), image.shape)
    assert objective(out, image, lam) <= objective(constant, image, lam)


@pytest.mark.parametrize("seed", range(3))
def test_large_lam_gives_the_constant_image(seed):
  rng = np.random.default_rng(seed)
  image = rng.random((12, 15, 3)).astype(np.float32)
  out = region_fusion(image, lam=10.0)
  expected = image.mean(axis=(0, 1), dtype=np.float64)
  np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 9, 1), (9, 1, 2), (5, 7, 4)])
def test_degenerate_shapes_and_channel_counts(shape):
  image = np.random.default_rng(3).random(shape).astype(np.float32)
  out = region_fusion(image, lam=100.0)
  np.testing.assert_allclose(out, np.broadcast_to(image.mean(axis=(0, 1)), shape), atol=1e-6)


def test_grayscale_matches_single_channel_of_colour():
  # Fusion depends on the colour only through ‖Y_i − Y_j‖², so three equal channels behave
  # like one channel with λ / 3.
  gray = smooth_image(np.random.default_rng(4), 32, 32, 1)
  out_gray = region_fusion(gray, lam=0.01)
  out_colour = region_fusion(np.repeat(gray, 3, axis=-1), lam=0.03)
  np.testing.assert_allclose(out_colour, np.repeat(out_gray, 3, axis=-1), atol=1e-6)


def test_prox_matches_numpy_under_jit_and_vmap():
  rng = np.random.default_rng(5)
  images = np.stack([block_image(rng, 24, 28, 3) for _ in range(3)])
  weights = np.array([0.01, 0.05, 0.2], np.float32)
  expected = np.stack([region_fusion(x, lam=float(wt), num_passes=50)
                       for x, wt in zip(images, weights, strict=True)])

  prox = jax.jit(region_fusion_prox)
  np.testing.assert_array_equal(prox(images[1], weights[1]), expected[1])
  np.testing.assert_array_equal(jax.vmap(region_fusion_prox)(images, weights), expected)
  np.testing.assert_array_equal(jax.jit(jax.vmap(region_fusion_prox))(images, weights),
                                expected)
  # One image, batched weights: the callback sees the image broadcast over the batch.
  shared = jax.vmap(region_fusion_prox, in_axes=(None, 0))(images[0], weights)
  for out, wt in zip(shared, weights, strict=True):
    np.testing.assert_array_equal(out, region_fusion(images[0], lam=float(wt), num_passes=50))


def test_solves_on_threads_at_once_match_one_at_a_time():
  # The solver releases the GIL, and XLA and batched proxes run several solves at once.
  rng = np.random.default_rng(9)
  images = [block_image(rng, 40, 36, 3) + 0.05 * rng.standard_normal((40, 36, 3))
            for _ in range(6)]
  expected = [region_fusion(x, lam=0.03, num_passes=20) for x in images]
  with futures.ThreadPoolExecutor(3) as pool:
    got = list(pool.map(lambda x: region_fusion(x, lam=0.03, num_passes=20), images))
  for out, want in zip(got, expected, strict=True):
    np.testing.assert_array_equal(out, want)
  batch = l0_region_fusion.region_fusion_batch(np.stack(images), lam=0.03, num_passes=20)
  np.testing.assert_array_equal(batch, np.stack(expected))


def test_prox_of_zero_weight_is_identity():
  x = jnp.asarray(np.random.default_rng(6).random((8, 8, 3)), jnp.float32)
  out = jax.jit(region_fusion_prox)(x, 0.0)
  assert out.dtype == jnp.float32
  np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize(
    "image, kwargs",
    [
        (np.zeros((4, 4)), {}),
        (np.zeros((2, 4, 4, 3)), {}),
        (np.zeros((4, 4, 3)), {"lam": -0.1}),
        (np.zeros((4, 4, 3)), {"lam": float("nan")}),
        (np.zeros((4, 4, 3)), {"lam": float("inf")}),
        (np.zeros((4, 4, 3)), {"num_passes": 0}),
        (np.zeros((4, 4, 3)), {"num_passes": 2.5}),
    ],
)
def test_invalid_arguments_raise(image, kwargs):
  with pytest.raises(ValueError):
    region_fusion(image, **kwargs)


def test_batch_invalid_arguments_raise_in_the_caller():
  with pytest.raises(ValueError, match="batch"):
    l0_region_fusion.region_fusion_batch(np.zeros((4, 4, 3)))
  with pytest.raises(ValueError, match="lam"):  # raised on a worker thread
    l0_region_fusion.region_fusion_batch(np.zeros((2, 4, 4, 3)), lam=-0.1)


def test_prox_invalid_arguments_raise():
  with pytest.raises(ValueError):
    region_fusion_prox(jnp.zeros((4, 4)), 0.1)
  with pytest.raises(ValueError):
    region_fusion_prox(jnp.zeros((4, 4, 3)), jnp.ones(2))


def test_region_fusion_prox_step_is_hashable_by_value_and_matches_the_function():
  step = l0_region_fusion.RegionFusionProx(20)
  assert step == l0_region_fusion.RegionFusionProx(20) and hash(step) == hash(
      l0_region_fusion.RegionFusionProx(20))
  x = np.random.default_rng(0).random((9, 8, 3)).astype(np.float32)
  np.testing.assert_array_equal(step(x, 0.05),
                                l0_region_fusion.region_fusion_prox(x, 0.05, num_passes=20))
