"""PSNR and SSIM agree with scikit-image."""

import jax
import numpy as np
import pytest
from skimage import metrics as skm

from dipl0_jax import metrics


def _pair(shape, seed):
  rng = np.random.default_rng(seed)
  x = rng.random(shape).astype(np.float32)
  y = np.clip(x + 0.1 * rng.standard_normal(shape), 0, 1).astype(np.float32)
  return x, y


@pytest.mark.parametrize("shape", [(32, 40, 3), (20, 17, 1)])
@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_psnr_matches_skimage(shape, scale):
  x, y = _pair(shape, 0)
  x, y = x * scale, y * scale
  expected = skm.peak_signal_noise_ratio(x, y, data_range=scale)
  got = jax.jit(lambda a, b: metrics.psnr(a, b, data_range=scale))(x, y)
  np.testing.assert_allclose(float(got), expected, atol=1e-3)


@pytest.mark.parametrize("shape", [(32, 40, 3), (20, 17, 1), (64, 64, 3)])
@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_ssim_matches_skimage(shape, scale):
  x, y = _pair(shape, 1)
  x, y = x * scale, y * scale
  expected = skm.structural_similarity(x, y, channel_axis=-1, win_size=7, data_range=scale)
  got = jax.jit(lambda a, b: metrics.ssim(a, b, data_range=scale))(x, y)
  np.testing.assert_allclose(float(got), expected, atol=1e-3)


def test_ssim_of_identical_images_is_one():
  x, _ = _pair((16, 16, 3), 2)
  np.testing.assert_allclose(float(metrics.ssim(x, x)), 1.0, atol=1e-5)


def test_metrics_vmap():
  xs, ys = _pair((3, 16, 16, 3), 3)
  batched = jax.vmap(metrics.psnr)(xs, ys)
  for i in range(3):
    np.testing.assert_allclose(float(batched[i]), float(metrics.psnr(xs[i], ys[i])), rtol=1e-6)
