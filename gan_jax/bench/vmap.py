"""Vmapped runs measured: throughput of N seeds as one program against one run, or (`--check`) how far
each vmapped member ends from the same seed trained alone.

  python -m gan_jax.bench.vmap --config=experiments/configs/mnist_paper.py --members=16 --steps=500
  python -m gan_jax.bench.vmap --config=experiments/configs/mog_2d.py --members=4 --steps=1000 --check

`--devices=D` also times the N members as one program sharded over D local devices (a population,
gan_jax/vmap.py) against D separate programs, one run on each device, dispatched together; with
`--check`, the members are trained sharded.
"""

import functools
import json
import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from ml_collections import config_flags

from gan_jax import cli
from gan_jax.errors import UserError
from gan_jax.vmap import VmapGroup, check_devices

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file of the run to benchmark.",
                                          lock_config=True)
_MEMBERS = flags.DEFINE_integer("members", 16, "Runs (seeds) vmapped into one program.")
_STEPS = flags.DEFINE_integer("steps", 500, "Iterations per timed call (or trained, with --check).")
_DEVICES = flags.DEFINE_integer("devices", 1, "Also time the members sharded over this many local devices "
                                "(a multiple of it: --members) against one separate run per device.")
_CHECK = flags.DEFINE_bool("check", False, "Instead of timing: train each member alone too and print "
                           "how far the vmapped members end from their solo runs.")


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


def benchmark(config, members: int, steps: int, repeats: int = 3, devices: int = 1) -> dict:
  """Aggregate iterations/s of `members` vmapped seeds against one run of `config`, both compiled.

  Each figure is the best of `repeats` timed calls of `steps` iterations, after a warm-up call; the
  timed programs alternate, so a machine whose load drifts slows them alike. With `devices` > 1 the
  members are also timed as one program sharded over that many devices, against `devices` separate
  solo programs, one per device, dispatched together (JAX dispatches asynchronously, so they run at
  once as far as the devices allow).
  """
  group = VmapGroup.build(_seeds(config, members))
  init, solo_fn, solo_compile = _solo_program(group, steps)
  arrays = group.arrays()
  group._compiled(steps)  # pylint: disable=protected-access
  runs = {"solo": [lambda s: solo_fn(s, arrays), init(config.seed), []],
          "group": [lambda s: group.run(s, steps), group.init(), []]}
  if devices > 1:
    sharded = VmapGroup.build(group.configs, group.data, devices=devices)
    sharded._compiled(steps)  # pylint: disable=protected-access
    runs["sharded"] = [lambda s: sharded.run(s, steps), sharded.init(), []]
    separate, separate_compile = _separate_programs(group, init, steps, devices)
    runs["separate"] = [separate, [init(config.seed + i) for i in range(devices)], []]
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
  if devices > 1:
    t_sharded, t_separate = min(runs["sharded"][2]), min(runs["separate"][2])
    out.update({
        "devices": devices,
        "sharded_aggregate_iters_per_s": round(members * steps / t_sharded, 1),
        "sharded_compile_s": round(sharded.compile_time_s, 1),
        "separate_aggregate_iters_per_s": round(devices * steps / t_separate, 1),
        "separate_compile_s": round(separate_compile, 1),
    })
    print(f"{members} runs sharded over {devices} devices, one program: "
          f"{out['sharded_aggregate_iters_per_s']} it/s in all (compile {out['sharded_compile_s']} s); "
          f"{devices} separate runs, one per device: {out['separate_aggregate_iters_per_s']} it/s in all "
          f"(compile {out['separate_compile_s']} s for all)", flush=True)
  return out


def _separate_programs(group: VmapGroup, init, steps: int, devices: int):
  """(fn(states) -> (states, metrics), compile seconds): one solo run per device, dispatched together."""
  fn = jax.jit(functools.partial(group.gan.train_steps, num_steps=steps), donate_argnums=0)
  targets = jax.local_devices()[:devices]
  per_device = [jax.device_put(group.data.arrays, d) for d in targets]
  t0 = time.perf_counter()
  compiled = [fn.lower(jax.device_put(init(0), d), a).compile() for d, a in zip(targets, per_device)]
  compile_s = time.perf_counter() - t0

  def run(states):
    states = [jax.device_put(s, d) for s, d in zip(states, targets)]  # a no-op once they live there
    outs = [f(s, a) for f, s, a in zip(compiled, states, per_device)]  # asynchronous dispatch
    return [o[0] for o in outs], [o[1] for o in outs]

  return run, compile_s


def check(config, members: int, steps: int, devices: int = 1) -> list:
  """Trains `members` seeds of `config` vmapped (sharded over `devices`) and each alone; per member,
  how far apart they end.

  Returns:
    [{'seed', 'max_abs_diff' (largest difference of a parameter or optimizer moment), 'max_abs_value'
    (largest such value, for scale), 'same_d_loss' (final d_loss equal to 6 digits)}].
  """
  group = VmapGroup.build(_seeds(config, members), devices=devices)
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
  check_devices(_DEVICES.value)
  if _DEVICES.value < 1 or _MEMBERS.value % _DEVICES.value:
    raise UserError(f"--devices={_DEVICES.value} must be >= 1 and divide --members={_MEMBERS.value}")
  config = _CONFIG.value
  with config.unlocked():
    config.parallel.mode = "none"
  if _CHECK.value:
    check(config, _MEMBERS.value, _STEPS.value, _DEVICES.value)
  else:
    print(json.dumps(benchmark(config, _MEMBERS.value, _STEPS.value, devices=_DEVICES.value)))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  sys.exit(cli.run(_main, _CONFIG))
