"""Periodic forward differences on (H, W, C) images and their adjoints.

These are the gradient operators of Xu et al. 2011: ∂x S = S[:, j+1] − S[:, j] and
∂y S = S[i+1, :] − S[i, :] with wrap-around, so that they are diagonalised by the 2-D DFT.
"""

import jax
import jax.numpy as jnp


def dx(s: jax.Array, axis: int = 1) -> jax.Array:
  """Horizontal forward difference, (H, W, C) -> (H, W, C), periodic; `axis` is W's."""
  return jnp.roll(s, -1, axis=axis) - s


def dy(s: jax.Array, axis: int = 0) -> jax.Array:
  """Vertical forward difference, (H, W, C) -> (H, W, C), periodic; `axis` is H's."""
  return jnp.roll(s, -1, axis=axis) - s


def dx_t(h: jax.Array, axis: int = 1) -> jax.Array:
  """Adjoint of `dx`: (∂xᵀ h)[:, j] = h[:, j−1] − h[:, j]."""
  return jnp.roll(h, 1, axis=axis) - h


def dy_t(v: jax.Array, axis: int = 0) -> jax.Array:
  """Adjoint of `dy`: (∂yᵀ v)[i, :] = v[i−1, :] − v[i, :]."""
  return jnp.roll(v, 1, axis=axis) - v


def gradient_count(s: jax.Array, *, tol: float = 0.0) -> jax.Array:
  """Number of pixels whose periodic gradient (h, v) is non-zero in any channel.

  This is C(S) of Xu et al. 2011, eq. (3): ‖∇S‖₀ counted per pixel, channels pooled.
  `tol` treats |∂S| ≤ tol as zero (useful for float32 outputs).
  """
  nonzero = (jnp.abs(dx(s)) > tol) | (jnp.abs(dy(s)) > tol)
  return jnp.sum(jnp.any(nonzero, axis=-1))
