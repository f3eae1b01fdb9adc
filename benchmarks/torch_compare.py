"""Times our jitted DIP Adam step against the same step in PyTorch, in one process.

  python -m benchmarks.torch_compare [--sizes=256x256,512x384] [--channels=128,32]
      [--repeats=5] [--threads=2] [--json=benchmarks/results/torch_compare.json]

Ours is the step the `dip` launcher calls (`deep_image_prior._step_batch`, batch of one, via
`measure.dip_step`); PyTorch's is `torch_generator.DipStep` on `torch_generator.SkipNet`,
which starts from a copy of our initial parameters and the same input noise z and image y.
Both run on --threads threads: torch.set_num_threads, and for XLA (which sizes its thread pool
from the CPUs it may run on) the process is pinned to --threads CPUs before JAX starts.
The two sides take turns in blocks of --block consecutive steps, --repeats blocks each, so a
change in machine load hits both; only the steps after the first of each block are timed, and
times are medians. The first step after the other side's is slower on this machine: with
glibc's huge pages, a step right after a PyTorch step took 1.4–1.5× as long as one right after
our own, for either side (ours 3.60 against 2.46 s, PyTorch's 4.76 against 3.50 s: 128
channels, 512×384, steps in random order, medians over 5–12 of each kind), so strict
alternation (`--block=1`, what earlier releases ran) times neither side as it runs on its own.
Before timing, --check compares the two networks' outputs on z with our parameters. Needs
`pip install -e ".[bench]"` (torch).

Each side's FLOPs per step over its time give its FLOP rate: ours by XLA's cost analysis of
the compiled step, PyTorch's by `torch.utils.flop_counter` (its convolutions and matrix
products, forward and backward, counted on one extra step). They differ because our wide 3×3
convolutions use Winograd's algorithm (`dipl0_jax.winograd`), which needs fewer
multiplications. Our FLOPs over this CPU's practical peak (the faster of XLA's and PyTorch's
3072² float32 matrix products, timed first, fastest of 7 calls) are the least time our
arithmetic could take: `bound` is that time over PyTorch's step, the lowest ours/torch ratio
within reach.

Run it on an otherwise idle machine: PyTorch's OpenMP threads spin-wait between parallel
regions, and with another job on the cores a 2-thread PyTorch step became 10–20× slower than a
1-thread one (OMP_WAIT_POLICY=PASSIVE in the environment, which must be set before Python
starts, removed most of that); XLA's thread pool suffers far less. The JSON records the load
and the OpenMP variables.
"""

import os
import statistics
import time

import jax
import numpy as np
import torch
from absl import app, flags
from torch.utils import flop_counter

from benchmarks import measure, timing
from benchmarks import torch_generator as tg
from dipl0_jax import generator as gen
from launch import cli

_SIZES = flags.DEFINE_list("sizes", ["256x256", "512x384"], "W×H sizes.")
_CHANNELS = flags.DEFINE_list("channels", ["128", "32"], "Generator channels per scale.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Blocks of each side (medians are reported).",
                                lower_bound=1)
_BLOCK = flags.DEFINE_integer("block", 2, "Consecutive steps of one side per block; when > 1, "
                              "the first of each block is not timed.", lower_bound=1)
_THREADS = flags.DEFINE_integer("threads", None, "Threads for both (default: all CPUs).")
_CHECK = flags.DEFINE_bool("check", True, "Compare the two networks' outputs first.")
_JSON = flags.DEFINE_string("json", "benchmarks/results/torch_compare.json",
                            "Where to write the results.")
_OMP_ENV = ("OMP_", "GOMP_", "KMP_", "MKL_")


def _use_threads(n: int | None) -> int:
  """Restricts XLA and PyTorch to n threads (before JAX's backend starts)."""
  cpus = sorted(os.sched_getaffinity(0))
  n = len(cpus) if n is None else n
  if not 1 <= n <= len(cpus):
    raise cli.UsageError(f"--threads={n}: must be between 1 and the {len(cpus)} CPUs this "
                         "process may run on")
  if n < len(cpus):
    os.sched_setaffinity(0, cpus[:n])
  torch.set_num_threads(n)
  return n


def _block_seconds(step, block: int) -> list[float]:
  """Seconds of each of `block` consecutive calls of step, less the first when block > 1."""
  seconds = []
  for _ in range(block):
    start = time.perf_counter()
    jax.block_until_ready(step())
    seconds.append(time.perf_counter() - start)
  return seconds[1:] if block > 1 else seconds


def _compare(width: int, height: int, channels: int, repeats: int, block: int,
             check: bool) -> dict:
  config = measure.dip_config(channels)
  step, state, y, compile_s, flops = measure.dip_step(width, height, config)
  # Copies of the initial parameters and input: `step` donates (invalidates) its state.
  params = jax.tree.map(lambda a: np.array(a[0]), state.params)
  z = np.array(state.z[0])
  ours_count = sum(a.size for a in jax.tree.leaves(params))
  model = tg.SkipNet.like(config.generator)
  torch_count = tg.num_parameters(model)
  assert torch_count == ours_count, (torch_count, ours_count)
  if config.generator == gen.GeneratorConfig():
    assert torch_count == tg.DEFAULT_PARAMETERS, torch_count
  tg.load_flax_params(model, params)
  z_t = torch.from_numpy(z).permute(2, 0, 1)[None].contiguous()
  y_t = torch.from_numpy(np.array(y[0])).permute(2, 0, 1)[None].contiguous()
  row = {"width": width, "height": height, "channels": channels, "parameters": ours_count,
         "compile_s": compile_s, "gflop": flops / 1e9, "load_average": os.getloadavg()}
  if check:
    ours_f = np.asarray(jax.jit(gen.generate, static_argnums=2)(params, z, config.generator))
    with torch.no_grad():
      torch_f = model(z_t)[0].permute(1, 2, 0).numpy()
    row["forward_max_abs_diff"] = float(np.abs(ours_f - torch_f).max())
  torch_step = tg.DipStep(model, z_t, y_t, lr=config.lr, reg_noise_std=config.reg_noise_std,
                          ema=config.ema)
  ours_step = timing.Chain(step, state)
  with flop_counter.FlopCounterMode(display=False) as counter:
    torch_step()
  row["torch_gflop"] = counter.get_total_flops() / 1e9
  start = time.perf_counter()
  torch_step()
  row["torch_first_step_s"] = time.perf_counter() - start
  jax.block_until_ready(ours_step())
  ours, theirs = [], []
  for _ in range(repeats):
    ours += _block_seconds(ours_step, block)
    theirs += _block_seconds(torch_step, block)
  row.update(ours_step_s=statistics.median(ours), torch_step_s=statistics.median(theirs),
             ours_steps_s=ours, torch_steps_s=theirs)
  row["ratio"] = row["ours_step_s"] / row["torch_step_s"]
  row["ours_gflop_per_s"] = row["gflop"] / row["ours_step_s"]
  row["torch_gflop_per_s"] = row["torch_gflop"] / row["torch_step_s"]
  return row


def _torch_matmul_flops_per_s(n: int = 3072, repeats: int = 7) -> float:
  a = torch.ones(n, n)
  return 2 * n**3 / timing.fastest_seconds(lambda: a @ a, repeats)


def run():
  sizes = timing.parse_sizes(_SIZES.value)
  channels_list = timing.parse_numbers(_CHANNELS.value, "channels")
  timing.check_outputs(_JSON.value)
  threads = _use_threads(_THREADS.value)
  machine = timing.machine()
  machine.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                 mkldnn=torch.backends.mkldnn.is_available(), threads=threads,
                 omp_env={k: v for k, v in os.environ.items() if k.startswith(_OMP_ENV)})
  if machine["load_average"][0] > 0.5:
    print(f"warning: load average {machine['load_average'][0]:.1f}: another job is running, "
          "and PyTorch's spinning OpenMP threads slow down far more than XLA's under "
          "contention (see the module docstring)")
  peaks = {"xla": timing.matmul_flops_per_s() / 1e9, "torch": _torch_matmul_flops_per_s() / 1e9}
  peak = max(peaks.values())
  machine["matmul_gflop_per_s"] = peaks
  print(f"{threads} threads each, load {machine['load_average']}, jax {machine['jax']}, "
        f"torch {machine['torch']}; DIP Adam step, medians over {_REPEATS.value} blocks of "
        f"{_BLOCK.value} steps each; 3072² matrix product: XLA {peaks['xla']:.0f}, PyTorch "
        f"{peaks['torch']:.0f} GFLOP/s")
  print(f"{'channels':>8} {'size':>9} {'params':>10} {'compile s':>9} {'GFLOP ours':>10} "
        f"{'torch':>6} "
        f"{'ours s':>8} {'torch s':>8} {'ours/torch':>10} {'GFLOP/s ours':>12} "
        f"{'torch':>5} {'bound':>5} {'fwd diff':>9}", flush=True)
  rows = []
  for channels in channels_list:
    for w, h in sizes:
      row = _compare(w, h, channels, _REPEATS.value, _BLOCK.value, _CHECK.value)
      row["bound"] = row["gflop"] / peak / row["torch_step_s"]
      rows.append(row)
      diff = f"{row['forward_max_abs_diff']:9.1e}" if "forward_max_abs_diff" in row else ""
      print(f"{channels:>8} {w:>4}×{h:<4} {row['parameters']:>10,} {row['compile_s']:9.1f} "
            f"{row['gflop']:10.1f} {row['torch_gflop']:6.1f} {row['ours_step_s']:8.4f} "
            f"{row['torch_step_s']:8.4f} "
            f"{row['ratio']:10.2f} {row['ours_gflop_per_s']:12.0f} "
            f"{row['torch_gflop_per_s']:5.0f} {row['bound']:5.2f} {diff}", flush=True)
  machine["load_average_after"] = os.getloadavg()
  timing.write_json(_JSON.value, {"machine": machine, "repeats": _REPEATS.value,
                                  "block": _BLOCK.value, "rows": rows})


if __name__ == "__main__":
  app.run(cli.main(run), flags_parser=cli.parse_flags)
