"""Deep Image Prior: a short fit raises the PSNR of a noisy image; pure function = host loop."""

import jax
import numpy as np

from dipl0_jax import deep_image_prior as dip
from dipl0_jax import generator as gen
from dipl0_jax import metrics, operators

TINY = gen.GeneratorConfig(channels_down=(8,) * 3, channels_up=(8,) * 3, channels_skip=(4,) * 3)


def _noisy_blocks(seed=0, sigma=0.1):
  yy, xx = np.mgrid[:48, :48]
  clean = np.stack([0.2 + 0.6 * (xx > 20), 0.3 + 0.4 * (yy > 28), 0.5 + 0 * xx], -1)
  noisy = clean + sigma * np.random.default_rng(seed).standard_normal(clean.shape)
  return clean.astype(np.float32), np.clip(noisy, 0, 1).astype(np.float32)


def test_denoising_raises_psnr():
  clean, noisy = _noisy_blocks()
  config = dip.DipConfig(generator=TINY, num_iters=300, lr=0.01)
  start = dip.init_batch(jax.random.key(0)[None], noisy[None], operators.Identity(), config)
  for state, step_metrics in dip.iterate(start, noisy[None], operators.Identity(), config,
                                         chunk=100):
    assert np.all(np.isfinite(step_metrics["loss"]))
  assert int(state.iteration[0]) == 300
  before = float(metrics.psnr(noisy, clean))
  after = float(metrics.psnr(state.avg[0], clean))
  assert after > before + 2.0, (before, after)


def test_pure_function_matches_host_loop():
  _, noisy = _noisy_blocks(1)
  config = dip.DipConfig(generator=TINY, num_iters=4)
  key = jax.random.key(3)
  result = jax.jit(lambda y, k: dip.dip(y, key=k, config=config, unroll=True))(noisy, key)
  start = dip.init_batch(key[None], noisy[None], operators.Identity(), config)
  *_, (state, _) = dip.iterate(start, noisy[None], operators.Identity(), config)
  np.testing.assert_allclose(np.asarray(result.output), np.asarray(state.avg[0]), atol=1e-4)
  assert result.metrics["loss"].shape == (4,)
