"""The command-line launchers: outputs, printed scores, exit codes and one-line errors."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from unittest import mock

import jax
import numpy as np
import pytest
from PIL import Image

from launch import allocator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
  # Subprocesses share the suite's persistent compilation cache (see conftest.py), so the
  # many runs of the same tiny configuration compile once.
  return dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
              JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")


def _launch(module, *args, cwd):
  env = _env()
  return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


def _launch_cases(module, cases, *, cwd):
  """Each argument list of `cases` run by `module` in one process (see launch_cases.py):
  [{"args", "code", "stdout", "stderr"}]."""
  with open(os.path.join(cwd, "cases.json"), "w") as f:
    json.dump(cases, f)
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "launch_cases.py"), module,
                         "cases.json", "results.json"], cwd=cwd, env=_env(), capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  with open(os.path.join(cwd, "results.json")) as f:
    return json.load(f)


def _save(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def _png_bytes(array):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format="PNG")
  return buf.getvalue()


def _blocks(seed, noise):
  rng = np.random.default_rng(seed)
  clean = np.zeros((32, 40, 3), np.uint8)
  clean[:, 20:] = (200, 60, 30)
  clean[16:, :] += 40
  noisy = np.clip(clean + noise * rng.standard_normal(clean.shape), 0, 255).astype(np.uint8)
  return clean, noisy


def test_run_defaults_to_dip_l0_fast_on_shipped_image(tmp_path):
  # The quick start's defaults, cut to two outer iterations to keep the test short.
  proc = _launch("launch.run", "--outer_iters=2", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert "time:" in proc.stdout
  out = np.asarray(Image.open(tmp_path / "results" / "chelsea_dip_l0.png"))
  assert out.shape == (160, 240, 3)
  with open(tmp_path / "results" / "chelsea_dip_l0_log.json") as f:
    settings = json.load(f)["settings"]
  expected = {"preset": "fast", "l0_solver": "region_fusion", "channels": 16, "scales": 4,
              "downsample": 2, "finish_beta": 0.75, "finish_views": 8, "finish_blend": 0.8,
              "finish_shifts": 4, "finish_beta_scales": [1.0, 2.0], "finish_plain_scale": 0.7,
              "finish_plain_full": True, "finish_fft_lam": 0.02, "outer_iters": 2}
  assert {k: settings[k] for k in expected} == expected


def test_run_dip_l0_other_tasks_default_to_the_paper_preset(tmp_path):
  _save(str(tmp_path / "in.png"), _blocks(4, 10)[1])
  _save(str(tmp_path / "mask.png"), np.full((32, 40, 3), 255, np.uint8))
  proc = _launch("launch.run", "--task=inpaint", "--mask=mask.png", "--image=in.png",
                 "--output=o.png", "--channels=8", "--scales=2", "--outer_iters=2",
                 "--inner_iters=1", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  with open(tmp_path / "o_log.json") as f:
    settings = json.load(f)["settings"]
  assert settings["preset"] == "nks" and "downsample" not in settings
  proc = _launch("launch.run", "--task=inpaint", "--mask=mask.png", "--image=in.png",
                 "--output=p.png", "--preset=fast", cwd=tmp_path)
  assert proc.returncode == 2 and "works with --task=denoise only" in proc.stderr


def test_run_scores_against_gt_and_keeps_existing_output(tmp_path):
  clean, noisy = _blocks(0, 12)
  _save(str(tmp_path / "in.png"), noisy)
  _save(str(tmp_path / "gt.png"), clean)
  args = ["--method=l0", "--image=in.png", "--gt=gt.png", "--output=o/out.png", "--lambda_=0.02"]
  proc = _launch("launch.run", *args, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  psnr = float(proc.stdout.split("PSNR: ")[1].split()[0])
  assert psnr > 30.0  # the noisy input is about 26 dB
  before = (tmp_path / "o" / "out.png").read_bytes()
  assert (tmp_path / "in.png").read_bytes() == _png_bytes(noisy)  # the input is untouched
  proc = _launch("launch.run", *args, "--lambda_=0.1", cwd=tmp_path)
  assert proc.returncode == 2 and "--overwrite" in proc.stderr
  assert (tmp_path / "o" / "out.png").read_bytes() == before
  assert _launch("launch.run", *args, "--overwrite", cwd=tmp_path).returncode == 0


BAD_INPUT = [
    (["--image=missing.png"], "missing.png: no such file"),
    (["--image=bad.png"], "bad.png: cannot read image"),
    (["--image=empty.png"], "empty.png: cannot read image"),
    (["--image=notes.txt"], "notes.txt: cannot read image"),
    (["--image=cut.png"], "cut.png: cannot read image"),
    (["--image=anim.gif"], "anim.gif: unsupported image format GIF"),
    (["--method=nope"], "--method"),
    (["--preset=nope"], "--preset"),
    (["--task=nope"], "--task"),
    (["--l0_solver=nope"], "--l0_solver"),
    (["--lambda_=-0.1"], "--lambda_"),
    (["--lambda_=0"], "--lambda_"),
    (["--lambda_=nan"], "--lambda_"),
    (["--lambda_=inf"], "--lambda_"),
    (["--kappa=1"], "--kappa"),
    (["--kappa=-inf"], "--kappa"),
    (["--gt=small.png"], "small.png: ground truth is"),
]


def test_run_bad_input_is_one_line_and_exit_2(tmp_path):
  (tmp_path / "bad.png").write_bytes(b"garbage")
  (tmp_path / "empty.png").write_bytes(b"")
  (tmp_path / "notes.txt").write_text("not an image\n")
  _save(str(tmp_path / "small.png"), np.zeros((8, 8, 3), np.uint8))
  _save(str(tmp_path / "anim.gif"), np.zeros((8, 8, 3), np.uint8))
  _save(str(tmp_path / "full.png"), _blocks(0, 10)[1])
  (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:200])
  results = _launch_cases("launch.run", [["--output=out.png", *args] for args, _ in BAD_INPUT],
                          cwd=tmp_path)
  for (args, message), result in zip(BAD_INPUT, results, strict=True):
    assert result["code"] == 2, result
    assert message in result["stderr"], result
    assert len(result["stderr"].strip().splitlines()) == 1, result
    assert "Traceback" not in result["stderr"], result
  assert not (tmp_path / "out.png").exists()


def test_evaluate_nks_layout_skips_missing_gt(tmp_path):
  data = tmp_path / "nks"
  for s in (1, 2):
    clean, noisy = _blocks(s, 10)
    _save(str(data / "gt" / f"S{s}.png"), clean)
    _save(str(data / "validation" / f"S{s}_T1.png"), noisy)
  _save(str(data / "validation" / "S3_T1.png"), _blocks(3, 10)[1])  # no gt/S3.png
  proc = _launch("launch.evaluate", "--method=l0", f"--data_dir={data}", "--csv=r.csv",
                 cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert "skipping S3_T1: no ground truth" in proc.stdout
  with open(tmp_path / "r.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["image"] for r in rows] == ["S1_T1", "S2_T1"]
  for r in rows:
    assert float(r["psnr"]) > float(r["input_psnr"])
  mean = np.mean([float(r["psnr"]) for r in rows])
  assert f"PSNR {mean:.2f} dB" in proc.stdout


def test_evaluate_resume_keeps_rows_and_scores_the_rest(tmp_path):
  data = tmp_path / "nks"
  for s in (1, 2, 3):
    clean, noisy = _blocks(s, 10)
    _save(str(data / "gt" / f"S{s}.png"), clean)
    _save(str(data / "validation" / f"S{s}_T1.png"), noisy)
  args = ["--method=l0", f"--data_dir={data}", "--csv=r.csv"]
  proc = _launch("launch.evaluate", *args, "--limit=1", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  with open(tmp_path / "r.csv") as f:
    (first,) = list(csv.DictReader(f))
  # A marker in the kept row shows that --resume does not score that image again.
  text = (tmp_path / "r.csv").read_text().replace(first["psnr"], "99.0")
  (tmp_path / "r.csv").write_text(text)
  proc = _launch("launch.evaluate", *args, "--resume", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert "keeping 1 scored images, 2 to go" in proc.stdout
  with open(tmp_path / "r.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["image"] for r in rows] == ["S1_T1", "S2_T1", "S3_T1"]
  assert float(rows[0]["psnr"]) == 99.0
  results = _launch_cases("launch.evaluate", [
      [*args, "--resume", "--lambda_=0.05"], [*args, "--resume", "--overwrite"], args,
  ], cwd=tmp_path)
  messages = ["written with other settings (method", "pass one of them", "--resume"]
  for result, message in zip(results, messages, strict=True):
    assert result["code"] == 2 and message in result["stderr"], result
  with open(tmp_path / "r.csv") as f:
    assert len(list(csv.DictReader(f))) == 3


def test_evaluate_clipart_layout_composites_gt_over_black(tmp_path):
  data = tmp_path / "clip"
  clean, noisy = _blocks(5, 8)
  rgba = np.concatenate([clean, np.full((32, 40, 1), 255, np.uint8)], -1)
  rgba[:4, :4, 3] = 0  # transparent corner: black after compositing
  _save(str(data / "gt" / "clip1.png"), rgba)
  noisy[:4, :4] = 0
  _save(str(data / "input_jpeg" / "clip1.jpg"), noisy)
  proc = _launch("launch.evaluate", "--method=l0", f"--data_dir={data}", "--csv=c.csv",
                 cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  with open(tmp_path / "c.csv") as f:
    (row,) = list(csv.DictReader(f))
  assert row["image"] == "clip1" and float(row["input_psnr"]) > 25


def test_evaluate_refuses_bad_limits_and_unwritable_outputs_before_scoring(tmp_path):
  data = tmp_path / "data"
  clean, noisy = _blocks(11, 10)
  _save(str(data / "gt" / "a.png"), clean)
  _save(str(data / "input" / "a.png"), noisy)
  (tmp_path / "blocker").write_text("a file where a folder should be\n")
  args = ["--method=l0", f"--data_dir={data}"]
  cases = [
      ([*args, "--csv=r.csv", "--limit=0"], "--limit=0: must be ≥ 1"),
      ([*args, "--csv=r.csv", "--limit=-1"], "--limit=-1: must be ≥ 1"),
      ([*args, "--csv=r.csv", "--figures_dir=figs", "--grid_images=0"], "--grid_images=0"),
      ([*args, "--csv=blocker/r.csv"], "blocker is a file"),
      ([*args, "--csv=r.csv", "--output_dir=blocker/out"], "blocker is a file"),
      ([*args, "--csv=r.csv", "--figures_dir=blocker"], "blocker is a file"),
  ]
  results = _launch_cases("launch.evaluate", [a for a, _ in cases], cwd=tmp_path)
  for (_, message), result in zip(cases, results, strict=True):
    assert result["code"] == 2 and message in result["stderr"], result
    assert len(result["stderr"].strip().splitlines()) == 1, result
    assert "PSNR" not in result["stdout"], result  # refused before scoring
  assert not (tmp_path / "r.csv").exists() and not (tmp_path / "figs").exists()


def test_evaluate_scores_colour_results_against_greyscale_gt(tmp_path):
  # As `launch.run --gt` does: the greyscale image is repeated over the colour channels.
  data = tmp_path / "data"
  clean, noisy = _blocks(12, 10)
  _save(str(data / "gt" / "a.png"), clean.mean(-1).astype(np.uint8))
  _save(str(data / "input" / "a.png"), noisy)
  proc = _launch("launch.evaluate", "--method=l0", f"--data_dir={data}", "--csv=r.csv",
                 "--output_dir=out", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert proc.stderr.strip() == ""  # no progress bar when stderr is not a terminal
  with open(tmp_path / "r.csv") as f:
    (row,) = list(csv.DictReader(f))
  out = np.asarray(Image.open(tmp_path / "out" / "a.png")).astype(np.float64)
  gt = clean.mean(-1).astype(np.uint8).astype(np.float64)[..., None]
  mse = np.mean((out - gt) ** 2)
  assert float(row["psnr"]) == pytest.approx(10 * np.log10(255.0**2 / mse), abs=1e-3)


def test_evaluate_unknown_layout_exit_2(tmp_path):
  proc = _launch("launch.evaluate", f"--data_dir={tmp_path}", cwd=tmp_path)
  assert proc.returncode == 2 and "not a known dataset layout" in proc.stderr


def test_run_dip_l0_writes_output_v_and_log(tmp_path):
  _save(str(tmp_path / "in.png"), _blocks(7, 10)[1])
  proc = _launch("launch.run", "--method=dip_l0", "--image=in.png", "--output=o.png",
                 "--channels=8", "--scales=2", "--outer_iters=2", "--inner_iters=2",
                 cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert np.asarray(Image.open(tmp_path / "o.png")).shape == (32, 40, 3)
  assert np.asarray(Image.open(tmp_path / "o_v.png")).shape == (32, 40, 3)
  with open(tmp_path / "o_log.json") as f:
    log = json.load(f)
  assert [e["iteration"] for e in log["log"]] == [1, 2]
  assert log["settings"]["lambda_"] == 0.025 and log["settings"]["beta"] == 2.25
  assert all(np.isfinite(e["lagrangian"]) for e in log["log"])


def test_run_dip_l0_finish_writes_and_scores_the_finished_result(tmp_path):
  clean, noisy = _blocks(10, 10)
  _save(str(tmp_path / "in.png"), noisy)
  _save(str(tmp_path / "gt.png"), clean)
  proc = _launch("launch.run", "--method=dip_l0", "--image=in.png", "--gt=gt.png",
                 "--output=o.png", "--channels=8", "--scales=2", "--outer_iters=2",
                 "--inner_iters=2", "--finish_beta=1", "--downsample=2", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  out = np.asarray(Image.open(tmp_path / "o.png"))
  # Solved at 16×20, finished at 32×40 by a Region Fusion step (the preset's): flat regions,
  # unlike a DIP average.
  assert out.shape == (32, 40, 3)
  assert len(np.unique(out.reshape(-1, 3), axis=0)) < 0.1 * out.shape[0] * out.shape[1]
  with open(tmp_path / "o_log.json") as f:
    log = json.load(f)
  assert log["settings"]["finish_beta"] == 1.0
  mse = np.mean((out.astype(np.float64) - clean) ** 2)
  psnr = 10 * np.log10(255.0**2 / mse)
  assert abs(log["log"][-1]["psnr"] - psnr) < 1e-3
  assert f"PSNR: {psnr:.2f} dB" in proc.stdout


def test_run_app_detail_writes_base_and_detail(tmp_path):
  _, noisy = _blocks(6, 10)
  _save(str(tmp_path / "in.png"), noisy)
  proc = _launch("launch.run", "--method=l0", "--app=detail", "--image=in.png",
                 "--output=o.png", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert "wrote o.png, o_detail.png" in proc.stdout
  base = np.asarray(Image.open(tmp_path / "o.png")).astype(float)
  detail = np.asarray(Image.open(tmp_path / "o_detail.png")).astype(float)
  expected = np.clip(base + 3.0 * (noisy - base), 0, 255)  # the default gain, k = 3
  # The PNGs round the base (an error times |1 − k| = 2 here) and the result: ≤ 1.5 levels.
  assert np.abs(detail - expected).max() <= 1.5

  proc = _launch("launch.run", "--app=detail", "--detail_gain=nan", "--image=in.png",
                 "--output=bad.png", cwd=tmp_path)
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip() == "error: --detail_gain=nan: must be a finite number ≥ 0"
  assert not (tmp_path / "bad.png").exists()


def test_run_folder_groups_sizes_and_l0_region_fusion(tmp_path):
  for name, (h, w) in {"a": (32, 40), "b": (32, 40), "c": (20, 24)}.items():
    _save(str(tmp_path / "imgs" / f"{name}.png"), _blocks(1, 10)[1][:h, :w])
  proc = _launch("launch.run", "--method=l0", "--image=imgs", "--output_dir=out",
                 "--batch_size=4", "--l0_solver=region_fusion", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  for name in "abc":
    out = np.asarray(Image.open(tmp_path / "out" / f"{name}_l0.png"))
    assert len(np.unique(out.reshape(-1, 3), axis=0)) < 20  # piecewise constant
  assert "a.png, b.png (40×32)" in proc.stdout


BAD_DIP_SETTINGS = [
    (["--method=dip_l0", "--task=inpaint"], "--task=inpaint needs --mask"),
    (["--method=dip_l0", "--beta=0"], "--beta"),
    (["--method=dip_l0", "--beta=-1"], "--beta"),
    (["--method=dip_l0", "--beta=nan"], "--beta"),
    (["--method=dip", "--lr=inf"], "--lr"),
    (["--method=dip_l0", "--lr=0"], "--lr"),
    (["--method=dip_l0", "--lr=-0.1"], "--lr"),
    (["--method=dip_l0", "--ema=1"], "--ema"),
    (["--method=dip_l0", "--preset=nks", "--image=tiny.png"],
     "too small for dip_l0 (needs at least 17"),
    (["--image=tiny.png"], "too small for dip_l0 (needs at least 18"),  # fast: half resolution
    (["--method=dip", "--image=one.png"], "too small for dip (needs at least 17"),
    (["--method=dip_l0", "--resume"], "--resume needs --checkpoint_dir"),
    (["--method=dip", "--task=sr", "--sr_factor=0"], "--sr_factor=0: must be ≥ 1"),
    (["--method=dip", "--task=inpaint", "--mask=tiny.png"], "tiny.png: mask is 8×8"),
]


def test_run_bad_dip_settings_exit_2(tmp_path):
  _save(str(tmp_path / "tiny.png"), np.zeros((8, 8, 3), np.uint8))
  _save(str(tmp_path / "one.png"), np.zeros((1, 1, 3), np.uint8))
  results = _launch_cases(
      "launch.run", [["--output=out.png", *args] for args, _ in BAD_DIP_SETTINGS], cwd=tmp_path)
  for (args, message), result in zip(BAD_DIP_SETTINGS, results, strict=True):
    assert result["code"] == 2, result
    assert message in result["stderr"] and "Traceback" not in result["stderr"], result
    if "--task=inpaint" in args or "--task=sr" in args:  # refused before the solve starts
      assert "image(s)" not in result["stdout"], result
  assert not (tmp_path / "out.png").exists()


UNWRITABLE_OUTPUTS = [  # each refused before solving: exit 2, one line, nothing written
    (["--method=dip", "--num_iters=2", "--output=blocker/out.png"], "blocker is a file"),
    (["--method=l0", "--output=folder"], "folder: is a folder"),
    (["--method=dip", "--num_iters=2", "--output=kept.png"], "kept_log.json: already exists"),
    (["--method=dip_l0", "--outer_iters=1", "--output=v.png"], "v_v.png: already exists"),
    (["--method=l0", "--output=out.png", "--figure=blocker/f.png"], "blocker is a file"),
    (["--method=dip", "--num_iters=2", "--output=out.png", "--figure=fig.png"],
     "fig_convergence.png: already exists"),
    (["--method=l0", "--image=a/in.png", "--image=b/in.jpg", "--output_dir=o"],
     "a/in.png, b/in.jpg: inputs that share a file name"),
    (["--method=l0", "--task=sr", "--output=out.png"], "--task=sr works with dip and dip_l0"),
]


def test_run_refuses_outputs_it_cannot_or_may_not_write_before_solving(tmp_path):
  # Found by a review as tracebacks after the solve, a log left behind, or a user's file
  # replaced without --overwrite.
  _save(str(tmp_path / "in.png"), _blocks(9, 10)[1])
  _save(str(tmp_path / "a" / "in.png"), _blocks(9, 10)[1])
  _save(str(tmp_path / "b" / "in.jpg"), _blocks(9, 10)[1])
  (tmp_path / "blocker").write_text("a file where a folder should be\n")
  (tmp_path / "folder").mkdir()
  for mine in ("kept_log.json", "v_v.png", "fig_convergence.png"):
    (tmp_path / mine).write_text("the user's own file\n")
  cases = [["--image=in.png", *args] if not any(a.startswith("--image") for a in args) else args
           for args, _ in UNWRITABLE_OUTPUTS]
  if os.path.isdir("/proc"):  # a folder that takes no new files, even for root
    cases.append(["--image=in.png", "--method=dip", "--num_iters=2", "--output=/proc/o.png"])
  messages = [m for _, m in UNWRITABLE_OUTPUTS] + ["/proc/o.png: cannot write in /proc"]
  before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
  results = _launch_cases("launch.run", cases, cwd=tmp_path)
  for result, message in zip(results, messages, strict=False):
    assert result["code"] == 2, result
    assert message in result["stderr"], result
    assert len(result["stderr"].strip().splitlines()) == 1, result
    assert "time:" not in result["stdout"], result  # nothing was solved
  after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                 if p.name not in ("cases.json", "results.json"))
  assert after == before
  for mine in ("kept_log.json", "v_v.png", "fig_convergence.png"):
    assert (tmp_path / mine).read_text() == "the user's own file\n"


@pytest.mark.parametrize("module", ["launch.run", "launch.evaluate", "launch.train"])
def test_help_prints_the_usage_and_exits_0(tmp_path, module):
  (result,) = _launch_cases(module, [["--help"]], cwd=tmp_path)
  assert result["code"] == 0 and "--helpfull" in result["stdout"], result
  if module == "launch.run":  # as a shell runs it: the launcher's own usage
    proc = _launch(module, "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "python -m launch.run --method=dip_l0" in proc.stdout


def test_run_notes_flags_of_other_methods(tmp_path):
  _save(str(tmp_path / "in.png"), _blocks(9, 10)[1])
  (result,) = _launch_cases("launch.run", [
      ["--method=l0", "--image=in.png", "--output=o.png", "--num_iters=3", "--preset=nks"]],
      cwd=tmp_path)
  assert result["code"] == 0, result
  assert "note: l0 does not use --num_iters, --preset (ignored)" in result["stdout"]


def test_run_notes_input_values_outside_the_range_before_clipping_them(tmp_path):
  values = np.linspace(0.0, 5.0, 32 * 40, dtype=np.float32).reshape(32, 40)
  Image.fromarray(values).save(tmp_path / "f.tif")
  (result,) = _launch_cases("launch.run", [["--method=l0", "--image=f.tif", "--output=o.png"]],
                            cwd=tmp_path)
  assert result["code"] == 0, result
  outside = np.mean(values > 1)
  assert f"note: f.tif: {outside:.1%} of the values lie outside [0, 1]; clipped" in (
      result["stdout"] + result["stderr"])


def test_run_scores_greyscale_result_against_colour_gt_on_every_channel(tmp_path):
  clean, noisy = _blocks(10, 12)
  _save(str(tmp_path / "grey.png"), noisy.mean(-1).astype(np.uint8))
  _save(str(tmp_path / "gt.png"), clean)
  proc = _launch("launch.run", "--method=l0", "--image=grey.png", "--gt=gt.png",
                 "--output=out.png", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  out = np.asarray(Image.open(tmp_path / "out.png")).astype(np.float64)
  assert out.ndim == 2
  mse = np.mean((out[..., None] - clean.astype(np.float64)) ** 2)  # every channel
  assert f"PSNR: {10 * np.log10(255.0**2 / mse):.2f} dB" in proc.stdout


def test_ctrl_c_stops_after_current_iteration_and_writes_result(tmp_path):
  _save(str(tmp_path / "in.png"), _blocks(8, 10)[1])
  env = _env()
  proc = subprocess.Popen(
      [sys.executable, "-m", "launch.run", "--method=dip_l0", "--image=in.png", "--output=o.png",
       "--channels=8", "--scales=2", "--outer_iters=100000", "--inner_iters=2"],
      cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  log_path = tmp_path / "o_log.json"
  deadline = time.time() + 240
  while not log_path.exists() and time.time() < deadline and proc.poll() is None:
    time.sleep(0.2)
  assert log_path.exists(), proc.communicate()
  proc.send_signal(signal.SIGINT)
  stdout, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 0, stderr
  assert "stopped by Ctrl-C at iteration" in stdout
  assert np.asarray(Image.open(tmp_path / "o.png")).shape == (32, 40, 3)
  with open(log_path) as f:
    log = json.load(f)
  assert 1 <= log["iterations"] < 100000 and len(log["log"]) == log["iterations"]


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
  _save(str(tmp_path / "in.png"), _blocks(9, 10)[1])
  common = ["--method=dip_l0", "--preset=nks", "--image=in.png", "--channels=8", "--scales=2",
            "--outer_iters=6", "--inner_iters=2", "--seed=3"]
  assert _launch("launch.run", *common, "--output=full.png", cwd=tmp_path).returncode == 0

  env = _env()
  args = [*common, "--output=part.png", "--checkpoint_dir=ckpt"]
  proc = subprocess.Popen([sys.executable, "-m", "launch.run", *args], cwd=tmp_path, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  log_path = tmp_path / "part_log.json"
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if log_path.exists() and json.loads(log_path.read_text())["iterations"] >= 2:
      break
    time.sleep(0.05)
  proc.kill()  # SIGKILL: no chance to clean up
  proc.wait()
  assert not (tmp_path / "part.png").exists(), "the run finished before it could be killed"

  resumed = _launch("launch.run", *args, "--resume", cwd=tmp_path)
  assert resumed.returncode == 0, resumed.stderr
  assert "resuming from iteration" in resumed.stdout
  for suffix in ("", "_v"):
    full = np.asarray(Image.open(tmp_path / f"full{suffix}.png"))
    part = np.asarray(Image.open(tmp_path / f"part{suffix}.png"))
    np.testing.assert_array_equal(part, full)
  log = json.loads(log_path.read_text())
  assert [e["iteration"] for e in log["log"]] == [1, 2, 3, 4, 5, 6]


def test_same_seed_same_output_run_after_run(tmp_path):
  _save(str(tmp_path / "in.png"), _blocks(4, 10)[1])
  common = ["--method=dip_l0", "--image=in.png", "--channels=8", "--scales=2",
            "--outer_iters=2", "--inner_iters=2"]
  for name in ("a", "b"):
    assert _launch("launch.run", *common, f"--output={name}.png", cwd=tmp_path).returncode == 0
  assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
  assert _launch("launch.run", *common, "--seed=1", "--output=c.png", cwd=tmp_path).returncode == 0
  assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()


def test_image_too_large_for_memory_is_refused_with_estimate(tmp_path):
  Image.new("RGB", (6000, 5000), (90, 120, 150)).save(tmp_path / "big.png")
  proc = _launch("launch.run", "--method=dip_l0", "--preset=nks", "--image=big.png",
                 "--output=o.png", cwd=tmp_path)
  assert proc.returncode == 2, proc.stderr
  assert "big.png: dip_l0 at 6000×5000 (batch 1) needs about" in proc.stderr
  assert "GiB is available" in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "o.png").exists()


def test_figures_from_run_and_evaluate(tmp_path):
  _save(str(tmp_path / "in.png"), _blocks(2, 10)[1])
  proc = _launch("launch.run", "--method=dip_l0", "--image=in.png", "--output=o.png",
                 "--channels=8", "--scales=2", "--outer_iters=2", "--inner_iters=2",
                 "--figure=fig/side.png", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  side = Image.open(tmp_path / "fig" / "side.png")
  assert side.width > 3 * side.height  # input, result, detail, v in one row
  assert Image.open(tmp_path / "fig" / "side_convergence.png").width > 100

  data = tmp_path / "nks"
  for s in (1, 2):
    clean, noisy = _blocks(s, 10)
    _save(str(data / "gt" / f"S{s}.png"), clean)
    _save(str(data / "validation" / f"S{s}_T1.png"), noisy)
  proc = _launch("launch.evaluate", "--method=l0", f"--data_dir={data}", "--csv=r.csv",
                 "--figures_dir=figs", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  grid = Image.open(tmp_path / "figs" / "l0_nks_grid.png")
  assert grid.height > grid.width / 3  # two rows of three panels
  assert Image.open(tmp_path / "figs" / "l0_nks_psnr.png").width > 100


@pytest.mark.skipif(sys.platform != "linux", reason="glibc tunables: Linux only")
def test_module_commands_restart_once_with_glibc_tunables_and_dispatch_inline(tmp_path):
  env = {k: v for k, v in _env().items() if k != "GLIBC_TUNABLES"}
  trim = "glibc.malloc.trim_threshold=1099511627776"
  ours = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:" + trim
  for tunables, expected in ((None, ours),
                             ("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=0"
                              ":glibc.malloc.mmap_max=0:" + trim),
                             ("glibc.malloc.mmap_max=65536:glibc.malloc.arena_max=2",
                              "glibc.malloc.mmap_max=65536:glibc.malloc.arena_max=2"
                              ":glibc.malloc.hugetlb=1:" + trim)):
    run_env = env if tunables is None else dict(env, GLIBC_TUNABLES=tunables)
    proc = subprocess.run([sys.executable, "-m", "launch"], cwd=tmp_path, env=run_env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"GLIBC_TUNABLES={expected}\n" in proc.stdout
    assert "JAX CPU dispatch: inline\n" in proc.stdout
  # Only while Python locates a `-m` module (sys.argv[0] == "-m"): a program that imports the
  # package, as this test process did, is never re-executed.
  calls = []
  with mock.patch.object(os, "execve", lambda *a: calls.append(a)), \
       mock.patch.dict(os.environ, {"GLIBC_TUNABLES": ""}):
    allocator.restart()
    assert not calls
    with mock.patch.object(sys, "argv", ["-m"]):
      allocator.restart()
      with mock.patch.dict(os.environ, {"GLIBC_TUNABLES": ours}):
        allocator.restart()  # all named: no second restart
  assert len(calls) == 1 and calls[0][2]["GLIBC_TUNABLES"] == ours
