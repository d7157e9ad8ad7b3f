"""Random search: a space of distributions over config keys, sampled into labelled override dicts.

  from gan_jax.sweep import search

  space = {
      "optimizer.g_lr": search.loguniform(1e-5, 1e-2),
      "loss.name": search.choice(["non_saturating", "hinge"]),
      "optimizer.b1": search.uniform(0.0, 0.9),
      "k_disc_steps": {"kind": "randint", "low": 1, "high": 5},   # the same, written as a dict
  }
  trials = search.sample_configs(space, 20, seed=0)   # {"r000": {"optimizer.g_lr": ..., ...}, ...}

`trials` has the shape of a named sweep axis (value label -> config overrides), so a sweep file can
search and repeat every trial over its seeds in one grid:

  def get_sweep(arg=""):
    return {"axes": {"trial": search.sample_configs(space, 20, seed=0)}, "seeds": [0, 1, 2], ...}

Sampling is deterministic in `seed`. Each key draws from its own stream (derived from the seed and
the key's name), so adding a key to the space leaves the other keys' values unchanged, and asking for
more trials keeps the first ones (their labels too, up to 1000 trials): a sweep grown that way
resumes instead of starting again.
"""

import dataclasses
import math
import numbers
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from gan_jax.errors import UserError

KINDS = ("uniform", "loguniform", "choice", "randint")


@dataclasses.dataclass(frozen=True)
class Uniform:
  """A float uniform in [low, high)."""

  low: float
  high: float
  kind = "uniform"

  def sample(self, rng: np.random.Generator, n: int) -> list:
    return [float(x) for x in rng.uniform(self.low, self.high, n)]


@dataclasses.dataclass(frozen=True)
class LogUniform:
  """A float whose logarithm is uniform: as likely in [1e-5, 1e-4] as in [1e-3, 1e-2]."""

  low: float
  high: float
  kind = "loguniform"

  def sample(self, rng: np.random.Generator, n: int) -> list:
    x = np.exp(rng.uniform(math.log(self.low), math.log(self.high), n))
    return [float(v) for v in np.clip(x, self.low, self.high)]  # exp may round one ulp outside


@dataclasses.dataclass(frozen=True)
class Choice:
  """One of `options`, each equally likely."""

  options: tuple
  kind = "choice"

  def sample(self, rng: np.random.Generator, n: int) -> list:
    return [_plain(self.options[i]) for i in rng.integers(0, len(self.options), n)]


@dataclasses.dataclass(frozen=True)
class RandInt:
  """An integer in [low, high], both ends included."""

  low: int
  high: int
  kind = "randint"

  def sample(self, rng: np.random.Generator, n: int) -> list:
    return [int(x) for x in rng.integers(self.low, self.high, n, endpoint=True)]


def _plain(value):
  """Python scalars, not numpy ones: they go into configs and JSON."""
  return value.item() if isinstance(value, np.generic) else value


def uniform(low: float, high: float) -> Uniform:
  """A float uniform in [low, high); raises UserError unless low < high."""
  return _checked("uniform", {"low": low, "high": high}, "uniform(...)")


def loguniform(low: float, high: float) -> LogUniform:
  """A float log-uniform in [low, high); raises UserError unless 0 < low < high."""
  return _checked("loguniform", {"low": low, "high": high}, "loguniform(...)")


def choice(options: Sequence) -> Choice:
  """One of `options` (a non-empty list), each equally likely."""
  return _checked("choice", {"options": options}, "choice(...)")


def randint(low: int, high: int) -> RandInt:
  """An integer in [low, high], both included; raises UserError unless low <= high."""
  return _checked("randint", {"low": low, "high": high}, "randint(...)")


def _number(value, what: str, where: str, integer: bool = False):
  ok = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)
  if not ok or not math.isfinite(value):
    raise UserError(f"{where}: {what} must be a finite {'integer' if integer else 'number'}, got {value!r}")
  return int(value) if integer else float(value)


def _checked(kind: str, fields: Mapping, where: str):
  """The distribution `kind` with `fields`, or a UserError naming `where`."""
  expected = {"choice": {"options"}}.get(kind, {"low", "high"})
  if set(fields) != expected:
    missing, extra = sorted(expected - set(fields)), sorted(set(fields) - expected)
    raise UserError(f"{where}: a {kind} takes {', '.join(sorted(expected))}"
                    + (f"; missing {', '.join(missing)}" if missing else "")
                    + (f"; unknown {', '.join(extra)}" if extra else ""))
  if kind == "choice":
    options = fields["options"]
    if isinstance(options, str | bytes | Mapping) or not isinstance(options, Sequence):
      raise UserError(f"{where}: choice options must be a list of values, got {options!r}")
    if not options:
      raise UserError(f"{where}: choice has no options; give at least one value")
    return Choice(tuple(options))
  integer = kind == "randint"
  low = _number(fields["low"], "low", where, integer)
  high = _number(fields["high"], "high", where, integer)
  if integer:
    if low > high:
      raise UserError(f"{where}: randint low {low} is above high {high}; give low <= high")
    return RandInt(low, high)
  if low >= high:
    raise UserError(f"{where}: {kind} low {low:g} is not below high {high:g}; give low < high")
  if kind == "loguniform":
    if low <= 0:
      raise UserError(f"{where}: loguniform needs positive bounds (it samples log(x)), got low {low:g}; "
                      "use uniform for ranges that reach 0")
    return LogUniform(low, high)
  return Uniform(low, high)


def parse_space(space: Mapping) -> dict:
  """Checks a search space and returns {config key: distribution}.

  Args:
    space: {config key: a distribution from `uniform`, `loguniform`, `choice`, `randint`, or a dict
      {"kind": one of KINDS, "low": ..., "high": ...} / {"kind": "choice", "options": [...]}}.

  Returns:
    {key: Uniform | LogUniform | Choice | RandInt}, in the space's order.

  Raises:
    UserError: an empty space, a key that is not a string, an unknown kind, or bad bounds/options.
  """
  if not isinstance(space, Mapping) or not space:
    raise UserError(f"a search space is a non-empty dict {{config key: distribution}}, got {space!r}")
  out = {}
  for key, dist in space.items():
    where = f"search space key {key!r}"
    if not isinstance(key, str) or not key:
      raise UserError(f"{where}: keys are config keys such as 'optimizer.g_lr'")
    if isinstance(dist, Uniform | LogUniform | Choice | RandInt):
      fields = {f.name: getattr(dist, f.name) for f in dataclasses.fields(dist)}
      out[key] = _checked(dist.kind, fields, where)  # re-checked: the classes can be built directly
    elif isinstance(dist, Mapping):
      kind = dist.get("kind")
      if kind not in KINDS:
        raise UserError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
      out[key] = _checked(kind, {k: v for k, v in dist.items() if k != "kind"}, where)
    else:
      raise UserError(f"{where}: {dist!r} is not a distribution; use search.uniform, loguniform, choice "
                      "or randint (or a dict with 'kind'); a fixed value belongs in the base config")
  return out


def trial_label(i: int, n: int, prefix: str = "r") -> str:
  """The label of trial `i` of `n`: zero-padded to 3 digits (more past 1000) so labels sort."""
  return f"{prefix}{i:0{max(3, len(str(n - 1)))}d}"


def sample_configs(space: Mapping, n: int, seed: int = 0, prefix: str = "r") -> dict:
  """Draws `n` configurations from `space`.

  Args:
    space: see `parse_space`.
    n: the number of trials.
    seed: a non-negative integer; the same seed gives the same trials.
    prefix: the labels' prefix.

  Returns:
    {label: {config key: value}} for n trials, labels "r000", "r001", ... in order: the shape of a
    named sweep axis.

  Raises:
    UserError: a bad space, n < 1, or a seed that is not a non-negative integer.
  """
  dists = parse_space(space)
  if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
    raise UserError(f"the number of random-search trials must be a positive integer, got {n!r}")
  if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
    raise UserError(f"the random-search seed must be a non-negative integer, got {seed!r}")
  columns = {}
  for key, dist in dists.items():
    # One stream per key, from (seed, key name): independent of the other keys and their order.
    rng = np.random.default_rng([int(seed), zlib.crc32(key.encode("utf-8"))])
    columns[key] = dist.sample(rng, int(n))
  return {trial_label(i, n, prefix): {key: columns[key][i] for key in dists} for i in range(int(n))}
