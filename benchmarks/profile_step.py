"""Where XLA's CPU time goes in one DIP-ℓ0 Adam step: a per-operation profile.

Traces `--steps` calls of the launcher's jitted generator step (`admm._theta_batch`, forward,
backward and Adam) with `jax.profiler`, reads the per-thunk events of the trace and sorts them
into kinds by looking each one up in the optimised HLO: forward and backward convolutions
(by their dimension labels), matrix products, layout copies/transposes, pads/slices/concats,
reductions and elementwise fusions. Prints milliseconds per step for each kind and the top
operations, and writes JSON.

Convolutions are timed apart: XLA's CPU runtime runs them asynchronously on its thread pool,
and the trace's convolution events cover only their launch (23 ms of a 1.16 s step at 128
channels, 256²). Each convolution of the optimised HLO is therefore re-run on its own, as
a jitted `lax.conv_general_dilated` with the same shapes, window and dimension labels, and its
median time is what the table lists for it.

  python -m benchmarks.profile_step --size=256x256 --channels=32 [--steps=5]
      [--json=benchmarks/results/profile_step.json]
"""

import collections
import dataclasses
import functools
import glob
import gzip
import json
import os
import re
import tempfile

import jax
import jax.numpy as jnp
from absl import app, flags

from benchmarks import measure, timing
from dipl0_jax import admm
from launch import cli

_SIZE = flags.DEFINE_string("size", "256x256", "WIDTHxHEIGHT of the synthetic image.")
_CHANNELS = flags.DEFINE_integer("channels", 32, "Generator channels per scale.", lower_bound=1)
_SCALES = flags.DEFINE_integer("scales", 5, "Generator scales.", lower_bound=1)
_STEPS = flags.DEFINE_integer("steps", 5, "Traced steps (after one warm-up).", lower_bound=1)
_TOP = flags.DEFINE_integer("top", 15, "How many single operations to list.", lower_bound=0)
_JSON = flags.DEFINE_string("json", "benchmarks/results/profile_step.json", "JSON file.")

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = \S+(?: \S+)*? ([\w\-]+)\(")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) ")


def _parse_hlo(text: str) -> tuple[dict, dict]:
  """Optimised HLO text -> ({instruction: line}, {computation: [its lines]})."""
  instructions, computations, current = {}, collections.defaultdict(list), None
  for line in text.splitlines():
    if line and not line.startswith(" ") and line.rstrip().endswith("{"):
      match = _COMPUTATION.match(line)
      current = match.group(1) if match else None
      continue
    match = _INSTRUCTION.match(line)
    if match:
      instructions[match.group(1)] = line
      if current:
        computations[current].append(line)
  return instructions, computations


def _opcode(line: str) -> str:
  match = _INSTRUCTION.match(line)
  return match.group(2) if match else "?"


def _conv_kind(line: str) -> str:
  """Forward, input-gradient or kernel-gradient convolution, from its HLO line."""
  op_name = re.search(r'op_name="([^"]*)"', line)
  if op_name and "transpose(" not in op_name.group(1):
    return "convolution: forward"
  window = re.search(r"window=\{size=(\d+)x(\d+)", line)
  big_window = window and max(int(window.group(1)), int(window.group(2))) > 3
  if big_window or "rhs_dilate" in line:
    return "convolution: kernel gradient"
  return "convolution: input gradient"


def _shape(line: str) -> tuple[int, ...]:
  """The array shape an HLO instruction line defines."""
  dims = re.search(r" = \w+\[([\d,]*)\]", line).group(1)
  return tuple(int(d) for d in dims.split(",") if d)


def _pairs(window: str, key: str) -> tuple[str, ...] | None:
  """The "AxB" (or "l_hxl_h") entry `key` of an HLO window, split per spatial dimension."""
  match = re.search(key + r"=([\d_x]+)", window)
  return tuple(match.group(1).split("x")) if match else None


def standalone_convolution(line: str, instructions: dict):
  """(jitted convolution, lhs shape, rhs shape) equivalent to one HLO convolution line.

  The kernel's spatial reversal (`rhs_reversal`) is dropped: it changes values, not cost.
  """
  lhs, rhs = re.search(r"convolution\(%?([\w.\-]+), %?([\w.\-]+)\)", line).groups()
  window = re.search(r"window=\{([^}]*)\}", line).group(1)
  spatial = len(re.search(r"size=([\dx]+)", window).group(1).split("x"))
  ones = ("1",) * spatial
  stride = _pairs(window, "stride") or ones
  pad = _pairs(window, r"\bpad") or ("0_0",) * spatial
  labels = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", line).groups()
  order = ("bf", "oi", "bf")
  specs = [tuple(label.index(c) for c in first + "".join(str(d) for d in range(spatial)))
           for label, first in zip(labels, order, strict=True)]
  groups = {k: int(m.group(1)) if (m := re.search(k + r"=(\d+)", line)) else 1
            for k in ("feature_group_count", "batch_group_count")}
  conv = functools.partial(
      jax.lax.conv_general_dilated,
      window_strides=tuple(int(s) for s in stride),
      padding=[tuple(int(p) for p in pair.split("_")) for pair in pad],
      lhs_dilation=tuple(int(d) for d in _pairs(window, "lhs_dilate") or ones),
      rhs_dilation=tuple(int(d) for d in _pairs(window, "rhs_dilate") or ones),
      dimension_numbers=jax.lax.ConvDimensionNumbers(*specs), **groups)
  return jax.jit(conv), _shape(instructions[lhs]), _shape(instructions[rhs])


def convolution_ms(instructions: dict, repeats: int = 5) -> dict:
  """{name: median ms} of every top-level convolution, each re-run on its own."""
  times = {}
  for name, line in instructions.items():
    if _opcode(line) != "convolution":
      continue
    conv, lhs_shape, rhs_shape = standalone_convolution(line, instructions)
    keys = jax.random.split(jax.random.key(0))
    lhs = jax.random.normal(keys[0], lhs_shape)
    rhs = 0.05 * jax.random.normal(keys[1], rhs_shape)
    out = conv(lhs, rhs)
    if out.shape != _shape(line):
      raise ValueError(f"{name}: re-built convolution gives {out.shape}, not {_shape(line)}")
    times[name] = 1e3 * timing.median_seconds(functools.partial(conv, lhs, rhs), repeats,
                                              warmup=1)
  return times


def classify(name: str, instructions: dict, computations: dict) -> str:
  """The kind of operation a trace event names, from the optimised HLO."""
  line = instructions.get(name)
  if line is None:
    return "other (runtime)"
  opcode = _opcode(line)
  body = [line]
  if opcode == "fusion":
    called = re.search(r"calls=%?([\w.\-]+)", line)
    body = computations.get(called.group(1), []) if called else []
  ops = {_opcode(op) for op in body}
  conv = [op for op in body if _opcode(op) == "convolution"]
  if conv:
    return _conv_kind(conv[0])
  if "dot" in ops:
    return "dot (matrix product)"
  if ops & {"reduce", "reduce-window"}:
    return "reduction"
  if ops & {"pad", "slice", "concatenate", "reverse", "dynamic-slice",
            "dynamic-update-slice"} and not ops & {"add", "multiply", "subtract"}:
    return "pad / slice / concatenate"
  if ops <= {"copy", "transpose", "bitcast", "parameter", "reshape"}:
    return "layout copy / transpose"
  return "elementwise fusion"


def _trace_events(directory: str) -> list[dict]:
  path = glob.glob(os.path.join(directory, "**", "perfetto_trace.json.gz"), recursive=True)[0]
  with gzip.open(path) as f:
    trace = json.load(f)
  return trace["traceEvents"] if isinstance(trace, dict) else trace


def run():
  width, height = timing.parse_size(_SIZE.value)
  timing.check_outputs(_JSON.value)
  config = dataclasses.replace(measure.dip_l0_config(_CHANNELS.value, _SCALES.value),
                               outer_iters=1, inner_iters=1, inner_unroll=1)
  y = jnp.asarray(timing.test_image(width, height)[None])
  state = admm.init_batch(jax.random.key(0)[None], y, measure.IDENTITY, config)
  compiled, compile_s = timing.compile_seconds(admm._theta_batch, state, y, measure.IDENTITY,
                                               config)
  instructions, computations = _parse_hlo(compiled.as_text())
  state = compiled(state, y, measure.IDENTITY)[0]
  jax.block_until_ready(state)
  with tempfile.TemporaryDirectory() as directory:
    with jax.profiler.trace(directory, create_perfetto_trace=True):
      for _ in range(_STEPS.value):
        state = compiled(state, y, measure.IDENTITY)[0]
      jax.block_until_ready(state)
    events = _trace_events(directory)
  by_kind, by_op, step_us = collections.Counter(), collections.Counter(), 0.0
  for event in events:
    if event.get("ph") != "X":
      continue
    name, us = event["name"], event.get("dur", 0)
    if name == "ThunkExecutor::Execute (wait for completion)":
      step_us += us
    if name in instructions and _opcode(instructions[name]) != "convolution":
      by_kind[classify(name, instructions, computations)] += us
      by_op[name] += us
  steps = _STEPS.value
  for name, ms in convolution_ms(instructions).items():
    by_kind[classify(name, instructions, computations)] += 1e3 * ms * steps
    by_op[name] += 1e3 * ms * steps
  step_ms = step_us / 1e3 / steps
  print(f"{width}x{height}, {_CHANNELS.value} channels x {_SCALES.value} scales: "
        f"{step_ms:.1f} ms per Adam step (traced wall time), compile {compile_s:.1f} s")
  print("Operation time summed over threads (ms per step; convolutions timed on their own):")
  total = sum(by_kind.values())
  for kind, us in by_kind.most_common():
    print(f"  {kind:32s} {us / 1e3 / steps:9.1f}  {100 * us / total:5.1f}%")
  print(f"Top {_TOP.value} operations:")
  for name, us in by_op.most_common(_TOP.value):
    print(f"  {name:40s} {us / 1e3 / steps:9.1f}  "
          f"{classify(name, instructions, computations)}")
  result = {"size": [width, height], "channels": _CHANNELS.value, "scales": _SCALES.value,
            "step_ms": step_ms, "compile_s": compile_s, "machine": timing.machine(),
            "ms_per_step": {k: v / 1e3 / steps for k, v in by_kind.items()},
            "top": {k: v / 1e3 / steps for k, v in by_op.most_common(_TOP.value)}}
  timing.write_json(_JSON.value, result)


if __name__ == "__main__":
  app.run(cli.main(run), flags_parser=cli.parse_flags)
