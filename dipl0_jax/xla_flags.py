"""The XLA CPU setting the library applies for speed when it is imported.

XLA's CPU backend (jaxlib 0.10) hands convolutions to YNNPACK by default. On this project's
2-core CPU that runs the generator's convolutions several times slower than XLA's own kernels:
`benchmarks/profile_step.py` found a single 3×3 convolution at 256×256 taking 103 ms of a
592 ms Adam step (32 channels; 348 ms per step without YNNPACK), and
`benchmarks/dip_l0_benchmark.py` gives 5.6 s per Adam step of the paper's network at 512×384
without it, 26.6 s with it (README "Performance"). `fan2018`'s network runs about 15% slower
without YNNPACK; the generator's gain is far larger. So, unless the user's XLA_FLAGS already
choose, YNNPACK fusions are switched off with `--xla_cpu_experimental_ynn_fusion_type=`.

XLA reads XLA_FLAGS once, when JAX starts its first backend: import dipl0_jax before running
any JAX computation, or set the flag yourself.
"""

import os
import warnings

import jaxlib

FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# The oldest jaxlib measured with the flag; older ones abort on flags they do not know.
_MIN_JAXLIB = (0, 10)


def _jaxlib_version() -> tuple[int, ...]:
  return tuple(int(p) for p in jaxlib.__version__.split(".")[:2] if p.isdigit())


def _backend_started() -> bool:
  try:
    from jax._src import xla_bridge
    return xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):
    return False


def use_xla_convolutions() -> bool:
  """Adds `FLAG=` (no YNNPACK fusions) to XLA_FLAGS; True if it did.

  Leaves XLA_FLAGS alone when they already name the flag or jaxlib is older than 0.10, and
  warns when JAX's backend has already started (the flag would have no effect).
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if FLAG.lstrip("-") in flags or _jaxlib_version() < _MIN_JAXLIB:
    return False
  if _backend_started():
    warnings.warn("dipl0_jax was imported after JAX started: its convolutions may run several "
                  f"times slower. Import dipl0_jax first, or set XLA_FLAGS={FLAG}=",
                  stacklevel=3)
    return False
  os.environ["XLA_FLAGS"] = f"{flags} {FLAG}=".strip()
  return True
