"""`jax.random.normal`'s numbers from a Threefry-2x32 hash written out as straight-line code.

On the CPU, JAX lowers Threefry's 20 rounds (Salmon et al., SC 2011) to a loop of five
iterations, each of which reads and writes the whole counter array; written out, the hash, the
uniform and the inverse error function fuse into one elementwise pass. DIP's per-step input
noise of shape (1, 384, 512, 32) took 13.9 ms instead of 26.7 ms this way (medians of 21 calls,
README "Performance"). The numbers are bit for bit `jax.random.normal(key, shape)` with
`jax.threefry_partitionable(False)`.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, bits: int) -> jax.Array:
  return (x << np.uint32(bits)) | (x >> np.uint32(32 - bits))


def hash2x32(key: tuple[jax.Array, jax.Array], x0: jax.Array,
             x1: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Threefry-2x32, 20 rounds: a pair of uint32 key words and two uint32 arrays -> two arrays."""
  schedule = (key[0], key[1], key[0] ^ key[1] ^ _PARITY)
  x0, x1 = x0 + schedule[0], x1 + schedule[1]
  for i in range(5):
    for r in _ROTATIONS[i % 2]:
      x0 = x0 + x1
      x1 = _rotate_left(x1, r) ^ x0
    x0 = x0 + schedule[(i + 1) % 3]
    x1 = x1 + schedule[(i + 2) % 3] + np.uint32(i + 1)
  return x0, x1


def _bits(key_words: jax.Array, size: int) -> jax.Array:
  """(size,) uint32: JAX's non-partitionable Threefry bits (counters 0..size-1, halves paired)."""
  half = (size + 1) // 2
  count = jax.lax.iota(jnp.uint32, half)
  upper = count + np.uint32(half)
  if size % 2:  # JAX pads the counters with one zero
    upper = jnp.where(count == half - 1, np.uint32(0), upper)
  y0, y1 = hash2x32((key_words[0], key_words[1]), count, upper)
  return jnp.concatenate([y0, y1])[:size]


def normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """float32 N(0, 1) samples of `shape`: `jax.random.normal(key, shape)` (non-partitionable).

  Keys of other PRNG implementations, and sizes of 2³² − 1 or more, go to `jax.random.normal`.
  """
  size = math.prod(shape)
  impl = str(jax.random.key_impl(key)) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else ""
  if impl != "threefry2x32" or size >= np.iinfo(np.uint32).max:
    with jax.threefry_partitionable(False):
      return jax.random.normal(key, shape)
  bits = _bits(jax.random.key_data(key), size).reshape(shape)
  # jax.random.uniform on [nextafter(-1, 0), 1): 23 random mantissa bits, then scaled.
  unit = jax.lax.bitcast_convert_type((bits >> np.uint32(9)) | np.uint32(0x3F800000),
                                      jnp.float32) - np.float32(1)
  low = np.nextafter(np.float32(-1), np.float32(0))
  uniform = jnp.maximum(low, unit * (np.float32(1) - low) + low)
  return np.float32(np.sqrt(2)) * jax.lax.erf_inv(uniform)
