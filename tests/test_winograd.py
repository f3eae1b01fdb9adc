"""Winograd F(4×4, 3×3) convolutions: values and gradients of XLA's, and where they are used."""

from unittest import mock

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import flatten_util

from dipl0_jax import generator as gen
from dipl0_jax import winograd


def _direct(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _relative_error(got, want):
  return float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))


# Output sizes that are and are not multiples of the 4×4 tile, down to a single output pixel.
@pytest.mark.parametrize("shape", [(1, 8, 8, 3, 5), (2, 13, 10, 7, 4), (1, 1, 1, 2, 2),
                                   (3, 5, 17, 16, 1), (1, 6, 9, 64, 3)])  # 64: stacked tiles
def test_values_and_gradients_equal_xla_convolution(shape):
  n, h, w, c, d = shape
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (n, h + 2, w + 2, c))
  kernel = jax.random.normal(keys[1], (3, 3, c, d))
  ours, ours_vjp = jax.vjp(winograd.conv3x3, x, kernel)
  want, want_vjp = jax.vjp(_direct, x, kernel)
  chex.assert_shape(ours, (n, h, w, d))
  assert _relative_error(ours, want) < 1e-5
  dy = jax.random.normal(keys[2], want.shape)
  for got, expected in zip(ours_vjp(dy), want_vjp(dy), strict=True):
    assert _relative_error(got, expected) < 1e-5


def test_works_under_jit_vmap_and_grad_of_grad():
  keys = jax.random.split(jax.random.key(1), 3)
  xs = jax.random.normal(keys[0], (3, 1, 9, 11, 4))
  kernel = jax.random.normal(keys[1], (3, 3, 4, 2))
  batched = jax.jit(jax.vmap(winograd.conv3x3, in_axes=(0, None)))(xs, kernel)
  assert _relative_error(batched, jax.vmap(_direct, in_axes=(0, None))(xs, kernel)) < 1e-5

  def gradient_energy(conv, x):  # differentiates the written-out gradient
    grad = jax.grad(lambda x: jnp.sum(jnp.sin(conv(x, kernel))))(x)
    return jnp.vdot(grad, jax.random.normal(keys[2], x.shape))

  got = jax.jit(jax.grad(gradient_energy, 1), static_argnums=0)(winograd.conv3x3, xs[0])
  want = jax.jit(jax.grad(gradient_energy, 1), static_argnums=0)(_direct, xs[0])
  assert _relative_error(got, want) < 1e-4


@pytest.mark.parametrize("x_shape,kernel_shape,expected", [
    ((1, 66, 66, 128), (3, 3, 128, 128), True),  # 64² outputs, 128 channels
    ((1, 258, 258, 132), (3, 3, 132, 128), True),
    ((1, 65, 66, 128), (3, 3, 128, 128), False),  # 63 × 64 outputs: too few
    ((1, 258, 258, 32), (3, 3, 32, 32), True),
    ((1, 258, 258, 36), (3, 3, 36, 32), True),
    ((1, 258, 258, 32), (3, 3, 32, 16), False),  # too few output channels
    ((1, 258, 258, 16), (3, 3, 16, 16), False),
    ((1, 258, 258, 128), (5, 5, 128, 128), False),  # not 3×3
])
def test_worthwhile_only_for_wide_large_3x3(x_shape, kernel_shape, expected):
  assert winograd.worthwhile(x_shape, kernel_shape) is expected


@pytest.mark.parametrize("padding", ["reflect", "zeros"])
def test_generator_through_winograd_equals_direct_convolutions(padding):
  config = gen.GeneratorConfig(padding=padding).resized(8, 1)
  z = gen.input_noise(jax.random.key(2), 13, 10, config)[None]
  net = gen.SkipNet(config)
  params = net.init(jax.random.key(3), z)

  def loss(params):
    return jnp.sum(jnp.sin(8 * net.apply(params, z)))

  reference = jax.jit(jax.value_and_grad(loss))(params)
  with mock.patch.object(winograd, "MIN_CHANNELS", 1), \
       mock.patch.object(winograd, "MIN_PIXELS", 1):
    with mock.patch.object(winograd, "conv3x3", wraps=winograd.conv3x3) as spy:
      jax.eval_shape(loss, params)
    assert spy.call_count == 2 * len(config.channels_down)  # one 3×3 per level down, one up
    ours = jax.jit(jax.value_and_grad(loss))(params)
  np.testing.assert_allclose(ours[0], reference[0], rtol=1e-5)
  # Relative to the largest entry: some are rounding noise around 0 (biases BatchNorm cancels).
  assert _relative_error(flatten_util.ravel_pytree(ours[1])[0],
                         flatten_util.ravel_pytree(reference[1])[0]) < 1e-4


def test_generator_gradient_of_gradient_through_winograd_equals_direct():
  config = gen.GeneratorConfig().resized(4, 1)
  z = gen.input_noise(jax.random.key(4), 11, 9, config)
  params = gen.SkipNet(config).init(jax.random.key(5), z[None])

  def gradient_norm(z):  # a gradient's gradient, as in input-gradient penalties
    grad = jax.grad(lambda z: jnp.sum(jnp.sin(4 * gen.generate(params, z, config))))(z)
    return jnp.sum(jnp.square(grad))

  reference = jax.jit(jax.grad(gradient_norm))(z)
  with mock.patch.object(winograd, "MIN_CHANNELS", 1), \
       mock.patch.object(winograd, "MIN_PIXELS", 1):
    ours = jax.jit(jax.grad(gradient_norm))(z)
  assert _relative_error(ours, reference) < 1e-4
