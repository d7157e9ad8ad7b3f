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

Command line: throughput of N vmapped runs against one run (docs/ABLATIONS.md), or with `--check`
how far each vmapped member ends from the same seed trained alone:

  python -m gan_jax.vmap_train --config=experiments/configs/mnist_paper.py --members=16 --steps=500
  python -m gan_jax.vmap_train --config=experiments/configs/mog_2d.py --members=4 --steps=1000 --check
"""

import collections
import dataclasses
import functools
import json
import math
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from gan_jax import gan as gan_lib, losses, optim
from gan_jax.data import pipeline
from gan_jax.data.pipeline import DataState
from gan_jax.errors import UserError
from gan_jax.gan import GAN, GANState

# Config keys that may differ between the members of one program. Anything else changes shapes or
# Python-level control flow and needs its own program.
VMAPPABLE_KEYS = ("seed", "optimizer.g_lr", "optimizer.d_lr", "optimizer.b1", "optimizer.b2",
                  "loss.d_weight", "loss.penalty_weight")
# Keys that only drive the loop (logging, checkpoints) and never change what a run computes.
_DRIVER_KEYS = ("steps_per_dispatch", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints",
                "num_samples", "parallel.")


_PROGRAM_CACHE = collections.OrderedDict()  # compiled programs of recent groups, least recent first
_PROGRAM_CACHE_SIZE = 8


def flat_config(config: ml_collections.ConfigDict) -> dict:
  """The config as one flat dict of JSON values, {'optimizer.g_lr': 2e-4, ...}."""
  def flatten(d, prefix):
    out = {}
    for k, v in d.items():
      out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out

  return flatten(json.loads(config.to_json()), "")


def is_driver_key(key: str) -> bool:
  """Whether a (flat) config key only drives the loop (logging, dispatch size), not what is trained."""
  return any(key == k or (k.endswith(".") and key.startswith(k)) for k in _DRIVER_KEYS)


def program_key(config: ml_collections.ConfigDict) -> str:
  """Equal for two configs exactly when they can train as members of one vmapped program."""
  flat = {k: v for k, v in flat_config(config).items() if k not in VMAPPABLE_KEYS and not is_driver_key(k)}
  return json.dumps(flat, sort_keys=True)


class _Overlay:
  """Read-only view of a ConfigDict with some values replaced by (traced) scalars."""

  def __init__(self, base, overrides: dict):
    self._base, self._overrides = base, overrides

  def __getattr__(self, name):
    return self._overrides[name] if name in self._overrides else getattr(self._base, name)

  def get(self, name, default=None):
    return self._overrides[name] if name in self._overrides else self._base.get(name, default)


def state_axes(state: GANState) -> GANState:
  """`in_axes`/`out_axes` for a stacked state: the step and the data position are shared."""
  batched = jax.tree.map(lambda _: 0, state)
  return batched.replace(step=None, data=DataState(perm=0, epoch=None, position=None))


@dataclasses.dataclass
class VmapGroup:
  """N runs that differ only in `VMAPPABLE_KEYS`, trained as one program on one device."""

  configs: list
  data: pipeline.Data
  gan: GAN  # the first member's; its static parts are every member's
  varying: dict  # key -> float32 [N], the non-seed vmappable keys whose values differ
  compile_time_s: float = 0.0
  _programs: dict = dataclasses.field(default_factory=dict)  # num_steps -> compiled program
  _arrays: dict | None = None

  @classmethod
  def build(cls, configs, data: pipeline.Data | None = None) -> "VmapGroup":
    """Checks that `configs` can share a program and builds the group (data loaded once)."""
    if not configs:
      raise UserError("a vmapped group needs at least one config")
    key0 = program_key(configs[0])
    flats = [flat_config(c) for c in configs]
    for c, flat in zip(configs[1:], flats[1:]):
      if program_key(c) != key0:
        base = flats[0]
        diff = sorted(k for k in set(base) | set(flat)
                      if base.get(k) != flat.get(k) and k not in VMAPPABLE_KEYS and not is_driver_key(k))
        raise UserError(f"runs differing in {', '.join(diff)} cannot share one vmapped program; only "
                        f"{', '.join(VMAPPABLE_KEYS)} may differ (train them as separate groups)")
    bad = [c.seed for c in configs if not 0 <= c.seed < 2**31]
    if bad:
      raise UserError(f"seeds must be in [0, 2**31) to be vmapped, got {bad[0]}")
    data = data or pipeline.build_data(configs[0])
    gan = gan_lib.build_gan(configs[0], data)
    varying = {}
    for k in VMAPPABLE_KEYS[1:]:
      values = [f.get(k) for f in flats]
      if len(set(values)) > 1:
        varying[k] = np.asarray(values, np.float32)
    return cls(configs=list(configs), data=data, gan=gan, varying=varying)

  @property
  def size(self) -> int:
    return len(self.configs)

  # ------------------------------------------------------------------ the member's GAN
  def member_gan(self, hp: dict) -> GAN:
    """The GAN of one member, its varying hyperparameters `hp` as (traced) scalars."""
    if not hp:
      return self.gan
    c = self.configs[0]
    oc = _Overlay(c.optimizer, {k.split(".", 1)[1]: v for k, v in hp.items() if k.startswith("optimizer.")})
    spe = self.data.sampler.steps_per_epoch(c.batch_size)
    gan = self.gan
    if any(k.startswith("optimizer.") for k in hp):
      gan = dataclasses.replace(gan, g_tx=optim.build_optimizer(oc, oc.g_lr, spe),
                                d_tx=optim.build_optimizer(oc, oc.d_lr, spe * c.k_disc_steps))
    if "loss.d_weight" in hp:
      d_fn, g_fn = losses.LOSSES[c.loss.name]
      w = hp["loss.d_weight"]
      gan = dataclasses.replace(gan, loss=losses.GANLoss(c.loss.name, lambda r, f: w * d_fn(r, f), g_fn))
    if "loss.penalty_weight" in hp:
      gan = dataclasses.replace(gan, penalty_weight=hp["loss.penalty_weight"])
    return gan

  # ------------------------------------------------------------------ states
  def init(self) -> GANState:
    """The members' fresh states, stacked (each from its own config's seed)."""
    use_mean = self.configs[0].model.get("g_bias_from_data", True)
    mean = self.data.mean_example if use_mean else None
    seeds = jnp.asarray([c.seed for c in self.configs], jnp.int32)
    # One compiled, vmapped init: initialising op by op costs seconds per member on a CPU.
    states = jax.jit(jax.vmap(lambda seed: self.gan.init(seed, mean)))(seeds)
    axes = state_axes(states)
    return jax.tree.map(lambda ax, x: x[0] if ax is None else x, axes, states, is_leaf=lambda x: x is None)

  def member(self, states: GANState, i: int) -> GANState:
    """Member i's state, as the one a solo run would hold."""
    axes = state_axes(states)
    return jax.tree.map(lambda ax, x: x if ax is None else x[i], axes, states, is_leaf=lambda x: x is None)

  # ------------------------------------------------------------------ running
  def cache_key(self, num_steps: int, grad_norms: str = "every") -> str:
    """Equal for groups that run the same compiled program: the same configs but for their seeds
    and the values that vary (so a sweep with --max_members=1 compiles once for all seeds of a
    cell). Vmappable values that do not vary are constants of the program, so they are in the key."""
    flat = flat_config(self.configs[0])
    return json.dumps([num_steps, grad_norms, self.size, sorted(self.varying),
                       {k: v for k, v in flat.items() if k != "seed" and k not in self.varying
                        and not is_driver_key(k)}], sort_keys=True)

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

    fn = jax.jit(jax.vmap(member, in_axes=(axes, 0, None), out_axes=(axes, 0)), donate_argnums=0)
    t0 = time.perf_counter()
    compiled = fn.lower(shapes, self.hparams(), self.arrays()).compile()
    self.compile_time_s += time.perf_counter() - t0
    logging.info("compiled %d members x %d steps in %.1f s", self.size, num_steps, time.perf_counter() - t0)
    self._programs[num_steps, grad_norms] = _PROGRAM_CACHE[key] = compiled
    while len(_PROGRAM_CACHE) > _PROGRAM_CACHE_SIZE:
      _PROGRAM_CACHE.popitem(last=False)
    return compiled

  def hparams(self) -> dict:
    return {k: jnp.asarray(v) for k, v in self.varying.items()}

  def arrays(self):
    """The data, on the device once for all members."""
    if self._arrays is None:
      self._arrays = jax.device_put(self.data.arrays, jax.local_devices()[0])
    return self._arrays

  def run(self, states: GANState, num_steps: int, grad_norms: str = "every"):
    """`num_steps` iterations of every member; returns (states, metrics {name: [N, num_steps]}),
    the gradient norms [N, 1] with `grad_norms="last"` (`GAN.train_steps`)."""
    return self._compiled(num_steps, grad_norms)(states, self.hparams(), self.arrays())


def train(group: VmapGroup, num_steps: int, steps_per_dispatch: int = 500, log_every: int = 0,
          progress=None):
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
    if log_every:
      n = min(n, (step // log_every + 1) * log_every - step)
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


# ---------------------------------------------------------------------------- benchmark and check
def _seeds(config, members: int) -> list:
  """`members` copies of `config` with seeds config.seed, config.seed + 1, ..."""
  configs = []
  for i in range(members):
    c = config.copy_and_resolve_references()
    c.seed = config.seed + i
    configs.append(c)
  return configs


def _solo_program(group: VmapGroup, steps: int):
  """(initial state of member 0 alone, its compiled `train_steps`, compile seconds): a solo run."""
  gan, config = group.gan, group.configs[0]
  mean = group.data.mean_example if config.model.get("g_bias_from_data", True) else None
  init = jax.jit(lambda seed: gan.init(seed, mean))
  fn = jax.jit(functools.partial(gan.train_steps, num_steps=steps), donate_argnums=0)
  t0 = time.perf_counter()
  fn = fn.lower(init(config.seed), group.arrays()).compile()
  return init, fn, time.perf_counter() - t0


def benchmark(config, members: int, steps: int, repeats: int = 3) -> dict:
  """Aggregate iterations/s of `members` vmapped seeds against one run of `config`, both compiled.

  Each figure is the best of `repeats` timed calls of `steps` iterations, after a warm-up call; the
  solo and vmapped calls alternate, so a machine whose load drifts slows both alike.
  """
  group = VmapGroup.build(_seeds(config, members))
  init, solo_fn, solo_compile = _solo_program(group, steps)
  arrays = group.arrays()
  group._compiled(steps)  # pylint: disable=protected-access
  runs = {"solo": [lambda s: solo_fn(s, arrays), init(config.seed), []],
          "group": [lambda s: group.run(s, steps), group.init(), []]}
  for rep in range(repeats + 1):
    for entry in runs.values():
      fn, s, times = entry
      t0 = time.perf_counter()
      entry[1], m = fn(s)
      jax.block_until_ready(m)
      if rep:  # the first call of each is a warm-up
        times.append(time.perf_counter() - t0)
  t_solo, t_group = min(runs["solo"][2]), min(runs["group"][2])
  print(f"1 run: {steps / t_solo:.1f} it/s (compile {solo_compile:.1f} s)", flush=True)
  out = {
      "device": jax.devices()[0].device_kind,
      "compute_dtype": config.model.get("compute_dtype", "float32"),
      "members": members,
      "steps": steps,
      "solo_iters_per_s": round(steps / t_solo, 1),
      "vmapped_aggregate_iters_per_s": round(members * steps / t_group, 1),
      "speedup": round(members * t_solo / t_group, 2),
      "solo_compile_s": round(solo_compile, 1),
      "vmapped_compile_s": round(group.compile_time_s, 1),
  }
  print(f"{members} vmapped runs: {out['vmapped_aggregate_iters_per_s']} it/s in all "
        f"({out['speedup']}x one run; compile {out['vmapped_compile_s']} s)", flush=True)
  return out


def check(config, members: int, steps: int) -> list:
  """Trains `members` seeds of `config` vmapped and each alone; per member, how far apart they end.

  Returns:
    [{'seed', 'max_abs_diff' (largest difference of a parameter or optimizer moment), 'max_abs_value'
    (largest such value, for scale), 'same_d_loss' (final d_loss equal to 6 digits)}].
  """
  group = VmapGroup.build(_seeds(config, members))
  states, metrics = group.run(group.init(), steps)
  init, solo_fn, _ = _solo_program(group, steps)
  out = []
  for i, c in enumerate(group.configs):
    solo, solo_metrics = solo_fn(init(c.seed), group.arrays())
    pairs = [(a, b) for a, b in zip(jax.tree.leaves(group.member(states, i)), jax.tree.leaves(solo))
             if jnp.issubdtype(b.dtype, jnp.floating)]  # parameters and optimizer moments
    diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), initial=0))
               for a, b in pairs)
    scale = max(float(np.max(np.abs(np.asarray(b, np.float64)), initial=0)) for _, b in pairs)
    d_loss = float(metrics["d_loss"][i, -1]), float(solo_metrics["d_loss"][-1])
    out.append({"seed": c.seed, "max_abs_diff": diff, "max_abs_value": scale,
                "same_d_loss": math.isclose(*d_loss, rel_tol=1e-6)})
    print(f"seed {c.seed}: vmapped vs alone after {steps} steps: max |difference| {diff:.3g} "
          f"(values up to {scale:.3g}); final d_loss {d_loss[0]:.6f} vs {d_loss[1]:.6f}", flush=True)
  return out


def _main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _MEMBERS.value < 1 or _STEPS.value < 1:
    raise UserError("--members and --steps must be >= 1")
  config = _CONFIG.value
  with config.unlocked():
    config.parallel.mode = "none"
  if _CHECK.value:
    check(config, _MEMBERS.value, _STEPS.value)
  else:
    print(json.dumps(benchmark(config, _MEMBERS.value, _STEPS.value)))


if __name__ == "__main__":
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  from gan_jax import cli  # pylint: disable=g-import-not-at-top

  _CONFIG = config_flags.DEFINE_config_file("config", None, "Config file of the run to benchmark.",
                                            lock_config=True)
  _MEMBERS = flags.DEFINE_integer("members", 16, "Runs (seeds) vmapped into one program.")
  _STEPS = flags.DEFINE_integer("steps", 500, "Iterations per timed call (or trained, with --check).")
  _CHECK = flags.DEFINE_bool("check", False, "Instead of timing: train each member alone too and print "
                             "how far the vmapped members end from their solo runs.")
  flags.mark_flags_as_required(["config"])
  sys.exit(cli.run(_main, _CONFIG))
