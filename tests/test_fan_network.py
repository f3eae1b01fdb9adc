"""The Fan et al. 2018 network: shapes for any size, BatchNorm modes, identity init, size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dipl0_jax import fan_network as fn

TINY = fn.FanNetConfig(channels=8, blocks=3)


def init(config: fn.FanNetConfig, shape: tuple[int, ...]):
  images = jax.random.uniform(jax.random.key(1), shape)
  return fn.FanNet(config).init(jax.random.key(0), images), images


@pytest.mark.parametrize("hw", [(16, 16), (17, 23), (1, 3)])
def test_output_shape_equals_input_shape(hw):
  variables, images = init(TINY, (2, *hw, 3))
  out = fn.FanNet(TINY).apply(variables, images)
  assert out.shape == images.shape


def test_train_mode_updates_batch_stats_and_eval_mode_uses_them():
  variables, images = init(TINY, (2, 12, 12, 3))
  net = fn.FanNet(TINY)
  _, updates = net.apply(variables, images, train=True, mutable=["batch_stats"])
  before = jax.tree.leaves(variables["batch_stats"])
  after = jax.tree.leaves(updates["batch_stats"])
  assert len(after) == 2 * (TINY.num_conv_layers - 1)  # a mean and a var per BatchNorm
  assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
  # Inference needs no mutable collection and is deterministic.
  np.testing.assert_array_equal(net.apply(variables, images), net.apply(variables, images))


def test_untrained_network_is_the_identity_and_output_is_input_plus_branch():
  variables, images = init(TINY, (1, 9, 10, 3))
  net = fn.FanNet(TINY)
  np.testing.assert_array_equal(net.apply(variables, images), images)
  # With a non-zero last layer the output is the input plus the network's branch, which is
  # the same function of the input whatever is added afterwards.
  params = jax.tree.map(lambda x: x, variables["params"])
  last = max((k for k in params if k.startswith("Conv_")), key=lambda k: int(k.split("_")[1]))
  params[last]["kernel"] = 0.1 * jnp.ones_like(params[last]["kernel"])
  changed = {**variables, "params": params}
  out = net.apply(changed, images)
  assert not np.allclose(out, images)
  bias_only = jax.tree.map(lambda x: x, params)
  bias_only[last]["kernel"] = jnp.zeros_like(params[last]["kernel"])
  bias_only[last]["bias"] = jnp.full_like(params[last]["bias"], 0.25)
  np.testing.assert_allclose(net.apply({**variables, "params": bias_only}, images),
                             images + 0.25, rtol=1e-6)


def test_dilations_and_layer_count():
  assert fn.FanNetConfig().dilations == (2, 2, 4, 4, 8, 8, 16, 16, 1, 1)
  assert fn.FanNetConfig().num_conv_layers == 26
  assert TINY.dilations == (2, 1, 1)


def test_default_parameter_count():
  config = fn.FanNetConfig()
  shapes = jax.eval_shape(lambda: init(config, (1, 32, 32, 3))[0])
  params = jax.tree.leaves(shapes["params"])
  count = sum(int(np.prod(p.shape)) for p in params)
  c, k = config.channels, 9
  convs = k * 3 * c + 24 * k * c * c + (k * c * 3 + 3)  # first, 24 bias-free c->c, last
  batchnorms = 25 * 2 * c  # scale and offset after every layer but the last
  assert count == convs + batchnorms == 891_395
  assert len([p for p in params if p.ndim == 4]) == 26
