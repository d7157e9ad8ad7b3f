"""`GANState`: everything that changes during training, one pytree that checkpoints as one unit.

Its optional parts (`OPTIONAL_FIELDS`: the moving average of G, the networks' batch statistics) are
None while their component is off, and a None part is no node of the pytree at all: not a leaf, not a
key. A state without them therefore flattens, checkpoints (Orbax compares the key structure of the
saved tree with the restore target) and restores exactly as the state before they existed, and
checkpoints written before they existed restore into it.
"""

import dataclasses
from typing import Any

import jax

from gan_jax.data.pipeline import DataState


@dataclasses.dataclass(frozen=True)
class GANState:
  """Everything that changes during training; a pytree that checkpoints as one unit."""

  step: jax.Array  # int32: completed iterations
  key: jax.Array  # uint32[2]: the run's root key (never advanced; per-step keys are folded in)
  g_params: Any
  d_params: Any
  g_opt_state: Any
  d_opt_state: Any
  data: DataState
  # Optional parts (`OPTIONAL_FIELDS`), None when their component is off. A None one is no node of
  # the pytree at all (not even a key), so a state without them flattens, checkpoints and restores
  # exactly as the state before they existed, and old checkpoints restore into it.
  ema_params: Any = None  # moving average of g_params (`ema.decay` > 0; gan_jax/core/ema.py)
  g_batch_stats: Any = None  # Flax `batch_stats` of a G / D with batch norm (gan_jax/core/nets.py)
  d_batch_stats: Any = None

  def replace(self, **updates) -> "GANState":
    return dataclasses.replace(self, **updates)


REQUIRED_FIELDS = ("step", "key", "g_params", "d_params", "g_opt_state", "d_opt_state", "data")
OPTIONAL_FIELDS = ("ema_params", "g_batch_stats", "d_batch_stats")


def _state_fields(state: GANState) -> tuple:
  return REQUIRED_FIELDS + tuple(n for n in OPTIONAL_FIELDS if getattr(state, n) is not None)


def _state_flatten_with_keys(state: GANState):
  names = _state_fields(state)
  return [(jax.tree_util.GetAttrKey(n), getattr(state, n)) for n in names], names


def _state_flatten(state: GANState):
  names = _state_fields(state)
  return [getattr(state, n) for n in names], names


def _state_unflatten(names, children) -> GANState:
  return GANState(**dict(zip(names, children)))


jax.tree_util.register_pytree_with_keys(GANState, _state_flatten_with_keys, _state_unflatten, _state_flatten)
