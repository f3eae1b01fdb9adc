"""Times every method at every size: compile, per step, per solve and peak memory.

  python -m benchmarks.suite [--sizes=320x240,512x384,640x480,1280x720]
      [--methods=l0_fft,l0_rf,dip,dip_l0,fan2018] [--repeats=3] [--channels=128]
      [--json=benchmarks/results/suite.json] [--plot=benchmarks/results/suite.png] [--quick]

Each (method, size) cell runs in a fresh Python process, so its peak resident set size
(`ru_maxrss`, which includes the interpreter, JAX and the compiler) is its own and does not
carry over from the cells before it. Per cell:

  l0_fft   Xu et al.'s FFT solver, jitted; a solve is measured, a step is its mean β iteration.
  l0_rf    Region Fusion (Numba; "compile" is Numba's compile or cache load on an 8×8 crop);
           a solve is measured, a step is its mean pass (K + 1 passes).
  dip      the launcher's jitted Adam step; a solve is EXTRAPOLATED as 3000 steps.
  dip_l0   the launcher's jitted Adam step and v/w/average update; a solve is EXTRAPOLATED
           as 100 outer iterations × (25 Adam steps + 1 update), the paper's NKS settings.
  fan2018  Fan et al.'s network, randomly initialised, one jitted inference pass (a step and a
           solve); skipped with a note while `dipl0_jax.fan_network` does not import.

Times are medians of --repeats calls; compile time is apart. Prints a table, writes JSON
(with the machine, its load average before, during and after, jax/jaxlib versions and
XLA_FLAGS) and a log-log plot of seconds per solve against pixels.
"""

import json
import os
import re
import subprocess
import sys
import time

from absl import app, flags

from launch import cli

METHODS = ("l0_fft", "l0_rf", "dip", "dip_l0", "fan2018")
GENERATOR_METHODS = ("dip", "dip_l0")
QUICK = {"sizes": ["64x48", "96x64"], "channels": 16, "repeats": 1}

_SIZES = flags.DEFINE_list("sizes", ["320x240", "512x384", "640x480", "1280x720"],
                           "W×H sizes.")
_METHODS = flags.DEFINE_list("methods", list(METHODS), f"Methods, of {', '.join(METHODS)}.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per cell (the median is reported).",
                                lower_bound=1)
_CHANNELS = flags.DEFINE_integer("channels", 128, "dip/dip_l0: generator channels per scale.",
                                 lower_bound=1)
_LAMBDA = flags.DEFINE_float("lambda_", 0.02, "l0_fft/l0_rf: λ.")
_KAPPA = flags.DEFINE_float("kappa", 2.0, "l0_fft: κ.")
_PASSES = flags.DEFINE_integer("num_passes", 100, "l0_rf: Region Fusion passes K.", lower_bound=1)
_JSON = flags.DEFINE_string("json", "benchmarks/results/suite.json", "Where to write the JSON.")
_PLOT = flags.DEFINE_string("plot", "benchmarks/results/suite.png",
                            "Where to write the plot ('' for none).")
_QUICK = flags.DEFINE_bool(
    "quick", False, f"Smoke mode: {QUICK} unless those flags are given explicitly.")
_CELL = flags.DEFINE_string("cell", None, "Internal: run one METHOD:WxH cell and print JSON.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MARK = "SUITE_CELL_JSON "


def _setting(name: str):
  """A flag's value, or the --quick value when --quick is on and the flag was not given."""
  flag = flags.FLAGS[name]
  return QUICK[name] if _QUICK.value and name in QUICK and not flag.present else flag.value


def _run_cell(method: str, width: int, height: int) -> dict:
  """Measures one cell in this process (the child side of `_cell`)."""
  from benchmarks import measure, timing

  repeats, channels = _setting("repeats"), _setting("channels")
  row = {"method": method, "width": width, "height": height, "pixels": width * height,
         "load_average": os.getloadavg()}
  image = timing.test_image(width, height)
  row["rss_before_bytes"] = timing.peak_rss_bytes()  # interpreter, imports, input
  if method == "l0_fft":
    r = measure.l0_fft_solve(image, lam=_LAMBDA.value, kappa=_KAPPA.value, repeats=repeats)
    row.update(compile_s=r["compile_s"], solve_s=r["solve_s"], step="β iteration (mean)",
               steps_per_solve=r["iterations"], step_s=r["solve_s"] / r["iterations"],
               solve="measured: l0_smooth_host", jit_solve_s=r["jit_solve_s"])
  elif method == "l0_rf":
    r = measure.region_fusion_solve(image, lam=_LAMBDA.value, num_passes=_PASSES.value,
                                    repeats=repeats)
    row.update(compile_s=r["compile_s"], solve_s=r["solve_s"], step="pass (mean)",
               steps_per_solve=r["passes"], step_s=r["solve_s"] / r["passes"],
               solve="measured")
  elif method == "dip":
    r = measure.dip_steps(width, height, measure.dip_config(channels), repeats)
    row.update(channels=channels, compile_s=r["compile_s"], step="Adam step",
               step_s=r["adam_step_s"], steps_per_solve=r["steps"], solve_s=r["solve_s"],
               solve=f"extrapolated: {r['steps']} × step")
  elif method == "dip_l0":
    r = measure.dip_l0_steps(width, height, measure.dip_l0_config(channels), repeats)
    row.update(channels=channels, compile_s=r["compile_s"], step="Adam step",
               step_s=r["adam_step_s"], update_s=r["update_s"],
               outer_iteration_s=r["outer_iteration_s"],
               steps_per_solve=r["outer_iters"] * r["inner_iters"], solve_s=r["solve_s"],
               solve=(f"extrapolated: {r['outer_iters']} × ({r['inner_iters']} × step "
                      "+ update)"))
  elif method == "fan2018":
    try:
      r = measure.fan_forward(image, repeats)
    except ImportError as e:
      return {**row, "skipped": f"dipl0_jax.fan_network does not import: {e}"}
    row.update(compile_s=r["compile_s"], solve_s=r["solve_s"], step="forward pass",
               steps_per_solve=1, step_s=r["solve_s"], solve="measured")
  else:
    raise ValueError(f"unknown method {method!r}")
  row["peak_rss_bytes"] = timing.peak_rss_bytes()
  return row


def _cell(method: str, size: str) -> dict:
  """Runs one cell in a fresh Python process and returns its row (or the error)."""
  argv = [sys.executable, "-m", "benchmarks.suite", f"--cell={method}:{size}",
          f"--repeats={_setting('repeats')}", f"--channels={_setting('channels')}",
          f"--lambda_={_LAMBDA.value!r}", f"--kappa={_KAPPA.value!r}",
          f"--num_passes={_PASSES.value}"]
  start = time.perf_counter()
  proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
  lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK)]
  if proc.returncode == 0 and lines:
    row = json.loads(lines[-1][len(_MARK):])
  else:
    from benchmarks import timing

    w, h = timing.parse_size(size)
    lines = (proc.stderr or proc.stdout).strip().splitlines() or [""]
    errors = [ln for ln in lines if re.match(r"[\w.]+(Error|Exception|Interrupt)\b", ln)]
    how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
           else f"exit code {proc.returncode}")
    row = {"method": method, "width": w, "height": h, "pixels": w * h,
           "error": f"{how}: {(errors or lines)[-1]}"}
  row["cell_wall_s"] = time.perf_counter() - start
  return row


def _duration(seconds: float) -> str:
  if seconds < 120:
    return f"{seconds:.3g} s"
  if seconds < 7200:
    return f"{seconds / 60:.3g} min"
  return f"{seconds / 3600:.3g} h"


HEADER = (f"{'method':<8} {'size':>9} {'compile s':>9} {'s / step':>9} {'step':<19} "
          f"{'per solve':>10}  {'solve is':<41} {'peak RSS':>9}")


def _format(row: dict) -> str:
  size = f"{row['width']}×{row['height']}"
  if "error" in row or "skipped" in row:
    return f"{row['method']:<8} {size:>9}  {row.get('error') or 'skipped: ' + row['skipped']}"
  rss = f"{row['peak_rss_bytes'] / 2**20:.0f} MiB"
  return (f"{row['method']:<8} {size:>9} {row['compile_s']:9.2f} {row['step_s']:9.3g} "
          f"{row['step']:<19} {_duration(row['solve_s']):>10}  {row['solve']:<41} {rss:>9}")


def _plot(rows: list[dict], path: str, title: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 5))
  for method in METHODS:
    done = sorted((r for r in rows if r["method"] == method and "solve_s" in r),
                  key=lambda r: r["pixels"])
    if not done:
      continue
    extrapolated = done[0]["solve"].startswith("extrapolated")
    label = f"{method} (extrapolated from step time)" if extrapolated else method
    ax.plot([r["pixels"] for r in done], [r["solve_s"] for r in done], "o--" if extrapolated
            else "o-", label=label)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("pixels")
  ax.set_ylabel("seconds per solve")
  ax.set_title(title, fontsize=9)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  print(f"wrote {path}")


def run():
  if _CELL.value:
    method, size = _CELL.value.split(":")
    from benchmarks import timing

    w, h = timing.parse_size(size)
    print(_MARK + json.dumps(_run_cell(method, w, h)), flush=True)
    return
  from benchmarks import timing

  timing.check_choices("methods", _METHODS.value, METHODS)
  sizes = _setting("sizes")
  timing.parse_sizes(sizes)  # fail before the first cell, not in it
  timing.check_l0(_LAMBDA.value, _KAPPA.value)
  timing.check_outputs(_JSON.value, _PLOT.value)
  machine = timing.machine()
  settings = {"sizes": sizes, "methods": _METHODS.value, "repeats": _setting("repeats"),
              "channels": _setting("channels"), "scales": 5, "lambda": _LAMBDA.value,
              "kappa": _KAPPA.value, "num_passes": _PASSES.value, "quick": _QUICK.value}
  print(f"{machine['platform']}, {machine['cpu_count']} CPUs, load {machine['load_average']}, "
        f"jax {machine['jax']}, XLA_FLAGS={machine['xla_flags']!r}")
  print(f"medians of {settings['repeats']}; dip/dip_l0 with {settings['channels']}-channel "
        "generators; each cell in a fresh process")
  print(HEADER, flush=True)
  rows = []
  for method in _METHODS.value:
    for size in sizes:
      rows.append(_cell(method, size))
      print(_format(rows[-1]), flush=True)
  machine["load_average_after"] = os.getloadavg()
  print("dip and dip_l0 solves are extrapolated from the step times (dip: 3000 Adam steps; "
        "dip_l0: 100 outer × (25 Adam steps + update)); l0 and fan2018 solves are measured.")
  timing.write_json(_JSON.value, {"machine": machine, "settings": settings, "rows": rows})
  if _PLOT.value:
    _plot(rows, _PLOT.value, f"{machine['cpu_count']} CPUs, load {machine['load_average'][0]:.1f}"
          f", dip/dip_l0 {settings['channels']} channels")
  failed = [f"{r['method']} {r['width']}×{r['height']}" for r in rows if "error" in r]
  if failed:
    print(f"error: {len(failed)} cell(s) failed: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(cli.main(run), flags_parser=cli.parse_flags)
