"""The benchmark commands the README quotes run and write their JSON (tiny sizes, no timings)."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)


def test_throughput_times_every_method_and_batch(tmp_path):
  out = tmp_path / "throughput.json"
  done = bench("benchmarks.throughput", "--methods=l0,region_fusion", "--size=32x24",
               "--batches=2,1", "--repeats=1", f"--json={out}")
  assert done.returncode == 0, done.stderr
  result = json.loads(out.read_text())
  rows = result["rows"]
  assert [(r["method"], r["batch"]) for r in rows] == [
      ("l0", 2), ("l0", 1), ("region_fusion", 2), ("region_fusion", 1)]
  assert all(r["images_per_s"] > 0 and r["seconds"] > 0 for r in rows)
  # The speed-up column is against a batch of 1 even when it is not the first batch.
  assert result["speedup_reference_batch"] == 1
  for r in rows:
    one = next(o for o in rows if o["method"] == r["method"] and o["batch"] == 1)
    assert r["speedup"] == r["images_per_s"] / one["images_per_s"]


BAD_INPUT = [
    ("benchmarks.throughput", "--methods=l0,nope", "--methods=l0,nope: choose one or more of"),
    ("benchmarks.throughput", "--methods=", "--methods=: choose one or more of"),
    ("benchmarks.throughput", "--batches=1,x", "--batches=1,x"),
    ("benchmarks.throughput", "--batches=", "--batches=: want one or more"),
    ("benchmarks.throughput", "--repeats=0", "--repeats=0"),
    ("benchmarks.l0_benchmark", "--kappa=1", "--kappa=1"),
    ("benchmarks.l0_benchmark", "--json=", "--json is empty"),
    ("benchmarks.suite", "--sizes=320x240,64x", "--sizes=64x"),
    ("benchmarks.suite", "--sizes=0x48", "--sizes=0x48"),
    ("benchmarks.suite", "--sizes=", "--sizes=: want one or more"),
    ("benchmarks.torch_compare", "--sizes=", "--sizes=: want one or more"),
    ("benchmarks.profile_step", "--steps=0", "--steps=0"),
    ("benchmarks.dip_l0_benchmark", "--sizes=abc", "--sizes=abc"),
    ("benchmarks.time_to_quality", "--presets=fast,nope", "--presets=fast,nope"),
    ("benchmarks.time_to_quality", "--limit=0", "--limit=0"),
    ("benchmarks.time_to_quality", "--marks=15,x", "--marks=15,x"),
    ("benchmarks.time_to_quality", "--data_dir=/nonexistent", "/nonexistent"),
]


@pytest.mark.parametrize("module, flag, message", BAD_INPUT)
def test_benchmarks_refuse_bad_input_in_one_line_before_any_work(tmp_path, module, flag, message):
  out = tmp_path / "out.json"
  done = bench(module, f"--json={out}", flag)  # the flag last, so `--json=` overrides
  assert done.returncode == 2, done.stderr
  assert done.stderr.startswith("error: ") and message in done.stderr, done.stderr
  assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
  assert done.stdout == ""  # refused before printing a header or timing anything
  assert not out.exists()


def test_suite_reports_a_failed_cell_and_exits_with_one(tmp_path):
  out = tmp_path / "suite.json"
  done = bench("benchmarks.suite", "--methods=dip", "--sizes=8x8", "--channels=4", "--repeats=1",
               "--plot=", f"--json={out}")
  assert done.returncode == 1
  assert "error: 1 cell(s) failed: dip 8×8" in done.stderr
  (row,) = json.loads(out.read_text())["rows"]  # the other cells' results are still written
  assert "H, W ≥ 17" in row["error"]


def test_benchmarks_check_their_output_path_before_timing(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("")
  done = bench("benchmarks.l0_benchmark", f"--json={blocker}/l0.json")
  assert done.returncode == 2 and "cannot write there" in done.stderr, done.stderr


def test_benchmark_help_exits_with_zero():
  done = bench("benchmarks.suite", "--help")
  assert done.returncode == 0 and "--sizes" in done.stdout


def test_suite_quick_runs_each_cell_in_its_own_process(tmp_path):
  out = tmp_path / "suite.json"
  done = bench("benchmarks.suite", "--quick", "--methods=l0_fft,l0_rf", "--plot=",
               f"--json={out}")
  assert done.returncode == 0, done.stderr
  rows = json.loads(out.read_text())["rows"]
  assert [(r["method"], r["width"], r["height"]) for r in rows] == [
      ("l0_fft", 64, 48), ("l0_fft", 96, 64), ("l0_rf", 64, 48), ("l0_rf", 96, 64)]
  assert all(r["solve_s"] > 0 and r["peak_rss_bytes"] >= r["rss_before_bytes"] > 0 for r in rows)


def test_time_to_quality_keeps_the_finished_images_on_ctrl_c(tmp_path):
  # Two NKS-style structures of 64×48 pixels; Ctrl-C once the first image's curve is done.
  rng = np.random.default_rng(0)
  for folder, names in (("validation", ("S1_T1", "S2_T1")), ("gt", ("S1", "S2"))):
    (tmp_path / folder).mkdir()
    for name in names:
      pixels = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
      Image.fromarray(pixels).save(tmp_path / folder / f"{name}.png")
  out = tmp_path / "ttq.json"
  proc = subprocess.Popen(
      [sys.executable, "-m", "benchmarks.time_to_quality", f"--data_dir={tmp_path}",
       "--seconds=600", "--marks=1", f"--json={out}", "--plot="],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  lines = []
  for line in proc.stdout:  # the first image runs all of the preset's iterations
    lines.append(line)
    if line.startswith("fast S1_T1"):
      proc.send_signal(signal.SIGINT)
      break
  stdout, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 130, "".join(lines) + stdout + stderr
  assert stderr.strip().endswith("aborted")
  result = json.loads(out.read_text())
  assert result["interrupted"] is True
  assert list(result["presets"]["fast"]["curves"]) == ["S1_T1"]
  assert result["presets"]["fast"]["mean_psnr_at"]["1.0"] is not None
  curve = result["presets"]["fast"]["curves"]["S1_T1"]
  assert len(curve["seconds"]) == len(curve["psnr"]) > 1
  assert curve["seconds"] == sorted(curve["seconds"])  # a later iteration never looks faster
