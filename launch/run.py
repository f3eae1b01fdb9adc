"""Smooths images: `python -m launch.run --method=dip_l0 --image=IN --output=OUT.png`.

With no --image it smooths the picture the package ships. --image may be repeated and may
name folders; images of the same size are solved together as a batch. Prints the time
and, with --gt, PSNR/SSIM of the 8-bit output; iterative methods show a progress bar, write a
JSON log of per-chunk metrics beside the output, and stop cleanly on Ctrl-C after writing the
current result. With --num_processes > 1 (see launch/distributed.py) each process solves
every num_processes-th input.
"""

import collections
import hashlib
import json
import os
import shutil
import time

import jax
import numpy as np
from absl import app, flags

from dipl0_jax import checkpoint, image_io, metrics
from launch import apps, common, datasets, distributed, figures

_IMAGE = flags.DEFINE_multi_string(
    "image", [image_io.EXAMPLE_IMAGE], "Input image(s) or folder(s) (PNG/JPEG/BMP/TIFF).")
_OUTPUT = flags.DEFINE_string(
    "output", None, "Output PNG for a single input (default: <output_dir>/<name>_<method>.png).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "results", "Folder for outputs of several inputs.")
_GT = flags.DEFINE_string("gt", None, "Ground-truth image (single input): print PSNR/SSIM.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing output files.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Most same-size images solved at once, split over the devices "
    "(default: the number of this process's devices; on CPU a larger batch is solved image "
    "by image, no faster per image; l0, with either solver, solves a batch on one thread "
    "per core and defaults to at least the core count).")
_FIGURE = flags.DEFINE_string(
    "figure", None, "Write a side-by-side PNG (input, result, detail input − result, v) here, "
    "and PATH_convergence.png from the run's log; a folder when there are several inputs.")
_CHECKPOINT_DIR = flags.DEFINE_string(
    "checkpoint_dir", None, "dip/dip_l0: save the full solver state here after every chunk.")
_RESUME = flags.DEFINE_bool(
    "resume", False, "Continue from the newest checkpoint in --checkpoint_dir.")


def _inputs() -> list[str]:
  paths = []
  for item in _IMAGE.value:
    if os.path.isdir(item):
      found = datasets.images_in(item)
      if not found:
        raise common.UsageError(f"{item}: folder holds no images")
      paths.extend(found)
    else:
      paths.append(item)
  return paths


def _outputs(paths: list[str], method: str) -> list[str]:
  if _OUTPUT.value:
    if len(paths) > 1:
      raise common.UsageError("--output names one file; use --output_dir for several inputs")
    return [_OUTPUT.value]
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  same = [p for p, s in zip(paths, stems, strict=True) if stems.count(s) > 1]
  if same:
    raise common.UsageError(f"{', '.join(same)}: inputs that share a file name; their outputs "
                            "would collide (smooth them in separate runs)")
  return [os.path.join(_OUTPUT_DIR.value, f"{s}_{method}.png") for s in stems]


def _companion(output: str, suffix: str) -> str:
  """OUT.png -> OUT<suffix> (e.g. OUT_v.png, OUT_log.json)."""
  return os.path.splitext(output)[0] + suffix


def _write_json(path: str, payload) -> None:
  with image_io.atomic_file(path, "w") as f:
    json.dump(payload, f, indent=1)


def _plan() -> tuple[common.Method, list[str], list[str], list[np.ndarray], np.ndarray | None]:
  """Checks the flags and inputs: (method, input paths, output paths, images, ground truth)."""
  notes = apps.prepare()  # before the method: --app=texture may set its defaults
  method = common.build_method()
  notes += apps.check_method(method.settings)
  notes += [note] if (note := common.ignored_flags_note()) else []
  size = common.batch_size(_BATCH_SIZE.value, method)
  if _CHECKPOINT_DIR.value and jax.process_count() > 1:
    raise common.UsageError("--checkpoint_dir works with one process only (--num_processes=1)")
  paths = _inputs()
  outputs = _outputs(paths, method.name)
  written = _written(method, paths, outputs)
  # A resumed run continues the log of the run it resumes.
  logs = {_companion(o, "_log.json") for o in outputs} if _RESUME.value else set()
  common.check_outputs(written, _OVERWRITE.value, logs)
  if _GT.value and len(paths) > 1:
    raise common.UsageError("--gt goes with a single --image")
  images = [common.read(p) for p in paths]
  sizes = collections.Counter(image.shape for image in images)
  for path, image in zip(paths, images, strict=True):
    method.check_size(path, image, min(sizes[image.shape], size))
  if method.init is not None:  # a generator method: --task applies
    for shape in sizes:
      common.check_task(shape)
  gt = common.read(_GT.value) if _GT.value else None
  if gt is not None and gt.shape[:2] != _expected_gt_size(images[0]):
    raise common.UsageError(f"{_GT.value}: ground truth is {gt.shape[1]}×{gt.shape[0]}, "
                            f"the result will be {images[0].shape[1]}×{images[0].shape[0]}")
  for note in notes:
    print(note)
  return method, paths, outputs, images, gt


def _written(method: common.Method, paths: list[str], outputs: list[str]) -> list[str]:
  """Every file the run writes: outputs, their companions (other outputs, --app images, the
  log of an iterative method) and the --figure files."""
  iterative = method.init is not None
  files = []
  for path, out in zip(paths, outputs, strict=True):
    files.append(out)
    files += [_companion(out, f"_{name}.png") for name in (*method.images, *apps.outputs())]
    if iterative:
      files.append(_companion(out, "_log.json"))
    if _FIGURE.value:
      figure = _figure_path(path, method.name, len(paths))
      files += [figure, _companion(figure, "_convergence.png")] if iterative else [figure]
  return files


def run() -> None:
  # With several processes all check everything before any writes, and each solves its share.
  method, paths, outputs, images, gt = distributed.together(_plan)
  mine = distributed.share(len(paths))
  print(f"{method.describe()} on {len(paths)} image(s){distributed.describe_share(len(paths))}")
  distributed.together(lambda: _solve(method, paths, outputs, images, gt, mine))
  if jax.process_count() > 1 and distributed.is_main():
    print(f"{len(paths)} image(s) done by {jax.process_count()} processes")


def _solve(method: common.Method, paths: list[str], outputs: list[str],
           images: list[np.ndarray], gt: np.ndarray | None, mine: range) -> None:
  """Solves the images at indices `mine` in batches of one size and writes their results."""
  groups = collections.defaultdict(list)
  for i in mine:
    groups[images[i].shape].append(i)
  base_key = jax.random.key(common.SEED.value)
  size = common.batch_size(_BATCH_SIZE.value, method)
  for shape, members in groups.items():
    for start in range(0, len(members), size):
      batch = members[start: start + size]
      # Each image's key depends only on its position in the input list, not on batching.
      keys = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(np.asarray(batch))
      stack = np.stack([images[i] for i in batch])
      gt_stack = None if gt is None else gt[None]
      names = ", ".join(os.path.basename(paths[i]) for i in batch)
      ckpt_dir = _checkpoint_dir(method, [paths[i] for i in batch])
      state, log = _restore(ckpt_dir, method, stack, keys)
      t0 = time.perf_counter()

      def after_chunk(last, log, batch=batch, t0=t0, ckpt_dir=ckpt_dir):
        if ckpt_dir and last.state is not None:
          checkpoint.save(ckpt_dir, last.done, last.state,
                          {"settings": method.settings, "log": log})
        for j, i in enumerate(batch):
          _write_log(outputs[i], last, j, log, method, time.perf_counter() - t0)

      last, log, interrupted = common.drive(method, stack, keys, gt=gt_stack, desc=names,
                                            on_chunk=after_chunk, state=state, log=log)
      seconds = log[-1]["seconds"] if log else time.perf_counter() - t0
      extra = apps.apply(stack, last.outputs["output"])
      for j, i in enumerate(batch):
        _save(outputs[i], last, j, log, method, seconds, extra)
        if _FIGURE.value:
          _figures(_figure_path(paths[i], method.name, len(paths)), images[i], last, j,
                   outputs[i])
      status = f"; stopped by Ctrl-C at iteration {last.done}/{last.total}" if interrupted else ""
      print(f"{names} ({shape[1]}×{shape[0]}): time: {seconds:.2f} s (including compilation)"
            f"{status}")
      if gt is not None:
        out, ref = common.same_channels(image_io.quantize(last.outputs["output"][0]), gt)
        print(f"PSNR: {float(metrics.psnr(out, ref)):.2f} dB  "
              f"SSIM: {common.ssim(out, ref):.4f}")
      if interrupted:
        return


def _figure_path(path: str, method: str, num_inputs: int) -> str:
  if num_inputs == 1:
    return _FIGURE.value
  stem = os.path.splitext(os.path.basename(path))[0]
  return os.path.join(_FIGURE.value, f"{stem}_{method}.png")


def _figures(path: str, image: np.ndarray, last: common.Progress, j: int,
             output: str) -> None:
  """The side-by-side panel and, for iterative methods, the convergence plot."""
  result = last.outputs["output"][j]
  panels = [("input", image), ("result", result)]
  if result.shape == image.shape:
    panels.append(("detail (input − result)", figures.detail_layer(image, result)))
  panels += [(name, images[j]) for name, images in last.outputs.items() if name != "output"]
  try:
    figures.side_by_side(path, panels)
    written = [path]
    if last.total > 1:
      with open(_companion(output, "_log.json")) as f:
        log = json.load(f)
      figures.convergence_plot(_companion(path, "_convergence.png"), log)
      written.append(_companion(path, "_convergence.png"))
  except (image_io.ImageError, OSError) as e:
    raise common.UsageError(str(e)) from None
  print("wrote " + ", ".join(written))


def _checkpoint_dir(method: common.Method, batch_paths: list[str]) -> str | None:
  """This batch's checkpoint folder: named by its first image and a hash of all of them."""
  if not _CHECKPOINT_DIR.value or method.init is None:
    return None
  digest = hashlib.sha1("\n".join(os.path.abspath(p) for p in batch_paths).encode())
  stem = os.path.splitext(os.path.basename(batch_paths[0]))[0]
  return os.path.join(_CHECKPOINT_DIR.value, f"{method.name}_{stem}_{digest.hexdigest()[:8]}")


def _restore(ckpt_dir: str | None, method: common.Method, images: np.ndarray,
             keys: jax.Array) -> tuple[object, list[dict]]:
  """The state and log to continue from (--resume), or (None, []) for a fresh start."""
  if ckpt_dir is None:
    if _RESUME.value:
      raise common.UsageError("--resume needs --checkpoint_dir (of dip or dip_l0)")
    return None, []
  if not _RESUME.value:
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # a fresh run replaces old checkpoints
    return None, []
  like = jax.eval_shape(method.init, images, keys)
  restored = checkpoint.restore(ckpt_dir, like)
  if restored is None:
    print(f"no checkpoint in {ckpt_dir}: starting from the beginning")
    return None, []
  state, meta = restored
  if meta["settings"] != json.loads(json.dumps(method.settings)):
    raise common.UsageError(f"{ckpt_dir}: checkpoint was made with other settings "
                            f"({meta['settings']})")
  print(f"resuming from iteration {meta['log'][-1]['iteration']} ({ckpt_dir})")
  return state, meta["log"]


def _expected_gt_size(image: np.ndarray) -> tuple[int, int]:
  return image.shape[:2] if common.TASK.value != "sr" else (
      image.shape[0] * common.SR_FACTOR.value, image.shape[1] * common.SR_FACTOR.value)


def _save(output: str, last: common.Progress, j: int, log: list[dict],
          method: common.Method, seconds: float, extra: dict[str, np.ndarray]) -> None:
  """Writes image j's result to OUT.png, its other outputs and `extra` (the --app images,
  (B, H, W, C) by name) to OUT_<name>.png, and the log of an iterative method."""
  try:
    image_io.write_png(output, last.outputs["output"][j])
    written = [output]
    for name, images in {**last.outputs, **extra}.items():
      if name != "output":
        image_io.write_png(_companion(output, f"_{name}.png"), images[j])
        written.append(_companion(output, f"_{name}.png"))
    if last.total > 1:
      written.append(_write_log(output, last, j, log, method, seconds))
  except (image_io.ImageError, OSError) as e:
    raise common.UsageError(str(e)) from None
  print("wrote " + ", ".join(written))


def _write_log(output: str, last: common.Progress, j: int, log: list[dict],
               method: common.Method, seconds: float) -> str:
  """Writes image j's per-chunk metrics to OUT_log.json (rewritten after every chunk)."""
  path = _companion(output, "_log.json")
  if last.total > 1:
    entries = [{k: (v[j] if isinstance(v, list) else v) for k, v in e.items()} for e in log]
    try:
      _write_json(path, {"method": method.name, "settings": method.settings,
                         "seconds": round(seconds, 3), "iterations": last.done,
                         "total_iterations": last.total, "log": entries})
    except OSError as e:
      raise common.UsageError(f"{path}: cannot write ({e.strerror or e})") from None
  return path


def main(argv: list[str] | None = None) -> None:
  """The command line: parses argv (default sys.argv), runs, exits (0, 2 on bad input)."""
  app.run(common.main(run, common.size_client_pool, distributed.initialize), argv=argv,
          flags_parser=common.parse_flags)


if __name__ == "__main__":
  main()
