"""What the benchmarks time, one function per method, with no flags of their own.

Shared by `l0_benchmark`, `dip_l0_benchmark`, `suite` and `torch_compare`. Each returns a dict
of seconds: compile time apart from run time, run times the median of `repeats` calls after
one untimed warm-up call.
"""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

import dipl0_jax
from benchmarks import timing
from dipl0_jax import admm, deep_image_prior, l0_fft, operators, sharding
from dipl0_jax import generator as gen

IDENTITY = operators.Identity()


def l0_fft_solve(image: np.ndarray, *, lam: float, kappa: float, beta_max: float = 1e5,
                 repeats: int) -> dict:
  """Xu et al.'s FFT solver on one image: compile and median solve seconds of `l0_smooth_host`
  (what the launchers call), and of `l0_smooth` jitted on its own (`jit_solve_s`)."""
  buffers = jax.eval_shape(l0_fft._host_setup, image)
  start = time.perf_counter()
  l0_fft._host_setup_jit.lower(image).compile()
  l0_fft._host_loop_jit.lower(jnp.float32(lam), *buffers, kappa=kappa, beta_max=beta_max).compile()
  compile_s = time.perf_counter() - start
  solve_s = timing.median_seconds(
      lambda: l0_fft.l0_smooth_host(image, lam=lam, kappa=kappa, beta_max=beta_max), repeats,
      warmup=1)
  solve = jax.jit(lambda x: dipl0_jax.l0_smooth(x, lam=lam, kappa=kappa, beta_max=beta_max))
  compiled, jit_compile_s = timing.compile_seconds(solve, image)
  jit_solve_s = timing.median_seconds(lambda: compiled(image), repeats, warmup=1)
  return {"compile_s": compile_s, "solve_s": solve_s, "jit_compile_s": jit_compile_s,
          "jit_solve_s": jit_solve_s,
          "iterations": l0_fft.num_steps(lam, kappa=kappa, beta_max=beta_max)}


def region_fusion_solve(image: np.ndarray, *, lam: float, num_passes: int,
                        repeats: int) -> dict:
  """Region Fusion on one image: Numba's compile (or cache load) and median solve seconds."""
  compile_s = timing.median_seconds(
      lambda: dipl0_jax.region_fusion(image[:8, :8], lam=lam, num_passes=num_passes), 1)
  solve_s = timing.median_seconds(
      lambda: dipl0_jax.region_fusion(image, lam=lam, num_passes=num_passes), repeats, warmup=1)
  return {"compile_s": compile_s, "solve_s": solve_s, "passes": num_passes + 1}


def generator_config(channels: int, scales: int = 5) -> gen.GeneratorConfig:
  """The launchers' generator for --channels and --scales (4-channel skips)."""
  return gen.GeneratorConfig().resized(channels, scales)


def dip_config(channels: int, scales: int = 5) -> deep_image_prior.DipConfig:
  """DIP's defaults (3000 Adam steps) with the given generator."""
  return deep_image_prior.DipConfig(generator=generator_config(channels, scales))


def dip_l0_config(channels: int, scales: int = 5) -> admm.DipL0Config:
  """DIP-ℓ0's NKS preset (100 outer × 25 inner iterations) with the given generator."""
  return dataclasses.replace(admm.PRESETS["nks"], generator=generator_config(channels, scales))


def dip_step(width: int, height: int, config: deep_image_prior.DipConfig, seed: int = 0):
  """The launcher's jitted DIP Adam step (batch of one), compiled for a width × height image.

  Returns:
    (step: state -> state, the initial state, y (1, H, W, 3), compile seconds, FLOPs of a
    step by XLA's cost analysis). `step` donates its input state.
  """
  y = jnp.asarray(timing.test_image(width, height)[None])
  state = deep_image_prior.init_batch(jax.random.key(seed)[None], y, IDENTITY, config)
  step_config = dataclasses.replace(config, num_iters=1)  # as `deep_image_prior.iterate`
  compiled, compile_s = timing.compile_seconds(
      deep_image_prior._step_batch, state, y, IDENTITY, step_config)

  def step(s):
    return compiled(s, y, IDENTITY)[0]

  return step, state, y, compile_s, timing.flops(compiled)


def dip_steps(width: int, height: int, config: deep_image_prior.DipConfig,
              repeats: int) -> dict:
  """DIP: compile and median seconds of one Adam step; a solve is config.num_iters steps."""
  step, state, _, compile_s, _ = dip_step(width, height, config)
  adam_s = timing.median_seconds(timing.Chain(step, state), repeats, warmup=1)
  return {"compile_s": compile_s, "adam_step_s": adam_s, "steps": config.num_iters,
          "solve_s": config.num_iters * adam_s}


def dip_l0_steps(width: int, height: int, config: admm.DipL0Config, repeats: int) -> dict:
  """DIP-ℓ0's two jitted pieces as the launcher drives them (`admm.iterate`), on one image.

  Compile seconds of both, median seconds of one Adam step and of one v/w/average update, and
  the outer iteration (inner_iters steps + update) and whole solve (outer_iters of them) they
  imply.
  """
  y = jnp.asarray(timing.test_image(width, height)[None])
  return dip_l0_batch_steps(y, jax.random.key(0)[None], config, repeats)


def dip_l0_batch_steps(y: jax.Array, keys: jax.Array, config: admm.DipL0Config,
                       repeats: int) -> dict:
  """`dip_l0_steps` for a batch y (B, H, W, C) with keys (B,), split over devices when
  `sharding.shard_batch` placed them so."""
  state = admm.init_batch(keys, y, IDENTITY, config)
  step_config = dataclasses.replace(config, outer_iters=1, inner_iters=1, inner_unroll=1)
  mesh = sharding.mesh_of(y)
  theta, theta_compile_s = timing.compile_seconds(
      admm._theta_batch, state, y, IDENTITY, step_config, mesh)
  split, split_compile_s = timing.compile_seconds(
      admm._split_batch, state, y, IDENTITY, step_config, mesh)
  # Both steps donate their state: each timed call continues from the previous one's.
  thetas = timing.Chain(lambda s: theta(s, y, IDENTITY)[0], state)
  adam_s = timing.median_seconds(thetas, repeats, warmup=1)
  updates = timing.Chain(lambda s: split(s, y, IDENTITY)[0], thetas.state)
  update_s = timing.median_seconds(updates, repeats, warmup=1)
  outer_s = config.inner_iters * adam_s + update_s
  return {"compile_s": theta_compile_s + split_compile_s, "adam_step_s": adam_s,
          "update_s": update_s, "outer_iteration_s": outer_s,
          "outer_iters": config.outer_iters, "inner_iters": config.inner_iters,
          "solve_s": config.outer_iters * outer_s}


def fan_forward(image: np.ndarray, repeats: int, seed: int = 0) -> dict:
  """Fan et al.'s network (randomly initialised), one jitted inference pass on one image."""
  from dipl0_jax import fan_network  # still being written: callers report an ImportError

  net = fan_network.FanNet()
  x = jnp.asarray(image[None])
  variables = net.init(jax.random.key(seed), x, train=False)
  forward = jax.jit(lambda v, x: net.apply(v, x, train=False))
  compiled, compile_s = timing.compile_seconds(forward, variables, x)
  solve_s = timing.median_seconds(lambda: compiled(variables, x), repeats, warmup=1)
  return {"compile_s": compile_s, "solve_s": solve_s}
