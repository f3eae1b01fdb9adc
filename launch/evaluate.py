"""Runs a method over a dataset with ground truth and scores it.

`python -m launch.evaluate --method=l0 --data_dir=DIR` writes a per-image CSV and prints mean
PSNR/SSIM (8-bit outputs, RGB, data range 255 — the same as skimage on uint8 images).
Consecutive same-size images are solved in batches split over the devices; with
--num_processes > 1 each process scores every num_processes-th image and process 0 writes
the one CSV (see launch/distributed.py). One process rewrites the CSV after every batch, and
--resume continues a stopped evaluation from it.
"""

import csv
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np
import tqdm
from absl import app, flags

from dipl0_jax import image_io, metrics
from launch import common, datasets, distributed, figures

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
_RESUME = flags.DEFINE_bool(
    "resume", False, "Keep the rows of an existing CSV (written by the same settings) and "
    "score only the images it lacks.")
_FIGURES_DIR = flags.DEFINE_string(
    "figures_dir", None, "Write a grid of the first --grid_images results (input, ground "
    "truth, output) and a PSNR-per-image chart here.")
_GRID_IMAGES = flags.DEFINE_integer("grid_images", 4, "Rows of the results grid.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Most consecutive same-size images solved at once, split over the "
    "devices (default: the number of this process's devices, or the core count if more for "
    "l0, which solves a batch on one thread per core with either solver).")


def centre_crop(image: np.ndarray, size: int | None) -> np.ndarray:
  if size is None:
    return image
  h, w = image.shape[:2]
  if size > min(h, w):
    raise common.UsageError(f"--crop={size}: larger than a {w}×{h} image")
  top, left = (h - size) // 2, (w - size) // 2
  return image[top: top + size, left: left + size]


def _settings_path(csv_path: str) -> str:
  return csv_path + ".json"


def _write_csv(path: str, rows: list[dict], settings: dict) -> None:
  """Writes the rows, and beside them (PATH.json) the settings that produced them."""
  try:
    with image_io.atomic_file(_settings_path(path), "w") as f:
      json.dump(settings, f, indent=1)
    with image_io.atomic_file(path, "w") as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      writer.writerows(rows)
  except OSError as e:
    raise common.UsageError(f"{path}: cannot write ({e.strerror or e})") from None


def _finished_rows(csv_path: str, settings: dict) -> list[dict]:
  """The rows of an earlier run to keep (--resume): [] without a CSV; a UsageError if it
  was written with other settings."""
  if not os.path.exists(csv_path):
    return []
  try:
    with open(_settings_path(csv_path)) as f:
      before = json.load(f)
    with open(csv_path, newline="") as f:
      rows = [{k: v if k == "image" else float(v) for k, v in row.items()}
              for row in csv.DictReader(f)]
  except (OSError, ValueError):
    raise common.UsageError(f"{csv_path}: cannot resume without a readable CSV and "
                            f"{_settings_path(csv_path)} (pass --overwrite to start again)"
                            ) from None
  differ = [k for k in settings if before.get(k) != settings[k]]
  if differ:
    raise common.UsageError(
        f"{csv_path}: written with other settings ({', '.join(differ)}: "
        f"{', '.join(str(before.get(k)) for k in differ)}); pass --overwrite to start again")
  return rows


def _batches(pairs: list[datasets.Pair], indices: Sequence[int], size: int
             ) -> Iterator[list[tuple[int, np.ndarray, np.ndarray]]]:
  """Reads the pairs at `indices` (cropped) and groups runs of same-shape images into
  batches of at most `size`: lists of (index, input, ground truth)."""
  batch = []
  for i in indices:
    image = centre_crop(common.read(pairs[i].input), _CROP.value)
    gt = centre_crop(common.read(pairs[i].gt), _CROP.value)
    if gt.shape[:2] != image.shape[:2]:
      raise common.UsageError(f"{pairs[i].gt}: ground truth is {gt.shape[1]}×{gt.shape[0]}, "
                              f"the input {image.shape[1]}×{image.shape[0]}")
    if batch and (len(batch) == size or batch[0][1].shape != image.shape):
      yield batch
      batch = []
    batch.append((i, image, gt))
  if batch:
    yield batch


def _score(method: common.Method, pairs: list[datasets.Pair], indices: Sequence[int], size: int,
           on_batch: Callable[[list[tuple[int, dict]]], None]
           ) -> tuple[list[tuple[int, dict]], list]:
  """Solves and scores the pairs at `indices`: ((index, CSV row) pairs, grid panels).

  on_batch(rows so far) is called after every batch.
  """
  rows, grid = [], []
  key = jax.random.key(common.SEED.value)
  with tqdm.tqdm(total=len(indices), unit="img", disable=None) as bar:  # closed before errors
    for batch in _batches(pairs, indices, size):
      if not _score_batch(method, pairs, batch, key, rows, grid, bar):
        break
      on_batch(rows)
  return rows, grid


def _score_batch(method: common.Method, pairs: list[datasets.Pair],
                 batch: list[tuple[int, np.ndarray, np.ndarray]], key: jax.Array,
                 rows: list[tuple[int, dict]], grid: list, bar: tqdm.tqdm) -> bool:
  """Solves and scores one batch, adding to `rows` and `grid`; False if Ctrl-C stopped it."""
  for i, image, _ in batch:
    method.check_size(pairs[i].input, image, len(batch))
  # Each image's key depends only on its index in the dataset, not on batches or processes.
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(np.asarray([b[0] for b in batch]))
  names = ", ".join(pairs[i].name for i, _, _ in batch)
  start = time.perf_counter()
  last, _, interrupted = common.drive(method, np.stack([b[1] for b in batch]), keys,
                                      desc=names)
  seconds = (time.perf_counter() - start) / len(batch)
  if interrupted:
    tqdm.tqdm.write(f"stopped by Ctrl-C during {names}; scores of the finished images follow")
    return False
  for j, (i, image, gt) in enumerate(batch):
    name = pairs[i].name
    out = image_io.quantize(last.outputs["output"][j])
    if _OUTPUT_DIR.value:
      try:
        image_io.write_png(os.path.join(_OUTPUT_DIR.value, f"{name}.png"), out)
      except image_io.ImageError as e:
        raise common.UsageError(str(e)) from None
    scored, ref = common.same_channels(out, gt)
    row = {
        "image": name,
        "psnr": round(float(metrics.psnr(scored, ref)), 4),
        "ssim": round(common.ssim(scored, ref), 5),
        "input_psnr": round(float(metrics.psnr(
            *common.same_channels(image_io.quantize(image), gt))), 4),
        "seconds": round(seconds, 3),
    }
    rows.append((i, row))
    if len(grid) < _GRID_IMAGES.value:
      grid.append((name, [("input", image), ("ground truth", gt), (method.name, out)]))
    tqdm.tqdm.write(f"{name}: PSNR {row['psnr']:.2f} dB (input {row['input_psnr']:.2f} dB)"
                    f"  SSIM {row['ssim']:.4f}  {seconds:.1f} s")
    bar.update(1)
  return True


def run() -> None:
  if not _DATA_DIR.value:
    raise common.UsageError("--data_dir is required")
  if _CROP.value is not None and _CROP.value < 8:
    raise common.UsageError(f"--crop={_CROP.value}: must be ≥ 8")
  if _LIMIT.value is not None and _LIMIT.value < 1:
    raise common.UsageError(f"--limit={_LIMIT.value}: must be ≥ 1")
  if _FIGURES_DIR.value and _GRID_IMAGES.value < 1:
    raise common.UsageError(f"--grid_images={_GRID_IMAGES.value}: must be ≥ 1")
  method = common.build_method()
  if note := common.ignored_flags_note():
    print(note)
  size = common.batch_size(_BATCH_SIZE.value, method)
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
  if _RESUME.value and _OVERWRITE.value:
    raise common.UsageError("--resume and --overwrite: pass one of them")
  if os.path.exists(csv_path) and not (_OVERWRITE.value or _RESUME.value):
    raise common.UsageError(f"{csv_path}: already exists (pass --resume to keep its rows and "
                            "score the rest, or --overwrite to replace it)")
  stem = os.path.join(_FIGURES_DIR.value or "", f"{method.name}_{layout}")
  for path in [csv_path, _settings_path(csv_path),
               *([os.path.join(_OUTPUT_DIR.value, f"{pairs[0].name}.png")]
                 if _OUTPUT_DIR.value else []),
               *([f"{stem}_grid.png", f"{stem}_psnr.png"] if _FIGURES_DIR.value else [])]:
    common.check_writable(path)
  settings = {"method": method.describe(), "data_dir": os.path.abspath(_DATA_DIR.value),
              "split": _SPLIT.value, "crop": _CROP.value, "seed": common.SEED.value}
  finished = _finished_rows(csv_path, settings) if _RESUME.value else []
  order = {pair.name: i for i, pair in enumerate(pairs)}
  # Rows of images this run would not score (another --subset or --limit) are kept too.
  finished = [(order.get(row["image"], len(pairs)), row) for row in finished]
  done = {row["image"] for _, row in finished}
  todo = [i for i, pair in enumerate(pairs) if pair.name not in done]
  if done:
    print(f"{csv_path}: keeping {len(done)} scored images, {len(todo)} to go")
  mine = [todo[i] for i in distributed.share(len(todo))]
  print(f"{settings['method']} on {len(todo)} {layout} images from {_DATA_DIR.value}"
        f"{distributed.describe_share(len(todo))}")

  def by_index(rows: list[tuple[int, dict]]) -> list[dict]:
    return [row for _, row in sorted(rows, key=lambda r: r[0])]

  def save_so_far(rows: list[tuple[int, dict]]) -> None:
    # One process writes as it goes, so that a crash keeps the finished images for
    # --resume; several processes' rows are merged once at the end.
    if jax.process_count() == 1:
      _write_csv(csv_path, by_index(finished + rows), settings)

  # Several processes: each scores its share, then process 0 writes all the rows.
  rows, grid = distributed.together(lambda: _score(method, pairs, mine, size, save_so_far))
  scored = len(rows)
  everyone = [tuple(r) for rows_of_one in distributed.gather(rows) for r in rows_of_one]
  rows = by_index(finished + everyone)
  if not distributed.is_main():
    print(f"process {jax.process_index()}: scored {scored} images; process 0 writes {csv_path}")
    return
  if not rows:
    raise common.UsageError("no image finished: nothing to write")
  _write_csv(csv_path, rows, settings)
  if _FIGURES_DIR.value:
    written = [f"{stem}_psnr.png"]
    try:
      figures.psnr_chart(written[0], [r["image"] for r in rows],
                         {"input": [r["input_psnr"] for r in rows],
                          method.name: [r["psnr"] for r in rows]})
      if grid:  # process 0's own images; none when --resume had scored them all
        figures.results_grid(f"{stem}_grid.png", grid)
        written.insert(0, f"{stem}_grid.png")
    except (image_io.ImageError, OSError) as e:
      raise common.UsageError(str(e)) from None
    print("wrote " + ", ".join(written))
  mean = {k: float(np.mean([r[k] for r in rows]))
          for k in ("psnr", "ssim", "input_psnr", "seconds")}
  print(f"{method.name} on {len(rows)} images: PSNR {mean['psnr']:.2f} dB  SSIM {mean['ssim']:.4f}"
        f"  (input {mean['input_psnr']:.2f} dB)  {mean['seconds']:.2f} s/image")
  print(f"wrote {csv_path}")


def main(argv: list[str] | None = None) -> None:
  """The command line: parses argv (default sys.argv), runs, exits (0, 2 on bad input)."""
  app.run(common.main(run, common.size_client_pool, distributed.initialize), argv=argv,
          flags_parser=common.parse_flags)


if __name__ == "__main__":
  main()
