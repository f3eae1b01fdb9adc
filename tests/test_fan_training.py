"""Training and using the Fan et al. 2018 smoother: loss decrease, model files, inference."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dipl0_jax import checkpoint, fan_energy, fan_network, fan_training

TINY = fan_training.FanTrainConfig(
    net=fan_network.FanNetConfig(channels=8, blocks=2),
    energy=fan_energy.FanEnergyConfig(window=5), lr=1e-4)


def batch(size: int = 16) -> jax.Array:
  """Two noisy two-tone crops: something the energy wants to flatten."""
  base = np.full((2, size, size, 3), 0.3, np.float32)
  base[:, :, size // 2:] = 0.7
  noise = 0.05 * np.random.default_rng(0).standard_normal(base.shape).astype(np.float32)
  return jnp.asarray(np.clip(base + noise, 0, 1))


def test_training_steps_lower_the_loss_on_a_fixed_batch():
  images = batch()
  state = fan_training.init(jax.random.key(0), TINY)
  before, _ = fan_training.loss(state.params, state.batch_stats, images, TINY)
  state, terms = fan_training.train_step(state, images, TINY)
  np.testing.assert_allclose(terms["loss"], before, rtol=1e-5)  # reported before the step
  after, _ = fan_training.loss(state.params, state.batch_stats, images, TINY)
  assert float(after) < float(before)
  assert int(state.step) == 1
  assert set(terms) == {"loss", "data", "flattening", "edge"}


def test_untrained_model_smooths_to_the_identity_and_handles_odd_and_grey_images():
  state = fan_training.init(jax.random.key(0), TINY)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  image = jax.random.uniform(jax.random.key(1), (13, 7, 3))
  np.testing.assert_allclose(fan_training.smooth(variables, image, TINY.net), image, atol=1e-6)
  grey = image[..., :1]
  out = fan_training.smooth(variables, grey, TINY.net)
  assert out.shape == grey.shape
  with pytest.raises(ValueError, match="channels"):
    fan_training.smooth(variables, jnp.zeros((8, 8, 2)), TINY.net)


def trained_variables():
  state = fan_training.init(jax.random.key(0), TINY)
  for _ in range(2):
    state, _ = fan_training.train_step(state, batch(), TINY)
  return state, {"params": state.params, "batch_stats": state.batch_stats}


def test_model_file_round_trip_gives_identical_output(tmp_path):
  _, variables = trained_variables()
  path = tmp_path / "model.msgpack"
  fan_training.save_model(str(path), variables, TINY.net, {"steps": 2, "images": ["a.png"]})
  loaded, config, info = fan_training.load_model(str(path))
  assert config == TINY.net and info == {"steps": 2, "images": ["a.png"]}
  image = jax.random.uniform(jax.random.key(2), (11, 9, 3))
  np.testing.assert_array_equal(fan_training.smooth(loaded, image, config),
                                fan_training.smooth(variables, image, TINY.net))
  # A file object gets the same bytes as a path, and the trained model is not the identity.
  buf = io.BytesIO()
  fan_training.save_model(buf, variables, TINY.net, {"steps": 2, "images": ["a.png"]})
  assert buf.getvalue() == path.read_bytes()
  assert not np.allclose(fan_training.smooth(variables, image, TINY.net), image, atol=1e-4)


def test_load_model_rejects_other_files(tmp_path):
  junk = tmp_path / "junk.msgpack"
  junk.write_bytes(b"not msgpack at all")
  with pytest.raises(ValueError, match="not a fan2018 model"):
    fan_training.load_model(str(junk))
  _, variables = trained_variables()
  other = tmp_path / "other.msgpack"
  wrong = fan_network.FanNetConfig(channels=8, blocks=3)  # config that does not fit
  fan_training.save_model(str(other), variables, wrong)
  with pytest.raises(ValueError, match="do not match"):
    fan_training.load_model(str(other))


def test_checkpoint_save_restore_continues_identically(tmp_path):
  state, _ = trained_variables()
  checkpoint.save(str(tmp_path), int(state.step), state, {"log": []})
  like = fan_training.init(jax.random.key(5), TINY)
  restored, meta = checkpoint.restore(str(tmp_path), like)
  assert meta == {"log": []}
  a, ta = fan_training.train_step(state, batch(), TINY)
  b, tb = fan_training.train_step(restored, batch(), TINY)
  np.testing.assert_array_equal(ta["loss"], tb["loss"])
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)


def test_shipped_model_loads_and_smooths():
  variables, config, info = fan_training.load_model(fan_training.SHIPPED_MODEL)
  assert config == fan_network.FanNetConfig()
  assert info["steps"] > 0 and info["images"]
  x = np.linspace(0, 1, 20 * 24 * 3, dtype=np.float32).reshape(20, 24, 3)
  out = fan_training.smooth(variables, jnp.asarray(x), config)
  assert out.shape == x.shape and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
