"""dipl0_jax: training-free edge-preserving image smoothing in JAX."""

from dipl0_jax.l0_fft import l0_prox, l0_smooth

__all__ = ["l0_prox", "l0_smooth"]
