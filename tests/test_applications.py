"""Detail magnification, DoG abstraction and the Gaussian blur they use."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dipl0_jax import applications

# Jitted once here: eager mode would compile each of the blur's many small ops separately.
_abstraction = jax.jit(applications.abstraction)
_blur = jax.jit(applications.gaussian_blur, static_argnums=1)


def _pair(seed, shape=(24, 20, 3)):
  rng = np.random.default_rng(seed)
  image = rng.uniform(0.0, 1.0, shape).astype(np.float32)
  base = rng.uniform(0.0, 1.0, shape).astype(np.float32)
  return jnp.asarray(image), jnp.asarray(base)


def _step(low=0.2, high=0.8, shape=(16, 32, 3), edge=16):
  image = np.full(shape, low, np.float32)
  image[:, edge:] = high
  return jnp.asarray(image)


def test_detail_gain_one_is_input_and_zero_is_base():
  image, base = _pair(0)
  np.testing.assert_array_equal(applications.detail_magnification(image, base, k=1.0), image)
  np.testing.assert_array_equal(applications.detail_magnification(image, base, k=0.0), base)


def test_detail_is_clipped_and_enhances():
  image, base = _pair(1)
  out = np.asarray(applications.detail_magnification(image, base))  # k = 3
  assert out.min() >= 0.0 and out.max() <= 1.0
  inside = np.abs(np.asarray(base + 3.0 * (image - base)) - 0.5) < 0.5
  np.testing.assert_allclose(out[inside], np.asarray(base + 3.0 * (image - base))[inside],
                             atol=1e-6)
  with pytest.raises(ValueError, match="differ in shape"):
    applications.detail_magnification(image, base[:-1])


def test_gaussian_kernel_sums_to_one_and_blur_keeps_constant():
  for sigma in (0.5, 1.0, 1.6, 4.0):
    weights = applications.gaussian_kernel(sigma)
    assert len(weights) == 2 * max(1, int(np.ceil(3 * sigma))) + 1
    np.testing.assert_allclose(weights.sum(), 1.0, atol=1e-6)
    np.testing.assert_allclose(weights, weights[::-1])
  constant = jnp.full((5, 7, 2), 0.3, jnp.float32)  # smaller than the σ = 4 kernel
  for sigma in (1.0, 4.0):
    np.testing.assert_allclose(_blur(constant, sigma), constant, atol=1e-6)
  impulse = jnp.zeros((21, 21, 1)).at[10, 10].set(1.0)
  blurred = _blur(impulse, 1.0)
  np.testing.assert_allclose(blurred.sum(), 1.0, atol=1e-6)  # away from the border: no loss
  w = applications.gaussian_kernel(1.0)
  np.testing.assert_allclose(blurred[7:14, 7:14, 0], np.outer(w, w), atol=1e-7)
  with pytest.raises(ValueError):
    applications.gaussian_kernel(0.0)


def test_abstraction_of_constant_image_draws_no_lines():
  flat = jnp.full((12, 16, 3), jnp.asarray([0.9, 0.4, 0.1]), jnp.float32)
  np.testing.assert_array_equal(_abstraction(flat), flat)


def test_abstraction_darkens_only_the_dark_side_of_an_edge():
  image = _step()
  out = np.asarray(_abstraction(image))
  change = out - np.asarray(image)
  assert change.max() == 0.0  # never brightens
  changed = np.flatnonzero(np.any(change < 0, axis=(0, 2)))
  reach = len(applications.gaussian_kernel(1.6)) // 2  # the wider Gaussian's radius, 5 px
  assert changed.size and changed.min() >= 16 - reach and changed.max() < 16  # the dark side
  assert out[:, 15].max() < 0.05  # a near-black line right at a 0.6 step
  np.testing.assert_array_equal(out[0], out[-1])  # the same on every row


def test_vmap_equals_loop():
  images, bases = (jnp.stack(z) for z in zip(*[_pair(s, (12, 16, 3)) for s in range(3)],
                                              strict=True))
  detail = jax.jit(jax.vmap(lambda x, b: applications.detail_magnification(x, b, k=2.5)))
  abstract = jax.jit(jax.vmap(applications.abstraction))
  for i in range(3):
    np.testing.assert_allclose(detail(images, bases)[i],
                               applications.detail_magnification(images[i], bases[i], k=2.5),
                               atol=1e-6)
    # The soft threshold's slope (100) amplifies float32 rounding differences of the blur.
    np.testing.assert_allclose(abstract(bases)[i], _abstraction(bases[i]), atol=2e-5)


def test_grey_images_work():
  image = _step(shape=(8, 32, 1))
  out = _abstraction(image)
  assert out.shape == (8, 32, 1) and float(out.min()) < 0.1
