"""Running the update on one device, under `jax.pmap`, or under `jax.jit` with a `Mesh`.

  none      one device, `jax.jit`.
  pmap      `jax.pmap` over the local devices; gradients averaged with `lax.pmean` over axis 'batch'.
  sharding  `jax.jit` with a 1-D `Mesh` over all devices: the batch is sharded on axis 'data', the
            state replicated. JAX's recommended route and the default on more than one device.

All three compute the same update for the same global batch (see `gan_jax.gan`). A `Runner` hides the
differences from the training loop: it places the state and data, compiles the multi-step function once
per dispatch length, and hands back metrics and a host copy of the state.
"""

import dataclasses
import functools
import os
import time

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gan_jax.errors import UserError
from gan_jax.gan import GAN, GANState

MODES = ("auto", "none", "pmap", "sharding")
PMAP_AXIS = "batch"
MESH_AXIS = "data"


def maybe_initialize_distributed(parallel_config) -> None:
  """Calls `jax.distributed.initialize` for a multi-process run.

  Explicit settings come from the config (`coordinator_address`, `num_processes`, `process_id`) or
  the environment (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`); on TPU pods and
  SLURM, `GAN_JAX_DISTRIBUTED=1` lets JAX detect them. Single-process runs call nothing.
  """
  address = parallel_config.get("coordinator_address", "") or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
  num = parallel_config.get("num_processes", 0) or int(os.environ.get("JAX_NUM_PROCESSES", "0"))
  pid = parallel_config.get("process_id", -1)
  if pid < 0:
    pid = int(os.environ.get("JAX_PROCESS_ID", "-1"))
  if address or num > 1:
    if not (address and num > 1 and 0 <= pid < num):
      raise UserError("multi-process runs need parallel.coordinator_address, parallel.num_processes > 1 "
                      f"and 0 <= parallel.process_id < num_processes (got {address!r}, {num}, {pid})")
    jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
  elif os.environ.get("GAN_JAX_DISTRIBUTED") == "1":
    jax.distributed.initialize()  # TPU pods, SLURM: JAX reads the cluster's environment


def resolve_mode(mode: str) -> str:
  if mode not in MODES:
    raise UserError(f"unknown parallel.mode {mode!r}; choose one of {list(MODES)}")
  if mode == "auto":
    return "sharding" if jax.device_count() > 1 else "none"
  return mode


def _replicate_global(tree, sharding):
  """Places identical host values on every device of `sharding` (works across processes)."""

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return jax.tree.map(put, tree)


@dataclasses.dataclass
class Runner:
  """Compiles and runs `GAN.train_steps` in one parallel mode."""

  gan: GAN
  mode: str = "auto"

  def __post_init__(self):
    self.mode = resolve_mode(self.mode)
    n = jax.device_count() if self.mode != "none" else 1
    if self.gan.batch_size % n:
      raise UserError(f"batch_size {self.gan.batch_size} is not divisible by the {n} devices of "
                      f"parallel.mode={self.mode!r}; use a multiple of {n}")
    self.num_devices = n
    self._compiled = {}
    self.compile_time_s = 0.0
    if self.mode == "sharding":
      self.mesh = Mesh(np.asarray(jax.devices()), (MESH_AXIS,))
      self.replicated = NamedSharding(self.mesh, P())
      self.gan = dataclasses.replace(self.gan, batch_sharding=NamedSharding(self.mesh, P(MESH_AXIS)))

  # ------------------------------------------------------------------ placement
  def put(self, tree):
    """Places a host pytree (state or data) the way this mode's step expects it."""
    if self.mode == "none":
      return jax.device_put(tree, jax.local_devices()[0])
    if self.mode == "pmap":
      return jax.device_put_replicated(tree, jax.local_devices())
    return _replicate_global(tree, self.replicated)

  def get(self, tree):
    """A host (numpy) copy of a placed pytree, e.g. the state for a checkpoint."""
    if self.mode == "pmap":
      tree = jax.tree.map(lambda x: x[0], tree)
    return jax.device_get(tree)

  # ------------------------------------------------------------------ running
  def _build(self, num_steps: int):
    gan = self.gan
    if self.mode == "pmap":
      fn = functools.partial(gan.train_steps, num_steps=num_steps, axis_name=PMAP_AXIS)
      return jax.pmap(fn, axis_name=PMAP_AXIS, donate_argnums=0)
    fn = functools.partial(gan.train_steps, num_steps=num_steps)
    if self.mode == "sharding":
      return jax.jit(fn, donate_argnums=0, in_shardings=(self.replicated, self.replicated),
                     out_shardings=(self.replicated, self.replicated))
    return jax.jit(fn, donate_argnums=0)

  def compiled(self, state, arrays, num_steps: int):
    """The compiled multi-step function for `num_steps` (compiled once, timed apart)."""
    if num_steps not in self._compiled:
      t0 = time.perf_counter()
      self._compiled[num_steps] = self._build(num_steps).lower(state, arrays).compile()
      dt = time.perf_counter() - t0
      self.compile_time_s += dt
      logging.info("compiled %d steps per dispatch (%s) in %.1f s", num_steps, self.mode, dt)
    return self._compiled[num_steps]

  def run(self, state: GANState, arrays, num_steps: int):
    """Runs `num_steps` iterations; returns (state, metrics stacked [num_steps]) on device."""
    state, metrics = self.compiled(state, arrays, num_steps)(state, arrays)
    if self.mode == "pmap":
      metrics = jax.tree.map(lambda m: m[0], metrics)
    return state, metrics
