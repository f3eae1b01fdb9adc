"""What the launchers share: flags, the method table, progress, clean errors."""

import contextlib
import dataclasses
import functools
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from absl import flags

import dipl0_jax
from dipl0_jax import (
  admm,
  deep_image_prior,
  fan_training,
  image_io,
  l0_fft,
  l0_region_fusion,
  metrics,
  operators,
  sharding,
  xla_flags,
)
from dipl0_jax import generator as gen
from launch import cli
from launch.cli import UsageError, check_writable, fail, main  # noqa: F401 (the launchers' API)

METHODS = ("l0", "dip", "dip_l0", "fan2018")
DEFAULT_LAMBDA = {"l0": 0.02, "dip_l0": admm.DipL0Config.lam}
DEFAULT_PRESET = {"denoise": "fast", "inpaint": "nks", "sr": "nks"}  # by --task

# DIP-ℓ0 by default: its `fast` preset (below) runs on the shipped picture in well under the
# two minutes a first run should take (README, Quick start).
METHOD = flags.DEFINE_enum("method", "dip_l0", METHODS, "Smoothing method.")
_LAMBDA = flags.DEFINE_float(
    "lambda_", None, "λ, weight of the ℓ0 gradient term (default: the method's paper value).")
_L0_SOLVER = flags.DEFINE_enum(
    "l0_solver", None, ["fft", "region_fusion"],
    "ℓ0 solver of l0 and of dip_l0's ℓ0 step: Xu et al.'s FFT solver, or Region Fusion "
    "(Nguyen & Brown 2015; its λ counts neighbour pairs whose colours differ). Default: fft "
    "for l0, the --preset's for dip_l0 (region_fusion, the authors' choice, in every preset; "
    "with fft inside dip_l0, --lambda_=0.0125 did best).")
_NUM_PASSES = flags.DEFINE_integer(
    "num_passes", None, "Region Fusion passes K (default 100 for l0, 50 inside dip_l0).")
_KAPPA = flags.DEFINE_float("kappa", 2.0, "β growth factor of the FFT ℓ0 solver (> 1).")
_BETA_MAX = flags.DEFINE_float("beta_max", 1e5, "Final β of the FFT ℓ0 solver.")
SEED = flags.DEFINE_integer("seed", 0, "PRNG seed (methods with randomness).")
_BACKGROUND = flags.DEFINE_list(
    "background", ["0", "0", "0"], "RGB in [0, 1] that transparent pixels are composited over.")
# DIP and DIP-ℓ0.
_PRESET = flags.DEFINE_enum(
    "preset", None, sorted(admm.PRESETS), "dip_l0 settings: fast (ours: half resolution, small "
    "generator, finishing step; about a minute at 512×384) or the paper's (nks: β=2.25, "
    "clipart: β=2.0; hours on a 2-core CPU); the flags below override them. Default: "
    f"{DEFAULT_PRESET['denoise']} for --task=denoise, {DEFAULT_PRESET['inpaint']} for the other "
    "tasks (fast solves at half resolution, which only denoising allows).")
_BETA = flags.DEFINE_float("beta", None, "dip_l0: ADMM penalty β (default: the preset's).")
_OUTER_ITERS = flags.DEFINE_integer(
    "outer_iters", None, "dip_l0: ADMM iterations (default: the preset's, nks 100, fast 80).")
_INNER_ITERS = flags.DEFINE_integer(
    "inner_iters", None, "dip_l0: Adam steps per iteration (default: the preset's, nks 25, "
    "fast 10).")
_NUM_ITERS = flags.DEFINE_integer("num_iters", None, "dip: Adam steps (3000).")
LR = flags.DEFINE_float(
    "lr", None, "Adam learning rate (dip 0.01, dip_l0 the preset's: nks 0.001, fast 0.01; "
    "fan2018 training 0.001).")
_EMA = flags.DEFINE_float(
    "ema", None, "dip/dip_l0: weight of the old average (dip 0.99; dip_l0 the preset's: nks 0.9, "
    "fast 0.8).")
_DOWNSAMPLE = flags.DEFINE_integer(
    "downsample", None, "dip_l0: solve at 1/N of the height and width and enlarge the results "
    "(--task=denoise only; default: the preset's, 1 except fast's).")
_FINISH_BETA = flags.DEFINE_float(
    "finish_beta", None, "dip_l0: γ > 0 finishes the result by one full-resolution ℓ0 step, "
    "argmin λ‖∇v‖₀ + ‖v − y‖² + γ/2‖v − average‖²; 0: the average itself (the paper's; "
    "--task=denoise only; default: the preset's, 0 except fast's 0.75).")
_FINISH_VIEWS = flags.DEFINE_integer(
    "finish_views", None, "dip_l0: average the finishing step over this many (1-8) rotations "
    "and mirrors of the image (default: the preset's, 1 except fast's 8).")
_FINISH_BLEND = flags.DEFINE_float(
    "finish_blend", None, "dip_l0: weight in [0, 1] of plain ℓ0 (solved at the solve's size, "
    "finished alike) in the finished result (default: the preset's, 0 except fast's 0.8).")
_FINISH_SHIFTS = flags.DEFINE_integer(
    "finish_shifts", None, "dip_l0: average the blend's plain ℓ0 over this many (1-4) offsets "
    "of the shrinking grid (default: the preset's, 1 except fast's 4).")
_FINISH_BETA_SCALES = flags.DEFINE_list(
    "finish_beta_scales", None, "dip_l0: average every finishing ℓ0 step over γ times each of "
    "these factors (default: the preset's, 1 except fast's 1,2).")
_FINISH_PLAIN_SCALE = flags.DEFINE_float(
    "finish_plain_scale", None, "dip_l0: the blend's plain ℓ0 solves take this factor of the "
    "v-update's weight 2λ/β (default: the preset's, 1 except fast's 0.7).")
_FINISH_PLAIN_FULL = flags.DEFINE_bool(
    "finish_plain_full", None, "dip_l0: add the plain ℓ0 solve at full resolution to the "
    "blend's (default: the preset's, off except fast's).")
_FINISH_FFT_LAM = flags.DEFINE_float(
    "finish_fft_lam", None, "dip_l0: λ > 0 adds FFT ℓ0 smoothing of the image at this λ to the "
    "blend's plain ℓ0 solves (default: the preset's, 0 except fast's 0.02).")
_REG_NOISE = flags.DEFINE_float("reg_noise_std", None, "dip: input perturbation σ (1/30).")
_CHANNELS = flags.DEFINE_integer(
    "channels", None, "dip/dip_l0: generator channels per scale (default: 128, or the preset's: "
    "fast 16).")
_SCALES = flags.DEFINE_integer("scales", None, "dip/dip_l0: generator scales (5, or the "
                               "preset's: fast 4).")
TASK = flags.DEFINE_enum(
    "task", "denoise", ["denoise", "inpaint", "sr"],
    "dip/dip_l0 forward operator: identity, a mask (--mask), or ×--sr_factor box downsampling.")
_MASK = flags.DEFINE_string("mask", None, "--task=inpaint: image whose white pixels are known.")
SR_FACTOR = flags.DEFINE_integer("sr_factor", 4, "--task=sr: upsampling factor.")
_MODEL = flags.DEFINE_string(
    "model", None, "fan2018: trained model file from launch.train (default: the shipped one).")


def parse_flags(argv: list[str]) -> list[str]:
  """`cli.parse_flags`, then XLA's persistent compilation cache on."""
  argv = cli.parse_flags(argv)
  cli.use_compilation_cache()
  return argv


def batch_size(value: int | None, method: "Method") -> int:
  """--batch_size, defaulting to this process's device count (one image per device): on CPU
  a larger batch is computed image by image (`sharding.batch_map`), so it is no faster per
  image, and it compiles once per image. A method that solves batches on the host's cores
  (`Method.host_threads`) defaults to at least the core count."""
  if value is None:
    value = jax.local_device_count()
    if method.host_threads:
      value = max(value, os.cpu_count() or 1)
  if value < 1:
    raise UsageError(f"--batch_size={value}: must be ≥ 1")
  return value


def check_positive(name: str, value: float, *, above: float = 0.0, allow_equal: bool = False):
  if value is None or not math.isfinite(value) or value < above or (
      value == above and not allow_equal):
    relation = "≥" if allow_equal else ">"
    raise UsageError(f"--{name}={value}: must be a finite number {relation} {above:g}")


def background() -> tuple[float, ...]:
  try:
    rgb = tuple(float(c) for c in _BACKGROUND.value)
  except ValueError:
    rgb = ()
  if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
    raise UsageError(f"--background={','.join(_BACKGROUND.value)}: want three numbers in [0, 1]")
  return rgb


def read(path: str) -> np.ndarray:
  """Reads an input image as (H, W, C) float32 in [0, 1], raising UsageError on failure; notes
  values outside [0, 1] (a float TIFF's), which are clipped."""
  try:
    image = image_io.read_image(path, background=background(), clip=False)
  except image_io.ImageError as e:
    raise UsageError(str(e)) from None
  outside = np.mean((image < 0) | (image > 1))
  if outside:
    tqdm.tqdm.write(f"note: {path}: {outside:.1%} of the values lie outside [0, 1]; clipped")
  return np.clip(image, 0.0, 1.0)


def same_channels(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(H, W, C) images a and b with a greyscale one repeated to the other's C (1 or 3), so
  that a greyscale result is scored against colour ground truth on every channel."""
  if a.shape[-1] == 1:
    a = np.repeat(a, b.shape[-1], -1)
  if b.shape[-1] == 1:
    b = np.repeat(b, a.shape[-1], -1)
  return a, b


def ssim(out: np.ndarray, gt: np.ndarray) -> float:
  """`metrics.ssim` of two (H, W, C) images, NaN for images smaller than its 7×7 window."""
  return float(metrics.ssim(out, gt)) if min(out.shape[:2]) >= 7 else float("nan")


def check_outputs(paths: list[str], overwrite: bool, continued: set[str] = frozenset()) -> None:
  """Refuses to start when a file a run would write exists (unless `overwrite`, or it is one
  of the `continued` files of a resumed run) or cannot be written, so that a run never fails
  after its solve or leaves some of its files behind."""
  for path in paths:
    if os.path.isdir(path):
      raise UsageError(f"{path}: is a folder, not a file")
    if os.path.exists(path) and not overwrite and path not in continued:
      raise UsageError(f"{path}: already exists (pass --overwrite to replace it)")
  first_in_folder = {}
  for path in paths:
    first_in_folder.setdefault(os.path.dirname(os.path.abspath(path)), path)
  for path in first_in_folder.values():
    check_writable(path)


@dataclasses.dataclass
class Progress:
  """What a solve reports after each chunk: iterations done of total, (B,) metrics, and the
  current (B, H, W, C) results by name ("output" is the result)."""

  done: int
  total: int
  metrics: dict[str, np.ndarray]
  outputs: dict[str, np.ndarray]
  state: object = None  # the solver's full state (a pytree), for checkpoints


@dataclasses.dataclass(frozen=True)
class Method:
  """A smoothing method as the launchers see it.

  Attributes:
    name: the --method value.
    settings: the parameters that define its output (printed and logged).
    solve: (images (B, H, W, C) float32 in [0, 1], keys (B,), state) -> iterator of
      Progress; the last one holds the final results (after `finish`, if any). A state from
      `init` (or a checkpoint) continues that solve; None starts one.
    min_size: the smallest height and width it accepts.
    init: (images, keys) -> the initial state of an iterative method; None for the others.
    finish: (images, last Progress) -> the final outputs, applied once when a solve ends
      (finished or stopped); None keeps the last Progress's.
    host_threads: `solve` spreads a batch over the host's cores (one thread per image), so
      batches of up to the core count are faster per image.
    images: the names of the outputs besides "output" (written as OUT_<name>.png).
  """

  name: str
  settings: dict
  solve: Callable[[np.ndarray, jax.Array, object], Iterator[Progress]]
  min_size: int = 1
  init: Callable[[np.ndarray, jax.Array], object] | None = None
  memory: Callable[[int, int], int] | None = None  # (H, W) -> estimated peak bytes
  finish: Callable[[np.ndarray, Progress], dict[str, np.ndarray]] | None = None
  host_threads: bool = False
  images: tuple[str, ...] = ()

  def describe(self) -> str:
    """'name (key=value ...)' for the console."""
    items = (f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
             for k, v in self.settings.items())
    return f"{self.name} ({' '.join(items)})"

  def check_size(self, path: str, image: np.ndarray, batch: int = 1) -> None:
    """Refuses images below min_size, or whose solve would not fit in available memory."""
    h, w = image.shape[:2]
    if min(h, w) < self.min_size:
      raise UsageError(f"{path}: {w}×{h} is too small for {self.name} "
                       f"(needs at least {self.min_size} pixels a side)")
    if self.memory is not None:
      need, available = self.memory(h, w) * batch, _available_memory()
      if need > 0.9 * available:
        raise UsageError(
            f"{path}: {self.name} at {w}×{h} (batch {batch}) needs about {need / 2**30:.1f} GiB,"
            f" {available / 2**30:.1f} GiB is available: use a smaller image, fewer "
            f"--channels or --batch_size=1")


def _host_callbacks() -> bool:
  """Whether the flags' method calls back to the host from its solve: `dip_l0`'s Region Fusion."""
  if METHOD.value != "dip_l0":
    return False
  return _l0_solver(admm.PRESETS[_preset_name()].l0_step) == "region_fusion"


def size_client_pool() -> None:
  """Before JAX starts: room in the CPU client's thread pool for the method's host callbacks
  on every forced CPU device (`xla_flags.size_client_pool`); nothing for other methods, which
  run slower with the extra thread."""
  if _host_callbacks():
    xla_flags.size_client_pool()


def _batch_mesh(method: Method) -> jax.sharding.Mesh:
  """This process's devices; fewer for a Region Fusion `dip_l0` (host callbacks) when the CPU
  client has too few threads for all (`sharding.batch_mesh`)."""
  mesh = sharding.batch_mesh(host_callbacks=_host_callbacks())
  if mesh.size < jax.local_device_count():
    _fewer_devices_note(mesh.size, jax.local_device_count())
  return mesh


@functools.cache
def _fewer_devices_note(used: int, count: int) -> None:
  print(f"note: dip_l0 with --l0_solver=region_fusion runs on {used} of the {count} CPU "
        f"devices (its host callbacks need PJRT_NPROC={count + 1} or more for all, set before "
        "JAX starts; --l0_solver=fft uses all)", file=sys.stderr)


def _l0_method() -> Method:
  lam = DEFAULT_LAMBDA["l0"] if _LAMBDA.value is None else _LAMBDA.value
  if _L0_SOLVER.value == "region_fusion":  # default: fft
    passes = _num_passes(100)

    def solve(images, keys, state=None):
      del keys, state  # deterministic, one pass
      out = l0_region_fusion.region_fusion_batch(images, lam=lam, num_passes=passes)
      yield Progress(1, 1, {}, {"output": out})

    return Method("l0", {"l0_solver": "region_fusion", "lambda_": lam, "num_passes": passes},
                  solve, host_threads=True)

  kappa, beta_max = _KAPPA.value, _BETA_MAX.value

  def solve(images, keys, state=None):
    del keys, state  # deterministic, one pass
    output = l0_fft.l0_smooth_each(images, lam=lam, kappa=kappa, beta_max=beta_max,
                                   mesh=sharding.mesh_of(images))
    yield Progress(1, 1, {}, {"output": output})

  return Method("l0", {"l0_solver": "fft", "lambda_": lam, "kappa": kappa,
                       "beta_max": beta_max}, solve, host_threads=True)


def _num_passes(default: int) -> int:
  passes = default if _NUM_PASSES.value is None else _NUM_PASSES.value
  if passes < 1:
    raise UsageError(f"--num_passes={passes}: must be ≥ 1")
  return passes


def _generator_config(base: gen.GeneratorConfig) -> gen.GeneratorConfig:
  """`base` with --channels and --scales applied (all scales alike, 4-channel skips)."""
  if _CHANNELS.value is None and _SCALES.value is None:
    return base
  channels = _value(_CHANNELS, base.channels_down[0])
  n = _value(_SCALES, len(base.channels_down))
  check_positive("channels", channels)
  if not 1 <= n <= 8:
    raise UsageError(f"--scales={n}: must be between 1 and 8")
  return base.resized(channels, n)


def _generator_settings(config: gen.GeneratorConfig) -> dict:
  return {"channels": config.channels_down[0], "scales": len(config.channels_down)}


def check_task(shape: tuple[int, ...]) -> None:
  """Raises UsageError unless --task's operator fits an (H, W, C) input: --sr_factor ≥ 1, or a
  readable --mask of the input's size."""
  _operator(shape)


def _operator(shape: tuple[int, ...]) -> tuple[operators.Operator, tuple[int, ...]]:
  """The forward operator of --task and the shape of the image the generator makes."""
  h, w, c = shape
  if TASK.value == "denoise":
    return operators.Identity(), shape
  if TASK.value == "inpaint":
    if not _MASK.value:
      raise UsageError("--task=inpaint needs --mask=PATH (white where pixels are known)")
    mask = read(_MASK.value).mean(axis=-1, keepdims=True) > 0.5
    if mask.shape[:2] != (h, w):
      raise UsageError(f"{_MASK.value}: mask is {mask.shape[1]}×{mask.shape[0]}, "
                       f"input is {w}×{h}")
    return operators.Mask(jnp.asarray(mask, jnp.float32)), shape
  k = SR_FACTOR.value
  if k < 1:
    raise UsageError(f"--sr_factor={k}: must be ≥ 1")
  return operators.BoxDownsample(k), (h * k, w * k, c)


def _value(flag, default):
  return default if flag.value is None else flag.value


def _dip_method() -> Method:
  base = deep_image_prior.DipConfig()
  config = deep_image_prior.DipConfig(
      generator=_generator_config(base.generator), num_iters=_value(_NUM_ITERS, base.num_iters),
      lr=_value(LR, base.lr), reg_noise_std=_value(_REG_NOISE, base.reg_noise_std),
      ema=_value(_EMA, base.ema))
  check_positive("num_iters", config.num_iters)
  check_positive("lr", config.lr)
  check_positive("reg_noise_std", config.reg_noise_std, allow_equal=True)
  _check_ema(config.ema)

  settings = {"num_iters": config.num_iters, "lr": config.lr,
              "reg_noise_std": config.reg_noise_std, "ema": config.ema,
              **_generator_settings(config.generator)}
  return _generator_method("dip", settings, deep_image_prior, config, config.num_iters,
                           lambda state, shape: {"output": state.avg})


def _generator_method(name: str, settings: dict, solver, config, total: int,
                      outputs: Callable[[object, tuple], dict[str, jax.Array]],
                      downsample: int = 1, finish: Callable | None = None,
                      images: tuple[str, ...] = ()) -> Method:
  """A Method for a generator-fitting solver module (`deep_image_prior` or `admm`): its
  `init_batch` and `iterate` under the --task operator on the images shrunk by `downsample`
  (`admm.shrink`), reporting `outputs(state, the images' shape)`, whose names besides
  "output" are `images` (see `Method` for finish)."""

  def init(images, keys):
    small = admm.shrink(images, downsample)
    operator, shape = _operator(small.shape[1:])
    return solver.init_batch(keys, small, operator, config, shape=shape)

  def solve(images, keys, state=None):
    small = admm.shrink(images, downsample)
    operator, shape = _operator(small.shape[1:])
    start = state if state is not None else solver.init_batch(keys, small, operator, config,
                                                              shape=shape)
    for state, step_metrics in solver.iterate(start, small, operator, config):
      yield Progress(int(state.iteration[0]), total, _host(step_metrics),
                     {k: np.asarray(v) for k, v in outputs(state, images.shape).items()}, state)

  return Method(name, settings, solve, config.generator.min_size * downsample, init,
                _memory(config.generator, downsample), finish, images=images)


_enlarge = jax.jit(admm.enlarge, static_argnums=(1, 2))  # called after every iteration
_finish = jax.jit(jax.vmap(admm.finish, in_axes=(0, 0, None)), static_argnums=2)


def _memory(config: gen.GeneratorConfig, downsample: int = 1) -> Callable[[int, int], int]:
  def estimate(h: int, w: int) -> int:
    k = SR_FACTOR.value if TASK.value == "sr" else 1
    return gen.training_bytes(h * k // downsample, w * k // downsample, config)

  return estimate


def _available_memory() -> int:
  """Bytes of memory available now (MemAvailable on Linux)."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _check_ema(ema: float) -> None:
  if not (math.isfinite(ema) and 0.0 <= ema < 1.0):
    raise UsageError(f"--ema={ema}: must be in [0, 1)")


def _beta_scales(default: tuple[float, ...]) -> tuple[float, ...]:
  """--finish_beta_scales as floats > 0, or the preset's."""
  if _FINISH_BETA_SCALES.value is None:
    return default
  text = ",".join(_FINISH_BETA_SCALES.value)
  try:
    scales = tuple(float(v) for v in _FINISH_BETA_SCALES.value)
  except ValueError:
    scales = ()
  if not (scales and all(math.isfinite(v) and v > 0 for v in scales)):
    raise UsageError(f"--finish_beta_scales={text}: must be numbers > 0, separated by commas")
  return scales


def _dip_l0_method() -> Method:
  preset_name = _preset_name()
  preset = admm.PRESETS[preset_name]
  config = dataclasses.replace(
      preset, generator=_generator_config(preset.generator), lam=_value(_LAMBDA, preset.lam),
      beta=_value(_BETA, preset.beta), outer_iters=_value(_OUTER_ITERS, preset.outer_iters),
      inner_iters=_value(_INNER_ITERS, preset.inner_iters), lr=_value(LR, preset.lr),
      ema=_value(_EMA, preset.ema), l0_step=l0_step(preset.l0_step),
      downsample=_value(_DOWNSAMPLE, preset.downsample),
      finish_beta=_value(_FINISH_BETA, preset.finish_beta),
      finish_views=_value(_FINISH_VIEWS, preset.finish_views),
      finish_blend=_value(_FINISH_BLEND, preset.finish_blend),
      finish_shifts=_value(_FINISH_SHIFTS, preset.finish_shifts),
      finish_beta_scales=_beta_scales(preset.finish_beta_scales),
      finish_plain_scale=_value(_FINISH_PLAIN_SCALE, preset.finish_plain_scale),
      finish_plain_full=_value(_FINISH_PLAIN_FULL, preset.finish_plain_full),
      finish_fft_lam=_value(_FINISH_FFT_LAM, preset.finish_fft_lam))
  check_positive("beta", config.beta)
  if not 1 <= config.finish_views <= 8:
    raise UsageError(f"--finish_views={config.finish_views}: must be in 1..8")
  if _FINISH_VIEWS.value not in (None, 1) and config.finish_beta == 0:
    raise UsageError(f"--finish_views={config.finish_views} needs a finishing step "
                     "(--finish_beta > 0)")
  if not 0 <= config.finish_blend <= 1:
    raise UsageError(f"--finish_blend={config.finish_blend:g}: must be in [0, 1]")
  if _FINISH_BLEND.value not in (None, 0) and config.finish_beta == 0:
    raise UsageError(f"--finish_blend={config.finish_blend:g} needs a finishing step "
                     "(--finish_beta > 0)")
  if not 1 <= config.finish_shifts <= 4:
    raise UsageError(f"--finish_shifts={config.finish_shifts}: must be in 1..4")
  blended = config.finish_beta > 0 and config.finish_blend > 0
  shifted = blended and config.downsample > 1
  if _FINISH_SHIFTS.value not in (None, 1) and not shifted:
    raise UsageError(f"--finish_shifts={config.finish_shifts} needs a blend solved at a reduced "
                     "size (--finish_beta > 0, --finish_blend > 0, --downsample > 1)")
  if _FINISH_BETA_SCALES.value is not None and config.finish_beta == 0:
    raise UsageError(f"--finish_beta_scales={','.join(_FINISH_BETA_SCALES.value)} needs a "
                     "finishing step (--finish_beta > 0)")
  check_positive("finish_plain_scale", config.finish_plain_scale)
  check_positive("finish_fft_lam", config.finish_fft_lam, allow_equal=True)
  for flag, unused in ((_FINISH_PLAIN_SCALE, 1.0), (_FINISH_FFT_LAM, 0.0)):
    if flag.value not in (None, unused) and not blended:
      raise UsageError(f"--{flag.name}={flag.value:g} needs a blend (--finish_beta > 0, "
                       "--finish_blend > 0)")
  if _FINISH_PLAIN_FULL.value and not shifted:
    raise UsageError("--finish_plain_full needs a blend solved at a reduced size "
                     "(--finish_beta > 0, --finish_blend > 0, --downsample > 1)")
  check_positive("downsample", config.downsample)
  check_positive("finish_beta", config.finish_beta, allow_equal=True)
  if config.downsample > 1 and TASK.value != "denoise":
    raise UsageError(f"--downsample={config.downsample} works with --task=denoise only "
                     "(--downsample=1 turns it off)")
  if config.finish_beta > 0 and TASK.value != "denoise":
    raise UsageError(f"--finish_beta={config.finish_beta:g} works with --task=denoise only "
                     "(--finish_beta=0 turns it off)")
  check_positive("outer_iters", config.outer_iters)
  check_positive("inner_iters", config.inner_iters)
  check_positive("lr", config.lr)
  _check_ema(config.ema)

  settings = {"preset": preset_name, "l0_solver": _solver_name(config.l0_step),
              "lambda_": config.lam, "beta": config.beta,
              "outer_iters": config.outer_iters, "inner_iters": config.inner_iters,
              "lr": config.lr, "ema": config.ema, **_generator_settings(config.generator)}
  # Named only when used, so that older runs' settings still match.
  if config.downsample != 1:
    settings["downsample"] = config.downsample
  if config.finish_beta > 0:
    settings["finish_beta"] = config.finish_beta
    if config.finish_views != 1:
      settings["finish_views"] = config.finish_views
    if config.finish_blend != 0:
      settings["finish_blend"] = config.finish_blend
    if shifted and config.finish_shifts != 1:
      settings["finish_shifts"] = config.finish_shifts
    if config.finish_beta_scales != (1.0,):
      settings["finish_beta_scales"] = list(config.finish_beta_scales)
    if blended and config.finish_plain_scale != 1:
      settings["finish_plain_scale"] = config.finish_plain_scale
    if shifted and config.finish_plain_full:
      settings["finish_plain_full"] = True
    if blended and config.finish_fft_lam > 0:
      settings["finish_fft_lam"] = config.finish_fft_lam

  def outputs(state, shape):
    return {"output": _enlarge(state.avg, shape, "linear"),
            "v": _enlarge(state.v, shape, "nearest")}

  def finish(images, last):
    return {**last.outputs, "output": np.asarray(_finish(images, last.state.avg, config))}

  return _generator_method("dip_l0", settings, admm, config, config.outer_iters, outputs,
                           config.downsample, finish if config.finish_beta > 0 else None,
                           images=("v",))


def _solver_name(step: admm.L0Step) -> str:
  return "region_fusion" if isinstance(step, l0_region_fusion.RegionFusionProx) else "fft"


def _preset_name() -> str:
  """dip_l0's preset: --preset, else --task's default."""
  return _PRESET.value or DEFAULT_PRESET[TASK.value]


def _l0_solver(preset_step: admm.L0Step) -> str:
  """dip_l0's ℓ0 solver: --l0_solver, else the preset's."""
  return _L0_SOLVER.value or _solver_name(preset_step)


def l0_step(preset_step: admm.L0Step) -> admm.L0Step:
  """The ℓ0 proximal step of dip_l0: --l0_solver's, else the preset's solver, with the flags'
  --num_passes (Region Fusion) or --kappa/--beta_max (FFT)."""
  if _l0_solver(preset_step) == "region_fusion":
    return l0_region_fusion.RegionFusionProx(_num_passes(50))
  return _FftProx(_KAPPA.value, _BETA_MAX.value)


@dataclasses.dataclass(frozen=True)
class _FftProx:
  """The FFT ℓ0 step with its schedule; hashable by value, so jit caches stay warm."""

  kappa: float
  beta_max: float

  def __call__(self, x, weight):
    return dipl0_jax.l0_prox(x, weight, kappa=self.kappa, beta_max=self.beta_max)


def _host(metrics: dict) -> dict[str, np.ndarray]:
  return {k: np.asarray(v) for k, v in metrics.items()}


# The flags each method reads; the others are for other methods (`ignored_flags_note`).
_METHOD_FLAGS = {
    "l0": ("lambda_", "l0_solver", "num_passes", "kappa", "beta_max"),
    "dip": ("num_iters", "lr", "ema", "reg_noise_std", "channels", "scales", "task", "mask",
            "sr_factor", "seed"),
    "dip_l0": ("lambda_", "l0_solver", "num_passes", "kappa", "beta_max", "preset", "beta",
               "outer_iters", "inner_iters", "lr", "ema", "downsample", "finish_beta",
               "finish_views", "finish_blend", "finish_shifts", "finish_beta_scales",
               "finish_plain_scale", "finish_plain_full", "finish_fft_lam", "channels",
               "scales", "task", "mask", "sr_factor", "seed"),
    "fan2018": ("model",),
}


def ignored_flags_note() -> str | None:
  """A note naming the flags given on the command line that only other methods read."""
  own = set(_METHOD_FLAGS[METHOD.value])
  others = sorted({f for names in _METHOD_FLAGS.values() for f in names} - own)
  given = [f"--{name}" for name in others if flags.FLAGS[name].present]
  if not given:
    return None
  return f"note: {METHOD.value} does not use {', '.join(given)} (ignored)"


def build_method() -> Method:
  """The method and settings that the flags select, validated."""
  if TASK.value != "denoise" and "task" not in _METHOD_FLAGS[METHOD.value]:
    raise UsageError(f"--task={TASK.value} works with dip and dip_l0 only")
  lam = DEFAULT_LAMBDA.get(METHOD.value) if _LAMBDA.value is None else _LAMBDA.value
  if lam is not None:
    check_positive("lambda_", lam)  # λ = 0 would return the input (l0) or plain DIP
  check_positive("kappa", _KAPPA.value, above=1.0)
  check_positive("beta_max", _BETA_MAX.value)
  return {"l0": _l0_method, "dip": _dip_method, "dip_l0": _dip_l0_method,
          "fan2018": _fan_method}[METHOD.value]()


def _fan_method() -> Method:
  path = _MODEL.value or fan_training.SHIPPED_MODEL
  try:
    variables, config, info = fan_training.load_model(path)
  except OSError as e:
    raise UsageError(f"{path}: cannot read model ({e.strerror or e})") from None
  except ValueError as e:
    raise UsageError(str(e)) from None
  smooth = jax.jit(jax.vmap(functools.partial(fan_training.smooth, config=config),
                            in_axes=(None, 0)))

  def solve(images, keys, state=None):
    del keys, state  # deterministic, one forward pass
    yield Progress(1, 1, {}, {"output": np.asarray(smooth(variables, images))})

  return Method("fan2018", {"model": os.path.basename(path),
                            "energy": info.get("settings", {}).get("energy", "?")}, solve)


@contextlib.contextmanager
def stop_on_ctrl_c() -> Iterator[list]:
  """Turns the first Ctrl-C into a request: yields a list that becomes non-empty when the user
  presses it, for the caller to check between steps; a second Ctrl-C aborts at once.

  So a stop never lands in the middle of a computation or a file write.
  """
  stop = []

  def request_stop(signum, frame):
    if stop:
      raise KeyboardInterrupt
    stop.append(signum)
    tqdm.tqdm.write("Ctrl-C: stopping after the current iteration (again to abort)")

  previous = signal.signal(signal.SIGINT, request_stop)
  try:
    yield stop
  finally:
    signal.signal(signal.SIGINT, previous)


def drive(method: Method, images: np.ndarray, keys: jax.Array, *,
          gt: np.ndarray | None = None, desc: str = "",
          on_chunk: Callable[[Progress, list[dict]], None] | None = None,
          state: object = None, log: list[dict] | None = None,
          ) -> tuple[Progress, list[dict], bool]:
  """Runs method.solve with a progress bar; Ctrl-C stops it after the current chunk.

  The batch is split over this process's devices (`dipl0_jax.sharding`); what it returns
  holds the B inputs' rows only.

  The first Ctrl-C only sets a flag that is checked between chunks, so it never lands in the
  middle of a computation or a file write; a second one aborts at once.

  Args:
    images: (B, H, W, C) inputs.
    keys: (B,) PRNG keys.
    gt: optional (B, H, W, C) ground truth: PSNR of the current output is shown and logged.
    desc: progress-bar label.
    on_chunk: called with the progress and the log so far after every chunk.
    state: a state to continue from (see `Method.solve`), with `log` its log so far.

  Returns:
    (last progress, per-chunk log entries, whether the user interrupted the run). With
    `method.finish`, the last progress holds the finished outputs, and the last log entry
    their PSNR and the seconds including the finishing step.
  """
  log, last = list(log or []), None
  start = time.perf_counter() - (log[-1]["seconds"] if log else 0.0)
  bar = tqdm.tqdm(total=None, desc=desc, unit="it", leave=False, disable=None)
  # Split the batch over this process's devices (padded to a multiple of their number).
  n, mesh = len(images), _batch_mesh(method)
  sharded, keys = sharding.shard_batch((images, keys), mesh)
  state = None if state is None else sharding.shard_batch(state, mesh)
  solve = method.solve(sharded, keys, state)
  with stop_on_ctrl_c() as stop:
    try:
      for last in solve:
        last = dataclasses.replace(last, **{  # without the padding rows
            k: sharding.unpad(getattr(last, k), n) for k in ("metrics", "outputs", "state")})
        bar.total = last.total
        entry = {"iteration": last.done, "seconds": round(time.perf_counter() - start, 3)}
        entry.update({k: v.tolist() for k, v in last.metrics.items()})
        entry.update(_psnr_entry(last, gt))
        log.append(entry)
        shown = {k: f"{np.mean(entry[k]):.4g}" for k in ("inner_loss", "loss", "psnr")
                 if k in entry}
        bar.set_postfix(shown, refresh=False)
        bar.update(last.done - bar.n)
        if on_chunk is not None:
          on_chunk(last, log)
        if stop:
          break
    finally:
      solve.close()
      bar.close()
  interrupted = bool(stop)
  if last is None and state is not None and not interrupted:
    raise UsageError("the checkpoint is of a finished run: remove it or drop --resume")
  if last is None:
    raise UsageError("interrupted before the first iteration finished: nothing to write")
  if method.finish is not None:
    last = dataclasses.replace(last, outputs=method.finish(images, last))
    log[-1].update(_psnr_entry(last, gt), seconds=round(time.perf_counter() - start, 3))
  return last, log, interrupted


def _psnr_entry(last: Progress, gt: np.ndarray | None) -> dict[str, list[float]]:
  """{"psnr": per-image PSNR of the current output} when the ground truth fits it."""
  if gt is None or last.outputs["output"].shape != gt.shape:
    return {}
  return {"psnr": [float(metrics.psnr(image_io.quantize(o), g))
                   for o, g in zip(last.outputs["output"], gt, strict=True)]}
