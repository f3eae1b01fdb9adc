"""Deep Image Prior (Ulyanov, Vedaldi, Lempitsky 2018): fit a generator to one observation.

Minimises  mean‖A(f_θ(z + σ·n)) − y‖²  over θ with Adam, where z is fixed noise, n fresh
Gaussian noise each step (σ = reg_noise_std) and A a forward operator (`operators`). The
result is the exponential moving average of f_θ(z) over the steps, as in the original code.
"""

import dataclasses
import functools
from collections.abc import Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from dipl0_jax import checks, operators, sharding, threefry, xla_flags
from dipl0_jax import generator as gen

IDENTITY = operators.Identity()


@dataclasses.dataclass(frozen=True)
class DipConfig:
  """Settings of a DIP fit; defaults are the original denoising notebook's."""

  generator: gen.GeneratorConfig = gen.GeneratorConfig()
  num_iters: int = 3000
  lr: float = 0.01
  reg_noise_std: float = 1.0 / 30.0
  ema: float = 0.99  # avg ← ema·avg + (1 − ema)·f


class DipState(NamedTuple):
  params: dict
  opt_state: optax.OptState
  z: jax.Array  # (H, W, input_channels) fixed generator input
  avg: jax.Array  # (H, W, C) moving average of the output
  key: jax.Array
  iteration: jax.Array


def init(key: jax.Array, y: jax.Array, operator: operators.Operator,
         config: DipConfig, *, shape: tuple[int, ...] | None = None) -> DipState:
  """Initial state for fitting observation y; `shape` is A's input shape (default y's)."""
  del operator  # the same signature as `admm.init`, whose average starts at A⁺y
  shape = shape or y.shape
  init_key, key = jax.random.split(key)
  params, z = gen.init_generator(init_key, shape, config.generator)
  opt_state = optax.adam(config.lr).init(params)
  avg = jnp.zeros(shape, jnp.float32)
  return DipState(params, opt_state, z, avg, key, jnp.zeros((), jnp.int32))


def step(state: DipState, y: jax.Array, operator: operators.Operator,
         config: DipConfig) -> tuple[DipState, dict]:
  """One Adam step on mean‖A f_θ(z + σn) − y‖², then the output average."""
  key, noise_key = jax.random.split(state.key)
  # jax.random.normal's numbers with non-partitionable Threefry counters (twice as fast on this
  # CPU as partitionable ones; each image's noise stays on one device anyway), hash written out.
  noise = threefry.normal(noise_key, state.z.shape)
  z = state.z + config.reg_noise_std * noise

  def loss_fn(params):
    f = gen.generate(params, z, config.generator)
    return jnp.mean((operator(f) - y) ** 2), f

  (loss, f), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = optax.adam(config.lr).update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  # The original averages the output of the step's forward pass, taken with the perturbed
  # input; its first average is that output itself.
  avg = jnp.where(state.iteration == 0, f, config.ema * state.avg + (1 - config.ema) * f)
  new = DipState(params, opt_state, state.z, avg, key, state.iteration + 1)
  return new, {"loss": loss}


class DipResult(NamedTuple):
  output: jax.Array  # (H, W, C) the averaged output (what DIP reports)
  last: jax.Array  # (H, W, C) f_θ(z) of the final parameters
  metrics: dict  # per-step arrays, e.g. "loss": (num_iters,)


def dip(y: jax.typing.ArrayLike, *, key: jax.Array, config: DipConfig = DipConfig(),
        operator: operators.Operator = IDENTITY,
        shape: tuple[int, ...] | None = None, unroll: int | bool = 1) -> DipResult:
  """Fits DIP to observation y (H', W', C) and returns the restored (H, W, C) image.

  A pure function (`jit`/`vmap`-able): init, then `lax.scan` of `step` over
  config.num_iters steps. On CPU, convolutions inside XLA loops are slow; `unroll=True`
  unrolls the scan (fast to run, slow to compile) — the launcher instead drives `step`
  from the host in chunks.

  Raises:
    TypeError, ValueError: y is not a float (H', W', C) image with the generator's
      output_channels, or `operator` does not map `shape` (default y's) to y's shape.
  """
  y = jnp.asarray(y)
  checks.observation(y, operator, shape, config.generator.output_channels, "dip")
  y = y.astype(jnp.float32)
  state = init(key, y, operator, config, shape=shape)
  state, metrics = jax.lax.scan(lambda s, _: step(s, y, operator, config), state, None,
                                length=config.num_iters, unroll=unroll)
  return DipResult(state.avg, gen.generate(state.params, state.z, config.generator), metrics)


@functools.partial(jax.jit, static_argnames=("config", "shape", "mesh"))
def _init_batch(keys, y, operator, config, shape, mesh):
  return sharding.batch_map(lambda k, yy, op: init(k, yy, op, config, shape=shape), mesh,
                           (0, 0, None))(keys, y, operator)


def init_batch(keys: jax.Array, y: jax.Array, operator: operators.Operator,
               config: DipConfig, shape: tuple[int, ...] | None = None) -> DipState:
  """`init` for a batch: keys (B,), y (B, H', W', C) -> a state with leading axis B.

  Jitted; when y is split over devices by `sharding.shard_batch`, so is the state.
  """
  return _init_batch(keys, y, operator, config, shape, sharding.mesh_of(y))


# Batched (`sharding.batch_map`), with a mesh run by each device on its share of the batch.
@xla_flags.step_jit(static_argnames=("config", "mesh"), donate_argnums=0)
def _step_batch(state, y, operator, config, mesh=None):
  return sharding.batch_map(lambda s, yy, op: step(s, yy, op, config), mesh,
                           (0, 0, None))(state, y, operator)


def iterate(state: DipState, y: jax.Array, operator: operators.Operator, config: DipConfig,
            *, chunk: int = 25) -> Iterator[tuple[DipState, dict]]:
  """Runs a batch's Adam steps from the host (one jitted step a call), yielding every `chunk`.

  Convolutions inside XLA loops are slow on CPU, so the loop over steps is a Python loop.
  When y is split over devices by `sharding.shard_batch` (and `state` with it), each device
  runs its share.

  Yields:
    (state, metrics), metrics holding the (B,) loss of the chunk's last step.
  """
  y = jnp.asarray(y, jnp.float32)
  step_config = dataclasses.replace(config, num_iters=1)  # one compilation for any length
  mesh = sharding.mesh_of(y)
  while int(state.iteration[0]) < config.num_iters:
    end = min(config.num_iters, int(state.iteration[0]) + chunk)
    while int(state.iteration[0]) < end:
      state, metrics = _step_batch(state, y, operator, step_config, mesh)
    yield state, metrics
