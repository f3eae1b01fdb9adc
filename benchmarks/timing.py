"""Timing helpers shared by the benchmark scripts."""

import json
import math
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from PIL import Image

from dipl0_jax import image_io
from launch import cli


def call_seconds(fn: Callable[[], object], repeats: int, warmup: int = 0) -> list[float]:
  """Wall times of `repeats` calls of fn (its result blocked on), after `warmup` untimed calls
  (a compiled step's first call can take several times as long as the next ones)."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return times


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 0) -> float:
  """Median of `call_seconds`."""
  return statistics.median(call_seconds(fn, repeats, warmup))


def compile_seconds(jitted, *args, **kwargs) -> tuple[Callable, float]:
  """(jitted lowered and compiled for args and kwargs, the seconds that took)."""
  start = time.perf_counter()
  compiled = jitted.lower(*args, **kwargs).compile()
  return compiled, time.perf_counter() - start


def flops(compiled) -> float:
  """Floating-point operations of one call of a compiled function, by XLA's cost analysis
  (a multiply-add counts two)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost.get("flops", 0.0))


def fastest_seconds(fn: Callable[[], object], repeats: int) -> float:
  """Least wall time of `repeats` calls of fn after one untimed call: for peak rates, which a
  busy moment of a shared machine can only lower."""
  return min(call_seconds(fn, repeats, warmup=1))


def matmul_flops_per_s(n: int = 3072, repeats: int = 7) -> float:
  """This CPU's practical peak: FLOP/s of an n × n float32 matrix product in XLA (fastest
  call)."""
  a = jnp.ones((n, n), jnp.float32)
  product = jax.jit(lambda a: a @ a)
  return 2 * n**3 / fastest_seconds(lambda: product(a), repeats)


class Chain:
  """A no-argument callable for `median_seconds` that advances `state` by one `step` a call.

  For steps that donate their input state: each call consumes the state the previous call
  returned, as the launchers' loops do, so no copy of the state is timed.
  """

  def __init__(self, step: Callable[[object], object], state: object):
    self.step, self.state = step, state

  def __call__(self) -> object:
    self.state = self.step(self.state)
    return self.state


def parse_size(size: str, flag: str = "size") -> tuple[int, int]:
  """'640x480' -> (640, 480) (width, height); UsageError naming --flag unless both are ≥ 1."""
  try:
    w, h = (int(v) for v in size.lower().replace("×", "x").split("x"))
  except ValueError:
    raise cli.UsageError(f"--{flag}={size}: want WIDTHxHEIGHT, e.g. 640x480") from None
  if w < 1 or h < 1:
    raise cli.UsageError(f"--{flag}={size}: width and height must be ≥ 1")
  return w, h


def parse_sizes(sizes: list[str], flag: str = "sizes") -> list[tuple[int, int]]:
  """`parse_size` of every entry of a non-empty list flag, so that a bad one fails before any
  timing (an empty list would time nothing and still write its JSON)."""
  if not sizes:
    raise cli.UsageError(f"--{flag}=: want one or more W×H sizes")
  return [parse_size(size, flag) for size in sizes]


def parse_numbers(values: list[str], flag: str, kind: type = int, low: float = 1) -> list:
  """The numbers of a non-empty list flag, each of `kind` and ≥ low, or UsageError naming --flag."""
  text = ",".join(values)
  try:
    numbers = [kind(v) for v in values]
  except ValueError:
    raise cli.UsageError(f"--{flag}={text}: want {kind.__name__}s separated by commas") from None
  if not numbers or not all(n >= low for n in numbers):
    raise cli.UsageError(f"--{flag}={text}: want one or more, each ≥ {low:g}")
  return numbers


def check_choices(flag: str, values: list[str], choices: tuple[str, ...]) -> None:
  """UsageError unless the list flag names one or more of `choices`."""
  unknown = [v for v in values if v not in choices]
  if unknown or not values:
    raise cli.UsageError(f"--{flag}={','.join(values)}: choose one or more of {', '.join(choices)}")


def check_l0(lam: float, kappa: float) -> None:
  """UsageError unless --lambda_ > 0 and --kappa > 1 (a finite count of FFT solver steps)."""
  if not (lam > 0 and kappa > 1 and math.isfinite(lam) and math.isfinite(kappa)):
    raise cli.UsageError(f"--lambda_={lam:g} --kappa={kappa:g}: want a finite λ > 0 and κ > 1")


def check_outputs(json_path: str, *optional: str) -> None:
  """UsageError unless --json names a file that can be written, and so can each non-empty
  `optional` path ('' for none): checked before any timing."""
  if not json_path:
    raise cli.UsageError("--json is empty: name the JSON file to write")
  for path in (json_path, *optional):
    if path:
      cli.check_writable(path)


def test_image(width: int, height: int) -> np.ndarray:
  """The shipped picture resized to width × height, (H, W, 3) float32 in [0, 1]."""
  with Image.open(image_io.EXAMPLE_IMAGE) as im:
    return np.asarray(im.convert("RGB").resize((width, height), Image.BICUBIC), np.float32) / 255


def peak_rss_bytes() -> int:
  """This process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine() -> dict:
  """What the numbers were measured on, including the load at the time."""
  return {
      "platform": platform.platform(),
      "cpu_count": os.cpu_count(),
      "cpus_usable": len(os.sched_getaffinity(0)),
      "load_average": os.getloadavg(),
      "jax": jax.__version__,
      "jaxlib": jaxlib.__version__,
      "backend": jax.default_backend(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "compilation_cache_dir": jax.config.jax_compilation_cache_dir,
  }


def write_json(path: str, payload: dict) -> None:
  """Writes payload as indented JSON, atomically (an interrupted write leaves no half file)."""
  with image_io.atomic_file(path, "w") as f:
    json.dump(payload, f, indent=2)
  print(f"wrote {path}")
