"""Sweeps: a grid over config keys times a list of seeds, resumable, summarised in tables and figures.

  python -m gan_jax.sweep --sweep=experiments/ablations/ring_losses.py --workdir=runs/ring_losses

A sweep file is a config file (`get_config(arg)`, the base run) with a `get_sweep(arg)` beside it:

  def get_sweep(arg=""):
    return {
        "axes": {                                # the grid: every combination of the axes' values
            "k_disc_steps": [1, 5],              # a config key and its values, or
            "loss": {                            # a named axis: value label -> config overrides
                "minimax": {"loss.name": "minimax"},
                "wgan_gp": {"loss.name": "wasserstein", "loss.penalty": "wgan_gp"},
            },
        },
        "seeds": [0, 1, 2, 3, 4],                # every cell runs once per seed (`config.seed`)
        "metrics": ["modes_covered", "high_quality_frac"],  # the first one ranks the cells
    }

`--sweep=FILE:ARG` passes ARG to both functions (e.g. `:smoke` for a seconds-long version).

Runs whose configs differ only in `vmap_train.VMAPPABLE_KEYS` (the seeds of a cell; learning rates,
loss and penalty weights across cells) train together as one vmapped program, up to `--max_members`
runs at a time (`--max_members=1` trains every run alone).

Everything lands in `--workdir`:
  runs/CELL/seed_S/result.json   the run's config, metrics and times; its presence means "finished"
  runs/CELL/seed_S/metrics.jsonl training losses every `log_every` steps
  results.csv                    one row per run
  results.md                     per cell: mean ± std over seeds of each metric, the best cell marked
  results.png                    the same as bar charts; samples.png: samples of every cell (first seed)

Rerunning the command skips runs whose result.json records the same config, so an interrupted sweep
(Ctrl-C, SIGTERM, a crash) resumes where it stopped; only the groups in flight are trained again.
"""

import csv
import dataclasses
import datetime
import importlib.util
import itertools
import json
import math
import os
import re
import signal
import sys
import textwrap
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from gan_jax import gan as gan_lib, plotting, vmap_train
from gan_jax.data import pipeline, sources
from gan_jax.errors import UserError
from gan_jax.evaluation import classifier as classifier_lib, metrics as metrics_lib, parzen

SPEC_KEYS = ("axes", "seeds", "metrics")
RESULT_FILE = "result.json"


# ---------------------------------------------------------------------------- the sweep spec
@dataclasses.dataclass(frozen=True)
class Run:
  """One run of a sweep: a cell (one value per axis) and a seed."""

  cell: tuple  # ((axis, value label), ...) in axis order
  seed: int
  config: ml_collections.ConfigDict

  @property
  def cell_name(self) -> str:
    return cell_name(self.cell)

  @property
  def dirname(self) -> str:
    return os.path.join("runs", _slug(self.cell_name) or "base", f"seed_{self.seed}")


def cell_name(cell) -> str:
  return ", ".join(f"{axis}={label}" for axis, label in cell) or "base"


def _slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text.replace(", ", "__")).strip("_")


def load_sweep_file(path_arg: str):
  """(base config, spec) from `FILE.py[:ARG]`."""
  path, _, arg = path_arg.partition(":")
  if not os.path.isfile(path):
    raise UserError(f"sweep file {path} does not exist; pass --sweep=experiments/ablations/NAME.py")
  spec_ = importlib.util.spec_from_file_location("gan_jax_sweep_file", path)
  module = importlib.util.module_from_spec(spec_)
  try:
    spec_.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except  # any error in a user's file: one line
    raise UserError(f"cannot load sweep file {path}: {type(e).__name__}: {e}") from None
  for fn in ("get_config", "get_sweep"):
    if not callable(getattr(module, fn, None)):
      raise UserError(f"sweep file {path} has no {fn}(arg) function; a sweep file defines get_config "
                      "(the base run) and get_sweep (axes, seeds, metrics)")
  return module.get_config(arg), module.get_sweep(arg)


def _apply(config, key: str, value, where: str):
  """Sets `config[key] = value` (a dotted key), or raises a UserError naming `where`."""
  flat = vmap_train.flat_config(config)
  if key not in flat:
    group = [k for k in flat if k.startswith(key + ".")]
    hint = (f"it is a group; name a key inside it, e.g. {group[0]}" if group else
            "every key and its default is in gan_jax/config.py")
    raise UserError(f"{where}: unknown config key {key!r}; {hint}")
  current = flat[key]
  if isinstance(value, list) and isinstance(current, list):
    value = tuple(value)  # JSON shows tuples as lists; the config holds tuples
  try:
    config.update_from_flattened_dict({key: value})
  except (TypeError, ValueError, KeyError) as e:
    raise UserError(f"{where}: value {value!r} does not fit config key {key!r} (now {current!r}): "
                    f"{e}") from None


def expand(base: ml_collections.ConfigDict, spec: dict) -> list:
  """Checks a sweep spec and returns its runs, cell by cell, seeds inside."""
  if not isinstance(spec, dict):
    raise UserError(f"get_sweep() must return a dict with keys {list(SPEC_KEYS)}, got {type(spec).__name__}")
  unknown = sorted(set(spec) - set(SPEC_KEYS))
  if unknown:
    raise UserError(f"unknown sweep entries {unknown}; a sweep has {list(SPEC_KEYS)}")
  axes = spec.get("axes", {})
  seeds = list(spec.get("seeds", [base.seed]))
  if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
    raise UserError(f"sweep seeds must be a non-empty list of integers, got {spec.get('seeds')!r}")
  if len(set(seeds)) != len(seeds):
    raise UserError(f"sweep seeds {seeds} repeat a seed; list each seed once")
  for name in spec.get("metrics", []):
    metric_kind(name)
  choices = []  # per axis: [(label, overrides)]
  for axis, values in axes.items():
    if axis == "seed":
      raise UserError("'seed' cannot be a sweep axis; list the seeds under 'seeds'")
    if isinstance(values, dict):
      options = [(str(label), dict(over)) for label, over in values.items()]
    elif isinstance(values, list | tuple):
      options = [(_label(v), {axis: v}) for v in values]
    else:
      raise UserError(f"sweep axis {axis!r} must be a list of values or a dict of named overrides, "
                      f"got {type(values).__name__}")
    if not options:
      raise UserError(f"sweep axis {axis!r} has no values, so the grid is empty; give it at least one")
    for label, over in options:
      for key, value in over.items():
        _apply(base.copy_and_resolve_references(), key, value, f"sweep axis {axis!r} ({label})")
    choices.append([(axis, label, over) for label, over in options])
  runs = []
  for combo in itertools.product(*choices):
    for seed in seeds:
      config = base.copy_and_resolve_references()
      for axis, label, over in combo:
        for key, value in over.items():
          _apply(config, key, value, f"sweep axis {axis!r} ({label})")
      config.seed = seed
      config.parallel.mode = "none"  # a sweep trains on one device; vmap gives the parallelism
      runs.append(Run(cell=tuple((axis, label) for axis, label, _ in combo), seed=seed, config=config))
  return runs


def _label(value) -> str:
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, list | tuple):
    return "x".join(_label(v) for v in value)
  return str(value)


# ---------------------------------------------------------------------------- resuming
def _comparable(config) -> dict:
  return {k: v for k, v in vmap_train.flat_config(config).items() if not vmap_train.is_driver_key(k)}


def load_result(workdir: str, run: Run):
  """The run's stored result if it finished with the same config, else None."""
  path = os.path.join(workdir, run.dirname, RESULT_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      result = json.load(f)
  except (OSError, ValueError):
    return None  # cut short by a kill: train it again
  if result.get("config") != _comparable(run.config):
    logging.warning("%s was trained with another config; training it again", path)
    return None
  return result


def _write_json(path: str, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)  # all or nothing: a killed sweep never leaves half a result


# ---------------------------------------------------------------------------- metrics
# The registry of gan_jax.evaluation.metrics, plus the paper's Parzen log-likelihood.
PARZEN = "parzen_ll"
NUM_SAMPLES_TOY = 2500  # the sample size of VEEGAN's and PacGAN's mode counts
MAX_SAMPLES_IMAGES = 10000  # the paper's Parzen sample count; fewer if the training split is smaller
_EVAL_STREAM = 7  # key stream of the evaluation samples: fold_in(PRNGKey(seed), 7)


def metric_kind(name: str) -> str:
  """'toy2d' or 'image'; a UserError for a name that is not a metric."""
  if name == PARZEN:
    return "image"
  if name not in metrics_lib.METRICS:
    valid = ", ".join(sorted([*metrics_lib.METRICS, PARZEN]))
    raise UserError(f"unknown metric {name!r} in the sweep's metrics; valid names: {valid}")
  return metrics_lib.METRICS[name].kind


def higher_is_better(name: str) -> bool:
  return True if name == PARZEN else metrics_lib.METRICS[name].higher_is_better


def check_applicable(name: str, config) -> None:
  """Raises a UserError if metric `name` cannot score runs on `config`'s data."""
  kind, dc = metric_kind(name), config.data
  if kind == "toy2d" and not (dc.source == "toy" and dc.name in ("ring_2d", "grid_2d")):
    raise UserError(f"metric {name!r} needs a 2-D mixture (data.source='toy', data.name 'ring_2d' or "
                    f"'grid_2d'), not {dc.source}/{dc.name}; image data takes "
                    f"{', '.join([*metrics_lib.metric_names('image'), PARZEN])}")
  if kind == "image" and dc.source == "toy":
    raise UserError(f"metric {name!r} needs image data, not toy/{dc.name}; 2-D mixtures take "
                    f"{', '.join(metrics_lib.metric_names('toy2d'))}")


class Evaluator:
  """Scores trained generators. The classifier (cached in WORKDIR/classifier, trained once per data
  set) and the reference statistics are built on first use and shared by every run."""

  def __init__(self, workdir: str, names):
    self.workdir, self.names = workdir, list(names)
    self._refs = {}

  def _image_reference(self, config) -> dict:
    dc = config.data
    key = json.dumps({k: v for k, v in vmap_train.flat_config(config).items() if k.startswith("data.")},
                     sort_keys=True)
    if key not in self._refs:
      train, val = sources.load_images(dc, "train"), sources.load_images(dc, "validation")
      if train.labels is None:
        raise UserError(f"the classifier metrics need labelled data; {train.name} has no labels")
      num_classes = int(train.labels.max()) + 1
      clf, cached = classifier_lib.get_or_train_classifier(
          os.path.join(self.workdir, "classifier"), f"{train.name}-train{len(train.images)}",
          train.images, train.labels, num_classes, test_images=val.images, test_labels=val.labels,
          min_test_accuracy=0.9)
      print(f"  classifier for {train.name}: test accuracy {clf.test_accuracy:.3f}"
            f"{' (cached)' if cached else ''}", flush=True)
      n = min(len(train.images), MAX_SAMPLES_IMAGES)
      ref = {"classifier": clf, "n": n, "stats": metrics_lib.reference_stats(clf, train.images[:n])}
      if PARZEN in self.names:  # the paper: sigma on 1,000 validation examples, scored on test
        flat = lambda x: x.reshape(len(x), -1)
        ref["validation"] = flat(pipeline.load_split(dc, "validation"))[:1000]
        ref["test"] = flat(pipeline.load_split(dc, "test"))
      self._refs[key] = ref
    return self._refs[key]

  def __call__(self, config, data: pipeline.Data, gan, g_params):
    """({metric: value}, preview samples) of one trained generator."""
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), _EVAL_STREAM)
    if data.image_shape is None:
      x = gan_lib.generate_samples(gan, g_params, key, NUM_SAMPLES_TOY)
      values = {}
      if self.names:
        toy = data.sampler.toy
        ref = metrics_lib.MixtureReference(np.asarray(toy.centers), toy.std)
        values = metrics_lib.evaluate_samples(x, "toy2d", ref, metrics=self.names)
      return values, x[:1000]
    ref = self._image_reference(config) if self.names else None
    x = gan_lib.generate_samples(gan, g_params, key, ref["n"] if ref else 36)
    images = plotting.to_displayable(x, data.image_shape, data.display_scale)
    values = {}
    registered = [n for n in self.names if n != PARZEN]
    if registered:
      values = metrics_lib.evaluate_samples(images, "image", ref["stats"], ref["classifier"], registered)
    if PARZEN in self.names:
      if np.all(np.isfinite(x)):
        result = parzen.evaluate(x.reshape(len(x), -1), ref["validation"], ref["test"])
        values.update({PARZEN: result.mean, "parzen_std_err": result.std_err, "parzen_sigma": result.sigma})
      else:
        values[PARZEN] = math.nan
    return values, images[:36]


# ---------------------------------------------------------------------------- training
def plan_groups(runs: list, max_members: int) -> list:
  """Runs batched into groups that share one compiled program, in the sweep's order."""
  by_key = {}
  for run in runs:
    by_key.setdefault(vmap_train.program_key(run.config), []).append(run)
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
          f"ETA group {_fmt_s(group_eta)}, sweep ~{_fmt_s(sweep_eta)}", flush=True)


def _fmt_s(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  m, s = divmod(int(seconds), 60)
  return f"{m // 60:d}:{m % 60:02d}:{s:02d}"


def train_group(workdir: str, runs: list, evaluator: Evaluator, clock: _Clock, data=None, stop=None) -> list:
  """Trains one group of runs as one vmapped program, evaluates each, writes their results.

  `stop()` true after training and evaluation (a signal arrived) raises KeyboardInterrupt before any
  result is written, so an interrupted group is trained again on the next call."""
  config = runs[0].config
  group = vmap_train.VmapGroup.build([r.config for r in runs], data)
  t0 = time.perf_counter()
  states, history, info = vmap_train.train(group, config.num_steps, config.steps_per_dispatch,
                                           config.log_every, progress=clock)
  evaluated = []
  for i, run in enumerate(runs):
    state = jax.device_get(group.member(states, i))
    evaluated.append((state, *evaluator(run.config, group.data, group.gan, state.g_params)))
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
        "final_train_metrics": {k: float(v[i, -1]) for k, v in history.items() if k != "step"},
        "nonfinite_step": info["nonfinite_step"][i],
        "group_size": group.size,
        "time_s": time_s,
        "group_iters_per_s": info["iters_per_s"],
        "compile_time_s": info["compile_time_s"],
        "params_sha256": gan_lib.params_sha256(state),
        "config": _comparable(run.config),
    }
    _write_json(os.path.join(rundir, RESULT_FILE), result)  # last: its presence means "finished"
    results.append(result)
  return results


class _SigtermAsInterrupt:
  """SIGTERM stops a sweep the way Ctrl-C does: finished runs are kept, the tables written.

  Both signals raise KeyboardInterrupt at once and are also remembered (`requested`): a
  KeyboardInterrupt raised while Python code runs inside a library callback can be printed and
  dropped there, so the sweep checks `requested` between groups as well.
  """

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGINT, signal.SIGTERM):
      try:
        self._previous[sig] = signal.signal(sig, self._raise)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _raise(self, signum, frame):
    del signum, frame
    self.requested = True
    raise KeyboardInterrupt

  def __exit__(self, *exc):
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)


def run_sweep(sweep_arg: str, workdir: str, max_members: int = 64, max_groups: int = 0,
              command: str | None = None) -> dict:
  """Runs (or resumes) the sweep in `sweep_arg` (`FILE.py[:ARG]`), writing everything to `workdir`.

  Args:
    sweep_arg: the sweep file and its argument.
    workdir: output folder; rerunning on the same folder skips finished runs.
    max_members: most runs per vmapped program (1: every run alone).
    max_groups: stop after training this many groups (0: no limit); the same command continues.
    command: the command line recorded in results.md (default: this process's).

  Returns:
    {'runs': total, 'trained': trained now, 'skipped': already finished, 'finished': bool,
     'interrupted': bool, 'wall_time_s': float}.
  """
  if max_members < 1:
    raise UserError(f"--max_members must be >= 1, got {max_members}")
  base, spec = load_sweep_file(sweep_arg)
  runs = expand(base, spec)
  metric_names = list(spec.get("metrics", []))
  for name in metric_names:
    check_applicable(name, runs[0].config)
  workdir = os.path.abspath(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create workdir {workdir} ({e.strerror}); choose a writable --workdir") from None
  t0 = time.perf_counter()
  todo = [r for r in runs if load_result(workdir, r) is None]
  skipped = len(runs) - len(todo)
  groups = plan_groups(todo, max_members)
  print(f"sweep {sweep_arg}: {len(runs)} runs in {len({r.cell for r in runs})} cells; "
        f"{skipped} already finished, {len(todo)} to train in {len(groups)} vmapped group(s)", flush=True)
  clock = _Clock(len(todo))
  evaluator = Evaluator(workdir, metric_names)
  trained, interrupted = 0, False
  data_cache = {}
  with _SigtermAsInterrupt() as signals:
    try:
      for gi, group in enumerate(groups):
        if signals.requested:  # a signal whose KeyboardInterrupt was dropped inside a callback
          raise KeyboardInterrupt
        if max_groups and gi >= max_groups:
          break
        names = sorted({r.cell_name for r in group})
        label = f"group {gi + 1}/{len(groups)}: {names[0]}" + (f" (+{len(names) - 1} cells)" if len(names) > 1 else "")
        clock.start_group(label, len(group))
        data_key = json.dumps({k: v for k, v in vmap_train.flat_config(group[0].config).items()
                               if k.startswith("data.") or k == "batch_size"}, sort_keys=True)
        if data_key not in data_cache:
          data_cache = {data_key: pipeline.build_data(group[0].config)}  # one data set in memory
        train_group(workdir, group, evaluator, clock, data_cache[data_key], stop=lambda: signals.requested)
        trained += len(group)
        clock.done_runs = trained
        write_tables(workdir, runs, spec, command)
      if signals.requested:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
      interrupted = True
  write_tables(workdir, runs, spec, command)
  finished = skipped + trained == len(runs)
  summary = {"runs": len(runs), "trained": trained, "skipped": skipped, "finished": finished,
             "interrupted": interrupted, "wall_time_s": round(time.perf_counter() - t0, 1)}
  with open(os.path.join(workdir, "sweep_log.jsonl"), "a", encoding="utf-8") as f:
    f.write(json.dumps({**summary, "date": datetime.datetime.now().isoformat(timespec="seconds"),
                        "device": jax.devices()[0].device_kind, "command": command or _command()}) + "\n")
  return summary


# ---------------------------------------------------------------------------- tables and figures
def _command() -> str:
  return "python -m gan_jax.sweep " + " ".join(sys.argv[1:])


def _collect(workdir: str, runs: list) -> list:
  return [(r, res) for r in runs if (res := load_result(workdir, r)) is not None]


def _mean_std(values):
  v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
  if not v.size:
    return math.nan, math.nan, 0
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def write_tables(workdir: str, runs: list, spec: dict, command: str | None = None) -> dict:
  """Writes results.csv, results.md, results.png and samples.png from the finished runs' results.

  Returns:
    {cell name: {metric: (mean, std, n)}} of the cells with at least one finished run.
  """
  done = _collect(workdir, runs)
  metric_names = list(spec.get("metrics", []))
  axes = [axis for axis, _ in runs[0].cell]
  with open(os.path.join(workdir, "results.csv"), "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["cell", *axes, "seed", *metric_names, "nonfinite_step", "time_s", "group_size",
                "params_sha256"])
    for r, res in done:
      w.writerow([r.cell_name, *[label for _, label in r.cell], r.seed,
                  *[_fmt_csv(res["metrics"].get(m)) for m in metric_names],
                  res["nonfinite_step"] if res["nonfinite_step"] is not None else "",
                  f"{res['time_s']:.2f}", res["group_size"], res["params_sha256"][:16]])
  cells = {}
  for r, res in done:
    cells.setdefault(r.cell, []).append(res)
  summary = {}
  for cell, results in cells.items():
    summary[cell_name(cell)] = {m: _mean_std([x["metrics"].get(m) for x in results]) for m in metric_names}
  best = None
  if metric_names and summary:  # ranked by the first metric; ties broken by the next ones
    def score(name):
      return tuple((1 if higher_is_better(m) else -1) * summary[name][m][0] if summary[name][m][2]
                   else -math.inf for m in metric_names)
    best = max(summary, key=score)
    if not summary[best][metric_names[0]][2]:
      best = None
  all_cells = list(dict.fromkeys(r.cell for r in runs))
  seeds = list(spec.get("seeds", [runs[0].seed]))
  lines = [f"Command: `{command or _command()}`", "",
           f"{len(done)} of {len(runs)} runs finished ({len(all_cells)} cells x {len(seeds)} seeds: "
           f"{', '.join(map(str, seeds))}); mean ± sample std over seeds. "
           + (f"Best cell by {metric_names[0]} ({'higher' if higher_is_better(metric_names[0]) else 'lower'} "
              "is better; ties broken by the next metrics): **bold**, ★." if best else ""), ""]
  head = [*axes, *metric_names, "runs", "diverged", "time (s)"]
  lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for cell in all_cells:
    results = cells.get(cell, [])
    name = cell_name(cell)
    mark = name == best
    cols = [f"**{label}** ★" if mark and i == 0 else label for i, (_, label) in enumerate(cell)]
    for m in metric_names:
      mean, std, n = summary.get(name, {}).get(m, (math.nan, math.nan, 0))
      text = "—" if not n else f"{_fmt(mean)} ± {_fmt(std)}"
      cols.append(f"**{text}**" if mark else text)
    diverged = sum(1 for x in results if x["nonfinite_step"] is not None)
    cols += [f"{len(results)}/{len(seeds)}", str(diverged), f"{sum(x['time_s'] for x in results):.1f}"]
    lines.append("| " + " | ".join(cols) + " |")
  lines += ["", "time (s): the cell's share of wall time (training, compiling and evaluating its "
            "vmapped group, divided among the group's runs)."]
  with open(os.path.join(workdir, "results.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  if done:
    plot_results(os.path.join(workdir, "results.png"), summary, metric_names, best)
    previews = {}
    for r, _ in done:
      path = os.path.join(workdir, r.dirname, "preview.npy")
      if r.cell_name not in previews and os.path.exists(path):
        previews[r.cell_name] = (np.load(path), r.seed)
    plot_previews(os.path.join(workdir, "samples.png"), previews, runs[0].config)
  return summary


def plot_results(path: str, summary: dict, metric_names: list, best: str | None) -> None:
  """One panel per metric: a bar per cell, mean ± std over seeds, the best cell in orange."""
  if not metric_names:
    return
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top  (plotting set the backend)
  cells = list(summary)
  fig, axes = plt.subplots(1, len(metric_names), figsize=(3.2 * len(metric_names) + 2.5, 0.35 * len(cells) + 1.2),
                           dpi=100, squeeze=False)
  for j, (ax, m) in enumerate(zip(axes[0], metric_names)):
    means = [summary[c][m][0] for c in cells]
    stds = [summary[c][m][1] for c in cells]
    colors = ["tab:orange" if c == best else "tab:blue" for c in cells]
    ax.barh(range(len(cells)), means, xerr=stds, color=colors, capsize=2)
    ax.set_yticks(range(len(cells)))
    ax.set_yticklabels(cells if j == 0 else [""] * len(cells), fontsize=7)
    ax.invert_yaxis()
    ax.set_title(f"{m} ({'higher' if higher_is_better(m) else 'lower'} is better)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
  fig.tight_layout()
  plotting._save(fig, path)  # pylint: disable=protected-access


def plot_previews(path: str, previews: dict, config) -> None:
  """One panel per cell: its first finished seed's samples (2-D scatter over the modes, or images)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  n = len(previews)
  ncol = min(n, 4)
  nrow = -(-n // ncol)
  fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.8 * nrow), dpi=100, squeeze=False)
  toy = None
  if config.data.source == "toy":
    from gan_jax.data.toy import build_toy  # pylint: disable=g-import-not-at-top
    toy = build_toy(config.data)
  for ax, (name, (x, seed)) in zip(axes.flat, previews.items()):
    if x.ndim == 2 and x.shape[1] == 2:
      c = np.asarray(toy.centers)
      ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3, color="tab:green")
      ax.scatter(c[:, 0], c[:, 1], s=40, facecolors="none", edgecolors="k", lw=0.8)
      lim = 1.5 * np.abs(c).max()
      ax.set_xlim(-lim, lim)
      ax.set_ylim(-lim, lim)
      ax.set_aspect("equal")
      ax.set_xticks([])
      ax.set_yticks([])
    elif x.ndim == 4:
      mosaic = plotting.tile(x, 6)
      ax.imshow(mosaic.squeeze(-1) if mosaic.shape[-1] == 1 else mosaic, cmap="gray", vmin=0, vmax=1)
      ax.axis("off")
    else:  # 1-D toys: a histogram
      ax.hist(x[:, 0], bins=60, color="tab:green")
    ax.set_title(textwrap.fill(f"{name} (seed {seed})", 36), fontsize=7)
  for ax in list(axes.flat)[n:]:
    ax.axis("off")
  fig.tight_layout()
  plotting._save(fig, path)  # pylint: disable=protected-access


def _fmt(x: float) -> str:
  if not math.isfinite(x):
    return "nan"
  if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
    return f"{x:.2e}"
  return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def _fmt_csv(x) -> str:
  return "" if x is None else repr(float(x))


# ---------------------------------------------------------------------------- command line
def main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  summary = run_sweep(_SWEEP.value, _WORKDIR.value, _MAX_MEMBERS.value, _MAX_GROUPS.value)
  where = os.path.join(_WORKDIR.value, "results.md")
  if summary["interrupted"] or not summary["finished"]:
    print(f"stopped: {summary['skipped'] + summary['trained']} of {summary['runs']} runs finished; "
          f"rerun the same command to resume. Partial tables: {where}", flush=True)
    if summary["interrupted"]:
      sys.stdout.flush()
      sys.stderr.flush()
      # A dispatch still running on the device would hold the exit until it finishes (minutes for a
      # big model on a CPU); every finished run and the tables are on disk, so leave now.
      os._exit(130)  # pylint: disable=protected-access
  else:
    print(f"sweep finished: {summary['runs']} runs ({summary['trained']} trained now) in "
          f"{summary['wall_time_s']:.0f} s; tables: {where}", flush=True)
