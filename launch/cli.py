"""Command-line plumbing shared by the launchers and the benchmark scripts: one-line errors
(exit code 2), `--help` with exit code 0, Ctrl-C as "aborted" (exit code 130), and checking
that an output file can be written before any work starts."""

import os
import sys
import tempfile
from collections.abc import Callable

import jax
from absl import flags, logging


class UsageError(Exception):
  """A problem with the user's input: reported in one line with exit code 2."""


def fail(message: str) -> None:
  """Prints `message` on stderr and exits with code 2 (no traceback)."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
  """absl `flags_parser` that reports bad flags in one line with exit code 2, and ends
  --help with exit code 0."""
  try:
    argv = flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))
  except SystemExit:  # absl's --help/--helpfull print the usage and exit with code 1
    sys.exit(0)
  # absl logs at INFO under app.run; JAX's backend probing messages are noise to a user.
  logging.set_verbosity(logging.WARNING)
  return argv


def use_compilation_cache() -> None:
  """Keeps XLA's compiled programs on disk, so the second run of a setting starts at once.

  Compiling a generator's training step takes 10–140 s on a 2-core CPU, often longer than
  the solve. The cache is ~/.cache/dipl0_jax/xla (or $XDG_CACHE_HOME/dipl0_jax/xla) unless
  JAX_COMPILATION_CACHE_DIR names another folder. It keeps programs that took 0.1 s or more
  to compile (JAX's default, 1 s, left out the FFT ℓ0 solve's two programs, 0.13 and 0.36 s at
  240×160: `launch.run --method=l0` on the shipped picture then took 0.43–0.48 s to solve,
  compiling included, on every run, and 0.10–0.13 s with them cached), unless
  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS says. Each image size adds such entries, and the
  cache has no size limit unless JAX_COMPILATION_CACHE_MAX_SIZE sets one.
  """
  if not os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  jax.config.update("jax_compilation_cache_dir", os.path.join(base, "dipl0_jax", "xla"))


def main(run: Callable[[], None], *before: Callable[[], None]) -> Callable[[list[str]], None]:
  """An absl `main` that calls each of `before` then run(), reporting UsageError in one line
  (exit 2) and a KeyboardInterrupt as "aborted" (exit 130; the launchers take the first Ctrl-C
  themselves, to stop after the current iteration)."""

  def absl_main(argv: list[str]) -> None:
    if len(argv) > 1:
      fail(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
      for step in before:
        step()
      run()
    except UsageError as e:
      fail(str(e))
    except KeyboardInterrupt:
      print("aborted", file=sys.stderr)
      sys.exit(130)

  return absl_main


def check_writable(path: str) -> None:
  """Raises UsageError unless a file can be written at `path`: it is not a folder, and its
  nearest existing folder takes new files (tried with a temporary file, removed at once)."""
  if os.path.isdir(path):
    raise UsageError(f"{path}: is a folder, not a file")
  folder = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(folder):
    folder = os.path.dirname(folder)
  if not os.path.isdir(folder):
    raise UsageError(f"{path}: cannot write there ({folder} is a file, not a folder)")
  try:
    with tempfile.TemporaryFile(dir=folder):
      pass
  except OSError as e:
    raise UsageError(f"{path}: cannot write in {folder} ({e.strerror or e})") from None
