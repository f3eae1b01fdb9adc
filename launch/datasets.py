"""Pairs of (input, ground truth) files in the benchmark folder layouts.

- NKS (Xu et al. 2020): `<dir>/<split>/S<i>_T<j>.png` scored against `<dir>/gt/S<i>.png`.
- Clip art: `<dir>/input_jpeg/<name>.jpg` scored against `<dir>/gt/<name>.png` (RGBA, which
  `read_image` composites over black).
- Generic: `<dir>/input/<name>.*` scored against `<dir>/gt/<name>.*`.
"""

import dataclasses
import glob
import os
import re

_NKS_NAME = re.compile(r"^(S\d+)_T\d+$")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")  # what the launchers read


@dataclasses.dataclass(frozen=True)
class Pair:
  name: str
  input: str
  gt: str | None  # None when the ground truth is missing upstream


def images_in(folder: str, recursive: bool = False) -> list[str]:
  """Sorted paths of the image files in `folder` (and its subfolders when `recursive`)."""
  pattern = os.path.join(folder, "**", "*") if recursive else os.path.join(folder, "*")
  return sorted(p for p in glob.glob(pattern, recursive=recursive)
                if p.lower().endswith(IMAGE_EXTS))


def _stem(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def _find(folder: str, stem: str) -> str | None:
  for ext in IMAGE_EXTS:
    path = os.path.join(folder, stem + ext)
    if os.path.isfile(path):
      return path
  return None


def find_pairs(data_dir: str, *, split: str = "validation") -> tuple[str, list[Pair]]:
  """Lists the dataset's pairs.

  Returns:
    (layout name, pairs sorted by name).

  Raises:
    ValueError: the folder has none of the known layouts.
  """
  gt_dir = os.path.join(data_dir, "gt")
  if os.path.isdir(os.path.join(data_dir, "input_jpeg")) and os.path.isdir(gt_dir):
    inputs = images_in(os.path.join(data_dir, "input_jpeg"))
    return "clipart", [Pair(_stem(p), p, _find(gt_dir, _stem(p))) for p in inputs]
  split_dir = os.path.join(data_dir, split)
  if os.path.isdir(split_dir) and os.path.isdir(gt_dir):
    pairs = []
    for p in images_in(split_dir):
      match = _NKS_NAME.match(_stem(p))
      pairs.append(Pair(_stem(p), p, _find(gt_dir, match.group(1)) if match else None))
    return "nks", pairs
  if os.path.isdir(os.path.join(data_dir, "input")) and os.path.isdir(gt_dir):
    inputs = images_in(os.path.join(data_dir, "input"))
    return "generic", [Pair(_stem(p), p, _find(gt_dir, _stem(p))) for p in inputs]
  raise ValueError(
      f"{data_dir}: not a known dataset layout (want gt/ beside {split}/, input_jpeg/ or input/)")


def one_per_structure(pairs: list[Pair]) -> list[Pair]:
  """The first pair (by name) of every NKS structure S<i> that has ground truth."""
  seen, chosen = set(), []
  for pair in pairs:
    match = _NKS_NAME.match(pair.name)
    key = match.group(1) if match else pair.name
    if pair.gt and key not in seen:
      seen.add(key)
      chosen.append(pair)
  return chosen
