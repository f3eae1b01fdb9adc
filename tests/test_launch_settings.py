"""How the launchers resolve flags and presets into a method's settings (in-process, no solve)."""

import os

import jax
import pytest
from absl import flags
from absl.testing import flagsaver

from launch import common


def build(**flag_values) -> common.Method:
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  with flagsaver.flagsaver(**flag_values):
    return common.build_method()


def settings(**flag_values) -> dict:
  return build(**flag_values).settings


def test_default_method_is_dip_l0_fast_and_other_tasks_default_to_the_papers_preset():
  s = settings()  # the quick start: no flags
  assert (s["preset"], s["channels"], s["outer_iters"], s["finish_views"]) == ("fast", 16, 80, 8)
  for task in ("inpaint", "sr"):  # fast solves at half resolution: denoising only
    assert settings(task=task)["preset"] == "nks"


def test_dip_l0_nks_preset_is_the_papers():
  s = settings(method="dip_l0", preset="nks")
  assert (s["preset"], s["l0_solver"], s["channels"], s["scales"]) == ("nks", "region_fusion",
                                                                      128, 5)
  assert (s["lambda_"], s["beta"], s["outer_iters"], s["inner_iters"]) == (0.025, 2.25, 100, 25)
  assert (s["lr"], s["ema"]) == (1e-3, 0.9)
  assert settings(method="dip_l0", task="sr") == s
  assert settings(method="dip_l0", preset="clipart")["l0_solver"] == "region_fusion"
  for preset in ("nks", "clipart"):  # the paper's output, the average itself: no finishing
    assert "finish_beta" not in settings(method="dip_l0", preset=preset)
  assert settings(method="dip_l0", preset="nks", l0_solver="fft")["l0_solver"] == "fft"


def test_fast_preset_brings_its_generator_and_l0_step_and_flags_override_them():
  s = settings(method="dip_l0", preset="fast")
  assert (s["l0_solver"], s["channels"], s["scales"]) == ("region_fusion", 16, 4)
  assert (s["outer_iters"], s["inner_iters"], s["lr"], s["ema"]) == (80, 10, 0.01, 0.8)
  assert (s["downsample"], s["finish_beta"], s["finish_views"], s["finish_blend"]) == (2, 0.75,
                                                                                        8, 0.8)
  assert (s["finish_beta_scales"], s["finish_plain_scale"], s["finish_plain_full"],
          s["finish_fft_lam"]) == ([1.0, 2.0], 0.7, True, 0.02)
  assert settings(method="dip_l0", preset="fast", finish_views=2)["finish_views"] == 2
  assert settings(method="dip_l0", preset="fast", finish_blend=1.0)["finish_blend"] == 1.0
  assert settings(method="dip_l0", preset="fast")["finish_shifts"] == 4
  assert settings(method="dip_l0", preset="fast", finish_shifts=2)["finish_shifts"] == 2
  s = settings(method="dip_l0", preset="fast", l0_solver="fft", channels=8, downsample=1,
               finish_beta=0.0)
  assert (s["l0_solver"], s["channels"], s["scales"]) == ("fft", 8, 4)
  # Named only when used, so that older runs' settings still match.
  assert all(k not in s for k in ("downsample", "finish_beta", "finish_views", "finish_blend",
                                  "finish_shifts", "finish_beta_scales", "finish_plain_scale",
                                  "finish_plain_full", "finish_fft_lam"))
  assert "finish_views" not in settings(method="dip_l0", preset="fast", finish_views=1)
  assert "finish_blend" not in settings(method="dip_l0", preset="fast", finish_blend=0.0)
  assert "finish_shifts" not in settings(method="dip_l0", preset="fast", finish_shifts=1)
  for unused in ({"finish_blend": 0.0}, {"downsample": 1}):  # nothing to shift: not named
    assert "finish_shifts" not in settings(method="dip_l0", preset="fast", **unused)


def test_downsample_flag_is_checked():
  assert settings(method="dip_l0", downsample=3)["downsample"] == 3
  with pytest.raises(common.UsageError, match="--downsample"):
    settings(method="dip_l0", downsample=0)
  with pytest.raises(common.UsageError, match="--task=denoise only"):
    settings(method="dip_l0", preset="fast", task="sr")


def test_finish_beta_flag_is_checked():
  assert settings(method="dip_l0", finish_beta=0.5)["finish_beta"] == 0.5
  with pytest.raises(common.UsageError, match="--finish_beta"):
    settings(method="dip_l0", finish_beta=-1.0)
  with pytest.raises(common.UsageError, match="--finish_beta=1 works with --task=denoise"):
    settings(method="dip_l0", finish_beta=1.0, task="sr")


def test_finish_views_flag_is_checked():
  for bad in (0, 9):
    with pytest.raises(common.UsageError, match=f"--finish_views={bad}: must be in 1..8"):
      settings(method="dip_l0", preset="fast", finish_views=bad)
  with pytest.raises(common.UsageError, match="--finish_views=4 needs a finishing step"):
    settings(method="dip_l0", preset="nks", finish_views=4)  # no finishing step
  assert "finish_views" not in settings(method="dip_l0", preset="fast", finish_beta=0.0)


def test_finish_blend_flag_is_checked():
  for bad in (-0.5, 1.5, float("nan")):
    with pytest.raises(common.UsageError, match=r"--finish_blend=.*: must be in \[0, 1\]"):
      settings(method="dip_l0", preset="fast", finish_blend=bad)
  with pytest.raises(common.UsageError, match="--finish_blend=0.5 needs a finishing step"):
    settings(method="dip_l0", preset="nks", finish_blend=0.5)
  assert "finish_blend" not in settings(method="dip_l0", preset="fast", finish_beta=0.0)


def test_finish_shifts_flag_is_checked():
  for bad in (0, 5):
    with pytest.raises(common.UsageError, match=f"--finish_shifts={bad}: must be in 1..4"):
      settings(method="dip_l0", preset="fast", finish_shifts=bad)
  for unused in ({"finish_blend": 0.0}, {"downsample": 1}, {"finish_beta": 0.0},
                 {"preset": "nks"}):
    with pytest.raises(common.UsageError, match="--finish_shifts=2 needs a blend solved at a "
                       "reduced size"):
      settings(**{"method": "dip_l0", "preset": "fast", "finish_shifts": 2, **unused})


def test_finish_ensemble_flags_are_checked():
  s = settings(method="dip_l0", preset="fast", finish_beta_scales=["1", "0.5", "3"],
               finish_plain_scale=0.5, finish_plain_full=False, finish_fft_lam=0.01)
  assert s["finish_beta_scales"] == [1.0, 0.5, 3.0] and "finish_plain_full" not in s
  assert (s["finish_plain_scale"], s["finish_fft_lam"]) == (0.5, 0.01)
  assert "finish_beta_scales" not in settings(method="dip_l0", preset="fast",
                                              finish_beta_scales=["1"])
  for bad in (["0"], ["-1", "2"], ["x"], ["nan"]):
    with pytest.raises(common.UsageError, match="--finish_beta_scales=.*: must be numbers > 0"):
      settings(method="dip_l0", preset="fast", finish_beta_scales=bad)
  with pytest.raises(common.UsageError, match="--finish_beta_scales=1,2 needs a finishing step"):
    settings(method="dip_l0", preset="nks", finish_beta_scales=["1", "2"])
  with pytest.raises(common.UsageError, match="--finish_plain_scale=0.0: must be"):
    settings(method="dip_l0", preset="fast", finish_plain_scale=0.0)
  with pytest.raises(common.UsageError, match="--finish_fft_lam=-1.0: must be"):
    settings(method="dip_l0", preset="fast", finish_fft_lam=-1.0)
  for flag in ({"finish_plain_scale": 0.5}, {"finish_fft_lam": 0.01}):
    with pytest.raises(common.UsageError, match="needs a blend"):
      settings(method="dip_l0", preset="fast", finish_blend=0.0, **flag)
  with pytest.raises(common.UsageError, match="--finish_plain_full needs a blend solved at a "
                     "reduced size"):
    settings(method="dip_l0", preset="fast", downsample=1, finish_plain_full=True)
  # What cannot act is not named: no blend, no plain members.
  s = settings(method="dip_l0", preset="fast", finish_blend=0.0)
  assert s["finish_beta_scales"] == [1.0, 2.0]
  assert all(k not in s for k in ("finish_plain_scale", "finish_plain_full", "finish_fft_lam"))


def test_dip_generator_flags():
  assert settings(method="dip")["channels"] == 128
  assert settings(method="dip", scales=3)["scales"] == 3
  with pytest.raises(common.UsageError, match="--scales=9"):
    settings(method="dip", scales=9)
  with pytest.raises(common.UsageError, match="--channels"):
    settings(method="dip_l0", channels=0)


def test_l0_solver_defaults_to_fft_for_l0():
  assert settings(method="l0")["l0_solver"] == "fft"
  assert settings(method="l0", l0_solver="region_fusion")["num_passes"] == 100


def test_batch_size_defaults_to_one_image_per_device():
  # On CPU a generator fit's larger batch is no faster per image and compiles once per image.
  for method in (build(method="dip"), build(method="dip_l0")):
    assert not method.host_threads
    assert common.batch_size(None, method) == jax.local_device_count()
    assert common.batch_size(3, method) == 3
    with pytest.raises(common.UsageError, match="--batch_size=0"):
      common.batch_size(0, method)


@pytest.mark.parametrize("solver", ["fft", "region_fusion"])
def test_l0_batch_size_defaults_to_the_core_count(solver):
  # Both solve a batch one image per core at once: Region Fusion 1.48x images/s at batch 2,
  # the FFT solver's separate jitted calls 1.70-1.78x at batches 2 and 4 (README "Batch
  # throughput").
  method = build(method="l0", l0_solver=solver)
  assert method.host_threads
  assert common.batch_size(None, method) == max(jax.local_device_count(), os.cpu_count())
  assert common.batch_size(1, method) == 1


@pytest.mark.parametrize("flag_values, sized", [
    ({}, True),  # dip_l0, fast preset: Region Fusion
    ({"method": "dip_l0", "preset": "nks"}, True),
    ({"method": "dip_l0", "l0_solver": "fft"}, False),
    ({"method": "l0", "l0_solver": "region_fusion"}, False),  # on the host, no callbacks
    ({"method": "dip"}, False),
    ({"method": "fan2018"}, False),
])
def test_only_region_fusion_dip_l0_sizes_the_client_pool(monkeypatch, flag_values, sized):
  """The extra thread slows the other methods on forced devices (xla_flags item 4)."""
  calls = []
  monkeypatch.setattr(common.xla_flags, "size_client_pool", lambda: calls.append(1))
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  with flagsaver.flagsaver(**flag_values):
    common.size_client_pool()
    if sized:  # the method the same flags build does call Region Fusion back
      assert build().settings["l0_solver"] == "region_fusion"
  assert calls == ([1] if sized else [])
