"""Running the update on one device, under `jax.pmap`, or under `jax.jit` with a `Mesh`.

  none      one device, `jax.jit`.
  pmap      `jax.pmap` over each process's devices; gradients averaged with `lax.pmean` over axis
            'batch' (across all processes' devices).
  sharding  `jax.jit` with a 1-D `Mesh` over all devices of all processes: the batch is sharded on axis
            'data', the state replicated. JAX's recommended route and the default on more than one device.

All three compute the same update for the same global batch (see `gan_jax.gan`). A `Runner` hides the
differences from the training loop: it places the state and data, compiles the multi-step function once
per dispatch length, and hands back metrics and a host copy of the state. `maybe_initialize_distributed`
joins a multi-process run (explicit settings, SLURM, TPU pods). docs/PARALLEL.md has the commands.
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
from gan_jax.core.gan import GAN, GANState

MODES = ("auto", "none", "pmap", "sharding")
PMAP_AXIS = "batch"
MESH_AXIS = "data"


def maybe_initialize_distributed(parallel_config) -> bool:
  """Calls `jax.distributed.initialize` for a multi-process run; must run before any JAX computation.

  Explicit settings come from the config (`coordinator_address`, `num_processes`, `process_id`) or
  the environment (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`). Without them,
  JAX detects the cluster itself when `GAN_JAX_DISTRIBUTED=1` (TPU pods, SLURM, Open MPI), and by
  default inside a multi-task SLURM step (`srun` sets SLURM_PROCID and SLURM_NTASKS > 1);
  `GAN_JAX_DISTRIBUTED=0` turns that off. Single-process runs call nothing.

  Returns:
    Whether this process is part of a multi-process run.

  Raises:
    UserError: an incomplete or inconsistent explicit setting.
  """
  if jax.distributed.is_initialized():  # a second run in the same process (tests, notebooks)
    return True
  address = parallel_config.get("coordinator_address", "") or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
  num = parallel_config.get("num_processes", 0) or _env_int("JAX_NUM_PROCESSES", 0)
  pid = parallel_config.get("process_id", -1)
  if pid < 0:
    pid = _env_int("JAX_PROCESS_ID", -1)
  flag = os.environ.get("GAN_JAX_DISTRIBUTED", "")
  if address or num > 1 or pid >= 0:
    if not (address and num > 1 and 0 <= pid < num):
      raise UserError("a multi-process run needs parallel.coordinator_address (host:port of process 0), "
                      "parallel.num_processes > 1 and 0 <= parallel.process_id < num_processes; got "
                      f"{address!r}, {num}, {pid}")
    _use_cpu_collectives()
    logging.info("jax.distributed: process %d of %d, coordinator %s", pid, num, address)
    jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
    return True
  if flag == "1" or (flag != "0" and _env_int("SLURM_NTASKS", 1) > 1 and "SLURM_PROCID" in os.environ):
    _use_cpu_collectives()
    jax.distributed.initialize()  # JAX reads the TPU pod's / SLURM step's / MPI job's environment
    logging.info("jax.distributed: process %d of %d (detected)", jax.process_index(), jax.process_count())
    return True
  return False


def _env_int(name: str, default: int) -> int:
  value = os.environ.get(name, "")
  try:
    return int(value) if value else default
  except ValueError:
    raise UserError(f"environment variable {name}={value!r} is not an integer; fix or unset it") from None


def _use_cpu_collectives():
  """CPU devices of different processes talk through gloo: the default in JAX 0.10, but older versions
  default to 'none' (no cross-process CPU collectives), where a multi-process CPU run would fail."""
  if jax.config.jax_cpu_collectives_implementation in (None, "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")


def resolve_mode(mode: str) -> str:
  """The concrete mode for `parallel.mode`: 'auto' is 'sharding' on more than one device, else 'none'."""
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


def _replicate_local(tree, devices):
  """A leading axis of len(devices), one identical copy per device: what `pmap` maps over.

  `jax.device_put_replicated` is gone from JAX 0.10; this builds the same array from per-device
  copies. In a multi-process run each process passes its own local devices; pmap joins them."""
  mesh = Mesh(np.asarray(devices), (PMAP_AXIS,))
  sharding = NamedSharding(mesh, P(PMAP_AXIS))

  def put(x):
    x = np.asarray(x)[None]
    shards = [jax.device_put(x, d) for d in devices]
    return jax.make_array_from_single_device_arrays((len(devices),) + x.shape[1:], sharding, shards)

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
    if self.mode == "none" and jax.process_count() > 1:
      raise UserError(f"parallel.mode='none' trains on one device, but this run has {jax.process_count()} "
                      "processes; use parallel.mode='sharding' (or 'auto') for a multi-process run")
    self.num_devices = n
    # XLA:CPU runs all local devices' programs on one shared thread pool. With several dispatches of
    # a program with an all-reduce in flight, the devices can wait on each other in the all-reduce
    # until XLA aborts the process (8 fake devices on 2 cores, jax 0.10.2; a dispatch at a time never
    # does). Waiting for each dispatch costs nothing there: the host has no other work to overlap.
    self._one_dispatch_at_a_time = (self.mode != "none" and jax.local_device_count() > 1
                                    and jax.local_devices()[0].platform == "cpu")
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
      return _replicate_local(tree, jax.local_devices())
    return _replicate_global(tree, self.replicated)

  def put_stream(self, block: dict, start: int) -> dict:
    """Places a streamed block (`gan_jax.data.stream`) for the next dispatch.

    `block` holds this process's batches with leading axes [draws, local batch]; they are laid out
    along the batch axis: whole on one device, split over the local devices under `pmap`, and under
    `sharding` joined with the other processes' into global arrays sharded on the batch axis.
    `start` (the global batch of the block's first row) is replicated.
    """
    if self.mode == "none":
      placed = jax.device_put(block, jax.local_devices()[0])
    elif self.mode == "pmap":
      devices = jax.local_devices()
      mesh = Mesh(np.asarray(devices), (PMAP_AXIS,))

      def split(x):
        d, b = x.shape[:2]
        parts = np.moveaxis(x.reshape((d, len(devices), b // len(devices)) + x.shape[2:]), 1, 0)
        shards = [jax.device_put(parts[i:i + 1], dev) for i, dev in enumerate(devices)]
        return jax.make_array_from_single_device_arrays(parts.shape, NamedSharding(mesh, P(PMAP_AXIS)), shards)

      placed = jax.tree.map(split, block)
    else:
      sharding = NamedSharding(self.mesh, P(None, MESH_AXIS))
      placed = jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), block)
    return dict(placed, stream_start=self.put(np.int32(start)))

  def get(self, tree):
    """A host (numpy) copy of a placed pytree, e.g. the state for a checkpoint."""
    if self.mode == "pmap":  # every device holds the same copy: read the first local one
      return jax.tree.map(lambda x: np.asarray(x.addressable_shards[0].data)[0], tree)
    return jax.device_get(tree)

  # ------------------------------------------------------------------ running
  def _build(self, num_steps: int, grad_norms: str, arrays):
    fn = functools.partial(self.gan.train_steps, num_steps=num_steps, grad_norms=grad_norms)
    if self.mode == "pmap":
      # Metrics are already averaged over devices: return them once (out_axes None), not per device.
      return jax.pmap(functools.partial(fn, axis_name=PMAP_AXIS), axis_name=PMAP_AXIS, donate_argnums=0,
                      out_axes=(0, None))
    if self.mode == "sharding":
      # The data keep their own layout: replicated, or a streamed block sharded on its batch axis.
      return jax.jit(fn, donate_argnums=0, in_shardings=(self.replicated, jax.tree.map(lambda a: a.sharding, arrays)),
                     out_shardings=(self.replicated, self.replicated))
    return jax.jit(fn, donate_argnums=0)

  def compiled(self, state, arrays, num_steps: int, grad_norms: str = "last"):
    """The compiled function of `num_steps` iterations (compiled once per `num_steps` and
    `grad_norms`, see `GAN.train_steps`, and timed apart).

    Under `pmap` this is the pmapped function itself: JAX's ahead-of-time `lower().compile()` of a
    pmap cannot be called across processes, so `run` times its first call instead.
    """
    key = (num_steps, grad_norms)
    if key not in self._compiled:
      fn = self._build(num_steps, grad_norms, arrays)
      if self.mode != "pmap":
        t0 = time.perf_counter()
        fn = fn.lower(state, arrays).compile()
        self._record_compile(num_steps, time.perf_counter() - t0)
      self._compiled[key] = fn
    return self._compiled[key]

  def _record_compile(self, num_steps, seconds):
    self.compile_time_s += seconds
    logging.info("compiled %d steps per dispatch (%s) in %.1f s", num_steps, self.mode, seconds)

  def run(self, state: GANState, arrays, num_steps: int, grad_norms: str = "last"):
    """Runs `num_steps` iterations; returns (state, metrics) on device, metrics stacked
    [num_steps]. `grad_norms` (`GAN.train_steps`): "last" measures the gradient norms at the last
    iteration (shape [1]), "none" leaves them out, "every" stacks them like the rest; the trainer
    asks for "last" in dispatches that end at a log step and "none" in the others."""
    first_pmap_call = self.mode == "pmap" and (num_steps, grad_norms) not in self._compiled
    t0 = time.perf_counter()
    state, metrics = self.compiled(state, arrays, num_steps, grad_norms)(state, arrays)
    if first_pmap_call or self._one_dispatch_at_a_time:
      jax.block_until_ready((state, metrics))
    if first_pmap_call:  # compilation plus one dispatch: counted as compile time, not training
      self._record_compile(num_steps, time.perf_counter() - t0)
    return state, metrics
