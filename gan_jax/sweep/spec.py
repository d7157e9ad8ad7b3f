"""A sweep file and its runs: the grid of axes x seeds, checked and expanded into configs.

A sweep file is a config file (`get_config(arg)`, the base run) with a `get_sweep(arg)` returning
{"axes": {...}, "seeds": [...], "metrics": [...]} (gan_jax/sweep/__init__.py shows one), and
optionally a random search, {"search": {"space": {...}, "trials": N, "seed": S}}: N configurations
drawn from the space (gan_jax/sweep/search.py) that become one more named axis, after the others.
"""

import dataclasses
import itertools
import os
import re

import ml_collections

from gan_jax import config as config_lib
from gan_jax.errors import UserError
from gan_jax.evaluation.evaluator import metric_kind
from gan_jax.sweep import search as search_lib
from gan_jax.sweep.stats import cell_name

SPEC_KEYS = ("axes", "seeds", "metrics", "search")
SEARCH_KEYS = ("space", "trials", "seed", "name")


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


def _slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text.replace(", ", "__")).strip("_")


def load_sweep_file(path_arg: str):
  """(base config, spec) from `FILE.py[:ARG]`."""
  path, _, arg = path_arg.partition(":")
  if not os.path.isfile(path):
    raise UserError(f"sweep file {path} does not exist; pass --sweep=experiments/ablations/NAME.py")
  module = config_lib.load_module(path, "sweep file")
  for fn in ("get_config", "get_sweep"):
    if not callable(getattr(module, fn, None)):
      raise UserError(f"sweep file {path} has no {fn}(arg) function; a sweep file defines get_config "
                      "(the base run) and get_sweep (axes, seeds, metrics)")
  return module.get_config(arg), module.get_sweep(arg)


def _apply(config, key: str, value, where: str):
  """Sets `config[key] = value` (a dotted key), or raises a UserError naming `where`."""
  flat = config_lib.flatten(config)
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
  if not isinstance(axes, dict):
    raise UserError(f"sweep 'axes' must be a dict {{axis: values}}, got {type(axes).__name__}")
  searched = search_axis(spec)
  if searched:
    axes = {**axes, searched[0]: searched[1]}
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


def search_axis(spec: dict):
  """(axis name, {trial label: overrides}) of the spec's random search, or None without one.

  Raises:
    UserError: `search` is not {"space": {...}, "trials": N, "seed": S} (optionally "name": the
      axis's name, default "trial"), or its space, trials or seed are bad (one line saying which).
  """
  spec_search = spec.get("search")
  if spec_search is None:
    return None
  shape = "{'space': {config key: distribution}, 'trials': N, 'seed': S}"
  if not isinstance(spec_search, dict):
    raise UserError(f"sweep 'search' must be a dict {shape}, got {type(spec_search).__name__}")
  unknown = sorted(set(spec_search) - set(SEARCH_KEYS))
  if unknown:
    raise UserError(f"unknown sweep search entries {unknown}; a search has {list(SEARCH_KEYS)}")
  missing = [k for k in ("space", "trials") if k not in spec_search]
  if missing:
    raise UserError(f"sweep search has no {' or '.join(repr(k) for k in missing)}; give {shape}")
  name = spec_search.get("name", "trial")
  if not isinstance(name, str) or not name or name == "seed" or name in spec.get("axes", {}):
    raise UserError(f"sweep search name {name!r} must be a new axis name (not 'seed' or one of the axes); "
                    "the default is 'trial'")
  space = spec_search["space"]
  if isinstance(space, dict) and "seed" in space:
    raise UserError("the sweep search space cannot draw 'seed'; list the seeds under 'seeds'")
  for axis, values in spec.get("axes", {}).items():
    keys = {k for over in values.values() for k in over} if isinstance(values, dict) else {axis}
    both = sorted(keys & set(space)) if isinstance(space, dict) else []
    if both:
      raise UserError(f"sweep axis {axis!r} and the search space both set {both[0]!r}; set each key in one place")
  try:
    trials = search_lib.sample_configs(space, spec_search["trials"], spec_search.get("seed", 0))
  except UserError as e:
    raise UserError(f"sweep search: {e}") from None
  return name, trials


def _label(value) -> str:
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, list | tuple):
    return "x".join(_label(v) for v in value)
  return str(value)
