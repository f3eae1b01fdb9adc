"""Saving and restoring solver state with orbax-checkpoint, so a killed run can resume.

A checkpoint holds a state pytree (generator parameters, optimiser state, ADMM variables,
output average, PRNG key, iteration) and a JSON dict of metadata (settings, log so far).
Orbax writes into a temporary folder and renames it when complete, so a process killed
mid-save leaves the previous checkpoint intact. Typed PRNG keys are stored as their raw
key data.
"""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


def _is_key(x: Any) -> bool:
  """Whether x (an array or a ShapeDtypeStruct) holds typed PRNG keys."""
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_raw(state):
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)


def _manager(directory: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True),
      item_names=("state", "meta"))


def save(directory: str, step: int, state: Any, meta: dict) -> None:
  """Writes checkpoint `step` of `state` and `meta` into `directory` (keeps the last two)."""
  with _manager(directory) as manager:
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_to_raw(state)), meta=ocp.args.JsonSave(meta)))
    manager.wait_until_finished()


def restore(directory: str, like: Any) -> tuple[Any, dict] | None:
  """The newest checkpoint in `directory` as (state shaped like `like`, meta), or None.

  Args:
    directory: where `save` wrote.
    like: a state (or `jax.eval_shape` of one) with the structure, shapes and dtypes wanted.
  """
  if not os.path.isdir(directory):
    return None
  with _manager(directory) as manager:
    step = manager.latest_step()
    if step is None:
      return None
    target = jax.tree.map(
        lambda x: jax.eval_shape(jax.random.key_data, x) if _is_key(x) else x, like)
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
  state = jax.tree.map(
      lambda x, ref: jax.random.wrap_key_data(x) if _is_key(ref) else x, restored.state, like)
  return state, restored.meta
