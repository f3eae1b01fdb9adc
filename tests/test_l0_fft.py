"""Tests for the FFT ℓ0 solver against a NumPy transcription of Xu et al. 2011."""

import re
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dipl0_jax
from dipl0_jax import differences, l0_fft


def _reference_l0(image, lam, kappa=2.0, beta_max=1e5):
  """Plain NumPy transcription of Algorithm 1 of Xu et al. 2011 (periodic, complex FFT)."""
  image = image.astype(np.float64)
  h, w, _ = image.shape
  # Circular kernels of S[:, j+1] - S[:, j] and S[i+1] - S[i], added so that they vanish on a
  # side of one pixel.
  fx = np.zeros((h, w))
  fx[0, 0] -= 1.0
  fx[0, -1] += 1.0
  fy = np.zeros((h, w))
  fy[0, 0] -= 1.0
  fy[-1, 0] += 1.0
  denom = (np.abs(np.fft.fft2(fx)) ** 2 + np.abs(np.fft.fft2(fy)) ** 2)[..., None]
  f_image = np.fft.fft2(image, axes=(0, 1))
  s, beta, steps = image.copy(), 2.0 * lam, 0
  while beta < beta_max:
    gh = np.roll(s, -1, axis=1) - s
    gv = np.roll(s, -1, axis=0) - s
    small = (gh**2 + gv**2).sum(axis=2) < lam / beta
    gh[small] = 0.0
    gv[small] = 0.0
    div = (np.roll(gh, 1, axis=1) - gh) + (np.roll(gv, 1, axis=0) - gv)
    s = np.real(np.fft.ifft2((f_image + beta * np.fft.fft2(div, axes=(0, 1))) / (1 + beta * denom),
                             axes=(0, 1)))
    beta *= kappa
    steps += 1
  return s, steps


def _test_image(shape, seed=0):
  """Piecewise-smooth image with noise, values in [0, 1]."""
  rng = np.random.default_rng(seed)
  h, w, c = shape
  yy, xx = np.mgrid[:h, :w]
  base = np.stack([((xx > w // 3) * 0.6 + (yy > h // 2) * 0.3 + 0.05 * k) for k in range(c)], -1)
  return np.clip(base + 0.05 * rng.standard_normal(shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("shape", [(32, 48, 1), (40, 36, 3), (33, 35, 2)])
@pytest.mark.parametrize("lam", [0.005, 0.02])
def test_matches_numpy_reference_in_float64(shape, lam):
  image = _test_image(shape).astype(np.float64)
  expected, _ = _reference_l0(image, lam)
  with jax.enable_x64(True):
    got = jax.jit(lambda x: dipl0_jax.l0_smooth(x, lam=lam))(image)
    assert got.dtype == np.float64
  chex.assert_shape(got, shape)
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-4)


@pytest.mark.parametrize("shape", [(32, 48, 1), (40, 36, 3), (33, 35, 2)])
@pytest.mark.parametrize("lam", [0.005, 0.02])
def test_matches_numpy_reference_in_float32(shape, lam):
  # In float32 a few pixels whose gradient energy sits within rounding of λ/β may take the
  # other branch of the threshold; the solution stays close everywhere.
  image = _test_image(shape)
  expected, _ = _reference_l0(image, lam)
  got = np.asarray(jax.jit(lambda x: dipl0_jax.l0_smooth(x, lam=lam))(image))
  assert got.dtype == np.float32
  err = np.abs(got - expected)
  assert np.mean(err < 1e-4) > 0.95 and err.mean() < 1e-4 and err.max() < 1e-2


@pytest.mark.parametrize("shape", [(2, 6, 8), (1, 7, 5), (3, 1, 4), (1, 5, 1), (2, 1, 1)])
def test_hartley_transform_matches_numpy_and_inverts_itself(shape):
  x = np.random.default_rng(5).standard_normal(shape)
  f = np.fft.fft2(x)
  with jax.enable_x64(True):
    got = np.asarray(l0_fft.hartley2(x))
    np.testing.assert_allclose(got, f.real - f.imag, atol=1e-9)
    np.testing.assert_allclose(np.asarray(l0_fft.hartley2(got)), x * shape[1] * shape[2],
                               atol=1e-9)


@pytest.mark.parametrize("shape", [(2, 6, 8), (1, 7, 5), (3, 1, 4), (1, 5, 1), (2, 1, 1),
                                   (1, 2, 2), (1, 1, 2), (1, 2, 3)])
def test_wrapped_hartley_transform_is_the_transform_padded_periodically(shape):
  # The solver's carried image: 𝓗 with one wrapped row and column on each side.
  x = np.random.default_rng(6).standard_normal(shape)
  f = np.fft.fft2(x)
  with jax.enable_x64(True):
    got = np.asarray(l0_fft._hartley2_wrapped(x))
  np.testing.assert_allclose(got, np.pad(f.real - f.imag, ((0, 0), (1, 1), (1, 1)), "wrap"),
                             atol=1e-9)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 6, 3), (5, 1, 2), (2, 2, 3), (2, 3, 1)])
def test_thin_images_match_numpy_reference(shape):
  image = _test_image(shape, seed=2).astype(np.float64)
  expected, _ = _reference_l0(image, 0.01)
  with jax.enable_x64(True):
    got = jax.jit(lambda x: dipl0_jax.l0_smooth(x, lam=0.01))(image)
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-4)


def test_kappa_and_beta_max_are_honoured():
  image = _test_image((24, 24, 3), seed=1).astype(np.float64)
  expected, _ = _reference_l0(image, 0.01, kappa=1.5, beta_max=1e4)
  with jax.enable_x64(True):
    got = dipl0_jax.l0_smooth(image, lam=0.01, kappa=1.5, beta_max=1e4)
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-4)


def test_22_beta_steps_for_default_lambda():
  _, steps = _reference_l0(_test_image((8, 8, 1)), 0.02)
  assert steps == 22
  assert l0_fft.num_steps(0.02) == 22


def test_batch_equals_loop():
  images = np.stack([_test_image((32, 32, 3), seed=s) for s in range(3)])
  lams = np.array([0.005, 0.01, 0.02], np.float32)
  batched = jax.jit(jax.vmap(lambda x, lam: dipl0_jax.l0_smooth(x, lam=lam)))(images, lams)
  for i in range(3):
    single = dipl0_jax.l0_smooth(images[i], lam=float(lams[i]))
    np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(single), atol=1e-5)


def test_smooth_batch_equals_one_image_at_a_time_exactly():
  # The launchers' batches: image by image on CPU, so a batch changes no output bit.
  images = np.stack([_test_image((24, 20, 3), seed=s) for s in range(3)])
  batch = np.asarray(l0_fft.l0_smooth_batch(images, lam=0.02))
  one = jax.jit(lambda x, lam: dipl0_jax.l0_smooth(x, lam=lam))
  for image, out in zip(images, batch, strict=True):
    np.testing.assert_array_equal(np.asarray(one(image, 0.02)), out)


def test_smooth_each_equals_one_image_at_a_time_exactly():
  # The launchers' batches on one device: `l0_smooth_host` per image, from one thread per core.
  images = np.stack([_test_image((24, 20, 3), seed=s) for s in range(3)])
  each = l0_fft.l0_smooth_each(images, lam=0.01, kappa=3.0, beta_max=1e4)
  assert isinstance(each, np.ndarray) and each.shape == images.shape
  one = jax.jit(lambda x: dipl0_jax.l0_smooth(x, lam=0.01, kappa=3.0, beta_max=1e4))
  for image, out in zip(images, each, strict=True):
    np.testing.assert_array_equal(np.asarray(one(image)), out)
  np.testing.assert_array_equal(l0_fft.l0_smooth_each(images, lam=0.02),
                                np.asarray(l0_fft.l0_smooth_batch(images, lam=0.02)))
  assert l0_fft.l0_smooth_each(images[:0]).shape == (0, 24, 20, 3)
  with pytest.raises(ValueError, match="B, H, W, C"):
    l0_fft.l0_smooth_each(images[0])


@pytest.mark.parametrize("shape", [(2, 130, 7), (2, 91, 7), (1, 91, 2), (3, 181, 1), (2, 7, 10),
                                   (1, 1, 1)])
def test_hartley_bands_and_rows_tile_the_hartley_transform(shape):
  # The host loop writes 𝓗 as bands of rows k and −k (here forced, as for spectra larger than
  # a core's cache), and single rows; together they must give `hartley2` exactly, every
  # element once.
  planes = np.random.default_rng(4).normal(size=shape).astype(np.float32)
  h, w = shape[1:]
  f = jnp.fft.rfft2(planes)
  want = np.asarray(l0_fft.hartley2(planes))
  out = np.full(shape, np.nan, np.float32)
  for r0, c0, piece in l0_fft._hartley_bands(f, w, cache_bytes=0):
    region = out[:, r0:r0 + piece.shape[-2], c0:c0 + piece.shape[-1]]
    assert np.isnan(region).all()
    region[...] = piece
  np.testing.assert_array_equal(out, want)
  for k in sorted({0, min(1, h - 1), h - 1}):
    row = np.concatenate([piece for _, piece in l0_fft._hartley_row(f, w, k)], -1)
    np.testing.assert_array_equal(row, want[:, k:k + 1])


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 6, 3), (5, 1, 2), (2, 2, 3), (33, 35, 2),
                                   (48, 64, 3), (8, 8, 1), (2, 7, 1), (33, 20, 1)])
def test_host_solve_equals_jitted_solve_where_ffts_stay_on_one_thread(shape):
  # Small transforms are not split over threads, so the in-place host loop must reproduce
  # `l0_smooth` exactly: the same arithmetic in the same order.
  image = _test_image(shape, seed=3)
  for lam, kappa, beta_max in ((0.02, 2.0, 1e5), (0.005, 3.0, 1e4), (0.0, 2.0, 1e5)):
    one = jax.jit(lambda x, lam=lam, kappa=kappa, beta_max=beta_max: dipl0_jax.l0_smooth(
        x, lam=lam, kappa=kappa, beta_max=beta_max))
    host = l0_fft.l0_smooth_host(image, lam=lam, kappa=kappa, beta_max=beta_max)
    assert host.shape == shape and host.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(host), np.asarray(one(image)))
  np.testing.assert_array_equal(np.asarray(l0_fft.l0_smooth_host(image, lam=0.0)), image)


@pytest.mark.parametrize("shape", [(120, 16, 2), (130, 9, 3), (181, 6, 1)])
def test_banded_host_loop_equals_jitted_solve(shape):
  # Spectra larger than a core's cache are written in bands of rows (`_hartley_bands`); forced
  # here on small images, the loop must still reproduce `l0_smooth` exactly.
  image = _test_image(shape, seed=5)
  buffers = l0_fft._host_setup_jit(image)
  host, _ = l0_fft._host_loop_jit(np.float32(0.02), *buffers, kappa=2.0, beta_max=1e5,
                                  cache_bytes=0)
  np.testing.assert_array_equal(np.asarray(host),
                                np.asarray(jax.jit(dipl0_jax.l0_smooth)(image, lam=0.02)))


def test_host_solve_is_l0_smooth_under_transformations():
  images = np.stack([_test_image((12, 10, 3), seed=s) for s in range(2)])
  one = jax.jit(lambda x: dipl0_jax.l0_smooth(x, lam=0.02))
  jitted = jax.jit(lambda x, lam: l0_fft.l0_smooth_host(x, lam=lam))(images[0], 0.02)
  np.testing.assert_array_equal(np.asarray(jitted), np.asarray(one(images[0])))
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # no "donated buffers were not usable"
    mapped = jax.vmap(lambda x: l0_fft.l0_smooth_host(x, lam=0.02))(images)
  np.testing.assert_allclose(np.asarray(mapped), np.stack([one(x) for x in images]), atol=1e-5)


def test_host_solve_refuses_what_l0_smooth_refuses():
  image = _test_image((8, 8, 3))
  with pytest.raises(ValueError, match="kappa > 1"):
    l0_fft.l0_smooth_host(image, kappa=1.0)
  for lam in (float("nan"), np.array(np.inf), jnp.asarray(np.nan)):
    with pytest.raises(ValueError, match="finite lam"):
      l0_fft.l0_smooth_host(image, lam=lam)
    with pytest.raises(ValueError, match="finite lam"):
      dipl0_jax.l0_smooth(image, lam=lam)
  with pytest.raises(ValueError, match="H, W, C"):
    l0_fft.l0_smooth_host(image[..., 0])
  with pytest.raises(TypeError):
    l0_fft.l0_smooth_host(image.astype(np.uint8))


@pytest.mark.parametrize("size", [(480, 640), (720, 1280)])
def test_host_loop_has_no_split_instruction(size):
  # The host loop keeps its FFTs on the calling thread (and so split over the cores, the same
  # way on every call) only while nothing before or inside the loop is split over XLA's pool:
  # after such an instruction the program goes on on a pool thread, whose FFTs run on one
  # thread and round differently. Compiled only, at the sizes where XLA splits large arrays.
  image = jax.ShapeDtypeStruct((*size, 3), np.float32)
  buffers = jax.eval_shape(l0_fft._host_setup, image)
  hlo = l0_fft._host_loop_jit.lower(np.float32(0.02), *buffers, kappa=2.0,
                                    beta_max=1e5).compile().as_text()
  before_loop_end = hlo[:hlo.index(" while(")]
  assert hlo.count(" fft(") >= 2 and "dynamic-update-slice" in before_loop_end
  assert "outer_dimension_partitions" not in before_loop_end
  # Nor a start index computed apart from its update: XLA runs some of those on its pool when
  # several are ready at once, and the loop may go on there.
  assert not re.search(r"= s32\[\] fusion\(", before_loop_end)
  assert " copy(" not in hlo[hlo.index("ENTRY"):hlo.index(" while(")]


def test_zero_lambda_returns_input():
  image = _test_image((16, 20, 3))
  np.testing.assert_array_equal(np.asarray(dipl0_jax.l0_smooth(image, lam=0.0)), image)


def test_output_is_flatter_and_keeps_mean():
  image = _test_image((48, 48, 3), seed=2)
  out = np.asarray(dipl0_jax.l0_smooth(image, lam=0.02))
  assert differences.gradient_count(out, tol=1e-2) < 0.15 * differences.gradient_count(image)
  # The periodic solve preserves the DC component exactly.
  np.testing.assert_allclose(out.mean(axis=(0, 1)), image.mean(axis=(0, 1)), atol=1e-5)


def test_prox_weight_is_l0_lambda():
  x = _test_image((24, 32, 3), seed=3)
  np.testing.assert_array_equal(np.asarray(dipl0_jax.l0_prox(x, 0.01)),
                                np.asarray(dipl0_jax.l0_smooth(x, lam=0.01)))


def test_rejects_non_image_shapes():
  with pytest.raises(ValueError, match="H, W, C"):
    dipl0_jax.l0_smooth(np.zeros((8, 8), np.float32))


def test_adjoint_identities():
  rng = np.random.default_rng(4)
  s, h = rng.standard_normal((2, 9, 11, 2)).astype(np.float32)
  for d, d_t in [(differences.dx, differences.dx_t), (differences.dy, differences.dy_t)]:
    np.testing.assert_allclose(np.vdot(d(s), h), np.vdot(s, d_t(h)), rtol=1e-5)
