"""Where a step's time goes: a `jax.profiler` trace of a one-step program, its instructions' time
summed by kind (matmul/conv, random numbers, the rest) and by pass."""

import collections
import glob
import gzip
import json
import os
import re
import tempfile

import jax

from gan_jax import parallel
from gan_jax.bench.reference import make_bare
from gan_jax.bench.configs import bench_config, synthetic_data
from gan_jax.core import build

PROFILE_KINDS = ("matmul/conv", "random numbers", "other (elementwise, reductions, copies)")
_RANDOM_OPS = re.compile(r"_bernoulli|_uniform|_normal|threefry|random_bits|_split|fold_in|permutation")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.-]+) = .*?\s([a-z][a-z0-9-]*)\(")


def _top_level_ops(hlo_text: str) -> dict:
  """{instruction name: (kind, pass)} for the ENTRY computation of an HLO module.

  Only top-level instructions are kept: a `while` (here: threefry's loop) is timed as a whole, so
  the instructions of its body, which the trace also lists, are not counted twice. `pass` is
  'backward' for instructions from a transposed (gradient) computation, 'forward' for the others
  that name their source, 'unattributed' for those XLA created without a source (e.g. the weight
  gradients of transposed convolutions, rewritten as dilated convolutions).
  """
  ops, in_entry = {}, False
  for line in hlo_text.splitlines():
    if line.startswith("ENTRY"):
      in_entry = True
      continue
    if in_entry and line.startswith("}"):
      break
    m = _INSTRUCTION.match(line) if in_entry else None
    if not m:
      continue
    name, opcode = m.groups()
    op_name = re.search(r'op_name="([^"]*)"', line)
    op_name = op_name.group(1) if op_name else ""
    if _RANDOM_OPS.search(op_name):
      kind = PROFILE_KINDS[1]
    elif opcode in ("dot", "convolution") or re.search(r"ynn|dot|conv|gemm", name):
      kind = PROFILE_KINDS[0]
    else:
      kind = PROFILE_KINDS[2]
    ops[name] = (kind, "backward" if "transpose(" in op_name else "forward" if op_name else "unattributed")
  return ops


def _trace(run_once, hlo_text: str, dispatches: int) -> dict:
  """Runs `run_once` (one step, returns something to block on) `dispatches` times under
  `jax.profiler` and sums the trace's durations of `hlo_text`'s top-level instructions."""
  ops = _top_level_ops(hlo_text)
  for _ in range(2):  # warm-up
    jax.block_until_ready(run_once())
  with tempfile.TemporaryDirectory() as logdir:
    with jax.profiler.trace(logdir, create_perfetto_trace=True):
      for _ in range(dispatches):
        out = run_once()
      jax.block_until_ready(out)
    traces = glob.glob(os.path.join(logdir, "**", "*.trace.json.gz"), recursive=True)
    with gzip.open(traces[0]) as f:
      events = json.load(f)["traceEvents"]
  per_op = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and e.get("name") in ops:
      per_op[e["name"]] += e.get("dur", 0) / 1e3 / dispatches
  kinds = {k: 0.0 for k in PROFILE_KINDS}
  passes = {"forward": 0.0, "backward": 0.0, "unattributed": 0.0}
  for name, ms in per_op.items():
    kinds[ops[name][0]] += ms
    passes[ops[name][1]] += ms
  return {"total": sum(kinds.values()), "kinds": kinds, "passes": passes,
          "top": [(name, ms, ops[name][0]) for name, ms in per_op.most_common(6)]}


def profile_step(model: str, quick: bool, batch_size: int = 0, dispatches: int = 5) -> dict:
  """Where one training step's time goes, in the trainer and in the bare loop.

  Traces `dispatches` one-step dispatches of each with `jax.profiler` (the trainer's program of the
  dispatches it does not log, without gradient norms) and sums the durations of the
  program's top-level instructions by kind (`PROFILE_KINDS`) and by pass (forward, or gradient:
  instructions from a transposed computation). Returns {'model', 'trainer': {...}, 'bare': {...}},
  each with milliseconds per step: 'total', 'kinds', 'passes', 'top' [(instruction, ms, kind)].
  The profiler slows a CPU down several times (its wall time is not reported): compare the shares,
  and the trainer with the bare loop, not these milliseconds with the timed table.
  """
  config = bench_config(model, "float32", quick, batch_size)
  config.steps_per_dispatch = 1
  data = synthetic_data(config, config.data.num_train)
  gan = build.build_gan(config, data)
  runner = parallel.Runner(gan, "none")
  box = {"state": runner.put(gan.init(config.seed, None))}
  arrays = runner.put(data.arrays)

  def trainer_once():
    box["state"], metrics = runner.run(box["state"], arrays, 1, "none")
    return metrics

  trainer = _trace(trainer_once, runner.compiled(box["state"], arrays, 1, "none").as_text(), dispatches)
  init, steps = make_bare(config, data.example_shape, data.sampler.num_examples)
  device = jax.local_devices()[0]
  box["bare"] = jax.device_put(init(config.seed), device)
  bare_arrays = jax.device_put(data.arrays, device)
  fn = jax.jit(steps, donate_argnums=0).lower(box["bare"], bare_arrays).compile()

  def bare_once():
    box["bare"], losses = fn(box["bare"], bare_arrays)
    return losses

  bare = _trace(bare_once, fn.as_text(), dispatches)
  return {"model": model, "trainer": trainer, "bare": bare}


def format_profile(p: dict) -> str:
  """Lines of a `profile_step` result: the trainer's and the bare loop's columns side by side."""
  t, b = p["trainer"], p["bare"]
  lines = [f"{p['model']}: instruction time of one step under jax.profiler (ms, share)   trainer      bare loop"]
  for group in ("kinds", "passes"):
    for k in t[group]:
      label = k if group == "kinds" else f"{k} pass"
      lines.append(f"  {label:<48} {t[group][k]:7.2f} {t[group][k] / t['total']:5.0%}  "
                   f"{b[group][k]:7.2f} {b[group][k] / b['total']:5.0%}")
  lines.append(f"  {'total':<48} {t['total']:7.2f}        {b['total']:7.2f}")
  lines.append("  trainer's slowest: " + ", ".join(f"{n} {ms:.2f} ms ({k.split()[0]})" for n, ms, k in t["top"]))
  return "\n".join(lines)
