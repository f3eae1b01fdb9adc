"""Forward operators A of the degradation y = A(x), with adjoints, for DIP and DIP-ℓ0.

x is the (H, W, C) image the generator makes; y the observation the user has. Each operator
has `__call__` (A), `adjoint` (Aᵀ), `pseudo_inverse` (A⁺, the starting point of the output
average) and `observed_shape`. Operators
are pytrees (a mask is data, a factor is static), so it can be passed through `jit`/`vmap`.
"""

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Identity:
  """A = I: denoising and smoothing."""

  def __call__(self, x: jax.Array) -> jax.Array:
    return x

  def adjoint(self, y: jax.Array) -> jax.Array:
    return y

  def pseudo_inverse(self, y: jax.Array) -> jax.Array:
    return y

  def observed_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape


@struct.dataclass
class Mask:
  """A = diag(m): inpainting. `mask` is (H, W, 1) or (H, W, C), 1 where a pixel is known."""

  mask: jax.Array

  def __call__(self, x: jax.Array) -> jax.Array:
    return x * self.mask

  def adjoint(self, y: jax.Array) -> jax.Array:
    return y * self.mask

  def pseudo_inverse(self, y: jax.Array) -> jax.Array:
    """A⁺y: A is an orthogonal projection, so A⁺ = A."""
    return y * self.mask

  def observed_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape


@struct.dataclass
class BoxDownsample:
  """A = mean over factor×factor blocks: ×factor super-resolution.

  Maps (factor·h, factor·w, C) to (h, w, C); the generator works at the high resolution.
  """

  factor: int = struct.field(pytree_node=False, default=2)

  def __post_init__(self):
    if int(self.factor) != self.factor or self.factor < 1:
      raise ValueError(f"BoxDownsample needs an integer factor >= 1, got {self.factor}")

  def __call__(self, x: jax.Array) -> jax.Array:
    h, w, c = self.observed_shape(x.shape)
    k = self.factor
    return x.reshape(h, k, w, k, c).mean(axis=(1, 3))

  def adjoint(self, y: jax.Array) -> jax.Array:
    k = self.factor
    return jnp.repeat(jnp.repeat(y, k, axis=0), k, axis=1) / (k * k)

  def pseudo_inverse(self, y: jax.Array) -> jax.Array:
    """A⁺y = Aᵀ(AAᵀ)⁻¹y; AAᵀ = I/factor², so this is nearest-neighbour upsampling."""
    return self.adjoint(y) * self.factor**2

  def observed_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
    """(factor·h, factor·w, C) → (h, w, C); ValueError for sides not divisible by factor."""
    h, w, c = shape
    if h % self.factor or w % self.factor:
      raise ValueError(f"BoxDownsample({self.factor}) needs sides divisible by {self.factor}, "
                       f"got {h}×{w}")
    return (h // self.factor, w // self.factor, c)


Operator = Identity | Mask | BoxDownsample
