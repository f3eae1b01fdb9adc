"""Runs a method over a dataset with ground truth and scores it.

`python -m launch.evaluate --method=l0 --data_dir=DIR` writes a per-image CSV and prints mean
PSNR/SSIM (8-bit outputs, RGB, data range 255 — the same as skimage on uint8 images).
"""

import csv
import os
import sys
import time

import jax
import numpy as np
import tqdm
from absl import app, flags

from dipl0_jax import image_io, metrics
from launch import common, datasets, figures

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset folder (NKS, clip-art or generic).")
_SPLIT = flags.DEFINE_string("split", "validation", "NKS split folder.")
_CSV = flags.DEFINE_string("csv", None, "Per-image CSV (default: results/<method>_<layout>.csv).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Also write each output PNG here.")
_SUBSET = flags.DEFINE_enum(
    "subset", "all", ["all", "one_per_structure"],
    "Which images: all, or the first of every NKS structure (S1_T*, S2_T*, ...).")
_LIMIT = flags.DEFINE_integer("limit", None, "Only the first N images.")
_CROP = flags.DEFINE_integer("crop", None, "Score a centre crop of N×N pixels of each image.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing CSV.")
_FIGURES_DIR = flags.DEFINE_string(
    "figures_dir", None, "Write a grid of the first --grid_images results (input, ground "
    "truth, output) and a PSNR-per-image chart here.")
_GRID_IMAGES = flags.DEFINE_integer("grid_images", 4, "Rows of the results grid.")


def centre_crop(image: np.ndarray, size: int | None) -> np.ndarray:
  if size is None:
    return image
  h, w = image.shape[:2]
  if size > min(h, w):
    raise common.UsageError(f"--crop={size}: larger than a {w}×{h} image")
  top, left = (h - size) // 2, (w - size) // 2
  return image[top: top + size, left: left + size]


def _write_csv(path: str, rows: list[dict]) -> None:
  with image_io.atomic_file(path, "w") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def run() -> None:
  if not _DATA_DIR.value:
    raise common.UsageError("--data_dir is required")
  if _CROP.value is not None and _CROP.value < 8:
    raise common.UsageError(f"--crop={_CROP.value}: must be ≥ 8")
  method = common.build_method()
  try:
    layout, pairs = datasets.find_pairs(_DATA_DIR.value, split=_SPLIT.value)
  except ValueError as e:
    raise common.UsageError(str(e)) from None
  for pair in pairs:
    if pair.gt is None:
      print(f"skipping {pair.name}: no ground truth")
  pairs = [p for p in pairs if p.gt]
  if _SUBSET.value == "one_per_structure":
    pairs = datasets.one_per_structure(pairs)
  pairs = pairs[: _LIMIT.value]
  if not pairs:
    raise common.UsageError(f"{_DATA_DIR.value}: no images with ground truth")
  csv_path = _CSV.value or os.path.join("results", f"{method.name}_{layout}.csv")
  if os.path.exists(csv_path) and not _OVERWRITE.value:
    raise common.UsageError(f"{csv_path}: already exists (pass --overwrite to replace it)")
  print(f"{method.describe()} on {len(pairs)} {layout} images from {_DATA_DIR.value}")

  rows, grid = [], []
  key = jax.random.key(common.SEED.value)
  for pair in tqdm.tqdm(pairs, unit="img"):
    image = centre_crop(common.read(pair.input), _CROP.value)
    gt = centre_crop(common.read(pair.gt), _CROP.value)
    if gt.shape != image.shape:
      raise common.UsageError(f"{pair.gt}: shape {gt.shape} differs from input {image.shape}")
    method.check_size(pair.input, image)
    key, image_key = jax.random.split(key)
    start = time.perf_counter()
    last, _, interrupted = common.drive(method, image[None], image_key[None], desc=pair.name)
    seconds = time.perf_counter() - start
    if interrupted:
      print(f"stopped by Ctrl-C during {pair.name}; scores of the finished images follow")
      break
    out = image_io.quantize(last.outputs["output"][0])
    if _OUTPUT_DIR.value:
      image_io.write_png(os.path.join(_OUTPUT_DIR.value, f"{pair.name}.png"), out)
    row = {
        "image": pair.name,
        "psnr": round(float(metrics.psnr(out, gt)), 4),
        "ssim": round(float(metrics.ssim(out, gt)), 5),
        "input_psnr": round(float(metrics.psnr(image_io.quantize(image), gt)), 4),
        "seconds": round(seconds, 3),
    }
    rows.append(row)
    if len(grid) < _GRID_IMAGES.value:
      grid.append((pair.name, [("input", image), ("ground truth", gt), (method.name, out)]))
    tqdm.tqdm.write(f"{pair.name}: PSNR {row['psnr']:.2f} dB (input {row['input_psnr']:.2f} dB)"
                    f"  SSIM {row['ssim']:.4f}  {seconds:.1f} s")
  if not rows:
    raise common.UsageError("no image finished: nothing to write")
  _write_csv(csv_path, rows)
  if _FIGURES_DIR.value:
    stem = os.path.join(_FIGURES_DIR.value, f"{method.name}_{layout}")
    figures.results_grid(f"{stem}_grid.png", grid)
    figures.psnr_chart(f"{stem}_psnr.png", [r["image"] for r in rows],
                       {"input": [r["input_psnr"] for r in rows],
                        method.name: [r["psnr"] for r in rows]})
    print(f"wrote {stem}_grid.png, {stem}_psnr.png")
  mean = {k: float(np.mean([r[k] for r in rows]))
          for k in ("psnr", "ssim", "input_psnr", "seconds")}
  print(f"{method.name} on {len(rows)} images: PSNR {mean['psnr']:.2f} dB  SSIM {mean['ssim']:.4f}"
        f"  (input {mean['input_psnr']:.2f} dB)  {mean['seconds']:.2f} s/image")
  print(f"wrote {csv_path}")


def main(argv):
  if len(argv) > 1:
    common.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    run()
  except common.UsageError as e:
    common.fail(str(e))
  except KeyboardInterrupt:
    print("aborted", file=sys.stderr)
    sys.exit(130)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
