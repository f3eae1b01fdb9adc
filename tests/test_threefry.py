"""Tests for the straight-line Threefry normal: the same numbers as `jax.random.normal`."""

import jax
import numpy as np
import pytest

import dipl0_jax  # noqa: F401  (XLA flags before JAX starts)
from dipl0_jax import threefry


def _jax_normal(key, shape):
  with jax.threefry_partitionable(False):
    return jax.random.normal(key, shape)


@pytest.mark.parametrize("shape", [(1,), (3,), (2, 5, 7), (1, 9, 11, 3), (1, 16, 16, 32)])
@pytest.mark.parametrize("seed", [0, 12345])
def test_normal_equals_jax_random_normal(shape, seed):
  key = jax.random.key(seed)
  expected = np.asarray(_jax_normal(key, shape))
  got = jax.jit(threefry.normal, static_argnums=1)(key, shape)
  assert got.shape == shape and got.dtype == np.float32
  np.testing.assert_array_equal(np.asarray(got), expected)
  np.testing.assert_array_equal(np.asarray(threefry.normal(key, shape)), expected)


def test_threefry_keys_take_the_written_out_hash():
  key = jax.random.key(0)
  assert "random_bits" in str(jax.make_jaxpr(lambda k: _jax_normal(k, (4,)))(key))
  assert "random_bits" not in str(jax.make_jaxpr(lambda k: threefry.normal(k, (4,)))(key))


def test_normal_under_vmap_equals_per_key():
  keys = jax.random.split(jax.random.key(3), 4)
  got = jax.vmap(lambda k: threefry.normal(k, (6, 5)))(keys)
  for key, row in zip(keys, got, strict=True):
    np.testing.assert_array_equal(np.asarray(row), np.asarray(_jax_normal(key, (6, 5))))


def test_normal_statistics():
  sample = np.asarray(threefry.normal(jax.random.key(1), (200_000,)))
  assert abs(sample.mean()) < 0.01 and abs(sample.std() - 1.0) < 0.01
  assert np.isfinite(sample).all()


@pytest.mark.parametrize("word, expected", [(0, (0x6B200159, 0x99BA4EFE)),
                                             (0xFFFFFFFF, (0x1CB996FC, 0xBB002BE7))])
def test_hash_matches_known_answers(word, expected):
  """Random123's known answers for Threefry-2x32, 20 rounds (key and counter words all `word`)."""
  w = np.uint32(word)
  x0, x1 = threefry.hash2x32((w, w), np.array([w]), np.array([w]))
  assert (int(x0[0]), int(x1[0])) == expected


def test_other_key_implementations_fall_back_to_jax():
  key = jax.random.key(0, impl="rbg")
  np.testing.assert_array_equal(np.asarray(threefry.normal(key, (4, 3))),
                                np.asarray(_jax_normal(key, (4, 3))))
