"""Makes `python -m launch.…` and `python -m benchmarks.…` reuse XLA's buffers between calls.

XLA's CPU runtime allocates the temporary buffers of every call of a jitted function afresh,
in one block (507 MiB for a 32-channel DIP Adam step at 512×384), and glibc's malloc maps a
block that large from the kernel on each call and unmaps it after, so every step writes to
fresh memory that the kernel faults in and zeroes (`clear_page_erms` was the largest single
function in `perf record` of such steps, 12% of samples). Two settings together keep that
block between calls:

1. glibc tunables `glibc.malloc.mmap_max=0` (never map blocks from the kernel: grow the heap)
   and `glibc.malloc.trim_threshold=2**40` (never give the heap's free top back), with
   `glibc.malloc.hugetlb=1` (transparent huge pages for the heap: without them a 32-channel
   512×384 step took 381 ms after `benchmarks.torch_compare`'s other rows, 306 ms with them,
   with as few page faults).
   glibc reads GLIBC_TUNABLES once, when the process starts, so `restart()`, while Python is
   still locating the `-m` module, before anything heavy is imported or printed, re-executes
   the same command line with them.
2. `jax_cpu_enable_async_dispatch=False` (`run_inline()`): JAX's CPU client then runs each
   single-device call on the calling thread, whose malloc arena is the main one, the only one
   that can grow past 64 MiB; calls dispatched to XLA's worker threads allocate from their
   own arenas, which hand blocks that large to the kernel whatever the tunables say.

The package `__init__`s of `launch` and `benchmarks` call `apply()`, which does both.
Neither alone removed the page faults; together the 32-channel step at 512×384 made 1–30
instead of about 580 per step and took 0.85–0.94× the time (README "Keeping XLA's buffers").
Tunables the environment already names are left alone. `python -m launch` prints what is in
effect. Programs that import dipl0_jax themselves get the same by starting Python with the
variable set and calling `jax.config.update("jax_cpu_enable_async_dispatch", False)` before
their first computation.
"""

import os
import sys

TUNABLES = {"glibc.malloc.hugetlb": "1", "glibc.malloc.mmap_max": "0",
            "glibc.malloc.trim_threshold": str(2**40)}


def _named(tunables: str) -> set[str]:
  return {t.split("=", 1)[0] for t in tunables.split(":") if t}


def restart() -> None:
  """Re-executes this `python -m` command with `TUNABLES` added, once; else returns.

  Acts only on Linux, while the `-m` module is being located (sys.argv[0] is then "-m"; a
  test or program that imports the package is never restarted) and when GLIBC_TUNABLES do not
  name all of `TUNABLES` yet.
  """
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  missing = [f"{k}={v}" for k, v in TUNABLES.items() if k not in _named(tunables)]
  if sys.platform != "linux" or sys.argv[:1] != ["-m"] or not missing:
    return
  env = dict(os.environ, GLIBC_TUNABLES=":".join(filter(None, (tunables, *missing))))
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def apply() -> None:
  """`restart()`, then `run_inline()`: what `python -m launch.…`/`benchmarks.…` start with."""
  restart()
  run_inline()


def run_inline() -> None:
  """Makes JAX's CPU client run single-device computations on the calling thread.

  Must run before JAX starts its CPU backend (the client reads it when created).
  """
  import jax  # here, not at the top: restart() runs before anything heavy is imported
  jax.config.update("jax_cpu_enable_async_dispatch", False)


def status() -> str:
  """GLIBC_TUNABLES and JAX's CPU dispatch, one line each."""
  import jax
  inline = not jax.config.values["jax_cpu_enable_async_dispatch"]
  return (f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')}\n"
          f"JAX CPU dispatch: {'inline' if inline else 'asynchronous'}")
