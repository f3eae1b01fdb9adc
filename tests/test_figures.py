"""launch.figures writes readable PNGs, atomically, for every kind of input it accepts."""

import os

import numpy as np
import pytest
from PIL import Image

from launch import figures


def _grey(h: int = 8, w: int = 12) -> np.ndarray:
  return np.linspace(0.0, 1.0, h * w, dtype=np.float32).reshape(h, w, 1)


def _colour(h: int = 8, w: int = 12) -> np.ndarray:
  rng = np.random.default_rng(0)
  # Out of [0, 1] on purpose: the helpers must clip, not fail.
  return rng.uniform(-0.2, 1.2, (h, w, 3)).astype(np.float32)


def _open(path: str) -> Image.Image:
  """The PNG at `path`, after checking that it is a fully readable RGB(A) image."""
  with Image.open(path) as image:
    image.load()
    assert image.format == "PNG"
    assert image.mode in ("RGB", "RGBA")
    return image.copy()


def _leftovers(folder: str) -> list[str]:
  return [f for f in os.listdir(folder) if f.startswith(".tmp-")]


def _dip_l0_log(n: int = 5) -> dict:
  return {"method": "dip_l0", "settings": {"lam": 0.02}, "log": [
      {"iteration": i, "seconds": 0.5 * i, "lagrangian": 100.0 / i, "data": 80.0 / i,
       "primal_residual": 3.0 / i, "inner_loss": 120.0 / i, "psnr": 25.0 + i}
      for i in range(1, n + 1)]}


def test_side_by_side_grey_and_colour(tmp_path):
  path = str(tmp_path / "pair.png")
  figures.side_by_side(path, [("grey", _grey()), ("colour", _colour())])
  image = _open(path)
  assert image.width > image.height  # two 3:2 panels side by side
  assert _leftovers(str(tmp_path)) == []


def test_side_by_side_widens_with_panels(tmp_path):
  one, three = str(tmp_path / "one.png"), str(tmp_path / "three.png")
  figures.side_by_side(one, [("a", _grey())])
  figures.side_by_side(three, [("a", _grey()), ("b", _colour()), ("c", _grey())])
  assert _open(three).width > 2 * _open(one).width
  assert _open(three).height == pytest.approx(_open(one).height, rel=0.1)


def test_side_by_side_creates_the_folder(tmp_path):
  path = tmp_path / "new" / "deeper" / "pair.png"
  figures.side_by_side(str(path), [("a", _colour())])
  _open(str(path))
  assert _leftovers(str(path.parent)) == []


@pytest.mark.parametrize("shape", [(8, 12), (8, 12, 2), (8, 12, 4), (0, 12, 3)])
def test_side_by_side_rejects_bad_shapes(tmp_path, shape):
  with pytest.raises(ValueError, match="expected an"):
    figures.side_by_side(str(tmp_path / "bad.png"), [("bad", np.zeros(shape))])
  assert os.listdir(tmp_path) == []


def test_detail_layer_is_mid_grey_without_detail():
  image = _colour()
  np.testing.assert_array_equal(figures.detail_layer(image, image), np.full_like(image, 0.5))


def test_detail_layer_shifts_and_clips():
  image = np.array([0.0, 0.2, 1.0, 1.0, 0.0]).reshape(1, 5, 1)
  smooth = np.array([0.0, 0.0, 0.3, 0.0, 1.0]).reshape(1, 5, 1)
  np.testing.assert_allclose(figures.detail_layer(image, smooth).ravel(),
                             [0.5, 0.7, 1.0, 1.0, 0.0])


def test_detail_layer_rejects_different_shapes():
  with pytest.raises(ValueError, match="differ"):
    figures.detail_layer(_colour(), _grey())


def test_convergence_plot_full_dip_l0_log(tmp_path):
  path = str(tmp_path / "log.png")
  figures.convergence_plot(path, _dip_l0_log())
  image = _open(path)
  assert image.width > 2 * image.height  # three panels in a row
  assert _leftovers(str(tmp_path)) == []


def test_convergence_plot_dip_log_with_only_loss(tmp_path):
  one = str(tmp_path / "dip.png")
  figures.convergence_plot(one, {"method": "dip", "log": [
      {"iteration": i, "loss": 1.0 / i} for i in range(1, 4)]})
  three = str(tmp_path / "dip_l0.png")
  figures.convergence_plot(three, _dip_l0_log())
  assert _open(three).width > 2 * _open(one).width  # one panel against three


def test_convergence_plot_without_psnr(tmp_path):
  log = _dip_l0_log()
  for entry in log["log"]:
    del entry["psnr"]
  path = str(tmp_path / "no_psnr.png")
  figures.convergence_plot(path, log)
  _open(path)


def test_convergence_plot_tolerates_gaps_and_non_positive_values(tmp_path):
  log = _dip_l0_log()
  log["log"][0]["lagrangian"] = -5.0  # a log axis cannot show it: the panel goes linear
  del log["log"][1]["psnr"]
  log["log"][2]["primal_residual"] = float("inf")
  path = str(tmp_path / "gaps.png")
  figures.convergence_plot(path, log)
  _open(path)


def test_convergence_plot_single_entry(tmp_path):
  path = str(tmp_path / "one.png")
  figures.convergence_plot(path, _dip_l0_log(n=1))
  _open(path)


def test_convergence_plot_rejects_an_empty_log(tmp_path):
  with pytest.raises(ValueError, match="no entries"):
    figures.convergence_plot(str(tmp_path / "empty.png"), {"method": "dip_l0", "log": []})
  with pytest.raises(ValueError, match="no metrics"):
    figures.convergence_plot(str(tmp_path / "bare.png"), {"log": [{"iteration": 1}]})
  assert os.listdir(tmp_path) == []


def test_results_grid(tmp_path):
  def row(name):
    return (name, [("input", _colour()), ("ground truth", _colour()), ("l0", _grey())])

  one, two = str(tmp_path / "one.png"), str(tmp_path / "two.png")
  figures.results_grid(one, [row("S1")])
  figures.results_grid(two, [row("S1"), row("S2")])
  assert _open(two).height > 1.5 * _open(one).height
  assert _open(two).width == pytest.approx(_open(one).width, rel=0.1)
  assert _leftovers(str(tmp_path)) == []


def test_results_grid_rejects_ragged_rows(tmp_path):
  with pytest.raises(ValueError, match="panels"):
    figures.results_grid(str(tmp_path / "ragged.png"),
                         [("a", [("x", _grey())]), ("b", [("x", _grey()), ("y", _grey())])])


def test_psnr_chart(tmp_path):
  names = [f"S{i}_T{i}" for i in range(6)]
  small, large = str(tmp_path / "small.png"), str(tmp_path / "large.png")
  figures.psnr_chart(small, names[:2], {"input": [20.0, 21.0], "l0": [25.0, 26.5]})
  figures.psnr_chart(large, names * 4, {"input": list(np.linspace(20, 30, 24)),
                                        "l0": [27.0] * 24, "dip_l0": [28.0] * 24})
  assert _open(large).width > _open(small).width
  assert _leftovers(str(tmp_path)) == []


@pytest.mark.parametrize("series, match", [
    ({"l0": [25.0]}, "1 values for 2 images"),
    ({"l0": [25.0, float("inf")]}, "non-finite"),
    ({}, "no images"),
])
def test_psnr_chart_rejects_bad_series(tmp_path, series, match):
  with pytest.raises(ValueError, match=match):
    figures.psnr_chart(str(tmp_path / "bad.png"), ["a", "b"], series)
