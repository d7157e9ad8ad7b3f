"""Many GANs in one compiled program: `jax.vmap` of `GAN.train_steps` over stacked training states.

Runs whose configs differ only in `VMAPPABLE_KEYS` (the seed and scalar hyperparameters) share one
program: their states are stacked on a leading member axis, the values that differ are passed as
arrays [N] and read as traced scalars, and the data arrays are shared (not copied per member).

  group = VmapGroup.build([config_seed0, config_seed1, config_lr_x10, ...])
  states, metrics = group.run(group.init(), num_steps=500)   # metrics[name]: [N, 500]
  member_2 = group.member(states, 2)                         # a plain GANState

Exactness: member i computes the same update as `configs[i]` trained alone (same seed, same
per-example keys, same data order), up to float rounding where batched matmuls sum in another order;
tests/test_vmap.py checks this. The data order needs care. Each member's `DataState.perm` is its own
(its seed's permutation), but `epoch` and `position` advance in lockstep for all members (same batch
size, same data), so they are kept unbatched (`in_axes=None`). The sampler's "new epoch?" test then
stays a real `lax.cond`; were they batched, vmap would turn it into a select that draws a permutation
for every member at every step.

A population across devices: `VmapGroup.build(configs, devices=D)` lays the members out on a
one-axis `jax.sharding.Mesh` of D local devices (axis "runs"): every stacked leaf is sharded on its
member axis (`NamedSharding`, P("runs")), the shared leaves, the data and nothing else replicated, and
`jax.jit` partitions the vmapped program so that each device trains its N / D members with no
communication (tests/test_vmap.py checks the compiled program has no collective). 8 devices then
train 8 x M runs as one program, each member still its solo run.

The throughput of N vmapped runs against one run, and how far members end from solo runs, are
measured by `python -m gan_jax.bench.vmap` (gan_jax/bench/vmap.py; `--devices` for a population
across devices).
"""

import collections
import dataclasses
import json
import math
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gan_jax import config as config_lib
from gan_jax.core import build
from gan_jax.core.build import VMAPPABLE_KEYS
from gan_jax.core.gan import GAN, GANState
from gan_jax.data import pipeline
from gan_jax.data.pipeline import DataState
from gan_jax.errors import UserError

_PROGRAM_CACHE = collections.OrderedDict()  # compiled programs of recent groups, least recent first
_PROGRAM_CACHE_SIZE = 8
RUNS_AXIS = "runs"  # the mesh axis a population's members are sharded over


def program_key(config: ml_collections.ConfigDict) -> str:
  """Equal for two configs exactly when they can train as members of one vmapped program."""
  flat = {k: v for k, v in config_lib.flatten(config).items() if k not in VMAPPABLE_KEYS and not config_lib.is_driver_key(k)}
  return json.dumps(flat, sort_keys=True)


def state_axes(state: GANState) -> GANState:
  """`in_axes`/`out_axes` for a stacked state: the step and the data position are shared."""
  batched = jax.tree.map(lambda _: 0, state)
  return batched.replace(step=None, data=DataState(perm=0, epoch=None, position=None))


def check_devices(devices: int) -> None:
  """Raises a UserError unless 0 <= `devices` <= the number of local devices."""
  available = jax.local_device_count()
  if not 0 <= devices <= available:
    if available == 1:
      raise UserError(f"--devices={devices}, but this process sees 1 local device; give --devices=1 (or 0)")
    raise UserError(f"--devices={devices}, but this process sees {available} local devices; give 1 to "
                    f"{available}, or 0 for all of them where a group's size is a multiple of {available}")


def group_devices(size: int, devices: int = 0) -> int:
  """The devices a group of `size` members trains on.

  Args:
    size: the group's members.
    devices: 0 (automatic): every local device when `size` is a multiple of their number, else one.
      N > 0: N devices when `size` is a multiple of N, else gcd(size, N), so that every device holds
      the same number of members.

  Returns:
    A device count that divides `size`.
  """
  check_devices(devices)
  if devices == 0:
    available = jax.local_device_count()
    return available if size % available == 0 else 1
  return math.gcd(size, devices)


@dataclasses.dataclass
class VmapGroup:
  """N runs that differ only in `VMAPPABLE_KEYS`, trained as one program on one device, or sharded
  over a mesh of `num_devices` devices (N / num_devices members each)."""

  configs: list
  data: pipeline.Data
  gan: GAN  # the first member's; its static parts are every member's
  varying: dict  # key -> float32 [N], the non-seed vmappable keys whose values differ
  mesh: Mesh | None = None  # axis RUNS_AXIS over the group's devices; None: one device
  compile_time_s: float = 0.0
  _programs: dict = dataclasses.field(default_factory=dict)  # num_steps -> compiled program
  _arrays: dict | None = None

  @classmethod
  def build(cls, configs, data: pipeline.Data | None = None, devices: int = 1) -> "VmapGroup":
    """Checks that `configs` can share a program and builds the group (data loaded once).

    Args:
      configs: the members' configs.
      data: their data, if already loaded.
      devices: local devices to shard the members over (the first `devices` of
        `jax.local_devices()`); it must divide the number of members.
    """
    if not configs:
      raise UserError("a vmapped group needs at least one config")
    check_devices(devices)
    if devices < 1 or len(configs) % devices:
      raise UserError(f"{len(configs)} members cannot be shared evenly by {devices} device(s); give a "
                      "device count that divides the number of members")
    key0 = program_key(configs[0])
    flats = [config_lib.flatten(c) for c in configs]
    for c, flat in zip(configs[1:], flats[1:]):
      if program_key(c) != key0:
        base = flats[0]
        diff = sorted(k for k in set(base) | set(flat)
                      if base.get(k) != flat.get(k) and k not in VMAPPABLE_KEYS and not config_lib.is_driver_key(k))
        raise UserError(f"runs differing in {', '.join(diff)} cannot share one vmapped program; only "
                        f"{', '.join(VMAPPABLE_KEYS)} may differ (train them as separate groups)")
    bad = [c.seed for c in configs if not 0 <= c.seed < 2**31]
    if bad:
      raise UserError(f"seeds must be in [0, 2**31) to be vmapped, got {bad[0]}")
    data = pipeline.with_labels(data, configs[0]) if data else pipeline.build_data(configs[0])
    if data.pipeline == "stream":
      raise UserError(f"vmapped runs share one device-resident training split, but {data.name} is streamed "
                      "(data.pipeline); set data.pipeline='device' (raise data.device_limit_mb if 'auto' "
                      "chose to stream), or train the runs one at a time")
    gan = build.build_gan(configs[0], data)
    varying = {}
    for k in VMAPPABLE_KEYS[1:]:
      values = [f.get(k) for f in flats]
      if len(set(values)) > 1:
        varying[k] = np.asarray(values, np.float32)
    mesh = Mesh(np.asarray(jax.local_devices()[:devices]), (RUNS_AXIS,)) if devices > 1 else None
    return cls(configs=list(configs), data=data, gan=gan, varying=varying, mesh=mesh)

  @property
  def size(self) -> int:
    return len(self.configs)

  @property
  def num_devices(self) -> int:
    return 1 if self.mesh is None else self.mesh.size

  # ------------------------------------------------------------------ layout on the devices
  def state_shardings(self, states: GANState):
    """Per leaf of a stacked state: sharded on the member axis, or replicated (shared leaves)."""
    axes = state_axes(states)

    def sharding(ax, x):  # a field that is off (None) has no leaves to place
      return None if x is None else NamedSharding(self.mesh, P() if ax is None else P(RUNS_AXIS))

    return jax.tree.map(sharding, axes, states, is_leaf=lambda x: x is None)

  def _place(self, states: GANState) -> GANState:
    return states if self.mesh is None else jax.device_put(states, self.state_shardings(states))

  # ------------------------------------------------------------------ the member's GAN
  def member_gan(self, hp: dict) -> GAN:
    """The GAN of one member, its varying hyperparameters `hp` as (traced) scalars."""
    return build.build_gan(self.configs[0], self.data, hp) if hp else self.gan

  # ------------------------------------------------------------------ states
  def init(self) -> GANState:
    """The members' fresh states, stacked (each from its own config's seed)."""
    use_mean = self.configs[0].model.get("g_bias_from_data", True)
    mean = self.data.mean_example if use_mean else None
    seeds = jnp.asarray([c.seed for c in self.configs], jnp.int32)
    # One compiled, vmapped init: initialising op by op costs seconds per member on a CPU.
    states = jax.jit(jax.vmap(lambda seed: self.gan.init(seed, mean)))(seeds)
    axes = state_axes(states)
    # Shared leaves are one value for all members; a field that is off (None) stays None.
    states = jax.tree.map(lambda ax, x: x[0] if ax is None and x is not None else x, axes, states,
                          is_leaf=lambda x: x is None)
    return self._place(states)

  def member(self, states: GANState, i: int) -> GANState:
    """Member i's state, as the one a solo run would hold."""
    axes = state_axes(states)
    return jax.tree.map(lambda ax, x: x if ax is None else x[i], axes, states, is_leaf=lambda x: x is None)

  # ------------------------------------------------------------------ running
  def cache_key(self, num_steps: int, grad_norms: str = "every") -> str:
    """Equal for groups that run the same compiled program: the same configs but for their seeds
    and the values that vary (so a sweep with --max_members=1 compiles once for all seeds of a
    cell). Vmappable values that do not vary are constants of the program, so they are in the key."""
    flat = config_lib.flatten(self.configs[0])
    return json.dumps([num_steps, grad_norms, self.size, self.num_devices, sorted(self.varying),
                       {k: v for k, v in flat.items() if k != "seed" and k not in self.varying
                        and not config_lib.is_driver_key(k)}], sort_keys=True)

  def _compiled(self, num_steps: int, grad_norms: str = "every"):
    if (num_steps, grad_norms) in self._programs:
      return self._programs[num_steps, grad_norms]
    key = self.cache_key(num_steps, grad_norms)
    if key in _PROGRAM_CACHE:
      _PROGRAM_CACHE.move_to_end(key)
      self._programs[num_steps, grad_norms] = _PROGRAM_CACHE[key]
      return _PROGRAM_CACHE[key]
    shapes = jax.eval_shape(self.init)
    axes = state_axes(shapes)

    def member(state, hp, arrays):
      return self.member_gan(hp).train_steps(state, arrays, num_steps, grad_norms=grad_norms)

    vmapped = jax.vmap(member, in_axes=(axes, 0, None), out_axes=(axes, 0))
    if self.mesh is None:
      fn = jax.jit(vmapped, donate_argnums=0)
    else:  # members sharded on their axis, the rest replicated: each device runs its own members
      states = self.state_shardings(shapes)
      runs, replicated = NamedSharding(self.mesh, P(RUNS_AXIS)), NamedSharding(self.mesh, P())
      fn = jax.jit(vmapped, in_shardings=(states, runs, replicated), out_shardings=(states, runs),
                   donate_argnums=0)
    t0 = time.perf_counter()
    with config_lib.matmul_precision(self.configs[0]):  # as a solo run of the same config compiles
      compiled = fn.lower(shapes, self.hparams(), self.arrays()).compile()
    self.compile_time_s += time.perf_counter() - t0
    logging.info("compiled %d members x %d steps in %.1f s", self.size, num_steps, time.perf_counter() - t0)
    self._programs[num_steps, grad_norms] = _PROGRAM_CACHE[key] = compiled
    while len(_PROGRAM_CACHE) > _PROGRAM_CACHE_SIZE:
      _PROGRAM_CACHE.popitem(last=False)
    return compiled

  def hparams(self) -> dict:
    hp = {k: jnp.asarray(v) for k, v in self.varying.items()}
    return hp if self.mesh is None else jax.device_put(hp, NamedSharding(self.mesh, P(RUNS_AXIS)))

  def arrays(self):
    """The data, on the device once for all members (on every device of a mesh)."""
    if self._arrays is None:
      where = jax.local_devices()[0] if self.mesh is None else NamedSharding(self.mesh, P())
      self._arrays = jax.device_put(self.data.arrays, where)
    return self._arrays

  def run(self, states: GANState, num_steps: int, grad_norms: str = "every"):
    """`num_steps` iterations of every member; returns (states, metrics {name: [N, num_steps]}),
    the gradient norms [N, 1] with `grad_norms="last"` (`GAN.train_steps`)."""
    return self._compiled(num_steps, grad_norms)(states, self.hparams(), self.arrays())


def train(group: VmapGroup, num_steps: int, steps_per_dispatch: int = 500, log_every: int = 0,
          progress=None, eval_every: int = 0, on_eval=None):
  """Trains every member of `group` for `num_steps` iterations from fresh states.

  A member whose loss turns non-finite keeps running (members are independent); the step where it
  did is reported, so one diverging seed does not stop the others.

  Args:
    group: the members.
    num_steps: iterations per member.
    steps_per_dispatch: iterations per call of the compiled program.
    log_every: keep every member's metrics at every `log_every`-th step (0: only the last step). A
      dispatch ends at each such step, and the gradient norms are measured there only.
    progress: called as `progress(step, num_steps)` after each dispatch (for it/s and ETA lines).
    eval_every: call `on_eval(step, states)` every this many steps before the last (a dispatch ends
      there; its time is left out of it/s). Dispatch lengths do not change what is computed.
    on_eval: see `eval_every`.

  Returns:
    (states, history, info): the final stacked states; history {name: [N, num_logged]} plus 'step';
    info {'train_time_s', 'compile_time_s', 'iters_per_s' (aggregate over members), 'nonfinite_step'
    (per member: first step with a non-finite metric, or None)}.
  """
  states = group.init()
  step, train_time = 0, 0.0
  logged, bad = [], [None] * group.size
  while step < num_steps:
    n = min(steps_per_dispatch, num_steps - step)
    for every in (log_every, eval_every if on_eval else 0):
      if every:
        n = min(n, (step // every + 1) * every - step)
    compile_before = group.compile_time_s
    t0 = time.perf_counter()
    states, metrics = group.run(states, n, grad_norms="last")
    metrics = jax.device_get(metrics)
    dt = time.perf_counter() - t0 - (group.compile_time_s - compile_before)
    train_time += dt
    for i in range(group.size):
      if bad[i] is None:
        # A metric stacked shorter than the dispatch (the gradient norms) holds its last iterations.
        nonfinite = [n - v.shape[1] + np.flatnonzero(~np.isfinite(v[i])) for v in metrics.values()]
        first = min((int(ix[0]) for ix in nonfinite if ix.size), default=None)
        if first is not None:
          bad[i] = step + first + 1
    step += n
    if (log_every and step % log_every == 0) or step == num_steps:
      logged.append((step, {k: v[:, -1] for k, v in metrics.items()}))
    if progress is not None:
      progress(step, num_steps)
    if on_eval is not None and eval_every and step % eval_every == 0 and step < num_steps:
      on_eval(step, states)
  history = {"step": np.asarray([s for s, _ in logged])}
  for k in logged[-1][1]:
    history[k] = np.stack([m[k] for _, m in logged], axis=1)
  info = {
      "train_time_s": train_time,
      "compile_time_s": group.compile_time_s,
      "iters_per_s": group.size * num_steps / train_time if train_time > 0 else math.nan,
      "nonfinite_step": bad,
  }
  return states, history, info
