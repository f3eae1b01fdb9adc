"""The Fan et al. 2018 energy: edge response, edge map, p switch, flattening loop vs NumPy."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dipl0_jax import fan_energy as fe

SMALL = fe.FanEnergyConfig(window=5)


def step_image(h: int = 12, w: int = 12) -> jax.Array:
  """Left half dark grey, right half light grey: one vertical step of 0.6 in every channel."""
  image = np.full((h, w, 3), 0.2, np.float32)
  image[:, w // 2:] = 0.8
  return jnp.asarray(image)


def test_constant_image_has_no_edges_and_no_flattening_energy():
  image = jnp.full((9, 9, 3), 0.4)
  np.testing.assert_array_equal(fe.edge_response(image), 0.0)
  assert float(fe.flattening(image, image, SMALL)) == 0.0
  total, terms = fe.energy(image, image, fe.edge_map(image, SMALL), SMALL)
  assert float(total) == 0.0 and float(terms["edge"]) == 0.0


def test_edge_response_of_a_3x3_example():
  # Channel sums S = [[0, 0, 0], [0, 3, 0], [0, 0, 1.5]] (a bright centre, a dimmer corner).
  x = np.zeros((3, 3, 3), np.float32)
  x[1, 1] = 1.0
  x[2, 2] = 0.5
  expected = np.array([
      [0, 3, 0],            # each edge-middle pixel sees the centre once
      [3, 12, 3 + 1.5],     # centre: 4 × 3; (1, 2) sees the centre and the corner
      [0, 3 + 1.5, 1.5 * 2],  # corner: two inside neighbours at 0, two replicated copies
  ], np.float32)
  np.testing.assert_allclose(fe.edge_response(jnp.asarray(x)), expected, rtol=1e-6)


def test_step_edge_is_in_b_and_t_equal_i_uses_p_0_8_everywhere():
  image = step_image()
  edges = np.asarray(fe.edge_map(image, SMALL))
  assert edges[:, 5].all() and edges[:, 6].all()  # both pixels next to the step
  assert edges.sum() == 2 * 12
  np.testing.assert_array_equal(fe.exponent_map(image, image, SMALL), np.float32(0.8))


def test_spurious_edge_in_a_flat_region_switches_to_p_2():
  image = step_image()
  output = np.array(image)
  output[2:5, 1:4] += 0.2  # a bright square inside the flat dark half
  spurious = np.asarray(fe.spurious_edges(jnp.asarray(output), image, SMALL))
  p = np.asarray(fe.exponent_map(jnp.asarray(output), image, SMALL))
  assert spurious[2, 1] and spurious[1, 2]  # on and just outside the square's boundary
  assert not spurious[3, 2]  # the square's interior is flat in the output too
  assert not spurious[:, 5:].any()  # the real edge and the light half are untouched
  np.testing.assert_array_equal(p, np.where(spurious, 2.0, 0.8).astype(np.float32))


def test_detail_preset_flags_every_response_increase():
  image = step_image()
  output = np.array(image)
  output[:, 5] -= 0.1  # sharpen the real edge: E(T) > E(I) there
  spurious = np.asarray(fe.spurious_edges(jnp.asarray(output), image, fe.PRESETS["detail"]))
  assert spurious[:, 5].all()
  assert not np.asarray(fe.spurious_edges(jnp.asarray(output), image, SMALL))[:, 5].any()


def test_energy_is_differentiable_and_jittable():
  key_i, key_t = jax.random.split(jax.random.key(0))
  image = jax.random.uniform(key_i, (10, 11, 3))
  output = image + 0.05 * jax.random.normal(key_t, image.shape)
  edges = fe.edge_map(image, SMALL)
  loss = jax.jit(lambda t: fe.energy(t, image, edges, SMALL)[0])
  grad = jax.jit(jax.grad(lambda t: fe.energy(t, image, edges, SMALL)[0]))(output)
  assert np.isfinite(float(loss(output)))
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
  # T = I is a valid point too (zero differences: the ε guard).
  assert np.all(np.isfinite(jax.grad(lambda t: fe.energy(t, image, edges, SMALL)[0])(image)))
  np.testing.assert_allclose(loss(output), fe.energy(output, image, edges, SMALL)[0], rtol=1e-5)


def naive_flattening(output: np.ndarray, image: np.ndarray, cfg: fe.FanEnergyConfig) -> float:
  """E_f by explicit loops over pixels and window offsets (float64)."""
  h, w, _ = output.shape

  def response(x):
    s = x.sum(-1)
    e = np.zeros((h, w))
    for i, j in itertools.product(range(h), range(w)):
      for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ni, nj = min(max(i + di, 0), h - 1), min(max(j + dj, 0), w - 1)
        e[i, j] += abs(s[i, j] - s[ni, nj])
    return 255 * e

  e_in, e_out = response(image), response(output)
  yuv = image @ np.array(fe._RGB_TO_YUV).T
  r = cfg.window // 2
  total = 0.0
  for i, j in itertools.product(range(h), range(w)):
    spurious = e_in[i, j] < cfg.c1 and e_out[i, j] - e_in[i, j] > cfg.c2
    for a, b in itertools.product(range(i - r, i + r + 1), range(j - r, j + r + 1)):
      if (a, b) == (i, j) or not (0 <= a < h and 0 <= b < w):
        continue
      d = output[i, j] - output[a, b]
      if spurious:
        weight = cfg.alpha * np.exp(-((i - a) ** 2 + (j - b) ** 2) / (2 * cfg.sigma_s**2))
        total += weight * np.sum(d**2)
      else:
        weight = np.exp(-np.sum((yuv[i, j] - yuv[a, b]) ** 2) / (2 * cfg.sigma_r**2))
        total += weight * np.sum((d**2 + cfg.epsilon) ** 0.4 - cfg.epsilon**0.4)
  return total / (h * w * (cfg.window**2 - 1))


@pytest.mark.parametrize("preset", ["smoothing", "detail"])
def test_flattening_loop_matches_naive_double_loop(preset):
  cfg = fe.FanEnergyConfig(**{**fe.PRESETS[preset].__dict__, "window": 5})
  rng = np.random.default_rng(0)
  image = np.repeat(np.linspace(0.2, 0.25, 9, dtype=np.float32)[None, :, None], 9, 0)
  image = np.repeat(image, 3, -1) + 0.003 * rng.standard_normal((9, 9, 3)).astype(np.float32)
  image[:, 6:] += 0.5  # a real edge
  output = image + 0.02 * rng.standard_normal((9, 9, 3)).astype(np.float32)
  output[3:5, 1:3] += 0.15  # a spurious square
  assert np.asarray(fe.spurious_edges(jnp.asarray(output), jnp.asarray(image), cfg)).any()
  got = float(fe.flattening(jnp.asarray(output), jnp.asarray(image), cfg))
  want = naive_flattening(output.astype(np.float64), image.astype(np.float64), cfg)
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_edge_term_is_normalised_by_the_edge_count_and_guards_zero():
  image = step_image()
  edges = fe.edge_map(image, SMALL)
  output = image * 0.5  # halves every response
  _, terms = fe.energy(output, image, edges, SMALL)
  diff = np.asarray(fe.edge_response(output) - fe.edge_response(image))
  e = np.asarray(edges)
  np.testing.assert_allclose(terms["edge"], (e * diff**2).sum() / e.sum(), rtol=1e-5)
  _, terms = fe.energy(output, image, jnp.zeros_like(edges), SMALL)
  assert float(terms["edge"]) == 0.0


def test_presets_and_config_checks():
  assert fe.PRESETS["smoothing"] == fe.FanEnergyConfig()
  assert (fe.PRESETS["texture"].alpha, fe.PRESETS["texture"].window) == (20.0, 5)
  assert fe.PRESETS["detail"].c1 == np.inf and fe.PRESETS["detail"].c2 == 0.0
  with pytest.raises(ValueError):
    fe.FanEnergyConfig(window=4)
