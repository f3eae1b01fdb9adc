"""Bad input to the library's entry points fails with an error that names the problem.

Found by a review that called the pure functions as a user would: 8-bit images were taken as
values 0 … 255, metrics broadcast images of different shapes, and dip/dip_l0 failed deep in a
scan on a greyscale observation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import metrics as skm

import dipl0_jax
from dipl0_jax import admm, deep_image_prior, image_io, l0_fft, metrics, operators
from dipl0_jax import generator as gen
from dipl0_jax.l0_region_fusion import region_fusion, region_fusion_batch, region_fusion_prox

RNG = np.random.default_rng(0)
X = RNG.random((16, 16, 3)).astype(np.float32)
U8 = (X * 255).round().astype(np.uint8)
TINY = gen.GeneratorConfig(channels_down=(4,) * 2, channels_up=(4,) * 2, channels_skip=(2,) * 2)


@pytest.mark.parametrize("call", [
    lambda x: dipl0_jax.l0_smooth(x),
    lambda x: jax.jit(dipl0_jax.l0_smooth)(x),
    lambda x: region_fusion(x),
    lambda x: region_fusion_prox(x, 0.1),
    lambda x: l0_fft.l0_smooth_each(x[None]),
    lambda x: region_fusion_batch(x[None]),
    lambda x: admm.dip_l0(x, key=jax.random.key(0)),
    lambda x: deep_image_prior.dip(x, key=jax.random.key(0)),
])
def test_integer_images_are_refused(call):
  with pytest.raises(TypeError, match="float image in \\[0, 1\\], got uint8"):
    call(U8)


@pytest.mark.parametrize("call", [
    lambda x: region_fusion(x),
    lambda x: region_fusion_batch(x[None]),
    lambda x: l0_fft.l0_smooth_each(x[None]),
])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_host_entry_points_refuse_nan_and_infinite_pixels(call, value):
  # One NaN value made every pixel of the FFT solver's result NaN in its channel, and 1 to 256
  # of 256 Region Fusion pixels NaN, depending on the image.
  x = X.copy()
  x[3, 3, 0] = value
  with pytest.raises(ValueError, match="holds 1 NaN or infinite values"):
    call(x)


def test_region_fusion_prox_maps_a_nonfinite_iterate_to_nan_under_jit():
  # Inside a callback an exception would abort the program: a diverged iterate gives NaN.
  x = X.copy()
  x[3, 3, 0] = np.nan
  out = np.asarray(jax.jit(region_fusion_prox)(x, 0.1))
  assert np.isnan(out).all()
  finite = np.asarray(jax.jit(region_fusion_prox)(X, 0.1))
  np.testing.assert_array_equal(finite, region_fusion(X, lam=0.1, num_passes=50))


def test_l0_smooth_refuses_empty_images_nonfinite_lambda_and_batched_lambda():
  with pytest.raises(ValueError, match="empty image"):
    dipl0_jax.l0_smooth(np.zeros((0, 4, 3), np.float32))
  for lam in (float("nan"), float("inf")):
    with pytest.raises(ValueError, match="finite lam"):
      dipl0_jax.l0_smooth(X, lam=lam)
  with pytest.raises(ValueError, match="one scalar lam"):
    l0_fft.l0_smooth_batch(np.stack([X, X]), lam=jnp.array([0.01, 0.02]))
  with pytest.raises(ValueError, match=r"\(B, H, W, C\) batch, got shape \(16, 16, 3\)"):
    l0_fft.l0_smooth_batch(X)


def test_metrics_refuse_other_shapes_and_bad_windows():
  for a, b in ((X, X[..., :1]), (np.stack([X, X]), X)):
    for metric in (metrics.psnr, metrics.ssim):
      with pytest.raises(ValueError, match="same shape"):
        metric(a, b)
  with pytest.raises(ValueError, match="smaller than the 7×7 window"):
    metrics.ssim(X[:5, :5], X[:5, :5])
  for win in (1, 4):
    with pytest.raises(ValueError, match="odd win_size"):
      metrics.ssim(X, X, win_size=win)
  with pytest.raises(ValueError, match=r"\(H, W, C\) images"):
    metrics.ssim(X[..., 0], X[..., 0])
  with pytest.raises(TypeError, match="pass data_range"):
    metrics.psnr(U8, X)


def test_metrics_of_uint8_images_use_their_range_as_skimage_does():
  other = np.clip(U8.astype(int) + RNG.integers(-9, 10, U8.shape), 0, 255).astype(np.uint8)
  np.testing.assert_allclose(float(metrics.psnr(U8, other)),
                             skm.peak_signal_noise_ratio(U8, other), atol=1e-3)
  np.testing.assert_allclose(float(metrics.ssim(U8, other)),
                             skm.structural_similarity(U8, other, channel_axis=-1), atol=1e-3)


def test_generator_methods_check_the_observation_against_generator_and_operator():
  key = jax.random.key(0)
  config = admm.DipL0Config(generator=TINY, outer_iters=1, inner_iters=1)
  for solve in (admm.dip_l0, deep_image_prior.dip):
    with pytest.raises(ValueError, match="1 channels, the generator makes 3"):
      solve(X[..., :1], key=key)
    with pytest.raises(ValueError, match="pass shape="):
      solve(X, key=key, operator=operators.BoxDownsample(2))
  out = admm.dip_l0(X[:8, :8], key=key, config=config, operator=operators.BoxDownsample(2),
                    shape=(16, 16, 3))
  assert out.output.shape == (16, 16, 3)


def test_box_downsample_refuses_bad_factors_and_sides():
  with pytest.raises(ValueError, match="integer factor >= 1"):
    operators.BoxDownsample(0)
  with pytest.raises(ValueError, match="divisible by 2, got 15×15"):
    operators.BoxDownsample(2)(X[:15, :15])
  with pytest.raises(ValueError, match="divisible by 2"):
    operators.BoxDownsample(2).observed_shape((15, 16, 3))


def test_write_png_takes_uint8_as_it_is_and_refuses_nan_and_other_dtypes(tmp_path):
  image_io.write_png(tmp_path / "u8.png", U8)
  np.testing.assert_array_equal(image_io.to_uint8(image_io.read_image(tmp_path / "u8.png")), U8)
  for bad, message in ((np.full((4, 4, 3), np.nan, np.float32), "NaN or infinite"),
                       (U8.astype(np.int32), "got int32")):
    with pytest.raises(image_io.ImageError, match=message):
      image_io.write_png(tmp_path / "bad.png", bad)
  assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize("bad", [{"lam": -1.0}, {"beta": 0.0}, {"lr": float("nan")},
                                 {"ema": 1.0}, {"inner_iters": 0}, {"outer_iters": -1}])
def test_dip_l0_refuses_settings_it_cannot_run(bad):
  config = admm.DipL0Config(generator=TINY, **bad)
  with pytest.raises(ValueError, match=f"DipL0Config: {next(iter(bad))}="):
    admm.dip_l0(X, key=jax.random.key(0), config=config)
