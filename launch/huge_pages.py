"""Restarts `python -m launch.…` and `python -m benchmarks.…` with glibc's huge-page tunable.

XLA's CPU runtime allocates the temporary buffers of every call of a jitted function afresh,
in one block (118 MB for a 32-channel DIP Adam step at 256×256), and glibc's malloc maps a
block that large from the kernel on each call and unmaps it after. Every step thus touches
fresh memory, which the kernel faults in and zeroes 4 KiB at a time: 28,900 page faults per
such step on this project's machine. `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc ≥ 2.35)
makes malloc ask for transparent huge pages (2 MiB) for the blocks it maps, which the kernel
honours when /sys/kernel/mm/transparent_hugepage/enabled is `madvise` or `always`: about 250
faults per step. Alternated fresh processes (README "Performance") took 0.79–0.91× the time
per Adam step and 0.87–0.91× per `--preset=fast` run, with identical outputs.

glibc reads the tunable once, when the process starts, so the package `__init__`s of `launch`
and `benchmarks` call `restart()`: while Python is still locating the `-m` module, before
anything heavy is imported or printed, it re-executes the same command line with the tunable
added. `GLIBC_TUNABLES` that already name glibc.malloc.hugetlb are left alone (set it to 0 to
opt out). `python -m launch` prints what is in effect. Programs that import dipl0_jax
themselves get the same speed by starting Python with the variable set.
"""

import os
import sys

TUNABLE = "glibc.malloc.hugetlb"
_ON = TUNABLE + "=1"
_THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def restart() -> None:
  """Re-executes this `python -m` command with glibc.malloc.hugetlb=1, once; else returns.

  Acts only on Linux, while the `-m` module is being located (sys.argv[0] is then "-m"; a
  test or program that imports the package is never restarted) and when GLIBC_TUNABLES do not
  name the tunable yet.
  """
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  if sys.platform != "linux" or sys.argv[:1] != ["-m"] or TUNABLE in tunables:
    return
  env = dict(os.environ, GLIBC_TUNABLES=":".join(filter(None, (tunables, _ON))))
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def status() -> str:
  """GLIBC_TUNABLES and the kernel's transparent-huge-page mode, one line each."""
  try:
    with open(_THP) as f:
      mode = f.read().strip()
  except OSError:
    mode = f"unknown (no {_THP})"
  return (f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')}\n"
          f"transparent huge pages: {mode}")
