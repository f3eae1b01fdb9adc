"""Times DIP-ℓ0's two jitted steps (one Adam step, one v/w/average update) per image size.

  python -m benchmarks.dip_l0_benchmark [--channels=128] [--sizes=256x256,512x384]

Prints compile time, seconds per Adam step and per outer iteration (inner_iters Adam steps
plus the update) and the implied seconds for a whole solve; writes JSON. Medians of
--repeats calls. Catches regressions of the time per step.
"""

import dataclasses
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks import timing
from dipl0_jax import admm, operators
from dipl0_jax import generator as gen

_CHANNELS = flags.DEFINE_integer("channels", 128, "Generator channels per scale.")
_SIZES = flags.DEFINE_list("sizes", ["128x128", "256x256", "512x384"], "W×H sizes.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls (the median is reported).")
_JSON = flags.DEFINE_string("json", "results/dip_l0_benchmark.json", "Where to write results.")


def main(argv):
  del argv
  n = 5
  g = gen.GeneratorConfig(channels_down=(_CHANNELS.value,) * n,
                          channels_up=(_CHANNELS.value,) * n)
  config = dataclasses.replace(admm.PRESETS["nks"], generator=g)
  step_config = dataclasses.replace(config, outer_iters=1, inner_iters=1, inner_unroll=1)
  identity = operators.Identity()
  rows = []
  print(f"{'size':>9} {'compile s':>9} {'adam s':>7} {'update s':>8} {'outer s':>8} "
        f"{'solve min':>9}")
  for size in _SIZES.value:
    w, h = (int(v) for v in size.split("x"))
    y = timing.test_image(w, h)[None]
    state = admm.init_batch(jax.random.key(0)[None], y, identity, config)
    start = time.perf_counter()
    theta = admm._theta_batch.lower(state, y, identity, step_config).compile()
    split = admm._split_batch.lower(state, y, identity, step_config).compile()
    compile_s = time.perf_counter() - start
    # The steps donate their state, so each timed call gets a fresh copy.
    adam_s = timing.median_seconds(
        lambda: theta(jax.tree.map(np.copy, state), y, identity), _REPEATS.value)  # noqa: B023
    update_s = timing.median_seconds(
        lambda: split(jax.tree.map(np.copy, state), y, identity), _REPEATS.value)  # noqa: B023
    outer_s = config.inner_iters * adam_s + update_s
    row = {"width": w, "height": h, "channels": _CHANNELS.value, "compile_s": compile_s,
           "adam_step_s": adam_s, "update_s": update_s, "outer_iteration_s": outer_s,
           "solve_s": config.outer_iters * outer_s}
    rows.append(row)
    print(f"{w:>4}×{h:<4} {compile_s:9.1f} {adam_s:7.3f} {update_s:8.3f} {outer_s:8.2f} "
          f"{row['solve_s'] / 60:9.1f}")
  timing.write_json(_JSON.value, {"machine": timing.machine(), "rows": rows})


if __name__ == "__main__":
  app.run(main)
