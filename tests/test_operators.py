"""Forward operators: adjoint identities ⟨Ax, y⟩ = ⟨x, Aᵀy⟩ and pseudo-inverses A A⁺ y = y."""

import numpy as np
import pytest

from dipl0_jax import operators

RNG = np.random.default_rng(0)
MASK = (RNG.random((12, 16, 1)) > 0.5).astype(np.float32)


@pytest.mark.parametrize("op", [operators.Identity(), operators.Mask(MASK),
                                operators.BoxDownsample(2), operators.BoxDownsample(4)])
def test_adjoint_and_pseudo_inverse(op):
  x = RNG.standard_normal((12, 16, 3)).astype(np.float32)
  y = RNG.standard_normal(op.observed_shape(x.shape)).astype(np.float32)
  ax = np.asarray(op(x))
  assert ax.shape == y.shape
  np.testing.assert_allclose(np.vdot(ax, y), np.vdot(x, np.asarray(op.adjoint(y))), rtol=1e-4)
  np.testing.assert_allclose(np.asarray(op(op.pseudo_inverse(op(x)))), ax, atol=1e-5)


def test_box_downsample_averages_blocks():
  x = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
  np.testing.assert_allclose(np.asarray(operators.BoxDownsample(2)(x))[..., 0],
                             [[2.5, 4.5], [10.5, 12.5]])
