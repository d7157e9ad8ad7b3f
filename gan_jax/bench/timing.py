"""The benchmark's rows: cases (trainer, vmapped seeds, bare loop), timed round-robin, summarised."""

import dataclasses
import datetime
import functools
import os
import sys
import time

import jax
import numpy as np

from gan_jax import config as config_lib, parallel, vmap
from gan_jax.bench.reference import make_bare
from gan_jax.bench.configs import MODELS, MODES, bench_config, synthetic_data
from gan_jax.bench.flops import flops_per_iteration, matmul_peak_flops
from gan_jax.core import build
from gan_jax.errors import UserError

@dataclasses.dataclass
class Case:
  """One row: `call()` runs one timed dispatch of `iters` iterations of `runs` runs of `batch` images."""

  model: str
  mode: str
  compute_dtype: str
  call: object
  iters: int
  batch: int
  runs: int = 1
  compile_s: float = 0.0
  times: list = dataclasses.field(default_factory=list)

  @property
  def name(self) -> str:
    return f"{self.mode}{self.runs}" if self.mode == "vmap" else self.mode


def _trainer_case(model, mode, config, data, num_steps, calls, grad_norms="last"):
  """The trainer as `gan_jax.train` runs it: `parallel.Runner`, donated state, metrics left on device,
  gradient norms measured in the last of `calls` dispatches (as at a log step), unless
  `grad_norms="every"` (at every iteration; `experiments/perf/grad_norm_cost.py`)."""
  gan = build.build_gan(config, data)
  runner = parallel.Runner(gan, "none")
  state = runner.put(gan.init(config.seed, None))
  arrays = runner.put(data.arrays)
  modes = ["every"] * calls if grad_norms == "every" else ["none"] * (calls - 1) + ["last"]
  for m in set(modes):
    runner.compiled(state, arrays, num_steps, m)
  box = {"state": state}

  def call():
    state, metrics = box["state"], None
    for m in modes:
      state, metrics = runner.run(state, arrays, num_steps, m)
    box["state"] = state
    return metrics

  return Case(model, mode, config.model.compute_dtype, call, num_steps * calls, config.batch_size,
              compile_s=runner.compile_time_s)


def _vmap_case(model, config, data, runs):
  """`runs` seeds as one vmapped program: `gan_jax.vmap.VmapGroup`."""
  configs = []
  for i in range(runs):
    c = config.copy_and_resolve_references()
    c.seed = config.seed + i
    configs.append(c)
  group = vmap.VmapGroup.build(configs, data)
  n = config.steps_per_dispatch
  box = {"state": group.init()}
  t0 = time.perf_counter()
  group._compiled(n, "last")  # pylint: disable=protected-access
  compile_s = time.perf_counter() - t0

  def call():  # as `vmap.train` runs it: the gradient norms at the dispatch's last iteration
    box["state"], metrics = group.run(box["state"], n, "last")
    return metrics

  return Case(model, "vmap", config.model.compute_dtype, call, n, config.batch_size, runs=runs,
              compile_s=compile_s)


def _bare_case(model, mode, config, data, num_steps, calls):
  config = config.copy_and_resolve_references()
  config.steps_per_dispatch = num_steps
  init, steps = make_bare(config, data.example_shape, data.sampler.num_examples)
  device = jax.local_devices()[0]
  box = {"state": jax.device_put(init(config.seed), device)}
  arrays = jax.device_put(data.arrays, device)
  t0 = time.perf_counter()
  fn = jax.jit(steps, donate_argnums=0).lower(box["state"], arrays).compile()
  compile_s = time.perf_counter() - t0

  def call():
    losses = None
    for _ in range(calls):
      box["state"], losses = fn(box["state"], arrays)
    return losses

  return Case(model, mode, config.model.compute_dtype, call, num_steps * calls, config.batch_size,
              compile_s=compile_s)


def build_cases(model, modes, seeds, steps_per_dispatch, quick, num_examples=None, batch_size=0, log=print,
                dtypes=None, adjust=None):
  """The benchmark rows of `model` for `modes`, compiled (compile time recorded per row).

  With `dtypes` (e.g. ['bfloat16'], `gan_jax.bench.agenda`), every trainer mode of `modes` (step,
  scan, vmap) and its bare ceilings are built in each of those compute dtypes. `adjust(config)`, if
  given, edits each dtype's config in place first (the agenda's dry run shrinks the models).
  """
  every_mode = dtypes is not None
  dtypes = dtypes or ["float32"] + (["bfloat16"] if "bf16" in modes else [])
  cases = []
  for dtype in dtypes:
    config = bench_config(model, dtype, quick, batch_size)
    if adjust:
      adjust(config)
    config.steps_per_dispatch = steps_per_dispatch
    n = num_examples or config.data.num_train
    if n < config.batch_size:
      raise UserError(f"--num_examples={n} is smaller than one batch of {config.batch_size} ({model}); "
                      f"pass at least {config.batch_size}, or 0 for the real split's size")
    data = synthetic_data(config, n)
    todo = []
    if dtype == "float32" or every_mode:
      if "step" in modes:
        todo.append(("step", lambda: _trainer_case(model, "step", config, data, 1, steps_per_dispatch)))
      if "scan" in modes:
        todo.append(("scan", lambda: _trainer_case(model, "scan", config, data, steps_per_dispatch, 1)))
      if "vmap" in modes:
        for runs in seeds:
          todo.append((f"vmap{runs}", functools.partial(_vmap_case, model, config, data, runs)))
    else:
      todo.append(("bf16", lambda: _trainer_case(model, "bf16", config, data, steps_per_dispatch, 1)))
    if "bare" in modes:
      todo.append(("bare", lambda: _bare_case(model, "bare", config, data, steps_per_dispatch, 1)))
      if "step" in modes and (dtype == "float32" or every_mode) and steps_per_dispatch > 1:  # else `bare` has no loop
        todo.append(("bare_step", lambda: _bare_case(model, "bare_step", config, data, 1, steps_per_dispatch)))
    for name, make in todo:
      t0 = time.perf_counter()
      with config_lib.matmul_precision(config):  # compiled at the config's precision, as the trainer
        case = make()
      cases.append(case)
      log(f"  compiled {model}/{name} ({dtype}) in {case.compile_s:.1f} s "
          f"[{time.perf_counter() - t0:.1f} s with setup]")
  return cases


def time_cases(cases, repeats: int, log=print):
  """A warm-up dispatch per case, then `repeats` rounds timing each case once (round-robin)."""
  for case in cases:
    jax.block_until_ready(case.call())
  t_start = time.perf_counter()
  for r in range(repeats):
    for case in cases:
      t0 = time.perf_counter()
      jax.block_until_ready(case.call())
      case.times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - t_start
    eta = elapsed / (r + 1) * (repeats - r - 1)
    rates = ", ".join(f"{c.model}/{c.name} {c.iters * c.runs / c.times[-1]:.1f} it/s" for c in cases)
    log(f"  round {r + 1}/{repeats} ({elapsed:.0f} s, ETA {eta:.0f} s): {rates}")


def summarize(cases, flops: dict) -> list[dict]:
  """JSON rows: best and median it/s (summed over vmapped runs), images/s, compile time, ratio to the
  row's ceiling.

  `vs_bare` is the median over rounds of the row's images/s over its ceiling's in the same round:
  both were timed within seconds of each other, so a neighbour's load that comes and goes between
  rounds cancels out (best-of-rounds figures can come from different rounds).
  """
  rows = []
  for c in cases:
    best, median = min(c.times), float(np.median(c.times))
    its = c.iters * c.runs / best
    rows.append({
        "model": c.model, "mode": c.name, "compute_dtype": c.compute_dtype, "runs": c.runs,
        "batch": c.batch, "iters_per_dispatch": c.iters, "iters_per_s": its,
        "iters_per_s_median": c.iters * c.runs / median, "images_per_s": its * c.batch,
        "compile_s": c.compile_s, "dispatch_times_s": c.times,
        "tflops_per_s": its * flops[c.model][c.compute_dtype] / 1e12,
    })
  for row in rows:
    # One step per dispatch against the bare loop dispatched the same way; the rest against the scan.
    same = [r for r in rows if r["model"] == row["model"] and r["compute_dtype"] == row["compute_dtype"]]
    bare = [r for r in same if r["mode"] == "bare_step" and row["mode"] in ("step", "bare_step")]
    bare = bare or [r for r in same if r["mode"] == "bare"]
    if not bare:
      row["vs_bare"] = None
      continue
    bare = bare[0]
    work, bare_work = row["iters_per_dispatch"] * row["runs"], bare["iters_per_dispatch"] * bare["runs"]
    ratios = [(work / t) / (bare_work / tb) for t, tb in zip(row["dispatch_times_s"], bare["dispatch_times_s"])]
    row["vs_bare"] = float(np.median(ratios))
  return rows


def format_table(rows) -> str:
  """A fixed-width table of the rows."""
  head = (f"{'model':<10} {'mode':<9} {'dtype':<9} {'it/s':>9} {'images/s':>10} {'TFLOP/s':>8} "
          f"{'compile s':>9} {'vs bare':>7} {'floor it/s':>10}")
  lines = [head, "-" * len(head)]
  for r in rows:
    ratio = f"{r['vs_bare']:.3f}" if r["vs_bare"] is not None else "-"
    floor = f"{r['floor_iters_per_s']:.1f}" if r.get("floor_iters_per_s") else "-"
    lines.append(f"{r['model']:<10} {r['mode']:<9} {r['compute_dtype']:<9} {r['iters_per_s']:>9.2f} "
                 f"{r['images_per_s']:>10.0f} {r['tflops_per_s']:>8.3f} {r['compile_s']:>9.1f} {ratio:>7} "
                 f"{floor:>10}")
  lines.append("it/s: best round, summed over vmapped runs; vs bare: median over rounds of the same-round "
               "ratio to the bare loop (same dtype and dispatch style); floor it/s: the iteration's FLOPs "
               "at the device's float32 matmul rate (the physical floor, as iterations/s)")
  return "\n".join(lines)


def run(models, modes, seeds=(8, 16), steps_per_dispatch=5, repeats=3, quick=False, num_examples=None,
        batch_size=0, log=print) -> dict:
  """Builds, compiles and times every (model, mode) row; returns the JSON report.

  Args:
    models: names from `MODELS`.
    modes: names from `MODES`.
    seeds: run counts for the `vmap` mode.
    steps_per_dispatch: iterations per timed dispatch (the `step` mode makes this many dispatches).
    repeats: timed rounds; each row reports its best round.
    quick: shrink the DCGAN (`bench_config`), for CPUs.
    num_examples: synthetic training examples (default: the real data set's training split size).
    batch_size: overrides both experiments' batch size (0: 100 for mnist_mlp, 128 for dcgan32).
    log: called with progress lines.
  """
  for m in models:
    if m not in MODELS:
      raise UserError(f"unknown model {m!r} in --models; choose from {','.join(MODELS)}")
  for m in modes:
    if m not in MODES:
      raise UserError(f"unknown mode {m!r} in --modes; choose from {','.join(MODES)}")
  if steps_per_dispatch < 1 or repeats < 1 or any(s < 1 for s in seeds) or batch_size < 0:
    raise UserError("--steps_per_dispatch, --repeats and --seeds must be >= 1, --batch_size >= 0")
  t0 = time.perf_counter()
  cases, flops = [], {}
  for model in models:
    model_modes = [m for m in modes if m != "bf16" or model == "dcgan32"]
    flops[model] = {}
    for dtype in ("float32", "bfloat16"):
      config = bench_config(model, dtype, quick, batch_size)
      shape = (784,) if model == "mnist_mlp" else (32, 32, 3)
      flops[model][dtype] = flops_per_iteration(config, shape)
    log(f"{model}: {flops[model]['float32'] / 1e9:.2f} GFLOP per iteration; compiling")
    cases += build_cases(model, model_modes, seeds, steps_per_dispatch, quick, num_examples, batch_size, log)
  log(f"timing {len(cases)} rows, {repeats} rounds")
  time_cases(cases, repeats, log)
  rows = summarize(cases, flops)
  with jax.default_matmul_precision("float32"):  # the float32 rate, not TF32's (GPUs) or bf16 passes (TPUs)
    peak = matmul_peak_flops()
  log(f"float32 matmul [200,1200]x[1200,1200]: {peak / 1e12:.3f} TFLOP/s")
  for row in rows:  # the physical floor: the iteration's FLOPs at that matmul rate
    row["floor_iters_per_s"] = row["runs"] * peak / flops[row["model"]][row["compute_dtype"]]
  device = jax.devices()[0]
  return {
      "date": datetime.date.today().isoformat(),
      "command": " ".join(["python -m gan_jax.bench"] + sys.argv[1:]),
      "platform": device.platform,
      "device_kind": device.device_kind,
      "cpu_count": os.cpu_count(),
      "jax_version": jax.__version__,
      "quick": quick,
      "steps_per_dispatch": steps_per_dispatch,
      "repeats": repeats,
      "flops_per_iteration": flops,
      "matmul_peak_tflops": peak / 1e12,
      "total_time_s": time.perf_counter() - t0,
      "rows": rows,
  }
