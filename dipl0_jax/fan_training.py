"""Training the smoother of Fan et al. (ACM TOG 2018) without labels, and using it.

The loss of a batch of crops I is the mean over the batch of the energy E(FanNet(I); I) of
`fan_energy` (no ground truth anywhere); Adam (optax) on the network's parameters, BatchNorm
with batch statistics during training and running averages at inference. A trained model is
a msgpack file holding the network's variables and its `FanNetConfig`, written by
`save_model` and read by `load_model`.
"""

import dataclasses
import functools
import os
from typing import NamedTuple

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dipl0_jax import fan_energy, fan_network

# The model shipped with the package (see dipl0_jax/data/README.md for how it was trained).
SHIPPED_MODEL = os.path.join(os.path.dirname(__file__), "data", "fan2018_smoothing.msgpack")


@dataclasses.dataclass(frozen=True)
class FanTrainConfig:
  """What a training run optimises and how; hashable, so it can be static under `jit`."""

  net: fan_network.FanNetConfig = fan_network.FanNetConfig()
  energy: fan_energy.FanEnergyConfig = fan_energy.FanEnergyConfig()
  lr: float = 1e-3  # Adam step size


class TrainState(NamedTuple):
  params: dict
  batch_stats: dict
  opt_state: optax.OptState
  step: jax.Array  # () int32, training steps done


def init(key: jax.Array, config: FanTrainConfig, crop: int = 32) -> TrainState:
  """A freshly initialised network (the identity map, see `FanNet`) and Adam state."""
  variables = fan_network.FanNet(config.net).init(key, jnp.zeros((1, crop, crop, 3)))
  params = variables["params"]
  return TrainState(params, variables["batch_stats"], optax.adam(config.lr).init(params),
                    jnp.zeros((), jnp.int32))


def loss(params: dict, batch_stats: dict, images: jax.Array, config: FanTrainConfig,
         ) -> tuple[jax.Array, tuple[dict, dict]]:
  """Mean energy of the network's outputs on a batch (B, H, W, 3) in [0, 1].

  Returns the loss and (updated batch statistics, batch means of the unweighted terms).
  """
  outputs, updates = fan_network.FanNet(config.net).apply(
      {"params": params, "batch_stats": batch_stats}, images, train=True,
      mutable=["batch_stats"])

  def one(output, image):
    return fan_energy.energy(output, image, fan_energy.edge_map(image, config.energy),
                             config.energy)

  totals, terms = jax.vmap(one)(outputs, images)
  return jnp.mean(totals), (updates["batch_stats"],
                            {k: jnp.mean(v) for k, v in terms.items()})


@functools.partial(jax.jit, static_argnames="config", donate_argnums=0)
def train_step(state: TrainState, images: jax.Array, config: FanTrainConfig,
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step on `loss`; returns the new state and {"loss", "data", "flattening",
  "edge"} of the batch before the step."""
  (value, (batch_stats, terms)), grads = jax.value_and_grad(loss, has_aux=True)(
      state.params, state.batch_stats, images, config)
  updates, opt_state = optax.adam(config.lr).update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return TrainState(params, batch_stats, opt_state, state.step + 1), {"loss": value, **terms}


def smooth(variables: dict, image: jax.Array, config: fan_network.FanNetConfig,
           ) -> jax.Array:
  """One forward pass in inference mode: (H, W, C) in [0, 1] -> (H, W, C) in [0, 1].

  C = 1 (grey) is smoothed as three equal channels and averaged back; C = 3 as is.
  """
  if image.shape[-1] not in (1, 3):
    raise ValueError(f"want 1 or 3 channels, got image of shape {image.shape}")
  rgb = jnp.broadcast_to(image, (*image.shape[:2], 3))
  out = fan_network.FanNet(config).apply(variables, rgb[None])[0]
  if image.shape[-1] == 1:
    out = jnp.mean(out, axis=-1, keepdims=True)
  return jnp.clip(out, 0.0, 1.0)


def save_model(path_or_file, variables: dict, config: fan_network.FanNetConfig,
               info: dict | None = None) -> None:
  """Writes the inference variables, the network config and free-form `info` (strings and
  numbers: what it was trained on, how long) as msgpack to a path or binary file object."""
  payload = {"variables": jax.tree.map(np.asarray, variables),
             "config": dataclasses.asdict(config), "info": info or {}}
  data = flax.serialization.msgpack_serialize(payload)
  if hasattr(path_or_file, "write"):
    path_or_file.write(data)
  else:
    with open(path_or_file, "wb") as f:
      f.write(data)


def load_model(path: str) -> tuple[dict, fan_network.FanNetConfig, dict]:
  """Reads `save_model`'s file: (variables, network config, info).

  Raises:
    ValueError: the file is not such a model.
  """
  with open(path, "rb") as f:
    data = f.read()
  try:
    payload = flax.serialization.msgpack_restore(data)
    config = fan_network.FanNetConfig(**payload["config"])
    variables = payload["variables"]
    info = payload.get("info", {})
  except (ValueError, TypeError, KeyError) as e:
    raise ValueError(f"{path}: not a fan2018 model file ({e})") from None
  # Shapes must match the network the config describes.
  expected = jax.eval_shape(fan_network.FanNet(config).init, jax.random.key(0),
                            jnp.zeros((1, 8, 8, 3)))
  if jax.tree.structure(expected) != jax.tree.structure(variables) or any(
      a.shape != b.shape for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(variables),
                                         strict=True)):
    raise ValueError(f"{path}: variables do not match the network {config}")
  return jax.tree.map(jnp.asarray, variables), config, info
