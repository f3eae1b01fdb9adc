"""Batches split over devices (`dipl0_jax.sharding`) and launchers run as several processes.

Several devices need a fresh process (this one has already initialised JAX with one CPU
device): those tests run scripts with XLA_FLAGS=--xla_force_host_platform_device_count=2.
"""

import csv
import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_launch import _blocks, _env, _launch, _launch_cases, _save

from dipl0_jax import sharding


def _two_devices_env():
  env = _env()
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2")
  return env


def test_one_device_pads_nothing_and_unpad_inverts_padding():
  mesh = sharding.batch_mesh()
  assert mesh.axis_names == ("batch",) and mesh.size == jax.local_device_count() == 1
  assert [sharding.padded_size(n, mesh) for n in (1, 3)] == [1, 3]
  images, keys = np.ones((3, 4, 5, 1), np.float32), jax.random.split(jax.random.key(0), 3)
  out_images, out_keys = sharding.shard_batch((images, keys), mesh)
  assert out_images.shape == (3, 4, 5, 1) and out_keys.shape == (3,)
  assert sharding.mesh_of(out_images) is None  # one device: the plain vmap path
  np.testing.assert_array_equal(sharding.unpad({"x": out_images}, 3)["x"], images)
  assert sharding.unpad(None, 3) is None
  with pytest.raises(ValueError, match="one non-zero leading size"):
    sharding.shard_batch((images, keys[:2]), mesh)
  double = sharding.batch_map(lambda x, s: x * s, None, (0, None))
  np.testing.assert_array_equal(double(jnp.arange(3.0), 2.0), [0.0, 2.0, 4.0])


_TWO_DEVICE_SCRIPT = """
import json
import jax, jax.numpy as jnp, numpy as np
import dipl0_jax
from dipl0_jax import admm, sharding
from dipl0_jax import generator as gen

assert jax.local_device_count() == 2, jax.local_devices()
mesh = sharding.batch_mesh()
rng = np.random.default_rng(0)
images = rng.random((3, 16, 16, 3), dtype=np.float32)  # 3 images: padded to 4
keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(np.arange(3))
report = {}

def shards(x):
  return sorted((s.device.id, s.data.shape[0]) for s in x.addressable_shards)

l0 = jax.jit(jax.vmap(lambda x: dipl0_jax.l0_smooth(x, lam=0.02)))
sharded_images, sharded_keys = sharding.shard_batch((images, keys), mesh)
out = l0(sharded_images)
report["l0_shards"] = shards(out)
report["l0_diff"] = float(np.abs(np.asarray(sharding.unpad(out, 3)) - l0(images)).max())

small = gen.GeneratorConfig(channels_down=(8,) * 2, channels_up=(8,) * 2, channels_skip=(4,) * 2)
config = admm.DipL0Config(generator=small, outer_iters=2, inner_iters=2)

def solve(y, k):
  state = admm.init_batch(k, y, admm.IDENTITY, config)
  for state, metrics in admm.iterate(state, y, admm.IDENTITY, config):
    pass
  return state, metrics

plain, plain_metrics = solve(jnp.asarray(images), keys)
split, split_metrics = solve(sharded_images, sharded_keys)
report["dip_l0_shards"] = shards(split.avg)
report["dip_l0_param_shards"] = shards(jax.tree.leaves(split.params)[0])
report["dip_l0_diff"] = max(
    float(np.abs(np.asarray(a)[:3] - np.asarray(b)).max())
    for a, b in [(split.avg, plain.avg), (split.v, plain.v),
                 (split_metrics["lagrangian"], plain_metrics["lagrangian"])])
report["lagrangian"] = np.asarray(plain_metrics["lagrangian"]).tolist()
print(json.dumps(report))
"""


def test_sharded_solves_match_unsharded_on_two_devices(tmp_path):
  proc = subprocess.run([sys.executable, "-c", _TWO_DEVICE_SCRIPT], cwd=tmp_path,
                        env=_two_devices_env(), capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  # Both devices hold two rows (three images and one padding row) of every output.
  assert report["l0_shards"] == [[0, 2], [1, 2]]
  assert report["dip_l0_shards"] == [[0, 2], [1, 2]]
  assert report["dip_l0_param_shards"] == [[0, 2], [1, 2]]
  assert report["l0_diff"] == 0.0
  # The same per-image programs on fewer rows: equal up to float32 rounding.
  assert report["dip_l0_diff"] < 1e-4 * max(1.0, max(map(abs, report["lagrangian"])))


def test_run_folder_on_two_devices_matches_one_device(tmp_path):
  for name in "abc":  # three images of one size: one batch, padded to four on two devices
    _save(str(tmp_path / "imgs" / f"{name}.png"), _blocks(ord(name), 10)[1])
  one = _launch("launch.run", "--method=l0", "--image=imgs", "--output_dir=one", "--batch_size=4",
                cwd=tmp_path)
  assert one.returncode == 0, one.stderr
  two = subprocess.run([sys.executable, "-m", "launch.run", "--method=l0", "--image=imgs",
                        "--output_dir=two", "--batch_size=4"],
                       cwd=tmp_path, env=_two_devices_env(), capture_output=True, text=True,
                       timeout=300)
  assert two.returncode == 0, two.stderr
  for name in "abc":
    assert ((tmp_path / "one" / f"{name}_l0.png").read_bytes()
            == (tmp_path / "two" / f"{name}_l0.png").read_bytes())


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _processes(module: str, args: list[str], cwd, n: int = 2) -> list[tuple[int, str, str]]:
  """Runs `module` as n processes of one job; (exit code, stdout, stderr) of each."""
  address = f"127.0.0.1:{_free_port()}"
  procs = [subprocess.Popen(
      [sys.executable, "-m", module, *args, f"--coordinator_address={address}",
       f"--num_processes={n}", f"--process_id={i}"],
      cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(n)]
  results = []
  try:
    for proc in procs:
      stdout, stderr = proc.communicate(timeout=300)
      results.append((proc.returncode, stdout, stderr))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  return results


def _generic_dataset(root):
  sizes = {"a": (32, 40), "b": (32, 40), "c": (32, 40), "d": (24, 24)}
  for k, (name, (h, w)) in enumerate(sizes.items()):
    clean, noisy = _blocks(k, 10)
    _save(str(root / "input" / f"{name}.png"), noisy[:h, :w])
    _save(str(root / "gt" / f"{name}.png"), clean[:h, :w])


def _rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_evaluate_and_run_as_two_processes_match_one_process(tmp_path):
  _generic_dataset(tmp_path / "data")
  one = _launch("launch.evaluate", "--method=l0", "--data_dir=data", "--csv=one.csv",
                "--output_dir=one", cwd=tmp_path)
  assert one.returncode == 0, one.stderr
  results = _processes("launch.evaluate", ["--method=l0", "--data_dir=data", "--csv=two.csv",
                                           "--output_dir=two"], tmp_path)
  assert [code for code, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
  single, merged = _rows(tmp_path / "one.csv"), _rows(tmp_path / "two.csv")
  assert list(merged[0]) == list(single[0]) == ["image", "psnr", "ssim", "input_psnr", "seconds"]
  for column in ("image", "psnr", "ssim", "input_psnr"):
    assert [r[column] for r in merged] == [r[column] for r in single]
  (summary,) = [line for line in one.stdout.splitlines() if line.startswith("l0 on 4 images")]
  assert summary.split("  (input")[0] in results[0][1]  # the same mean PSNR and SSIM
  assert "process 0 of 2: 2 of them" in results[0][1]
  assert "process 1: scored 2 images; process 0 writes two.csv" in results[1][1]
  for name in "abcd":  # each process wrote its own images' outputs
    assert (tmp_path / "one" / f"{name}.png").read_bytes() == (
        tmp_path / "two" / f"{name}.png").read_bytes()

  results = _processes("launch.run", ["--method=l0", "--image=data/input", "--output_dir=run2",
                                      "--batch_size=2"], tmp_path)
  assert [code for code, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
  assert "4 image(s) done by 2 processes" in results[0][1]
  assert "a.png, c.png (40×32)" in results[0][1] and "b.png (40×32)" in results[1][1]
  for name in "abcd":
    assert (tmp_path / "run2" / f"{name}_l0.png").exists()


BAD_PROCESS_FLAGS = [
    ("launch.evaluate", ["--data_dir=data", "--num_processes=2", "--process_id=2",
                         "--coordinator_address=127.0.0.1:1"], "--process_id=2: must be in [0, 2)"),
    ("launch.evaluate", ["--data_dir=data", "--num_processes=2", "--process_id=0"],
     "needs --coordinator_address"),
    ("launch.run", ["--num_processes=2", "--coordinator_address=127.0.0.1:1"],
     "needs --process_id"),
    ("launch.run", ["--num_processes=2", "--process_id=1", "--coordinator_address=nohost"],
     "want HOST:PORT"),
    ("launch.run", ["--process_id=1"], "--process_id=1: must be in [0, 1)"),
    ("launch.run", ["--num_processes=0"], "--num_processes=0: must be ≥ 1"),
    ("launch.run", ["--coordinator_address=127.0.0.1:1"], "goes with --num_processes > 1"),
]


@pytest.mark.parametrize("module", ["launch.evaluate", "launch.run"])
def test_bad_process_flags_are_one_line_and_exit_2(tmp_path, module):
  cases = [(args, message) for m, args, message in BAD_PROCESS_FLAGS if m == module]
  results = _launch_cases(module, [["--output_dir=o", *args] for args, _ in cases], cwd=tmp_path)
  for (args, message), result in zip(cases, results, strict=True):
    assert result["code"] == 2, result
    assert message in result["stderr"], result
    assert len(result["stderr"].strip().splitlines()) == 1, result
  assert not (tmp_path / "o").exists()


def test_an_error_in_one_process_stops_all_with_exit_2(tmp_path):
  _generic_dataset(tmp_path / "data")
  # Process 1's share (b, d) holds an unreadable input: both processes stop with exit code 2.
  (tmp_path / "data" / "input" / "d.png").write_bytes(b"garbage")
  results = _processes("launch.evaluate", ["--method=l0", "--data_dir=data", "--csv=r.csv"],
                       tmp_path)
  assert [code for code, _, _ in results] == [2, 2], [err[-2000:] for _, _, err in results]
  assert "error: process 1: " in results[0][2] and "d.png: cannot read image" in results[0][2]
  assert "error: " in results[1][2] and "d.png: cannot read image" in results[1][2]
  assert not (tmp_path / "r.csv").exists()


_CALLBACKS_SCRIPT = """
import dipl0_jax
from dipl0_jax import sharding, xla_flags
print(xla_flags.size_client_pool())  # before JAX starts
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import PartitionSpec as P

mesh = sharding.batch_mesh(host_callbacks=True)
print("devices", mesh.size)
double = lambda x: jax.pure_callback(lambda a: np.asarray(a) * 2, jax.typeof(x), x)
f = jax.jit(jax.shard_map(double, mesh=mesh, in_specs=P("batch"), out_specs=P("batch")))
x = jnp.ones((mesh.size, 512, 512, 3))  # 3 MB a device: copied asynchronously
for _ in range(10):
  assert float(f(x)[-1, 0, 0, 0]) == 2.0
print("done")
"""


def _callback_env(nproc: str | None) -> dict:
  """Two forced CPU devices on this machine; PJRT_NPROC=nproc if given."""
  env = _two_devices_env()
  env.pop("NPROC", None)
  env.pop("PJRT_NPROC", None)
  if nproc:
    env["PJRT_NPROC"] = nproc
  return env


@pytest.mark.parametrize("nproc", [None, "2"])
def test_host_callbacks_on_two_cpu_devices_finish(nproc):
  """jaxlib 0.10.2 hung here in 4 of 6 runs when the CPU client had 2 threads for 2 devices:
  `size_client_pool` gives it 3 (on ≤ 2 cores), a user's smaller pool keeps them on 1 device."""
  proc = subprocess.run([sys.executable, "-c", _CALLBACKS_SCRIPT], env=_callback_env(nproc),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  cores = len(os.sched_getaffinity(0))
  if nproc:
    expected = ["None", "devices", "1", "done"]
  elif cores <= 2:
    expected = ["PJRT_NPROC=3", "devices", "2", "done"]
  else:
    expected = ["None", "devices", "2", "done"]
  assert proc.stdout.split() == expected


@pytest.mark.parametrize("nproc", [None, "2"])
def test_region_fusion_dip_l0_on_two_cpu_devices(tmp_path, nproc):
  for name in "ab":
    _save(str(tmp_path / "imgs" / f"{name}.png"), _blocks(ord(name), 10)[1])
  proc = subprocess.run([sys.executable, "-m", "launch.run", "--method=dip_l0", "--image=imgs",
                         "--output_dir=out", "--batch_size=2", "--outer_iters=2",
                         "--inner_iters=2"],
                        cwd=tmp_path, env=_callback_env(nproc), capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr
  note = "runs on 1 of the 2 CPU devices (its host callbacks need PJRT_NPROC=3"
  assert (note in proc.stderr) == bool(nproc), proc.stderr
  assert all((tmp_path / "out" / f"{name}_dip_l0.png").exists() for name in "ab")
