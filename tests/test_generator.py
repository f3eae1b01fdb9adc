"""The DIP skip generator: shapes, range, odd sizes, parameter count, configuration checks."""

from unittest import mock

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dipl0_jax import generator as gen

TINY = gen.GeneratorConfig(channels_down=(8,) * 3, channels_up=(8,) * 3, channels_skip=(4,) * 3)


@pytest.mark.parametrize("hw", [(48, 48), (37, 51), (TINY.min_size, 20)])
def test_output_shape_and_range_for_any_size(hw):
  params, z = gen.init_generator(jax.random.key(0), (*hw, 3), TINY)
  chex.assert_shape(z, (*hw, 32))
  out = gen.generate(params, z, TINY)
  chex.assert_shape(out, (*hw, 3))
  assert np.all((np.asarray(out) > 0) & (np.asarray(out) < 1))


def test_paper_network_has_2_2m_parameters():
  config = gen.GeneratorConfig()
  shapes = jax.eval_shape(lambda: gen.init_generator(jax.random.key(0), (64, 64, 3), config)[0])
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  assert 2_200_000 < count < 2_250_000


def test_input_noise_is_uniform_times_scale():
  z = np.asarray(gen.input_noise(jax.random.key(1), 64, 64, gen.GeneratorConfig()))
  assert z.min() >= 0 and z.max() < 0.1 and abs(z.mean() - 0.05) < 2e-3


@pytest.mark.parametrize("option", [
    dict(upsample="nearest"), dict(padding="zeros"), dict(activation="relu"),
    dict(channels_skip=(0, 4, 0)),
])
def test_options_build_and_run(option):
  config = gen.GeneratorConfig(**{**TINY.__dict__, **option})
  params, z = gen.init_generator(jax.random.key(0), (20, 24, 3), config)
  chex.assert_shape(gen.generate(params, z, config), (20, 24, 3))


def test_bad_configuration_and_too_small_input_raise():
  with pytest.raises(ValueError, match="one entry per scale"):
    gen.GeneratorConfig(channels_down=(8, 8), channels_up=(8,), channels_skip=(4,))
  with pytest.raises(ValueError, match="upsample"):
    gen.GeneratorConfig(upsample="bicubic")
  with pytest.raises(ValueError, match="H, W ≥"):
    gen.init_generator(jax.random.key(0), (TINY.min_size - 1, 20, 3), TINY)


def test_batch_norm_gradient_equals_autodiff_of_its_formula():
  x = jax.random.normal(jax.random.key(0), (2, 6, 5, 3)) * 3 + 1
  scale, bias = jnp.array([0.5, 1.0, 2.0]), jnp.array([0.1, -0.2, 0.0])
  dy = jax.random.normal(jax.random.key(1), x.shape)

  def formula(x, scale, bias):
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.var(x, axis=(0, 1, 2))
    return (x - mean) / jnp.sqrt(var + 1e-5) * scale + bias

  ours = jax.vjp(lambda *a: gen.batch_norm(*a, 1e-5), x, scale, bias)
  reference = jax.vjp(formula, x, scale, bias)
  np.testing.assert_allclose(ours[0], reference[0], rtol=1e-5, atol=1e-5)
  for got, want in zip(ours[1](dy), reference[1](dy), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape,kernel,stride,out", [
    ((2, 9, 8, 3), 3, 2, 5), ((1, 12, 13, 4), 3, 2, 5), ((1, 11, 10, 2), 5, 3, 5),
    ((1, 8, 8, 3), 1, 2, 5), ((2, 5, 7, 6), 1, 1, 5), ((1, 6, 5, 3), 1, 1, 5),
    ((1, 6, 7, 8), 1, 1, 3), ((2, 5, 4, 6), 1, 1, 1)])
def test_custom_convs_values_and_gradients_equal_xla(shape, kernel, stride, out):
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], shape)
  k = jax.random.normal(keys[1], (kernel, kernel, shape[-1], out))

  def xla(x, k):
    return jax.lax.conv_general_dilated(x, k, (stride, stride), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  if stride == 1:
    ours = jax.vjp(gen.pointwise_conv, x, k)
  else:
    ours = jax.vjp(lambda x, k: gen.strided_conv(x, k, stride), x, k)
  reference = jax.vjp(xla, x, k)
  np.testing.assert_allclose(ours[0], reference[0], rtol=1e-5, atol=1e-5)
  dy = jax.random.normal(keys[2], reference[0].shape)
  for got, want in zip(ours[1](dy), reference[1](dy), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_generator_gradient_through_custom_convs_equals_plain_convs():
  config = gen.GeneratorConfig().resized(4, 3)
  z = gen.input_noise(jax.random.key(0), 19, 21, config)[None]
  net = gen.SkipNet(config)
  params = net.init(jax.random.key(1), z)

  def loss(params, conv):
    with mock.patch.object(gen, "_flax_conv", conv):
      return jnp.sum(jnp.sin(net.apply(params, z)))

  ours = jax.grad(loss)(params, gen._flax_conv)
  reference = jax.grad(loss)(params, None)
  # Every convolution but the output one feeds a BatchNorm, which makes its bias's gradient zero;
  # both computed ones are rounding, held to the scale of the other gradients, not compared.
  output_conv = f"Conv_{sum(name.startswith('Conv_') for name in params['params']) - 1}"
  scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(reference))
  for grads in (ours, reference):
    for name, conv in grads["params"].items():
      if name.startswith("Conv_") and name != output_conv:
        assert float(jnp.max(jnp.abs(conv["Conv_0"]["bias"]))) < 1e-5 * scale, name
        conv["Conv_0"]["bias"] = jnp.zeros_like(conv["Conv_0"]["bias"])
  chex.assert_trees_all_close(ours, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (2, 5, 4, 3), (1, 7, 9, 1)])
def test_upsample2_values_and_gradient_equal_image_resize(shape, method):
  x = jax.random.normal(jax.random.key(0), shape)
  n, h, w, c = shape

  def resize(x):
    return jax.image.resize(x, (n, 2 * h, 2 * w, c), method)

  ours = jax.vjp(lambda x: gen.upsample2(x, method), x)
  reference = jax.vjp(resize, x)
  np.testing.assert_allclose(ours[0], reference[0], rtol=1e-6, atol=1e-6)
  dy = jax.random.normal(jax.random.key(1), reference[0].shape)
  np.testing.assert_allclose(ours[1](dy)[0], reference[1](dy)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,pad", [((2, 5, 7, 3), 1), ((1, 6, 9, 2), 2), ((1, 3, 3, 1), 1),
                                       ((1, 17, 4, 2), 1), ((1, 5, 5, 1), 2), ((1, 1, 1, 2), 1),
                                       ((2, 1, 4, 1), 1), ((1, 2, 5, 1), 2)])
def test_reflect_pad_values_and_gradient_equal_jnp_pad(shape, pad):
  x = jax.random.normal(jax.random.key(0), shape)

  def reference(x):
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")

  ours = jax.vjp(lambda x: gen.reflect_pad(x, pad), x)
  expected = jax.vjp(reference, x)
  np.testing.assert_array_equal(ours[0], expected[0])
  dy = jax.random.normal(jax.random.key(1), expected[0].shape)
  np.testing.assert_allclose(jax.jit(ours[1])(dy)[0], expected[1](dy)[0], rtol=1e-6, atol=1e-6)
  # Under shard_map (the launchers on several devices) the cotangent's type names the mesh axis.
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",))
  spec = jax.sharding.PartitionSpec("batch")
  grad = lambda x, dy: jax.vjp(lambda x: gen.reflect_pad(x, pad), x)[1](dy)  # noqa: E731
  sharded = jax.jit(jax.shard_map(grad, mesh=mesh, in_specs=(spec, spec), out_specs=spec))
  np.testing.assert_allclose(sharded(x, dy)[0], expected[1](dy)[0], rtol=1e-6, atol=1e-6)
