"""DIP-ℓ0 ADMM on tiny images: shapes, determinism, batching, convergence, piecewise constancy."""

import dataclasses
import functools

import chex
import jax
import numpy as np
import pytest

from dipl0_jax import admm, l0_fft, l0_region_fusion, operators
from dipl0_jax import generator as gen

# Two scales keep compilation short; the generator itself is tested in test_generator.py.
TINY = gen.GeneratorConfig(channels_down=(8,) * 2, channels_up=(8,) * 2, channels_skip=(4,) * 2)
CONFIG = admm.DipL0Config(generator=TINY, lam=0.1, outer_iters=8, inner_iters=5)
IDENTITY = operators.Identity()


def _image(seed):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:48, :48]
  clean = np.stack([0.2 + 0.6 * (xx > 16 + seed), 0.3 + 0.4 * (yy > 28), 0.5 + 0 * xx], -1)
  return np.clip(clean + 0.05 * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)


def _solve(images, keys, config=CONFIG, operator=IDENTITY, stop=None):
  start = admm.init_batch(keys, images, operator, config)
  history = []
  for state, step_metrics in admm.iterate(start, images, operator, config):
    history.append(jax.tree.map(np.asarray, step_metrics))
    if len(history) == stop:
      break
  return state, {k: np.stack([h[k] for h in history]) for k in history[0]}


@functools.cache
def _batch_run(stop=None):
  images = np.stack([_image(0), _image(1)])
  keys = jax.random.split(jax.random.key(0), 2)
  return images, keys, _solve(images, keys, stop=stop)


def test_shapes_range_and_iterations():
  images, _, (state, history) = _batch_run()
  chex.assert_shape([state.avg, state.v, state.w], images.shape)
  assert np.all(np.asarray(state.iteration) == CONFIG.outer_iters)
  assert history["lagrangian"].shape == (CONFIG.outer_iters, 2)
  avg = np.asarray(state.avg)
  assert np.all(np.isfinite(avg)) and avg.min() >= 0 and avg.max() <= 1


def test_same_key_same_result_and_other_key_differs():
  images, keys, (state, _) = _batch_run()
  again, _ = _solve(images, keys)
  np.testing.assert_array_equal(np.asarray(again.avg), np.asarray(state.avg))
  other, _ = _solve(images, jax.random.split(jax.random.key(1), 2))
  assert np.abs(np.asarray(other.avg) - np.asarray(state.avg)).max() > 1e-3


def test_lagrangian_and_primal_residual_fall():
  _, _, (_, history) = _batch_run()
  lag, res = history["lagrangian"], history["primal_residual"]
  assert np.all(lag[-1] < 0.5 * lag[0]), lag
  assert np.all(res[-1] < 0.5 * res[0]), res
  assert np.all(history["data"][-1] < history["data"][0])


def test_v_is_piecewise_constant_with_region_fusion_step():
  # Region fusion returns exact group means, so v's flat regions are exactly constant.
  config = dataclasses.replace(CONFIG, outer_iters=3, l0_step=l0_region_fusion.region_fusion_prox)
  images, keys, _ = _batch_run()
  state, history = _solve(images, keys, config)
  for i in range(2):
    colours = np.unique(np.asarray(state.v[i]).reshape(-1, 3), axis=0)
    assert len(colours) < 0.1 * images[i].shape[0] * images[i].shape[1], len(colours)
  assert np.all(np.isfinite(history["lagrangian"]))


def test_batch_and_vmap_equal_pure_function_one_by_one():
  # The ℓ0 step is discontinuous, so rounding differences between differently compiled
  # programs can flip a threshold after many iterations; compare after two.
  config = dataclasses.replace(CONFIG, outer_iters=2)
  images, keys, (state, _) = _batch_run(stop=2)
  solve = lambda y, k: admm.dip_l0(y, key=k, config=config)  # noqa: E731
  vmapped = jax.jit(jax.vmap(solve))(images, keys)
  for i in range(2):
    result = jax.jit(solve)(images[i], keys[i])
    for batched in (state.avg[i], vmapped.output[i]):
      np.testing.assert_allclose(np.asarray(result.output), np.asarray(batched), atol=1e-4)
    for batched in (state.v[i], vmapped.v[i]):
      np.testing.assert_allclose(np.asarray(result.v), np.asarray(batched), atol=1e-3)
    assert result.metrics["lagrangian"].shape == (2,)


@pytest.mark.parametrize("operator", [
    operators.Mask((np.random.default_rng(0).random((48, 48, 1)) > 0.3).astype(np.float32)),
    operators.BoxDownsample(2),
])
def test_forward_operators_run(operator):
  config = dataclasses.replace(CONFIG, outer_iters=2)
  clean = _image(2)
  y = np.asarray(operator(clean))[None]
  start = admm.init_batch(jax.random.key(0)[None], y, operator, config, shape=clean.shape)
  *_, (state, step_metrics) = admm.iterate(start, y, operator, config)
  assert np.all(np.isfinite(np.asarray(step_metrics["lagrangian"])))
  chex.assert_shape(state.avg, (1, *clean.shape))


def test_downsampled_solve_is_the_solve_of_the_shrunk_image_enlarged():
  config = dataclasses.replace(CONFIG, outer_iters=2, downsample=2)
  y, key = _image(0)[:47], jax.random.key(3)  # an odd height rounds down: 23×24
  result = jax.jit(lambda y: admm.dip_l0(y, key=key, config=config))(y)
  small = admm.dip_l0(admm.shrink(y, 2), key=key, config=dataclasses.replace(config, downsample=1))
  chex.assert_shape([result.output, result.v, result.f], y.shape)
  chex.assert_shape(small.output, (23, 24, 3))
  np.testing.assert_allclose(np.asarray(result.output),
                             np.asarray(admm.enlarge(small.output, y.shape)), atol=1e-4)
  # v is enlarged by nearest neighbour: it takes only the solve's values, so it stays flat.
  assert set(np.unique(np.asarray(result.v))) <= set(np.unique(np.asarray(small.v)))
  with pytest.raises(ValueError, match="identity operator"):
    admm.dip_l0(y, key=key, config=config, operator=operators.BoxDownsample(2))
  with pytest.raises(ValueError, match="downsample must be an integer"):
    admm.shrink(y, 0)


def _pairs_differing(v):
  """#{4-neighbour pairs that differ in any channel}: Region Fusion's ‖∇v‖₀."""
  return int(np.any(v[1:] != v[:-1], -1).sum() + np.any(v[:, 1:] != v[:, :-1], -1).sum())


def test_finish_lowers_its_energy_and_is_off_at_zero():
  config = dataclasses.replace(CONFIG, l0_step=l0_region_fusion.RegionFusionProx(50), lam=0.02,
                               finish_beta=1.0)
  y = _image(4)
  avg = admm.shrink(np.clip(y + 0.1, 0, 1), 2)  # a coarse, biased estimate at half size
  up = np.asarray(admm.enlarge(avg, y.shape))

  def energy(v):
    return (config.lam * _pairs_differing(v) + np.sum((v - y) ** 2)
            + 0.5 * config.finish_beta * np.sum((v - up) ** 2))

  out = np.asarray(jax.jit(admm.finish, static_argnums=2)(y, avg, config))
  chex.assert_shape(out, y.shape)
  assert energy(out) < 0.5 * min(energy(y), energy(up)), (energy(out), energy(y), energy(up))
  # It weighs in the observation: closer to y than the biased estimate is.
  assert np.abs(out - y).mean() < 0.6 * np.abs(up - y).mean()
  off = admm.finish(y, avg, dataclasses.replace(config, finish_beta=0.0))
  np.testing.assert_array_equal(np.asarray(off), up)
  for bad in (-1.0, float("nan")):
    with pytest.raises(ValueError, match="finish_beta must be finite"):
      admm.finish(y, avg, dataclasses.replace(config, finish_beta=bad))


def test_finish_hands_the_l0_step_the_weighted_mean_and_weight():
  # A stub ℓ0 step that returns its arguments shows what finish passes it:
  # argmin λC + ‖v − y‖² + γ/2‖v − a‖² is the step of (y + γ/2·a)/(1 + γ/2), weight λ/(1 + γ/2).
  def step(x, weight):
    return (x, weight)

  config = admm.DipL0Config(lam=0.03, finish_beta=3.0, l0_step=step)
  y, a = np.full((4, 6, 3), 0.2, np.float32), np.full((4, 6, 3), 0.8, np.float32)
  x, weight = admm.finish(y, a, config)
  np.testing.assert_allclose(np.asarray(x), (0.2 + 1.5 * 0.8) / 2.5, rtol=1e-6)
  np.testing.assert_allclose(float(weight), 0.03 / 2.5, rtol=1e-6)


def _np_view(x, k, inverse=False):
  """NumPy's rotations and mirrors, to check `admm.dihedral_mean` against."""
  if inverse:
    return np.rot90(x[:, ::-1] if k >= 4 else x, -(k % 4))
  x = np.rot90(x, k % 4)
  return x[:, ::-1] if k >= 4 else x


@pytest.mark.parametrize("views", [1, 2, 5, 8])
def test_dihedral_mean_turns_each_view_back(views):
  # A function that depends on the grid's orientation (cumulative sum down the rows, plus the
  # row index): each view's result must be turned back before averaging.
  def fn(x):
    return np.cumsum(x, 0) + np.arange(x.shape[0])[:, None, None]

  x = np.random.default_rng(7).random((5, 7, 2)).astype(np.float32)
  expected = np.mean([_np_view(fn(_np_view(x, k)), k, inverse=True) for k in range(views)], 0)
  got = admm.dihedral_mean(lambda a: jax.numpy.asarray(fn(np.asarray(a))), x, views)
  chex.assert_shape(got, x.shape)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
  # A function that commutes with every turn and mirror is left unchanged.
  np.testing.assert_allclose(np.asarray(admm.dihedral_mean(lambda a: a * a, x, views)), x * x,
                             rtol=1e-6)
  for bad in (0, 9, 2.0):
    with pytest.raises(ValueError, match="finish_views must be an integer in 1..8"):
      admm.dihedral_mean(lambda a: a, x, bad)


def test_finish_views_average_region_fusion_over_turned_images_in_a_batch():
  # As the launchers call it: jitted and vmapped, on non-square images whose quarter turns
  # change the shape the host-side Region Fusion step receives.
  step = l0_region_fusion.RegionFusionProx(50)
  config = admm.DipL0Config(lam=0.3, finish_beta=1.0, l0_step=step, finish_views=8)
  # Noise, so that the merges Region Fusion makes depend on the order it visits the pixels.
  y = np.random.default_rng(8).random((2, 12, 20, 3)).astype(np.float32)
  avg = np.clip(y + 0.05, 0, 1)
  got = np.asarray(jax.jit(jax.vmap(admm.finish, in_axes=(0, 0, None)), static_argnums=2)(
      y, avg, config))
  for i in range(2):
    x = (y[i] + 0.5 * avg[i]) / 1.5
    views = [_np_view(l0_region_fusion.region_fusion(np.ascontiguousarray(_np_view(x, k)),
                                                     lam=0.3 / 1.5, num_passes=50), k, True)
             for k in range(8)]
    np.testing.assert_allclose(got[i], np.mean(views, 0), atol=1e-6)
  one = np.asarray(admm.finish(y[0], avg[0], dataclasses.replace(config, finish_views=1)))
  assert np.abs(one - got[0]).max() > 1e-3  # the views do differ


def test_finish_blend_mixes_in_plain_l0_finished_alike():
  # Jitted and vmapped as the launchers call it, on non-square images and two views: the
  # blend is (1 − b)·the finished average + b·plain ℓ0 in the same two steps (Region Fusion of
  # the shrunk view at the v-update's weight 2λ/β, enlarged, finished), each view turned back.
  step = l0_region_fusion.RegionFusionProx(50)
  config = admm.DipL0Config(lam=0.3, beta=3.0, l0_step=step, downsample=2, finish_beta=1.0,
                            finish_views=2, finish_blend=0.25)
  rng = np.random.default_rng(9)
  y = rng.random((2, 12, 20, 3)).astype(np.float32)
  avg = np.clip(admm.shrink(y, 2) + 0.05, 0, 1)
  finish = jax.jit(jax.vmap(admm.finish, in_axes=(0, 0, None)), static_argnums=2)
  got = np.asarray(finish(y, avg, config))
  unblended = np.asarray(finish(y, avg, dataclasses.replace(config, finish_blend=0.0)))
  for i in range(2):
    plain = []
    for k in range(2):
      x = _np_view(y[i], k)
      v0 = l0_region_fusion.region_fusion(np.asarray(admm.shrink(x, 2)), lam=0.2, num_passes=50)
      mixed = (x + 0.5 * np.asarray(admm.enlarge(v0, x.shape))) / 1.5
      plain.append(_np_view(l0_region_fusion.region_fusion(mixed, lam=0.2, num_passes=50), k,
                            True))
    np.testing.assert_allclose(got[i], 0.75 * unblended[i] + 0.25 * np.mean(plain, 0), atol=1e-5)
  assert np.abs(got - unblended).max() > 1e-3
  # b = 1 is ℓ0 alone: the average no longer matters.
  alone = dataclasses.replace(config, finish_blend=1.0)
  np.testing.assert_array_equal(np.asarray(finish(y, avg, alone)),
                                np.asarray(finish(y, 1 - avg, alone)))
  # Without a finishing step there is nothing to blend: the enlarged average, as before.
  off = dataclasses.replace(config, finish_beta=0.0)
  np.testing.assert_array_equal(np.asarray(admm.finish(y[0], avg[0], off)),
                                np.asarray(admm.enlarge(avg[0], y[0].shape)))
  for bad in (-0.1, 1.5, float("nan")):
    with pytest.raises(ValueError, match=r"finish_blend must be in \[0, 1\]"):
      admm.finish(y[0], avg[0], dataclasses.replace(config, finish_blend=bad))


def test_finish_shifts_average_plain_l0_over_offsets_of_the_shrinking_grid():
  # Plain ℓ0 alone (b = 1), two views, odd sizes: each offset's observation moved down/right
  # with its edges repeated, shrunk, solved, enlarged, moved back, finished; then averaged.
  step = l0_region_fusion.RegionFusionProx(50)
  config = admm.DipL0Config(lam=0.3, beta=3.0, l0_step=step, downsample=2, finish_beta=1.0,
                            finish_views=2, finish_blend=1.0, finish_shifts=4)
  assert admm.grid_offsets(2, 4) == [(0, 0), (1, 1), (1, 0), (0, 1)]
  assert admm.grid_offsets(5, 2) == [(0, 0), (2, 2)]
  rng = np.random.default_rng(10)
  y = rng.random((2, 13, 21, 3)).astype(np.float32)
  avg = admm.shrink(y, 2)
  finish = jax.jit(jax.vmap(admm.finish, in_axes=(0, 0, None)), static_argnums=2)
  for shifts in (2, 4):
    got = np.asarray(finish(y, avg, dataclasses.replace(config, finish_shifts=shifts)))
    for i in range(2):
      views = []
      for k in range(2):
        x = _np_view(y[i], k)
        h, w = x.shape[:2]
        results = []
        for dy, dx in admm.grid_offsets(2, shifts):
          moved = np.pad(x, ((dy, 0), (dx, 0), (0, 0)), mode="edge")[:h, :w]
          v0 = l0_region_fusion.region_fusion(np.asarray(admm.shrink(moved, 2)), lam=0.2,
                                              num_passes=50)
          v0 = np.pad(np.asarray(admm.enlarge(v0, x.shape))[dy:, dx:], ((0, dy), (0, dx), (0, 0)),
                      mode="edge")
          results.append(l0_region_fusion.region_fusion((x + 0.5 * v0) / 1.5, lam=0.2,
                                                        num_passes=50))
        views.append(_np_view(np.mean(results, 0), k, True))
      np.testing.assert_allclose(got[i], np.mean(views, 0), atol=1e-5)
  one = np.asarray(finish(y, avg, dataclasses.replace(config, finish_shifts=1)))
  assert np.abs(got - one).max() > 1e-3  # the offsets' solves differ
  # At full resolution there is no grid to move: one solve, as with finish_shifts = 1.
  full = dataclasses.replace(config, downsample=1)
  single = dataclasses.replace(full, finish_shifts=1)
  np.testing.assert_array_equal(np.asarray(finish(y, y, full)), np.asarray(finish(y, y, single)))
  assert admm.grid_offsets(1, 4) == [(0, 0)]
  for bad in (0, 5, 2.0):
    with pytest.raises(ValueError, match="finish_shifts must be an integer in 1..4"):
      admm.finish(y[0], avg[0], dataclasses.replace(config, finish_shifts=bad))


def test_finish_beta_scales_average_every_finishing_step_over_gammas():
  # Every finishing step (of the average, and of plain ℓ0 in the blend) is the mean of its
  # results at γ·s; with one scale it is that γ's step.
  step = l0_region_fusion.RegionFusionProx(50)
  config = admm.DipL0Config(lam=0.3, beta=3.0, l0_step=step, downsample=2, finish_beta=1.0,
                            finish_views=2)
  rng = np.random.default_rng(11)
  y = rng.random((13, 20, 3)).astype(np.float32)
  avg = admm.shrink(y + 0.05, 2)
  finish = jax.jit(admm.finish, static_argnums=2)
  for blend in (0.0, 0.5):
    base = dataclasses.replace(config, finish_blend=blend)
    got = np.asarray(finish(y, avg, dataclasses.replace(base, finish_beta_scales=(1.0, 3.0))))
    expected = np.mean([np.asarray(finish(y, avg, dataclasses.replace(base, finish_beta=g)))
                        for g in (1.0, 3.0)], 0)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    doubled = dataclasses.replace(base, finish_beta=0.5, finish_beta_scales=(2.0,))
    np.testing.assert_allclose(np.asarray(finish(y, avg, doubled)),
                               np.asarray(finish(y, avg, base)), atol=1e-6)
  for bad in ((), (1.0, 0.0), (float("inf"),)):
    with pytest.raises(ValueError, match="finish_beta_scales must be finite and > 0"):
      admm.finish(y, avg, dataclasses.replace(config, finish_beta_scales=bad))


def test_finish_plain_members_full_resolution_and_fft_are_averaged_in():
  # Plain ℓ0 alone (b = 1), one view: the mean of the finished half-resolution solve, the same
  # solve at full resolution (both at finish_plain_scale·2λ/β) and FFT ℓ0 at finish_fft_lam.
  step = l0_region_fusion.RegionFusionProx(50)
  config = admm.DipL0Config(lam=0.3, beta=3.0, l0_step=step, downsample=2, finish_beta=1.0,
                            finish_blend=1.0, finish_plain_scale=0.5, finish_plain_full=True,
                            finish_fft_lam=0.02)
  rng = np.random.default_rng(12)
  y = rng.random((2, 13, 21, 3)).astype(np.float32)
  avg = admm.shrink(y, 2)
  finish = jax.jit(jax.vmap(admm.finish, in_axes=(0, 0, None)), static_argnums=2)
  got = np.asarray(finish(y, avg, config))

  def finished(x, v0):
    return l0_region_fusion.region_fusion((x + 0.5 * v0) / 1.5, lam=0.2, num_passes=50)

  for i in range(2):
    x = y[i]
    half = l0_region_fusion.region_fusion(np.asarray(admm.shrink(x, 2)), lam=0.1, num_passes=50)
    solves = [np.asarray(admm.enlarge(half, x.shape)),
              l0_region_fusion.region_fusion(x, lam=0.1, num_passes=50),
              np.asarray(l0_fft.l0_smooth(x, lam=0.02))]
    np.testing.assert_allclose(got[i], np.mean([finished(x, v0) for v0 in solves], 0),
                               atol=1e-5)
  # At full resolution the full-resolution member is the grid's own solve: not added twice.
  full = dataclasses.replace(config, downsample=1, finish_fft_lam=0.0)
  np.testing.assert_array_equal(
      np.asarray(finish(y, y, full)),
      np.asarray(finish(y, y, dataclasses.replace(full, finish_plain_full=False))))
  for field, bad in (("finish_plain_scale", 0.0), ("finish_fft_lam", -0.1)):
    with pytest.raises(ValueError, match=f"{field} must be finite"):
      admm.finish(y[0], avg[0], dataclasses.replace(config, **{field: bad}))


def test_dip_l0_reports_the_finished_average():
  config = dataclasses.replace(CONFIG, outer_iters=2, downsample=2, finish_beta=1.0)
  y, key = _image(5), jax.random.key(4)
  result = admm.dip_l0(y, key=key, config=config)
  plain = admm.dip_l0(y, key=key, config=dataclasses.replace(config, finish_beta=0.0))
  small = admm.dip_l0(admm.shrink(y, 2), key=key,
                      config=dataclasses.replace(config, downsample=1, finish_beta=0.0))
  np.testing.assert_allclose(np.asarray(result.output),
                             np.asarray(admm.finish(y, small.output, config)), atol=1e-4)
  np.testing.assert_array_equal(np.asarray(result.v), np.asarray(plain.v))
  assert np.abs(np.asarray(result.output) - np.asarray(plain.output)).max() > 1e-3
  # At full resolution too (downsample 1): the plain solve's average, finished.
  full = dataclasses.replace(config, downsample=1)
  finished = admm.dip_l0(y, key=key, config=full)
  unfinished = admm.dip_l0(y, key=key, config=dataclasses.replace(full, finish_beta=0.0))
  np.testing.assert_allclose(np.asarray(finished.output),
                             np.asarray(admm.finish(y, unfinished.output, full)), atol=1e-4)
  with pytest.raises(ValueError, match="identity operator"):
    admm.dip_l0(y, key=key, operator=operators.Mask(np.ones((48, 48, 1), np.float32)),
                config=full)
