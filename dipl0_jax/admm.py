"""DIP-ℓ0 (Tran, Bui, Xin 2026): a Deep Image Prior generator with an ℓ0 gradient regulariser,
solved by ADMM whose ℓ0 step is an off-the-shelf ℓ0 gradient minimiser.

  min_θ ‖A f_θ(z) − y‖² + λ‖∇v‖₀   s.t.  v = f_θ(z)

with the augmented Lagrangian  L = ‖Af − y‖² + λ‖∇v‖₀ + ⟨w, v − f⟩ + β/2‖v − f‖²  (all
squared norms and inner products summed over pixels and channels, as the authors' code does).
One outer iteration:
  θ ← inner_iters Adam steps on ‖Af_θ − y‖² + ⟨w, v − f_θ⟩ + β/2‖v − f_θ‖²   (θ-update)
  v ← argmin_v λ‖∇v‖₀ + β/2‖v − (f − w/β)‖² = l0_step(f − w/β, 2λ/β)         (v-update)
  w ← w + β(v − f)                                                             (dual ascent)
  avg ← ema·avg + (1 − ema)·f                                                  (reported output)
Adam's state is kept across outer iterations; v and w start as U[0, 1) noise and the average
as the observation (A⁺y). Optionally (`DipL0Config.finish_beta`, ours, not the paper's) the
average is finished by one full-resolution ℓ0 step against the observation (`finish`).
"""

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from dipl0_jax import checks, differences, l0_fft, l0_region_fusion, operators, sharding, xla_flags
from dipl0_jax import generator as gen

# (x (H, W, C), weight) -> v ≈ argmin_v weight·‖∇v‖₀ + ‖v − x‖²
L0Step = Callable[[jax.Array, jax.Array], jax.Array]


IDENTITY = operators.Identity()


@dataclasses.dataclass(frozen=True)
class DipL0Config:
  """Settings of a DIP-ℓ0 solve: the authors' NKS settings, but the pure-JAX FFT ℓ0 step.

  The authors' step is Region Fusion (`PRESETS`). λ counts neighbour pairs there and pixels
  in the FFT solver; with the FFT step, λ ≈ 0.0125 did best on NKS crops (README, Results).
  """

  generator: gen.GeneratorConfig = gen.GeneratorConfig()
  lam: float = 0.025
  beta: float = 2.25
  outer_iters: int = 100
  inner_iters: int = 25
  lr: float = 1e-3
  ema: float = 0.9  # avg ← ema·avg + (1 − ema)·f
  l0_step: L0Step = l0_fft.l0_prox
  # How `step` lowers its inner Adam steps: True unrolls them into straight-line code, which
  # on CPU runs convolutions about 15× faster than inside an XLA loop (but compiles slowly).
  inner_unroll: int | bool = True
  # Solve at 1/downsample of the height and width (rounded down; identity operator only):
  # `shrink` the observation, solve, `enlarge` v and f and `finish` the average. 2 buys 4×
  # cheaper steps.
  downsample: int = 1
  # γ > 0: report `finish`ed results, argmin_v λ‖∇v‖₀ + ‖v − y‖² + γ/2‖v − avg‖² at y's size
  # (identity operator only); 0 reports the moving average itself, as the paper does.
  finish_beta: float = 0.0
  # How many of the 8 rotations and mirrors of the image the finishing step is run on (each
  # result turned back, then averaged; `dihedral_mean`): an ℓ0 step's piecewise-constant
  # errors depend on the grid's orientation (Region Fusion's merge order), and their mean
  # is closer to the truth. Each view costs one more ℓ0 step.
  finish_views: int = 1
  # Weight b ∈ [0, 1] of a plain ℓ0 solve in the finished result (with finish_beta > 0):
  # (1 − b)·finish(avg) + b·finish(v₀), v₀ = l0_step(shrunk observation, 2λ/β) (the v-update
  # taken from the observation itself), each under the same views. The generator's errors and
  # plain ℓ0's differ, so their mean is closer to the truth than either. Costs one ℓ0 step at
  # the solve's size and one at full size per view.
  finish_blend: float = 0.0
  # How many offsets of the shrinking grid (1–4: none, then half a cell down and right, down,
  # right; `grid_offsets`) the blend's plain ℓ0 solve is run on, each finished and the results
  # averaged (cycle spinning): each offset's half-resolution solve errs elsewhere. Ignored at
  # downsample 1; costs the blend's two ℓ0 steps per view again for each offset.
  finish_shifts: int = 1
  # Factors s of γ: the finishing step (of the average and of each plain solve) is the mean of
  # its results at γ·s for each s. A finishing step's piecewise-constant errors depend on γ,
  # so several differ, and their mean is closer to the truth. Each costs that step again.
  finish_beta_scales: tuple[float, ...] = (1.0,)
  # The blend's plain ℓ0 solves take weight finish_plain_scale·2λ/β: less smoothing than the
  # v-update's suits an average of many solves.
  finish_plain_scale: float = 1.0
  # More members of the blend's plain ℓ0 mean, each finished alike: with finish_plain_full
  # the same solve at full resolution (at downsample > 1), and with finish_fft_lam > 0
  # `l0_fft.l0_smooth` of the observation at that λ (another solver, with other errors).
  finish_plain_full: bool = False
  finish_fft_lam: float = 0.0


_AUTHORS_L0_STEP = l0_region_fusion.RegionFusionProx(50)  # Region Fusion, 50 passes

PRESETS = {
    # The authors' settings, with their ℓ0 step.
    "nks": DipL0Config(lam=0.025, beta=2.25, l0_step=_AUTHORS_L0_STEP),
    "clipart": DipL0Config(lam=0.025, beta=2.0, l0_step=_AUTHORS_L0_STEP),
    # Under two minutes on a 512×384 image on a 2-core CPU (the README's performance section
    # measures what it buys): solved at half the height and width, a 16-channel 4-scale
    # generator (~1/60 of the paper's cost per step), 800 Adam steps at 10× the paper's
    # learning rate, the authors' Region Fusion ℓ0 step, a shorter output average so that
    # the observation's weight in it (ema^iterations) is gone within the run, and a finishing
    # ℓ0 step at full resolution (γ = 0.5 and 0.75 within 0.02 dB of each other at 120 s,
    # ahead of 1–4.5: README, Time to quality).
    # The finishing step is averaged over all 8 views (+0.43 dB on the 16 time-to-quality
    # images for 0.5–0.9 s more), and the result with plain ℓ0 finished alike (b = 0.8), an
    # ensemble of 6 solves — the 4 offsets of the half-resolution grid, full resolution (all
    # at 0.7·2λ/β), FFT ℓ0 at λ = 0.02 — each finished at γ and 2γ, as is the average:
    # 34.67 → 35.03 dB on those images, 34.38 → 34.78 on 8 others, finishing in 5–9 s
    # (README, Time to quality).
    "fast": DipL0Config(generator=gen.GeneratorConfig().resized(16, 4), lam=0.025, beta=2.25,
                        outer_iters=80, inner_iters=10, lr=0.01, ema=0.8,
                        l0_step=_AUTHORS_L0_STEP, downsample=2, finish_beta=0.75,
                        finish_views=8, finish_blend=0.8, finish_shifts=4,
                        finish_beta_scales=(1.0, 2.0), finish_plain_scale=0.7,
                        finish_plain_full=True, finish_fft_lam=0.02),
}


def solve_shape(shape: tuple[int, ...], downsample: int) -> tuple[int, ...]:
  """(..., H, W, C) -> (..., H // downsample, W // downsample, C)."""
  if not (isinstance(downsample, int) and downsample >= 1):
    raise ValueError(f"downsample must be an integer ≥ 1, got {downsample!r}")
  *lead, h, w, c = shape
  return (*lead, h // downsample, w // downsample, c)


def shrink(y: jax.Array, downsample: int) -> jax.Array:
  """(..., H, W, C) -> `solve_shape`, by antialiased linear interpolation."""
  small = solve_shape(y.shape, downsample)
  return y if small == y.shape else jax.image.resize(y, small, "linear", antialias=True)


def enlarge(x: jax.Array, shape: tuple[int, ...], method: str = "linear") -> jax.Array:
  """A solve-size (..., h, w, C) result back at `shape` (linear, or "nearest" for v)."""
  return x if x.shape == tuple(shape) else jax.image.resize(x, shape, method)


def grid_offsets(downsample: int, n: int) -> list[tuple[int, int]]:
  """The first n (1–4) offsets (rows, columns) of a grid of cells downsample pixels wide:
  (0, 0), then half a cell (downsample // 2) down and right, down, and right; only (0, 0)
  when downsample is 1 (no grid)."""
  if not (isinstance(n, int) and 1 <= n <= 4):
    raise ValueError(f"finish_shifts must be an integer in 1..4, got {n!r}")
  h = downsample // 2
  return [(0, 0), (h, h), (h, 0), (0, h)][:n] if h else [(0, 0)]


def _offset(x: jax.Array, dy: int, dx: int, inverse: bool = False) -> jax.Array:
  """(H, W, C) x moved dy rows down and dx columns right (edges repeated), or back."""
  h, w = x.shape[:2]
  if inverse:
    return jnp.pad(x[dy:, dx:], ((0, dy), (0, dx), (0, 0)), mode="edge")
  return jnp.pad(x, ((dy, 0), (dx, 0), (0, 0)), mode="edge")[:h, :w]


def finish(y: jax.Array, avg: jax.Array, config: DipL0Config) -> jax.Array:
  """The reported result of a solve of y (H, W, C) (identity operator) from its average.

  avg (h, w, C) is the solve-size moving average. It is enlarged to y's size and, with
  γ = config.finish_beta > 0, refined by one ℓ0 step against the observation:
    argmin_v λ‖∇v‖₀ + ‖v − y‖² + γ/2‖v − avg‖² = l0_step((y + γ/2·avg) / (1 + γ/2), λ / (1 + γ/2)).
  Restores at full resolution the edges a downsampled solve blurs, and weighs the observation
  in again where the generator is still off. With config.finish_views > 1 the ℓ0 step is
  averaged over that many rotations and mirrors of the image (`dihedral_mean`). With
  b = config.finish_blend > 0 the result is (1 − b)·that + b·the same for v₀ in place of avg,
  v₀ = l0_step(observation shrunk to the solve's size, s·2λ/β), enlarged (s =
  config.finish_plain_scale): ℓ0 alone; with config.finish_shifts > 1 that is averaged over
  as many offsets of the shrinking grid, and over the members finish_plain_full and
  finish_fft_lam add. With several config.finish_beta_scales every ℓ0 step against the
  observation is averaged over γ·s for each of them.
  """
  if not (math.isfinite(config.finish_beta) and config.finish_beta >= 0):
    raise ValueError(f"finish_beta must be finite and ≥ 0, got {config.finish_beta!r}")
  b = config.finish_blend
  if not 0 <= b <= 1:
    raise ValueError(f"finish_blend must be in [0, 1], got {b!r}")
  scales = config.finish_beta_scales
  if not (scales and all(math.isfinite(s) and s > 0 for s in scales)):
    raise ValueError(f"finish_beta_scales must be finite and > 0, got {scales!r}")
  if not (math.isfinite(config.finish_plain_scale) and config.finish_plain_scale > 0):
    raise ValueError(f"finish_plain_scale must be finite and > 0, got "
                     f"{config.finish_plain_scale!r}")
  if not (math.isfinite(config.finish_fft_lam) and config.finish_fft_lam >= 0):
    raise ValueError(f"finish_fft_lam must be finite and ≥ 0, got {config.finish_fft_lam!r}")
  offsets = grid_offsets(config.downsample, config.finish_shifts)
  avg = enlarge(avg, y.shape)
  if config.finish_beta == 0:
    return avg
  channels = y.shape[-1]

  def finished(x, v):  # mean over γ of argmin λ‖∇u‖₀ + ‖u − x‖² + γ/2‖u − v‖²
    results = []
    for s in scales:
      g = 0.5 * config.finish_beta * s
      results.append(config.l0_step((x + g * v) / (1.0 + g), config.lam / (1.0 + g)))
    return results[0] if len(results) == 1 else sum(results) / len(results)

  def refine(xv):  # y and avg stacked on the channels, so that both turn with the view
    return finished(xv[..., :channels], xv[..., channels:])

  out = dihedral_mean(refine, jnp.concatenate([y, avg], -1), config.finish_views)
  if b == 0:
    return out
  weight = config.finish_plain_scale * 2.0 * config.lam / config.beta

  def plain(x):  # ℓ0 alone in the same two steps: solved at the solve's size, then finished
    solves = []
    for dy, dx in offsets:
      v0 = config.l0_step(shrink(_offset(x, dy, dx), config.downsample), weight)
      solves.append(_offset(enlarge(v0, x.shape), dy, dx, inverse=True))
    if config.finish_plain_full and config.downsample > 1:
      solves.append(config.l0_step(x, weight))
    if config.finish_fft_lam > 0:
      solves.append(l0_fft.l0_smooth(x, lam=config.finish_fft_lam))
    return sum(finished(x, v0) for v0 in solves) / len(solves)

  return (1.0 - b) * out + b * dihedral_mean(plain, y, config.finish_views)


def _view(x: jax.Array, k: int, inverse: bool = False) -> jax.Array:
  """The k-th of the 8 rotations/mirrors of (H, W, C) x (k // 4 mirrors, k % 4 quarter turns),
  or its inverse."""
  if inverse:
    x = jnp.flip(x, 1) if k >= 4 else x
    return jnp.rot90(x, -(k % 4), axes=(0, 1))
  x = jnp.rot90(x, k % 4, axes=(0, 1))
  return jnp.flip(x, 1) if k >= 4 else x


def dihedral_mean(fn: Callable[[jax.Array], jax.Array], x: jax.Array, views: int) -> jax.Array:
  """Mean over the first `views` (1–8) rotations and mirrors T of (H, W, C) x of T⁻¹ fn(T x).

  Views 0–3 turn x by 0–3 quarter turns, 4–7 do the same and mirror it; 1 is fn(x).
  """
  if not (isinstance(views, int) and 1 <= views <= 8):
    raise ValueError(f"finish_views must be an integer in 1..8, got {views!r}")
  total = fn(x)
  for k in range(1, views):
    total = total + _view(fn(_view(x, k)), k, inverse=True)
  return total / views if views > 1 else total


class AdmmState(NamedTuple):
  params: dict
  opt_state: optax.OptState
  z: jax.Array  # (H, W, input_channels) fixed generator input
  v: jax.Array  # (H, W, C) piecewise-constant split variable
  w: jax.Array  # (H, W, C) scaled Lagrange multiplier
  avg: jax.Array  # (H, W, C) moving average of f: the result the paper scores
  iteration: jax.Array


def check_config(config: DipL0Config) -> None:
  """Raises ValueError for settings a solve cannot run: λ < 0, β ≤ 0, a learning rate ≤ 0,
  fewer than one inner step, a negative outer count, or an EMA outside [0, 1)."""
  # Comparisons with NaN are false, so each condition also refuses NaN.
  ok = {"lam": 0 <= config.lam < math.inf, "beta": 0 < config.beta < math.inf,
        "lr": 0 < config.lr < math.inf, "ema": 0 <= config.ema < 1,
        "inner_iters": config.inner_iters >= 1, "outer_iters": config.outer_iters >= 0}
  bad = [k for k, good in ok.items() if not good]
  if bad:
    raise ValueError("DipL0Config: " + ", ".join(f"{k}={getattr(config, k)}" for k in bad)
                     + " (needs lam >= 0, beta > 0, lr > 0, 0 <= ema < 1, inner_iters >= 1, "
                     "outer_iters >= 0)")


def init(key: jax.Array, y: jax.Array, operator: operators.Operator, config: DipL0Config,
         *, shape: tuple[int, ...] | None = None) -> AdmmState:
  """Initial ADMM state for observation y; `shape` is A's input shape (default y's).

  Raises:
    ValueError: `check_config` refuses the config.
  """
  check_config(config)
  shape = shape or y.shape
  gen_key, v_key, w_key = jax.random.split(key, 3)
  params, z = gen.init_generator(gen_key, shape, config.generator)
  opt_state = optax.adam(config.lr).init(params)
  v = jax.random.uniform(v_key, shape)
  w = jax.random.uniform(w_key, shape)
  avg = operator.pseudo_inverse(y)
  return AdmmState(params, opt_state, z, v, w, avg, jnp.zeros((), jnp.int32))


def lagrangian(f: jax.Array, v: jax.Array, w: jax.Array, y: jax.Array,
               operator: operators.Operator, config: DipL0Config) -> jax.Array:
  """L(f, v, w) with ‖∇v‖₀ counted as pixels whose gradient exceeds half an 8-bit level."""
  l0 = differences.gradient_count(v, tol=0.5 / 255)
  return (jnp.sum((operator(f) - y) ** 2) + config.lam * l0 + jnp.sum(w * (v - f))
          + 0.5 * config.beta * jnp.sum((v - f) ** 2))


def theta_step(state: AdmmState, y: jax.Array, operator: operators.Operator,
               config: DipL0Config) -> tuple[AdmmState, jax.Array]:
  """One Adam step of the θ-update on ‖Af_θ − y‖² + ⟨w, v − f_θ⟩ + β/2‖v − f_θ‖²."""

  def loss_fn(params):
    f = gen.generate(params, state.z, config.generator)
    diff = state.v - f
    return (jnp.sum((operator(f) - y) ** 2) + jnp.sum(state.w * diff)
            + 0.5 * config.beta * jnp.sum(diff**2))

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  updates, opt_state = optax.adam(config.lr).update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return state._replace(params=params, opt_state=opt_state), loss


def split_step(state: AdmmState, y: jax.Array, operator: operators.Operator,
               config: DipL0Config) -> tuple[AdmmState, dict]:
  """The v-update, dual ascent and output average that close an outer iteration."""
  beta = config.beta
  f = gen.generate(state.params, state.z, config.generator)
  v = config.l0_step(f - state.w / beta, 2.0 * config.lam / beta)
  w = state.w + beta * (v - f)
  avg = config.ema * state.avg + (1.0 - config.ema) * f
  metrics = {
      "data": jnp.sum((operator(f) - y) ** 2),
      "lagrangian": lagrangian(f, v, w, y, operator, config),
      "primal_residual": jnp.sqrt(jnp.sum((v - f) ** 2)),
  }
  return state._replace(v=v, w=w, avg=avg, iteration=state.iteration + 1), metrics


def step(state: AdmmState, y: jax.Array, operator: operators.Operator,
         config: DipL0Config) -> tuple[AdmmState, dict]:
  """One outer ADMM iteration: inner_iters `theta_step`s (a scan), then `split_step`."""
  state, losses = jax.lax.scan(lambda s, _: theta_step(s, y, operator, config), state, None,
                               length=config.inner_iters, unroll=config.inner_unroll)
  state, metrics = split_step(state, y, operator, config)
  return state, {"inner_loss": losses[-1], **metrics}


class DipL0Result(NamedTuple):
  output: jax.Array  # (H, W, C) moving average of f (the paper's result), `finish`ed if set
  v: jax.Array  # (H, W, C) the piecewise-constant split variable
  f: jax.Array  # (H, W, C) the generator's final output
  metrics: dict  # per-outer-iteration arrays of `step`'s metrics


def dip_l0(y: jax.typing.ArrayLike, *, key: jax.Array, config: DipL0Config = DipL0Config(),
           operator: operators.Operator = IDENTITY,
           shape: tuple[int, ...] | None = None, unroll: int | bool = 1) -> DipL0Result:
  """Smooths y (H', W', C) in [0, 1] by DIP-ℓ0; returns (H, W, C) images and metrics.

  A pure function (`jit`/`vmap`-able): init, then a `lax.scan` of `step` over
  config.outer_iters iterations (`unroll` is passed to that scan). With config.downsample
  > 1 all of it runs on `shrink(y)`, and the images returned are enlarged to y's size (v by
  nearest neighbour, so that it stays piecewise constant). With config.finish_beta > 0 the
  output is `finish`ed.

  Raises:
    TypeError, ValueError: y is not a float (H', W', C) image with the generator's
      output_channels, or `operator` does not map `shape` (default y's) to y's shape.
  """
  y = jnp.asarray(y)
  shrunk_or_finished = config.downsample != 1 or config.finish_beta != 0
  if shrunk_or_finished and not (isinstance(operator, operators.Identity) and shape is None):
    raise ValueError("DipL0Config.downsample > 1 or finish_beta > 0 needs the identity "
                     "operator")
  checks.observation(y, operator, shape, config.generator.output_channels, "dip_l0")
  y = y.astype(jnp.float32)
  if shrunk_or_finished:
    small = dip_l0(shrink(y, config.downsample), key=key, unroll=unroll,
                   config=dataclasses.replace(config, downsample=1, finish_beta=0.0))
    return small._replace(output=finish(y, small.output, config),
                          v=enlarge(small.v, y.shape, "nearest"), f=enlarge(small.f, y.shape))
  state = init(key, y, operator, config, shape=shape)
  state, metrics = jax.lax.scan(lambda s, _: step(s, y, operator, config), state, None,
                                length=config.outer_iters, unroll=unroll)
  f = gen.generate(state.params, state.z, config.generator)
  return DipL0Result(state.avg, state.v, f, metrics)


# The batched steps (`sharding.batch_map`), with a mesh run by each device on its share.
@xla_flags.step_jit(static_argnames=("config", "mesh"), donate_argnums=0)
def _theta_batch(state, y, operator, config, mesh=None):
  return sharding.batch_map(lambda s, yy, op: theta_step(s, yy, op, config), mesh,
                           (0, 0, None))(state, y, operator)


@functools.partial(jax.jit, static_argnames=("config", "mesh"), donate_argnums=0)
def _split_batch(state, y, operator, config, mesh=None):
  return sharding.batch_map(lambda s, yy, op: split_step(s, yy, op, config), mesh,
                           (0, 0, None))(state, y, operator)


@functools.partial(jax.jit, static_argnames=("config", "shape", "mesh"))
def _init_batch(keys, y, operator, config, shape, mesh):
  return sharding.batch_map(lambda k, yy, op: init(k, yy, op, config, shape=shape), mesh,
                           (0, 0, None))(keys, y, operator)


def init_batch(keys: jax.Array, y: jax.Array, operator: operators.Operator,
               config: DipL0Config, shape: tuple[int, ...] | None = None) -> AdmmState:
  """`init` for a batch: keys (B,), y (B, H', W', C) -> a state with leading axis B.

  Jitted; when y is split over devices by `sharding.shard_batch`, so is the state.
  """
  return _init_batch(keys, y, operator, config, shape, sharding.mesh_of(y))


def iterate(state: AdmmState, y: jax.Array, operator: operators.Operator,
            config: DipL0Config) -> Iterator[tuple[AdmmState, dict]]:
  """Runs the outer iterations of a batch from the host, yielding after each one.

  The same updates as `step`, batched over the leading axis of `state` and y, lowered
  as one jitted Adam step called inner_iters times and one jitted v/w/average update: on CPU
  this runs as fast as the unrolled scan and compiles in a fraction of its time. Stops after
  config.outer_iters iterations (counting those `state` already has). When y is split over
  devices by `sharding.shard_batch` (and `state` with it), each device runs its share.
  It solves at y's size: for config.downsample > 1, pass `shrink(y, config.downsample)` here
  and to `init_batch`, `finish` the average and `enlarge` v (as `dip_l0` and the launchers
  do).

  Yields:
    (state, metrics), metrics holding (B,) arrays of `step`'s metrics.
  """
  y = jnp.asarray(y, jnp.float32)
  # The compiled steps do not depend on the loop lengths: normalise them so that runs of any
  # length share one compilation.
  step_config = dataclasses.replace(config, outer_iters=1, inner_iters=1, inner_unroll=1)
  mesh = sharding.mesh_of(y)
  while int(state.iteration[0]) < config.outer_iters:
    for _ in range(config.inner_iters):
      state, loss = _theta_batch(state, y, operator, step_config, mesh)
    state, metrics = _split_batch(state, y, operator, step_config, mesh)
    yield state, {"inner_loss": loss, **metrics}
