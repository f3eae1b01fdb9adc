"""Times DIP-ℓ0's two jitted steps (one Adam step, one v/w/average update) per image size.

  python -m benchmarks.dip_l0_benchmark [--channels=128] [--sizes=128x128,256x256,512x384]
      [--repeats=3] [--json=results/dip_l0_benchmark.json]

Prints compile time, seconds per Adam step and per outer iteration (inner_iters Adam steps
plus the update) and the implied seconds for a whole solve; writes JSON. Medians of
--repeats calls. Catches regressions of the time per step.
"""

from absl import app, flags

from benchmarks import measure, timing
from launch import cli

_CHANNELS = flags.DEFINE_integer("channels", 128, "Generator channels per scale.", lower_bound=1)
_SIZES = flags.DEFINE_list("sizes", ["128x128", "256x256", "512x384"], "W×H sizes.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls (the median is reported).",
                                lower_bound=1)
_JSON = flags.DEFINE_string("json", "results/dip_l0_benchmark.json", "Where to write results.")


def run():
  sizes = timing.parse_sizes(_SIZES.value)
  timing.check_outputs(_JSON.value)
  config = measure.dip_l0_config(_CHANNELS.value)
  rows = []
  print(f"{'size':>9} {'compile s':>9} {'adam s':>7} {'update s':>8} {'outer s':>8} "
        f"{'solve min':>9}")
  for w, h in sizes:
    steps = measure.dip_l0_steps(w, h, config, _REPEATS.value)
    row = {"width": w, "height": h, "channels": _CHANNELS.value, "compile_s": steps["compile_s"],
           "adam_step_s": steps["adam_step_s"], "update_s": steps["update_s"],
           "outer_iteration_s": steps["outer_iteration_s"], "solve_s": steps["solve_s"]}
    rows.append(row)
    print(f"{w:>4}×{h:<4} {row['compile_s']:9.1f} {row['adam_step_s']:7.3f} "
          f"{row['update_s']:8.3f} {row['outer_iteration_s']:8.2f} {row['solve_s'] / 60:9.1f}")
  timing.write_json(_JSON.value, {"machine": timing.machine(), "rows": rows})


if __name__ == "__main__":
  app.run(cli.main(run), flags_parser=cli.parse_flags)
