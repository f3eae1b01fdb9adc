"""dipl0_jax: training-free edge-preserving image smoothing in JAX."""

from dipl0_jax import xla_flags

xla_flags.apply()

# ruff: noqa: E402 (the XLA settings above must come before anything can start JAX)
from dipl0_jax.admm import DipL0Config, DipL0Result, dip_l0
from dipl0_jax.applications import abstraction, detail_magnification, gaussian_blur
from dipl0_jax.deep_image_prior import DipConfig, DipResult, dip
from dipl0_jax.generator import GeneratorConfig, SkipNet
from dipl0_jax.image_io import read_image, write_png
from dipl0_jax.l0_fft import l0_prox, l0_smooth, l0_smooth_host
from dipl0_jax.l0_region_fusion import region_fusion, region_fusion_prox
from dipl0_jax.metrics import psnr, ssim
from dipl0_jax.operators import BoxDownsample, Identity, Mask

__all__ = [
    "BoxDownsample", "DipConfig", "DipL0Config", "DipL0Result", "DipResult", "GeneratorConfig",
    "Identity", "Mask", "SkipNet", "abstraction", "detail_magnification", "dip", "dip_l0",
    "gaussian_blur", "l0_prox", "l0_smooth", "l0_smooth_host", "psnr", "read_image",
    "region_fusion", "region_fusion_prox", "ssim", "write_png",
]
