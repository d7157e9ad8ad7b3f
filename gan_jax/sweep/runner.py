"""Training a sweep: runs batched into vmapped groups, each group trained, scored and stored; resumable,
and splittable over several jobs that share the workdir (`shard`; gan_jax/sweep/claims.py)."""

import datetime
import json
import math
import os
import time

import jax
import numpy as np

from gan_jax import config as config_lib, vmap as vmap_lib
from gan_jax.core import gan as gan_lib
from gan_jax.data import pipeline
from gan_jax.errors import UserError
from gan_jax.evaluation.evaluator import PARZEN, Evaluator, check_applicable, higher_is_better
from gan_jax.run import logs, signals
from gan_jax.sweep import claims as claims_lib, report, results as results_lib
from gan_jax.sweep.spec import expand, load_sweep_file


def plan_groups(runs: list, max_members: int) -> list:
  """Runs batched into groups that share one compiled program, in the sweep's order."""
  by_key = {}
  for run in runs:
    by_key.setdefault(vmap_lib.program_key(run.config), []).append(run)
  groups = []
  for members in by_key.values():
    for i in range(0, len(members), max_members):
      groups.append(members[i:i + max_members])
  return groups


class _Clock:
  """Progress lines for a sweep: steps, it/s over all runs of the group, ETAs."""

  def __init__(self, total_runs: int, every_s: float = 10.0):
    self.total_runs, self.done_runs = total_runs, 0
    self.t_start, self.every_s = time.perf_counter(), every_s
    self.start_group("", 1)

  def start_group(self, label: str, size: int):
    self.label, self.size, self.last, self.first = label, size, 0.0, None

  def __call__(self, step: int, num_steps: int):
    now = time.perf_counter()
    if self.first is None:  # the first dispatch includes compilation: rates count from its end
      self.first = (now, step)
    if now - self.last < self.every_s and step < num_steps:
      return
    self.last = now
    t0, s0 = self.first
    rate = self.size * (step - s0) / (now - t0) if step > s0 else math.nan
    group_eta = self.size * (num_steps - step) / rate if step > s0 else math.nan
    runs_done = self.done_runs + self.size * step / num_steps
    sweep_eta = (now - self.t_start) * (self.total_runs - runs_done) / max(runs_done, 1e-9)
    rate_text = f"{rate:.0f}" if math.isfinite(rate) else "?"
    print(f"  [{self.label}] step {step}/{num_steps}  {rate_text} it/s over {self.size} runs  "
          f"ETA group {logs.format_eta(group_eta)}, sweep ~{logs.format_eta(sweep_eta)}", flush=True)


def train_group(workdir: str, runs: list, evaluator: Evaluator, clock, data=None, stop=None,
                devices: int = 0) -> list:
  """Trains one group of runs as one vmapped program, evaluates each, writes their results.

  `clock(step, num_steps)` is called after each dispatch. `devices`: see `vmap_lib.group_devices`.
  `stop()` true after training and evaluation (a signal arrived) raises KeyboardInterrupt before any
  result is written, so an interrupted group is trained again on the next call."""
  config = runs[0].config
  group = vmap_lib.VmapGroup.build([r.config for r in runs], data,
                                   devices=vmap_lib.group_devices(len(runs), devices))
  t0 = time.perf_counter()
  scored = [[] for _ in runs]  # per run: (step, metric values) of the evaluations during training

  def on_eval(step, states):
    for i, run in enumerate(runs):
      values, _ = evaluator(run.config, group.data, group.gan, jax.device_get(group.member(states, i)))
      scored[i].append((step, values))

  states, history, info = vmap_lib.train(group, config.num_steps, config.steps_per_dispatch,
                                           config.log_every, progress=clock,
                                           eval_every=config.get("eval_every", 0) if evaluator.names else 0,
                                           on_eval=on_eval)
  evaluated = []
  for i, run in enumerate(runs):
    state = jax.device_get(group.member(states, i))
    evaluated.append((state, *evaluator(run.config, group.data, group.gan, state)))
    scored[i].append((config.num_steps, evaluated[-1][1]))
  if stop is not None and stop():
    raise KeyboardInterrupt
  time_s = (time.perf_counter() - t0) / group.size  # the group's wall time, shared out
  results = []
  for i, (run, (state, values, preview)) in enumerate(zip(runs, evaluated)):
    rundir = os.path.join(workdir, run.dirname)
    os.makedirs(rundir, exist_ok=True)
    with open(os.path.join(rundir, "metrics.jsonl"), "w", encoding="utf-8") as f:
      for j, step in enumerate(history["step"]):
        f.write(json.dumps({"step": int(step), **{k: float(v[i, j]) for k, v in history.items()
                                                  if k != "step"}}) + "\n")
    np.save(os.path.join(rundir, "preview.npy"), preview)
    result = {
        "cell": [list(c) for c in run.cell],
        "cell_name": run.cell_name,
        "seed": run.seed,
        "metrics": {k: float(v) for k, v in values.items()},
        # With eval_every: each metric's best value over the evaluations during training and at the end.
        **({"best_metrics": _best(scored[i]), "eval_history": [
            {"step": int(s), **{k: float(v) for k, v in vals.items()}} for s, vals in scored[i]]}
           if len(scored[i]) > 1 else {}),
        "final_train_metrics": {k: float(v[i, -1]) for k, v in history.items() if k != "step"},
        "nonfinite_step": info["nonfinite_step"][i],
        "group_size": group.size,
        "devices": group.num_devices,
        "time_s": time_s,
        "group_iters_per_s": info["iters_per_s"],
        "compile_time_s": info["compile_time_s"],
        "params_sha256": gan_lib.params_sha256(state),
        "config": results_lib.comparable(run.config),
    }
    results_lib.write_result(workdir, run, result)  # last: its presence means "finished"
    results.append(result)
  return results


def shard_chunks(runs: list, count: int) -> list:
  """The sweep's runs cut into `count` contiguous chunks of near-equal size, program by program.

  Runs are ordered as `plan_groups` orders them (the members of one program together), so a chunk
  holds whole programs but at its two ends, and its groups stay large. Computed from every run,
  finished or not, so jobs agree on the chunks whenever each starts.
  """
  ordered = [r for g in plan_groups(runs, max(len(runs), 1)) for r in g]
  n = len(ordered)
  return [ordered[i * n // count:(i + 1) * n // count] for i in range(count)]


def run_sweep(sweep_arg: str, workdir: str, max_members: int = 64, max_groups: int = 0,
              command: str | None = None, shard: claims_lib.Shard | None = None, devices: int = 0,
              claim_timeout_s: float = claims_lib.DEFAULT_TIMEOUT_S) -> dict:
  """Runs (or resumes) the sweep in `sweep_arg` (`FILE.py[:ARG]`), writing everything to `workdir`.

  Args:
    sweep_arg: the sweep file and its argument.
    workdir: output folder; rerunning on the same folder skips finished runs.
    max_members: most runs per vmapped program (1: every run alone).
    max_groups: stop after training this many groups (0: no limit); the same command continues.
    command: the command line recorded in results.md (default: this process's).
    shard: train only this job's share of the runs (`shard_chunks`), then any runs of the other
      shards' shares that no job has claimed yet; the report is left to a run without a shard.
      None: the whole sweep, then the report. Either way a run claimed by another live job is
      skipped (gan_jax/sweep/claims.py).
    devices: local devices per vmapped group (`vmap_lib.group_devices`; 0: all of them when the
      group's size is a multiple of their number, else one).
    claim_timeout_s: a claim not refreshed for this long is taken over.

  Returns:
    {'runs': total, 'trained': trained now, 'skipped': already finished at the start, 'busy': runs
     left unfinished because another job holds them, 'remaining': runs of the sweep not finished,
     'finished': the whole sweep is, 'interrupted': bool, 'wall_time_s': float, 'shard': 'i/N'}.
  """
  if max_members < 1:
    raise UserError(f"--max_members must be >= 1, got {max_members}")
  if max_groups < 0:
    raise UserError(f"--max_groups must be 0 (all groups) or more, got {max_groups}")
  if not claim_timeout_s > 0:
    raise UserError(f"--claim_timeout must be > 0 seconds, got {claim_timeout_s}")
  shard = shard or claims_lib.Shard(0, 1)
  base, spec = load_sweep_file(sweep_arg)
  runs = expand(base, spec)
  metric_names = list(spec.get("metrics", []))
  for name in metric_names:
    check_applicable(name, runs[0].config)
  vmap_lib.check_devices(devices)
  workdir = os.path.abspath(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create workdir {workdir} ({e.strerror}); choose a writable --workdir") from None
  t0 = time.perf_counter()
  todo = [r for r in runs if results_lib.load_result(workdir, r) is None]
  skipped = len(runs) - len(todo)
  unfinished = {r.dirname for r in todo}
  chunks = [[r for r in chunk if r.dirname in unfinished] for chunk in shard_chunks(runs, shard.count)]
  own = plan_groups(chunks[shard.index], max_members)
  others = []  # the other shards' groups, last first: their owners start from the first
  for j in range(1, shard.count):
    others += reversed(plan_groups(chunks[(shard.index + j) % shard.count], max_members))
  where = f"; shard {shard}: {sum(map(len, own))} of them its own" if shard.count > 1 else ""
  print(f"sweep {sweep_arg}: {len(runs)} runs in {len({r.cell for r in runs})} cells; "
        f"{skipped} already finished, {len(todo)} to train{where} in {len(own)} vmapped group(s)", flush=True)
  clock = _Clock(len(chunks[shard.index]))
  evaluator = Evaluator(workdir, metric_names)
  claims = claims_lib.Claims(workdir, str(shard), claim_timeout_s)
  trained, groups_trained, interrupted, busy = 0, 0, False, set()
  data_cache = {}

  def progress(step, num_steps):
    clock(step, num_steps)
    claims.refresh()

  with signals.StopSignals(raise_on=1) as stop:
    try:
      for gi, planned in enumerate(own + others):
        if stop.requested:  # a signal whose KeyboardInterrupt was dropped inside a callback
          raise KeyboardInterrupt
        if max_groups and groups_trained >= max_groups:
          break
        group = []
        for r in planned:
          if results_lib.load_result(workdir, r) is not None:  # finished by another job meanwhile
            continue
          if not claims.try_claim(r):
            busy.add(r.dirname)
          elif results_lib.load_result(workdir, r) is None:  # still unfinished, now ours
            group.append(r)
            claims.record(r)
          else:  # finished between the check and the claim
            claims.release(r)
        if not group:
          continue
        names = sorted({r.cell_name for r in group})
        label = (f"group {gi + 1}/{len(own)}" if gi < len(own) else "another shard's group") + f": {names[0]}"
        label += f" (+{len(names) - 1} cells)" if len(names) > 1 else ""
        clock.start_group(label, len(group))
        data_key = json.dumps({k: v for k, v in config_lib.flatten(group[0].config).items()
                               if k.startswith("data.") or k == "batch_size"}, sort_keys=True)
        if data_key not in data_cache:
          data_cache = {data_key: pipeline.build_data(group[0].config)}  # one data set in memory
        train_group(workdir, group, evaluator, progress, data_cache[data_key], stop=lambda: stop.requested,
                    devices=devices)
        for r in group:
          claims.release(r)
        trained += len(group)
        groups_trained += 1
        clock.done_runs = trained
        if shard.count == 1:
          report.write_tables(workdir, runs, spec, command)
      if stop.requested:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
      interrupted = True
    except Exception:  # pylint: disable=broad-except
      # A KeyboardInterrupt raised inside a JAX callback (a pytree's is_leaf, say) can surface as
      # another error; after a signal, that is the interruption, not a failure.
      if not stop.requested:
        raise
      interrupted = True
    finally:
      claims.release_all()  # an interrupted group is trained again, by this job or another
  remaining = [r for r in runs if results_lib.load_result(workdir, r) is None]
  if shard.count == 1:
    report.write_tables(workdir, runs, spec, command, with_stats=not interrupted)
  summary = {"runs": len(runs), "trained": trained, "skipped": skipped,
             "busy": len(busy & {r.dirname for r in remaining}), "remaining": len(remaining),
             "finished": not remaining, "interrupted": interrupted,
             "wall_time_s": round(time.perf_counter() - t0, 1), "shard": str(shard)}
  line = json.dumps({**summary, "date": datetime.datetime.now().isoformat(timespec="seconds"),
                     "device": jax.devices()[0].device_kind, "command": command or report.command_line()})
  with open(os.path.join(workdir, "sweep_log.jsonl"), "a", encoding="utf-8") as f:
    f.write(line + "\n")  # one short append: lines of concurrent jobs do not interleave
  return summary


def _best(scored: list) -> dict:
  """{metric: {"value", "step"}}: each metric's best over [(step, {metric: value})], NaN left out."""
  best = {}
  for step, values in scored:
    for name, value in values.items():
      value = float(value)
      if not math.isfinite(value) or name not in metrics_names():
        continue
      sign = 1 if higher_is_better(name) else -1
      if name not in best or sign * value > sign * best[name]["value"]:
        best[name] = {"value": value, "step": int(step)}
  return best


def metrics_names() -> set:
  """The metric names a sweep ranks by (its registry plus the Parzen log-likelihood)."""
  from gan_jax.evaluation import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  return set(metrics_lib.METRICS) | {PARZEN}
