"""The benchmark commands the README quotes run and write their JSON (tiny sizes, no timings)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)


def test_throughput_times_every_method_and_batch(tmp_path):
  out = tmp_path / "throughput.json"
  done = bench("benchmarks.throughput", "--methods=l0,region_fusion", "--size=32x24",
               "--batches=1,2", "--repeats=1", f"--json={out}")
  assert done.returncode == 0, done.stderr
  rows = json.loads(out.read_text())["rows"]
  assert [(r["method"], r["batch"]) for r in rows] == [
      ("l0", 1), ("l0", 2), ("region_fusion", 1), ("region_fusion", 2)]
  assert all(r["images_per_s"] > 0 and r["seconds"] > 0 for r in rows)


def test_throughput_rejects_an_unknown_method(tmp_path):
  out = tmp_path / "throughput.json"
  done = bench("benchmarks.throughput", "--methods=l0,nope", f"--json={out}")
  assert done.returncode != 0
  assert "unknown --methods ['nope']" in done.stderr
  assert not out.exists()


def test_suite_quick_runs_each_cell_in_its_own_process(tmp_path):
  out = tmp_path / "suite.json"
  done = bench("benchmarks.suite", "--quick", "--methods=l0_fft,l0_rf", "--plot=",
               f"--json={out}")
  assert done.returncode == 0, done.stderr
  rows = json.loads(out.read_text())["rows"]
  assert [(r["method"], r["width"], r["height"]) for r in rows] == [
      ("l0_fft", 64, 48), ("l0_fft", 96, 64), ("l0_rf", 64, 48), ("l0_rf", 96, 64)]
  assert all(r["solve_s"] > 0 and r["peak_rss_bytes"] >= r["rss_before_bytes"] > 0 for r in rows)
