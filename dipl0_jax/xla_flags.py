"""The XLA CPU settings the library applies when it is imported: speed and reproducibility.

1. `--xla_cpu_experimental_ynn_fusion_type=` (no YNNPACK fusions). XLA's CPU backend (jaxlib
   0.10) hands convolutions to YNNPACK by default. On this project's 2-core CPU that runs the
   generator's convolutions several times slower than XLA's own kernels:
   `benchmarks/profile_step.py` found a single 3×3 convolution at 256×256 taking 103 ms of a
   592 ms Adam step (32 channels; 348 ms per step without YNNPACK), and
   `benchmarks/dip_l0_benchmark.py` gives 5.6 s per Adam step of the paper's network at
   512×384 without it, 26.6 s with it (README "Performance"). `fan2018`'s network runs about
   15% slower without YNNPACK; the generator's gain is far larger.
2. `--xla_cpu_multi_thread_eigen=false`. With it on (the default) XLA's CPU FFT lets DUCC split
   a large transform over threads, but only when the FFT runs outside XLA's own thread pool;
   inside a solve that depends on which thread finished the fusion before it, so it changes
   from call to call, and a split transform rounds differently. The same jitted `l0_smooth`
   on the same 640×480 image returned a different result (up to 0.03) in 7 of 30 calls on 2
   cores, and none in 30 with the flag off or on one core. Off, the FFT runs on one
   thread; convolutions and matrix products stay multi-threaded, and no step measured slower
   beyond this machine's noise (README "Performance"). `l0_fft.l0_smooth_host` compiles its
   loop with the flag on and keeps the whole loop on the thread that runs the program, so
   that every FFT there is split, the same way on every call.

3. Not a flag: the generator's jitted training steps (`step_jit`) are compiled with YNNPACK
   for their reductions only. XLA turns BatchNorm's per-channel sums into 32×32 reduce-windows
   (one over a 256²×32 activation: 1.9 ms in the step's profile, 4.4 GB/s); with YNNPACK's
   reductions the DIP Adam step took 0.84–0.90× the time (32 and 128 channels, 256² and
   512×384, both compiled in one process and alternated), and steps repeat exactly. Not
   everywhere: the ℓ0 FFT solve's sum over three colour planes, handed to YNNPACK, took the
   solve to twice the time at 640×480.

4. Not applied at import: `size_client_pool()`, for host callbacks on several forced CPU
   devices (`--xla_force_host_platform_device_count=N`). In jaxlib 0.10.2 a `jax.pure_callback`
   (Region Fusion's ℓ0 step) copies its arguments through the CPU client's thread pool
   (PJRT_NPROC threads, default: the CPUs this process may run on), which the programs of N
   devices waiting in their callbacks can all hold: on 2 cores with 2 devices, a script's
   callbacks of 512×512×3 floats (`tests/test_sharding.py` runs it) hung in 4 of 6 runs, and in
   none of 18 with PJRT_NPROC=3. The launchers
   call it for `dip_l0` with Region Fusion only: the pool also sizes XLA's intra-op threads,
   and one more thread than cores cost other programs on two devices: 12.5–18.5% fewer images
   per second from the FFT ℓ0 solver, 4–10% more time per `dip_l0` step with the FFT ℓ0 step.
   `sharding.batch_mesh` leaves out the devices a pool cannot serve.

Flags 1 and 2 are each added unless the user's XLA_FLAGS already name it. XLA reads XLA_FLAGS
(and PJRT_NPROC) once, when JAX starts its first backend: import dipl0_jax before running any
JAX computation, or set the flags yourself.
"""

import functools
import os
import warnings

import jax
import jaxlib

FLAGS = {
    "--xla_cpu_experimental_ynn_fusion_type": "",
    "--xla_cpu_multi_thread_eigen": "false",
}
# The oldest jaxlib measured with each flag; older ones abort on flags they do not know.
_MIN_JAXLIB = {"--xla_cpu_experimental_ynn_fusion_type": (0, 10)}


def _jaxlib_version() -> tuple[int, ...]:
  return tuple(int(p) for p in jaxlib.__version__.split(".")[:2] if p.isdigit())


def _backend_started() -> bool:
  try:
    from jax._src import xla_bridge
    return xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):
    return False


def _named(flags: str) -> set[str]:
  """The flag names an XLA_FLAGS string sets, with their leading dashes."""
  return {"--" + token.split("=", 1)[0].lstrip("-") for token in flags.split()}


def forced_cpu_devices() -> int:
  """The CPU device count XLA_FLAGS force (`--xla_force_host_platform_device_count`), or 1."""
  name, count = "--xla_force_host_platform_device_count", 1
  for token in os.environ.get("XLA_FLAGS", "").split():
    if _named(token) == {name} and "=" in token and token.split("=", 1)[1].isdigit():
      count = int(token.split("=", 1)[1])  # the last one counts, as for XLA
  return count


def client_threads() -> int:
  """The CPU client's thread-pool size XLA reads at start: PJRT_NPROC, NPROC, else the CPUs
  this process may run on (item 4 above)."""
  for name in ("PJRT_NPROC", "NPROC"):
    value = os.environ.get(name, "")
    if value.isdigit():
      return int(value)
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def size_client_pool() -> str | None:
  """Sets PJRT_NPROC to one more than the forced CPU devices if the pool would be smaller, so
  that host callbacks can run on all of them (item 4 above); returns "PJRT_NPROC=n" if it did.

  Leaves a user's PJRT_NPROC or NPROC alone, and does nothing once JAX's backend has started.
  """
  devices = forced_cpu_devices()
  if (devices < 2 or client_threads() > devices or "PJRT_NPROC" in os.environ
      or "NPROC" in os.environ or _backend_started()):
    return None
  os.environ["PJRT_NPROC"] = str(devices + 1)
  return f"PJRT_NPROC={devices + 1}"


def apply() -> list[str]:
  """Adds each of `FLAGS` that XLA_FLAGS do not name yet; returns the `name=value`s it added.

  Skips a flag that this jaxlib is too old for, and warns instead of adding when JAX's backend
  has already started (the flags would have no effect).
  """
  flags = os.environ.get("XLA_FLAGS", "")
  named, version = _named(flags), _jaxlib_version()
  missing = [f"{name}={value}" for name, value in FLAGS.items()
             if name not in named and version >= _MIN_JAXLIB.get(name, (0,))]
  if not missing:
    return []
  if _backend_started():
    warnings.warn(f"dipl0_jax was imported after JAX started, so it could not add "
                  f"{' '.join(missing)} to XLA_FLAGS (see dipl0_jax/xla_flags.py: speed and "
                  "repeatable FFTs). Import dipl0_jax first, or add them yourself.",
                  stacklevel=3)
    return []
  os.environ["XLA_FLAGS"] = " ".join([flags, *missing]).strip()
  return missing


def step_jit(**jit_kwargs):
  """`functools.partial(jax.jit, **jit_kwargs)` with YNNPACK reductions (item 3 above).

  Without them when this jaxlib predates the option or XLA_FLAGS set YNNPACK fusion types of
  their own (anything but the `FLAGS` value).
  """
  name = "--xla_cpu_experimental_ynn_fusion_type"
  users = [t for t in os.environ.get("XLA_FLAGS", "").split() if _named(t) == {name}]
  if _jaxlib_version() >= _MIN_JAXLIB[name] and all(t == f"{name}={FLAGS[name]}" for t in users):
    jit_kwargs["compiler_options"] = {name[2:]: "LIBRARY_FUSION_TYPE_REDUCE"}
  return functools.partial(jax.jit, **jit_kwargs)
