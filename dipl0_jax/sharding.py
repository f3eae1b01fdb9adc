"""Data parallelism over a process's devices: a batch's leading axis split across them.

A 1-D `Mesh` over `jax.local_devices()` with axis "batch"; `shard_batch` places every leaf of
a pytree with `NamedSharding(mesh, P("batch"))`. A jitted, vmapped function given such inputs
runs each device's share of the batch there: XLA partitions simple programs (the FFT ℓ0
solver) by itself, while `batch_map` runs a batched function under `jax.shard_map`, one
device per share with no communication, which the generator solvers need (in JAX 0.10.2
XLA's partitioner fails on the grouped convolutions that vmap makes of per-image weights).

A batch whose size is not a multiple of the device count is padded by repeating its last
example (a real input, so the padded rows compute nothing unusual); `unpad` drops those rows
from the results. Padding wastes at most (devices − 1) examples of work per batch. With one
device nothing is padded and the arrays are only committed to that device.

`each_on_cores` is the host's side of the same idea: one thread per core, for solves that
release the GIL (Region Fusion's, and separate jitted calls, which XLA runs at once).
"""

import os
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from dipl0_jax import xla_flags

AXIS = "batch"


def batch_mesh(devices: list[jax.Device] | None = None, host_callbacks: bool = False) -> Mesh:
  """A 1-D mesh with axis "batch" over `devices` (default: this process's devices).

  With host_callbacks (the batched function calls `jax.pure_callback`, as Region Fusion's ℓ0
  step does) CPU devices are limited to one fewer than the CPU client's threads: in jaxlib
  0.10.2 a callback's arguments are copied through that pool, and when callbacks on every
  device at once hold all its threads the program hangs (`xla_flags` item 4:
  `xla_flags.size_client_pool()` before JAX starts makes room for all forced devices).
  """
  devices = list(devices or jax.local_devices())
  if host_callbacks and devices[0].platform == "cpu":
    devices = devices[:max(1, xla_flags.client_threads() - 1)]
  return Mesh(np.asarray(devices), (AXIS,))


def mesh_of(x) -> Mesh | None:
  """The mesh that `shard_batch` split x over, if it has more than one device; else None."""
  if isinstance(x, jax.core.Tracer):
    return None
  s = getattr(x, "sharding", None)
  if isinstance(s, NamedSharding) and s.mesh.size > 1 and tuple(s.spec)[:1] == (AXIS,):
    return s.mesh
  return None


def _unrolled_map(fn: Callable, in_axes: tuple[int | None, ...]) -> Callable:
  """jax.vmap(fn, in_axes) computed as one call of fn per example, outputs stacked."""

  def mapped(*args):
    (n,) = {x.shape[0] for a, axis in zip(args, in_axes, strict=True) if axis == 0
            for x in jax.tree.leaves(a)}
    outs = []
    for i in range(n):
      outs.append(fn(*(jax.tree.map(lambda x, i=i: x[i], a) if axis == 0 else a
                       for a, axis in zip(args, in_axes, strict=True))))
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

  return mapped


def batch_map(fn: Callable, mesh: Mesh | None, in_axes: tuple[int | None, ...]) -> Callable:
  """`jax.vmap(fn, in_axes)`, run by every device of `mesh` on its share of the batch.

  Arguments with in_axes 0 are split over the mesh (their batch must be a multiple of its
  size, see `shard_batch`), those with None are given whole to every device; every output
  has the batch as its leading axis. With mesh None it runs on the default device.

  On CPU a device's share is computed image by image in one program (unrolled), not
  vmapped: vmapping a generator fit turns each convolution into a grouped one over the
  batch, which XLA's CPU kernels ran at 0.65–0.83× the speed per image, while the unrolled
  form is level with one image alone (0.93–1.02× at batch 2; `benchmarks.throughput`). It
  compiles once per image of the share. Other platforms use jax.vmap.
  """
  platform = mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()
  batched = _unrolled_map(fn, in_axes) if platform == "cpu" else jax.vmap(fn, in_axes=in_axes)
  if mesh is None:
    return batched
  specs = tuple(P(AXIS) if axis == 0 else P() for axis in in_axes)
  return jax.shard_map(batched, mesh=mesh, in_specs=specs, out_specs=P(AXIS))


def each_on_cores(solve: Callable[[Any], None], items: Sequence[Any]) -> None:
  """Calls `solve` on every item: on one host thread per core when there are several.

  For solves that release the GIL (Numba's `nogil`, or waiting for a jitted call: XLA runs
  calls from several threads at once); exceptions are raised in the caller.
  """
  if len(items) == 1:
    solve(items[0])
  elif items:
    with futures.ThreadPoolExecutor(min(len(items), os.cpu_count() or 1)) as pool:
      list(pool.map(solve, items))


def padded_size(n: int, mesh: Mesh) -> int:
  """n rounded up to a multiple of the mesh's device count."""
  return -(-n // mesh.size) * mesh.size


def shard_batch(tree, mesh: Mesh):
  """Pads every leaf's leading (batch) axis to `padded_size` and splits it over the mesh.

  Args:
    tree: a pytree of arrays (NumPy or JAX, PRNG key arrays included) that all share the
      leading batch size B ≥ 1.
    mesh: from `batch_mesh`.

  Returns:
    The same tree of jax.Arrays, each (padded_size(B), ...) with `NamedSharding(mesh,
    P("batch"))`; rows B and after repeat row B − 1.
  """
  sizes = {x.shape[0] for x in jax.tree.leaves(tree)}
  if len(sizes) != 1 or 0 in sizes:
    raise ValueError(f"shard_batch wants one non-zero leading size, got {sorted(sizes)}")
  (n,) = sizes
  index = np.minimum(np.arange(padded_size(n, mesh)), n - 1)
  padded = jax.tree.map(lambda x: x if len(index) == n else x[index], tree)
  return jax.device_put(padded, NamedSharding(mesh, P(AXIS)))


def unpad(tree, n: int):
  """The first n rows of every leaf (undoes `shard_batch`'s padding); None stays None."""
  return jax.tree.map(lambda x: x if x.shape[0] == n else x[:n], tree)
