"""PSNR against seconds per image for DIP-ℓ0 presets, on full-size NKS validation images.

  python -m benchmarks.time_to_quality --data_dir=../shared/data/nks [--presets=fast]
      [--seconds=120] [--limit=N] [--score_every=1] [--json=...] [--plot=...]

Runs each preset on the first validation image of every structure that has ground truth
(`launch.datasets.one_per_structure`, the first --limit of them) and scores the reported
output (the 8-bit `admm.finish` of the moving average: enlarged to full size when the preset
solves at a lower resolution, and refined when it has a finishing step) after every ADMM
iteration. Nothing in an ADMM iteration depends on the planned number of iterations, so the
score after iteration k is exactly what `--outer_iters=k` gives: one run traces the whole
curve (every --score_every-th point of it). The seconds of iteration k are the solve's up to
k plus the median of the image's finishing steps (the finishing steps of earlier iterations
and the scoring are not counted; adding each point's own finishing time, which varies, made a
later point's seconds fall below an earlier one's now and then). A run stops at the preset's
iteration count or when its seconds pass --seconds.

Seconds exclude compilation, which happens once per image size and preset and is then kept
in the launchers' persistent compilation cache (`launch.cli.use_compilation_cache`): the first
iteration's time, minus the second's, is reported apart as the compile time (the finishing
step is compiled before the clock starts). A mark past --seconds has no score (blank in the
table, null in the JSON). Ctrl-C keeps the images that finished: their table, JSON and plot
are written ("interrupted": true) before the run ends with "aborted".
"""

import json
import os
import sys
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks import timing
from dipl0_jax import admm, image_io, metrics
from launch import cli, datasets

_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data/nks", "NKS dataset folder.")
_PRESETS = flags.DEFINE_list("presets", ["fast"], "DIP-ℓ0 presets (admm.PRESETS).")
_SECONDS = flags.DEFINE_float("seconds", 120.0, "Most solve seconds per image and preset.")
_LIMIT = flags.DEFINE_integer("limit", None, "Only the first N images of the subset.",
                              lower_bound=1)
_EVERY = flags.DEFINE_integer("score_every", 1, "Finish and score every N-th iteration (and "
                              "the last): the finishing steps are not timed, but take time.",
                              lower_bound=1)
_MARKS = flags.DEFINE_list("marks", ["15", "30", "60", "90", "120"],
                           "Seconds at which the table reports the mean PSNR.")
_JSON = flags.DEFINE_string("json", "benchmarks/results/time_to_quality.json", "JSON output.")
_PLOT = flags.DEFINE_string("plot", "benchmarks/results/time_to_quality.png",
                            "PNG output ('' for none).")


def _curve(config: admm.DipL0Config, image: np.ndarray, gt: np.ndarray, budget: float,
           every: int = 1) -> dict:
  """Solve times (compile excluded) and PSNRs after every `every`-th iteration of one image."""
  y = admm.shrink(image[None], config.downsample)
  keys = jax.random.key(0)[None]
  start_state = admm.init_batch(keys, y, admm.IDENTITY, config)
  jax.block_until_ready(_finish(image, y[0], config))  # compiled before the clock starts
  ends, scored, finishes, psnrs = [], [], [], []
  solve_seconds, resumed = 0.0, time.perf_counter()
  for state, _ in admm.iterate(start_state, y, admm.IDENTITY, config):
    jax.block_until_ready(state)  # the steps run asynchronously
    solved = time.perf_counter()
    solve_seconds += solved - resumed
    ends.append(solve_seconds)
    finish = float(np.median(finishes)) if finishes else 0.0
    last = len(ends) == config.outer_iters or (
        len(ends) > 1 and ends[-1] + finish - _compile_seconds(ends) > budget)
    if len(ends) % every == 0 or last:
      out = np.asarray(_finish(image, state.avg[0], config))
      scored.append(len(ends))
      finishes.append(time.perf_counter() - solved)
      psnrs.append(float(metrics.psnr(image_io.quantize(out), gt)))
    resumed = time.perf_counter()
    if last:
      break
  compile_s = _compile_seconds(ends) if len(ends) > 1 else 0.0
  finish = float(np.median(finishes))
  return {"compile_seconds": round(compile_s, 2), "iterations": scored,
          "seconds": [round(ends[k - 1] + finish - compile_s, 3) for k in scored],
          "finish_seconds": [round(f, 3) for f in finishes], "psnr": psnrs,
          "input_psnr": float(metrics.psnr(image_io.quantize(image), gt))}


_finish = jax.jit(admm.finish, static_argnums=2)  # called after every iteration


def _compile_seconds(ends: list[float]) -> float:
  """Iteration 1 includes compilation: its time minus iteration 2's, clamped at 0 (with the
  program already in the persistent cache the difference is noise)."""
  return max(ends[0] - (ends[1] - ends[0]), 0.0)


def _mean_at(curves: dict, t: float, budget: float) -> float | None:
  """Mean over the images of `_at`, or None for a mark past the budget (never reached)."""
  return float(np.mean([_at(c, t) for c in curves.values()])) if t <= budget else None


def _pairs(data_dir: str, limit: int | None) -> list:
  """The subset's (input, ground truth) pairs, or UsageError when there are none."""
  try:
    pairs = datasets.one_per_structure(datasets.find_pairs(data_dir)[1])
  except (OSError, ValueError) as e:
    raise cli.UsageError(str(e)) from None
  if not pairs:
    raise cli.UsageError(f"{data_dir}: no validation image with ground truth")
  return pairs[:limit] if limit is not None else pairs


def _at(curve: dict, t: float) -> float:
  """PSNR of the last iteration finished by t seconds (the input's before the first)."""
  done = [p for s, p in zip(curve["seconds"], curve["psnr"], strict=True) if s <= t]
  return done[-1] if done else curve["input_psnr"]


def run():
  if not _SECONDS.value > 0:
    raise cli.UsageError(f"--seconds={_SECONDS.value:g}: must be > 0")
  timing.check_choices("presets", _PRESETS.value, tuple(admm.PRESETS))
  marks = timing.parse_numbers(_MARKS.value, "marks", float, low=0)
  pairs = _pairs(_DATA_DIR.value, _LIMIT.value)
  timing.check_outputs(_JSON.value, _PLOT.value)
  cli.use_compilation_cache()
  results = {"machine": timing.machine(), "images": [p.name for p in pairs],
             "seconds_budget": _SECONDS.value, "presets": {}}
  try:
    for preset in _PRESETS.value:
      curves = results["presets"].setdefault(preset, {"curves": {}})["curves"]
      for pair in pairs:
        image, gt = image_io.read_image(pair.input), image_io.read_image(pair.gt)
        curve = _curve(admm.PRESETS[preset], image, gt, _SECONDS.value, _EVERY.value)
        curves[pair.name] = curve
        print(f"{preset} {pair.name} ({image.shape[1]}×{image.shape[0]}): compile "
              f"{curve['compile_seconds']:.1f} s, {curve['iterations'][-1]} iterations in "
              f"{curve['seconds'][-1]:.1f} s (finishing step "
              f"{np.median(curve['finish_seconds']):.2f} s), PSNR {curve['input_psnr']:.2f} -> "
              f"{curve['psnr'][-1]:.2f} dB", flush=True)
  except KeyboardInterrupt:
    # Keep what finished: a full run takes an hour, and each image's curve is complete.
    results["interrupted"] = True
    results["presets"] = {k: r for k, r in results["presets"].items() if r["curves"]}
    if not results["presets"]:
      raise
  _report(results, marks)
  if results.get("interrupted"):
    print(f"interrupted: {_JSON.value} holds the curves of the images that finished",
          file=sys.stderr)
    raise KeyboardInterrupt


def _report(results: dict, marks: list[float]) -> None:
  """Adds each preset's mean PSNR at the marks, prints the table, writes the JSON and plot."""
  for r in results["presets"].values():
    r["mean_psnr_at"] = {m: _mean_at(r["curves"], m, results["seconds_budget"]) for m in marks}
  results["machine"]["load_after"] = os.getloadavg()
  print("\n| preset | images | " + " | ".join(f"{m:g} s" for m in marks) + " |")
  print("|---|---|" + "---|" * len(marks))
  for preset, r in results["presets"].items():
    cells = ["" if r["mean_psnr_at"][m] is None else f"{r['mean_psnr_at'][m]:.2f}" for m in marks]
    print(f"| {preset} | {len(r['curves'])} | " + " | ".join(cells) + " |")
  inputs = np.mean([c["input_psnr"] for r in results["presets"].values()
                    for c in r["curves"].values()])
  print(f"(input: {inputs:.2f} dB)")
  with image_io.atomic_file(_JSON.value, "w") as f:
    json.dump(results, f, indent=1)
  if _PLOT.value:
    _plot(results, inputs)
  print(f"wrote {', '.join(p for p in (_JSON.value, _PLOT.value) if p)}")


def _plot(results: dict, inputs: float) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4))
  for preset, r in results["presets"].items():
    end = max(c["seconds"][-1] for c in r["curves"].values())
    ts = np.linspace(0, end, 200)
    ax.plot(ts, [np.mean([_at(c, t) for c in r["curves"].values()]) for t in ts],
            label=f"dip_l0 --preset={preset}")
  ax.axhline(inputs, color="grey", ls=":", label="input")
  ax.axhline(35.0, color="k", ls="--", lw=0.8, label="35.0 dB (paper)")
  ax.set_xlabel("solve seconds per image (compilation excluded)")
  ax.set_ylabel("mean PSNR (dB)")
  ax.legend()
  fig.tight_layout()
  with image_io.atomic_file(_PLOT.value) as f:
    fig.savefig(f, format="png", dpi=120)
  plt.close(fig)


if __name__ == "__main__":
  app.run(cli.main(run), flags_parser=cli.parse_flags)
