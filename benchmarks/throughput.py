"""Batch throughput: images per second of the batched solvers for batches of 1, 2 and 4.

  python -m benchmarks.throughput [--size=128x128] [--batches=1,2,4] [--channels=128]
  XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m benchmarks.throughput

Every batch is split over this process's devices as the launchers split it
(`dipl0_jax.sharding`; padded to a multiple of the device count, the padding not counted),
so with several devices it runs data-parallel. `l0`: the launchers' batched FFT solver
(`l0_fft.l0_smooth_each`: on one device a jitted call per image, one per core at once; on
several `l0_smooth_batch`, image by image on each; "compile" is the first call).
`region_fusion`: the launchers' Region Fusion batch (`l0_region_fusion.region_fusion_batch`,
on the host, one thread per core, whatever the devices; "compile" is the first call, loading
Numba's cache). `dip_l0`: the launcher's jitted Adam step (image by image on CPU, see
`sharding.batch_map`) and v/w/average update (`admm.iterate`); an outer iteration is
--inner_iters Adam steps and one update, so images/s is batch / (inner_iters · Adam step +
update). Medians of --repeats calls after a warm-up call; compile seconds apart. Each
method's images/s are also given against its batch of 1 (or the first batch when 1 is not
among --batches). Writes JSON to --json (default results/throughput.json).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import measure, timing
from dipl0_jax import admm, l0_fft, l0_region_fusion, sharding, xla_flags
from launch import cli

_SIZE = flags.DEFINE_string("size", "128x128", "Image size WxH.")
_BATCHES = flags.DEFINE_list("batches", ["1", "2", "4"], "Batch sizes.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per measurement (median).",
                                lower_bound=1)
_CHANNELS = flags.DEFINE_integer("channels", 128, "dip_l0 generator channels per scale.",
                                 lower_bound=1)
_SCALES = flags.DEFINE_integer("scales", 5, "dip_l0 generator scales.", lower_bound=1)
_INNER = flags.DEFINE_integer("inner_iters", 25, "dip_l0 Adam steps per outer iteration.",
                              lower_bound=1)
_METHODS = flags.DEFINE_list("methods", ["l0", "region_fusion", "dip_l0"],
                             "Which of l0, region_fusion, dip_l0 to time.")
_JSON = flags.DEFINE_string("json", "results/throughput.json", "Where to write the results.")


def _batch(image: np.ndarray, b: int) -> np.ndarray:
  """b copies of image, each with a little noise of its own: (b, H, W, C)."""
  rng = np.random.default_rng(0)
  noise = 0.02 * rng.standard_normal((b, *image.shape)).astype(np.float32)
  return np.clip(image[None] + noise, 0.0, 1.0)


def l0_row(images: np.ndarray, mesh, repeats: int) -> dict:
  """First-call seconds (compiling) and median seconds of the launchers' FFT ℓ0 batch."""
  x = sharding.shard_batch(images, mesh)

  def solve():
    return l0_fft.l0_smooth_each(x, lam=0.02, mesh=sharding.mesh_of(x))

  first_s = timing.median_seconds(solve, 1, warmup=0)
  return {"compile_s": first_s, "seconds": timing.median_seconds(solve, repeats, warmup=1)}


def region_fusion_row(images: np.ndarray, repeats: int) -> dict:
  """First-call seconds and median seconds of the Region Fusion batch (λ 0.02, K = 100)."""
  def solve():
    return l0_region_fusion.region_fusion_batch(images, lam=0.02)

  first_s = timing.median_seconds(solve, 1, warmup=0)
  return {"compile_s": first_s, "seconds": timing.median_seconds(solve, repeats, warmup=0)}


def dip_l0_row(images: np.ndarray, mesh, repeats: int, config: admm.DipL0Config) -> dict:
  """Compile seconds and median seconds of the launcher's Adam step and update on a batch."""
  keys = jax.random.split(jax.random.key(0), len(images))
  y, keys = sharding.shard_batch((jnp.asarray(images), keys), mesh)
  row = measure.dip_l0_batch_steps(y, keys, config, repeats)
  return {k: row[k] for k in ("compile_s", "adam_step_s", "update_s")} | {
      "seconds": row["outer_iteration_s"]}


def run():
  timing.check_choices("methods", _METHODS.value, ("l0", "region_fusion", "dip_l0"))
  batches = timing.parse_numbers(_BATCHES.value, "batches")
  w, h = timing.parse_size(_SIZE.value)
  timing.check_outputs(_JSON.value)
  n = _SCALES.value
  config = dataclasses.replace(measure.dip_l0_config(_CHANNELS.value, n),
                               inner_iters=_INNER.value)
  callbacks = isinstance(config.l0_step, l0_region_fusion.RegionFusionProx)
  # As the launchers, before JAX starts: room for dip_l0's Region Fusion callbacks on every
  # forced CPU device; the extra thread slows the other methods (time them in a run of their own).
  pool = xla_flags.size_client_pool() if callbacks and "dip_l0" in _METHODS.value else None
  image = timing.test_image(w, h)
  mesh = sharding.batch_mesh()
  dip_l0_mesh = sharding.batch_mesh(host_callbacks=callbacks)
  dip_l0 = ""
  if "dip_l0" in _METHODS.value:
    dip_l0 = (f"; dip_l0: {_CHANNELS.value} channels, {n} scales, {_INNER.value} Adam steps per "
              "outer iteration")
    if dip_l0_mesh.size < mesh.size:
      dip_l0 += f", on {dip_l0_mesh.size} device(s) (Region Fusion callbacks)"
    if pool:
      dip_l0 += f", {pool} for its Region Fusion callbacks"
  print(f"{w}×{h}, {mesh.size} device(s){dip_l0}")
  reference = 1 if 1 in batches else batches[0]
  width = max(len(m) for m in ["method", *_METHODS.value])
  print(f"{'method':>{width}} {'batch':>5} {'padded':>6} {'compile s':>9} {'s / call':>9} "
        f"{'images/s':>9}")
  rows = []
  for method in _METHODS.value:
    method_rows = []
    for b in batches:
      images = _batch(image, b)
      if method == "l0":
        row = l0_row(images, mesh, _REPEATS.value)
      elif method == "region_fusion":
        row = region_fusion_row(images, _REPEATS.value)
      else:
        row = dip_l0_row(images, dip_l0_mesh, _REPEATS.value, config)
      padded = b if method == "region_fusion" else sharding.padded_size(
          b, dip_l0_mesh if method == "dip_l0" else mesh)  # host side
      row = {"method": method, "batch": b, "padded": padded, **row,
             "images_per_s": b / row["seconds"]}
      method_rows.append(row)
      print(f"{method:>{width}} {b:>5} {row['padded']:>6} {row['compile_s']:9.2f} "
            f"{row['seconds']:9.4f} {row['images_per_s']:9.2f}", flush=True)
    base = next(r for r in method_rows if r["batch"] == reference)["images_per_s"]
    for row in method_rows:
      row["speedup"] = row["images_per_s"] / base
    print(f"{method:>{width}} images/s against batch {reference}: " + ", ".join(
        f"batch {r['batch']} {r['speedup']:.2f}×" for r in method_rows))
    rows += method_rows
  timing.write_json(_JSON.value, {
      "machine": {**timing.machine(), "devices": mesh.size}, "width": w, "height": h,
      "channels": _CHANNELS.value, "scales": n, "inner_iters": _INNER.value,
      "repeats": _REPEATS.value, "speedup_reference_batch": reference, "rows": rows})


if __name__ == "__main__":
  app.run(cli.main(run), flags_parser=cli.parse_flags)
