"""Several processes under JAX's multi-process runtime (`jax.distributed`).

Every process runs the same command with its own --process_id; process 0's host also runs
the coordinator at --coordinator_address. Each process takes every num_processes-th input
(`share`), solves it on its own devices and writes its own outputs; `gather` and
`check_all` exchange small JSON values (scores, errors) through a collective, which also
makes them barriers. With --num_processes=1 (the default) nothing is initialised and every
function here is a no-op on one process.
"""

import json
from collections.abc import Callable
from typing import TypeVar

import jax
import numpy as np
from absl import flags
from jax.experimental import multihost_utils

from launch import common

T = TypeVar("T")

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "HOST:PORT where process 0 runs the coordinator, reachable from every process (with "
    "--num_processes > 1).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", 1, "Processes that share the inputs, each started with its --process_id.")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index, 0 to --num_processes − 1.")


def initialize() -> None:
  """Checks the flags and, with --num_processes > 1, joins the other processes.

  Must run before anything touches a JAX device. Raises UsageError on bad flags or when the
  coordinator cannot be reached within the timeout.
  """
  n, pid, address = _NUM_PROCESSES.value, _PROCESS_ID.value, _COORDINATOR.value
  if n < 1:
    raise common.UsageError(f"--num_processes={n}: must be ≥ 1")
  if n == 1:
    if pid not in (None, 0):
      raise common.UsageError(f"--process_id={pid}: must be in [0, 1) with --num_processes=1")
    if address:
      raise common.UsageError("--coordinator_address goes with --num_processes > 1")
    return
  if not address:
    raise common.UsageError(f"--num_processes={n} needs --coordinator_address=HOST:PORT")
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise common.UsageError(f"--coordinator_address={address}: want HOST:PORT")
  if pid is None:
    raise common.UsageError(f"--num_processes={n} needs --process_id (0 to {n - 1})")
  if not 0 <= pid < n:
    raise common.UsageError(f"--process_id={pid}: must be in [0, {n}) with --num_processes={n}")
  try:
    jax.distributed.initialize(address, n, pid)
  except Exception as e:  # the runtime raises its own error types
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise common.UsageError(f"process {pid} of {n} cannot join {address}: {first}") from None


def share(n: int) -> range:
  """The indices of n inputs that this process solves: every num_processes-th one."""
  return range(jax.process_index(), n, jax.process_count())


def describe_share(n: int) -> str:
  """" (process P of N: K of them)" for n inputs when there are several processes, else ""."""
  if jax.process_count() == 1:
    return ""
  return (f" (process {jax.process_index()} of {jax.process_count()}: "
          f"{len(share(n))} of them)")


def gather(value) -> list:
  """Every process's JSON-serialisable `value`, in process order, on every process.

  All processes must call it (it is a barrier).
  """
  if jax.process_count() == 1:
    return [value]
  data = np.frombuffer(json.dumps(value).encode(), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.asarray([data.size], np.int32)))
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[: data.size] = data
  everyone = np.asarray(multihost_utils.process_allgather(padded))
  return [json.loads(row[: int(size)].tobytes()) for row, size in
          zip(everyone, sizes.reshape(-1), strict=True)]


def check_all(error: str | None) -> None:
  """Raises UsageError when any process reports an error (this one's first, else the
  lowest-numbered process's); all processes must call it (it is a barrier)."""
  errors = gather(error)
  if error:
    raise common.UsageError(error)
  for pid, other in enumerate(errors):
    if other:
      raise common.UsageError(f"process {pid}: {other}")


def together(fn: Callable[[], T]) -> T:
  """fn() on every process; a UsageError on any of them is raised on all (see `check_all`).

  So that every process stops, with exit code 2, when one finds a problem, and none goes on
  writing before all have checked their inputs. On one process it is just fn().
  """
  if jax.process_count() == 1:
    return fn()
  result, error = None, None
  try:
    result = fn()
  except common.UsageError as e:
    error = str(e)
  check_all(error)
  return result


def is_main() -> bool:
  """Whether this is process 0, which writes what the processes share."""
  return jax.process_index() == 0
