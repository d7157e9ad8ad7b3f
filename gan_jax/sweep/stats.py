"""Statistics of a sweep's results: per-cell confidence intervals, paired comparisons, budget curves.

Pure functions on numbers (numpy and scipy, no JAX), so they run anywhere the results can be read.

The data model is the sweep's own `result.json`: a list of records

  {"cell": [["loss", "hinge"], ["lr", "1e-4"]], "seed": 3, "metrics": {"fid": 41.2, ...}}

(`cell` may also be a dict {axis: label}); `as_results` turns them into `Result`s. Every run draws
its random numbers from (seed, step, example), so two cells run with the same seed share their
initialisation and noise: cells are compared *paired over seeds*, which removes the part of the
variation that comes from the seed. A run whose metric is missing or not finite (a diverged run) is
left out of that metric's statistics, and the tables say how many were.

  results = stats.as_results(json.load(open(p)) for p in paths)
  report = stats.analyse_sweep(results, {"fid": False, "modes_covered": True})
  stats.write_report("runs/my_sweep", report)       # stats.md and one budget plot per metric

What the numbers mean:
  * cell CI: the mean over seeds and a bootstrap CI (BCa; percentile where BCa is undefined). With
    fewer than 3 seeds there is no CI. Bootstrap CIs from few values are too narrow: on normal data
    a nominal 95% BCa interval covers the mean about 72% of the time with 3 values, 83% with 5, 89%
    with 10 and 93% with 50. Verdicts therefore rest on the paired test, not on a CI excluding 0.
  * paired comparison: the mean of the per-seed differences (b - a), its bootstrap CI, a paired
    t-test (the primary p-value; see `paired_comparison` for why) and the Wilcoxon signed-rank test,
    Cohen's d_z and its Hedges-corrected version g_z.
  * axis effects: every pair of an axis's values, compared within each combination of the other
    axes' values and pooled over them; p-values Holm-corrected over all comparisons of the report.
  * budget curve (Lucic et al. 2018, "Are GANs created equal?"): the expected best metric among k
    runs drawn without replacement from an arm's N runs, k = 1..N, with a 5-95% band.
"""

import dataclasses
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy import special, stats as sps

from gan_jax.errors import UserError

DEFAULT_RESAMPLES = 9999  # scipy's default: the bounds' Monte Carlo error is small beside the CI width
POWER = 0.8  # the power behind "differences below ~X cannot be told apart"


# ---------------------------------------------------------------------------- the data model
@dataclasses.dataclass(frozen=True)
class Result:
  """One finished run: its cell (one value label per axis, in axis order), seed and metrics."""

  cell: tuple  # ((axis, label), ...)
  seed: int
  metrics: Mapping

  @property
  def labels(self) -> dict:
    """{axis: label}."""
    return dict(self.cell)

  @property
  def cell_name(self) -> str:
    return cell_name(self.cell)

  def value(self, metric: str) -> float:
    """The metric as a float; NaN when missing or not a number."""
    v = self.metrics.get(metric)
    try:
      return float(v)
    except (TypeError, ValueError):
      return math.nan


def cell_name(cell) -> str:
  """'axis=label, axis=label' (the sweep's naming), 'base' for a sweep without axes."""
  return ", ".join(f"{axis}={label}" for axis, label in cell) or "base"


def as_results(records: Iterable) -> list:
  """`Result`s from result.json dicts (or `Result`s), checked to form one sweep.

  Args:
    records: dicts with "cell" ([[axis, label], ...] or {axis: label}), "seed" and "metrics".

  Returns:
    A list of `Result`, in the order given.

  Raises:
    UserError: a record misses a key, cells have different axes, or a (cell, seed) repeats.
  """
  out = []
  for i, rec in enumerate(records):
    if isinstance(rec, Result):
      out.append(rec)
      continue
    if not isinstance(rec, Mapping) or not {"cell", "seed", "metrics"} <= set(rec):
      raise UserError(f"result {i} is not a sweep result (a dict with 'cell', 'seed' and 'metrics'); "
                      "pass the runs' result.json contents")
    cell = rec["cell"]
    pairs = list(cell.items()) if isinstance(cell, Mapping) else [tuple(p) for p in cell]
    if not all(len(p) == 2 for p in pairs):
      raise UserError(f"result {i} has cell {cell!r}; a cell is [[axis, label], ...] or {{axis: label}}")
    out.append(Result(cell=tuple((str(a), str(v)) for a, v in pairs), seed=int(rec["seed"]),
                      metrics=dict(rec["metrics"])))
  if out:
    axes = [a for a, _ in out[0].cell]
    seen = set()
    for r in out:
      if [a for a, _ in r.cell] != axes:
        raise UserError(f"results mix cells with axes {axes} and {[a for a, _ in r.cell]}; "
                        "analyse one sweep at a time")
      if (r.cell, r.seed) in seen:
        raise UserError(f"cell {r.cell_name} has two results for seed {r.seed}; keep one per seed")
      seen.add((r.cell, r.seed))
  return out


def _axes(results: list) -> list:
  return [a for a, _ in results[0].cell] if results else []


def _check_metric(results: list, metric: str) -> None:
  if not any(metric in r.metrics for r in results):
    have = sorted({m for r in results for m in r.metrics})
    raise UserError(f"metric {metric!r} is in none of the results; they have {', '.join(have) or 'none'}")


def _finite(values) -> np.ndarray:
  v = np.asarray([x for x in values if x is not None], np.float64).ravel()
  return v[np.isfinite(v)]


# ---------------------------------------------------------------------------- one cell
@dataclasses.dataclass(frozen=True)
class CellCI:
  """The mean of one cell's values over seeds and its bootstrap confidence interval."""

  mean: float
  low: float  # NaN when there is no CI (fewer than 3 values)
  high: float
  n: int  # finite values used
  n_dropped: int  # missing or non-finite values left out (e.g. diverged runs)
  confidence: float
  method: str  # "BCa", "percentile", "exact" (all values equal) or "none"
  note: str = ""


def _bootstrap_mean(x: np.ndarray, confidence: float, n_resamples: int, seed: int):
  """(low, high, method, note) of a bootstrap CI of the mean of `x`."""
  if x.size < 3:
    return math.nan, math.nan, "none", f"n={x.size} < 3: no CI (run more seeds)"
  if np.ptp(x) == 0:  # the bootstrap distribution is a point; BCa divides by zero
    return float(x[0]), float(x[0]), "exact", "all values equal"
  for method in ("BCa", "percentile"):
    with warnings.catch_warnings():  # BCa warns (and gives NaN) on degenerate resamples: fall back
      warnings.simplefilter("ignore")
      ci = sps.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                         method=method, rng=np.random.default_rng(seed)).confidence_interval
    if math.isfinite(ci.low) and math.isfinite(ci.high):
      return float(ci.low), float(ci.high), method, ""
  return math.nan, math.nan, "none", "bootstrap CI undefined"


def cell_ci(values, confidence: float = 0.95, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> CellCI:
  """Mean and bootstrap CI of one cell's metric over its seeds.

  Args:
    values: the metric of each run of the cell; None and non-finite values are left out (counted).
    confidence: the CI's coverage.
    n_resamples: bootstrap resamples.
    seed: seeds the resampling, so the same values give the same CI.

  Returns:
    A `CellCI`. BCa where defined, else percentile; with fewer than 3 values the bounds are NaN and
    `note` says so. Bootstrap CIs from few values are narrower than `confidence` says (a nominal 95%
    covers about 83% with 5 normal values, 89% with 10).
  """
  _check_confidence(confidence)
  raw = list(values)
  x = _finite(raw)
  mean = float(x.mean()) if x.size else math.nan
  low, high, method, note = _bootstrap_mean(x, confidence, n_resamples, seed)
  return CellCI(mean, low, high, int(x.size), len(raw) - int(x.size), confidence, method, note)


def _check_confidence(confidence: float) -> None:
  if not 0 < confidence < 1:
    raise UserError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")


# ---------------------------------------------------------------------------- two cells, paired
@dataclasses.dataclass(frozen=True)
class Paired:
  """Two cells compared on their common seeds: statistics of the differences b - a."""

  n: int  # seeds (or pooled units) with both values finite
  seeds: tuple
  mean_a: float
  mean_b: float
  mean_diff: float  # mean of b - a
  low: float  # bootstrap CI of mean_diff; NaN with n < 3
  high: float
  sd_diff: float
  d_z: float  # Cohen's d_z = mean_diff / sd_diff
  g_z: float  # Hedges-corrected d_z (less biased for small n)
  p_t: float  # paired t-test, two-sided
  p_wilcoxon: float  # Wilcoxon signed-rank, two-sided (exact for small n without ties)
  p: float  # the primary p-value (`test`)
  test: str  # "t" or "wilcoxon"
  min_p_wilcoxon: float  # the smallest p the Wilcoxon test can give with this n
  mde: float  # ~smallest |difference| a paired t-test detects with 80% power at level alpha
  confidence: float
  ci_method: str
  note: str = ""
  p_holm: float | None = None  # Holm-adjusted `p`, set by `axis_effects` / `analyse_sweep`


def paired_comparison(a_by_seed: Mapping, b_by_seed: Mapping, confidence: float = 0.95,
                      n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, primary: str = "t",
                      alpha: float = 0.05) -> Paired:
  """Compares cell b with cell a over the seeds both ran (b - a, seed by seed).

  The primary test is the paired t-test. Sweeps usually afford 3-5 seeds, and with n differences
  the exact Wilcoxon signed-rank test cannot give a two-sided p below 2 / 2**n (0.25, 0.125, 0.0625
  for n = 3, 4, 5): as the primary test it could never find anything in such a sweep. Pairing
  removes the seed's shared component, which makes the differences closer to normal than the raw
  values, and the t-test is about the mean difference that the CI and d_z describe. The Wilcoxon
  p-value is reported beside it as the check that does not assume normality: a t-test p far below
  the Wilcoxon p with many seeds points at one seed driving the result.

  Args:
    a_by_seed: {seed: metric} of cell a.
    b_by_seed: {seed: metric} of cell b.
    confidence: coverage of the CI of the mean difference.
    n_resamples: bootstrap resamples.
    seed: seeds the resampling.
    primary: "t" (paired t-test) or "wilcoxon" (signed-rank) as `p`.
    alpha: the level behind `mde` and the note on what the Wilcoxon test can reach.

  Returns:
    A `Paired`; `note` says what the data cannot support (too few seeds for a CI or a test).
  """
  seeds = tuple(sorted(s for s in set(a_by_seed) & set(b_by_seed)
                       if _isfinite(a_by_seed[s]) and _isfinite(b_by_seed[s])))
  a = np.asarray([float(a_by_seed[s]) for s in seeds], np.float64)
  b = np.asarray([float(b_by_seed[s]) for s in seeds], np.float64)
  return _diff_stats(b - a, seeds, a, b, confidence, n_resamples, seed, primary, alpha)


def _isfinite(x) -> bool:
  try:
    return math.isfinite(float(x))
  except (TypeError, ValueError):
    return False


def _diff_stats(d: np.ndarray, seeds: tuple, a: np.ndarray, b: np.ndarray, confidence: float,
                n_resamples: int, seed: int, primary: str, alpha: float) -> Paired:
  """`Paired` statistics of paired differences `d` (b - a)."""
  _check_confidence(confidence)
  if primary not in ("t", "wilcoxon"):
    raise UserError(f"primary test must be 't' or 'wilcoxon', got {primary!r}")
  n = int(d.size)
  nan = math.nan
  mean = float(d.mean()) if n else nan
  sd = float(d.std(ddof=1)) if n > 1 else nan
  low, high, ci_method, ci_note = _bootstrap_mean(d, confidence, n_resamples, seed)
  notes = [ci_note] if ci_note and ci_method != "exact" else []  # "exact": said below
  d_z = g_z = p_t = p_w = mde = nan
  if n >= 2:
    if sd > 0:
      d_z = mean / sd
      df = n - 1
      # Hedges & Olkin's small-sample correction J = 1 - 3 / (4 df - 1); J is 0 at df = 1, so no g_z.
      g_z = d_z * (1 - 3 / (4 * df - 1)) if df > 1 else nan
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_t = float(sps.ttest_rel(b, a).pvalue)
      mde = float((sps.t.ppf(1 - alpha / 2, df) + sps.t.ppf(POWER, df)) * sd / math.sqrt(n))
    else:  # the same difference on every seed: no spread to test against
      d_z = g_z = math.copysign(math.inf, mean) if mean else 0.0
      p_t = 1.0 if mean == 0 else 0.0
      notes.append("the difference is the same on every seed")
    if np.count_nonzero(d):
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_w = float(sps.wilcoxon(d).pvalue)
    else:
      p_w = 1.0
  else:
    notes.append(f"n={n}: no test possible (needs 2 shared seeds)")
  nonzero = int(np.count_nonzero(d))
  min_p_w = min(1.0, 2.0 ** (1 - nonzero)) if nonzero else 1.0
  if n >= 2 and min_p_w > alpha:
    notes.append(f"Wilcoxon cannot reach p<{alpha:g} with n={nonzero} (smallest p {min_p_w:.3g})")
  return Paired(
      n=n, seeds=tuple(seeds), mean_a=float(a.mean()) if n else nan, mean_b=float(b.mean()) if n else nan,
      mean_diff=mean, low=low, high=high, sd_diff=sd, d_z=d_z, g_z=g_z, p_t=p_t, p_wilcoxon=p_w,
      p=p_t if primary == "t" else p_w, test=primary, min_p_wilcoxon=min_p_w, mde=mde,
      confidence=confidence, ci_method=ci_method, note="; ".join(notes))


# ---------------------------------------------------------------------------- multiple comparisons
def holm(p_values) -> np.ndarray:
  """Holm-Bonferroni adjusted p-values, in the input's order.

  The i-th smallest of m p-values becomes max over j <= i of (m - j + 1) p_(j), capped at 1, so the
  adjusted values keep the order of the raw ones. NaNs stay NaN and do not count in m.

  Args:
    p_values: raw p-values (any shape; flattened).

  Returns:
    A float array of adjusted p-values.
  """
  p = np.asarray(p_values, np.float64).ravel()
  if np.any((p < 0) | (p > 1)):
    raise UserError(f"p-values must lie in [0, 1], got {p[(p < 0) | (p > 1)][:3].tolist()}")
  out = np.full_like(p, np.nan)
  idx = np.flatnonzero(np.isfinite(p))
  m = idx.size
  if not m:
    return out
  order = idx[np.argsort(p[idx], kind="stable")]
  scaled = (m - np.arange(m)) * p[order]
  out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
  return out


# ---------------------------------------------------------------------------- one axis
@dataclasses.dataclass(frozen=True)
class Comparison:
  """Value b against value a of one axis, within one context or pooled over all of them."""

  metric: str
  axis: str
  a: str
  b: str
  context: tuple  # ((other axis, label), ...); () for the comparison pooled over contexts
  n_contexts: int  # contexts the pooled differences average over (1 within a context)
  stats: Paired

  @property
  def p_holm(self) -> float | None:
    return self.stats.p_holm


@dataclasses.dataclass(frozen=True)
class AxisEffects:
  """Every pair of one axis's values, compared on one metric, and a sentence saying what it means."""

  axis: str
  metric: str
  higher_is_better: bool
  values: tuple  # the axis's value labels, in sweep order
  pooled: list  # [Comparison] per value pair, pooled over the other axes' values
  by_context: list  # [Comparison] per value pair and context; empty when there is one context
  sentence: str
  alpha: float
  n_family: int  # comparisons with a p-value in the Holm family of `pooled`


def axis_effects(results, axis: str, metric: str, higher_is_better: bool, confidence: float = 0.95,
                 n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, alpha: float = 0.05,
                 primary: str = "t") -> AxisEffects:
  """Compares every pair of `axis`'s values on `metric`, paired over seeds.

  Within each combination of the other axes' values (a context), the two cells are compared on
  their common seeds. The pooled comparison of a pair takes, per seed, the mean difference over the
  contexts where both cells ran that seed, and tests those per-seed means: the seed is the unit of
  replication (cells run with one seed share its noise, so differences from one seed in several
  contexts are not independent), so the pooled n is the number of seeds. In a complete grid this is
  the axis's main effect, averaged over the other axes.

  Holm's correction runs over the pooled comparisons of this axis (and, separately, over the
  per-context ones); `analyse_sweep` corrects over every axis and metric of a report instead.

  Args:
    results: `Result`s or result.json dicts of one sweep.
    axis: the axis to compare along.
    metric: the metric compared.
    higher_is_better: the metric's direction, for "beats" in the sentence.
    confidence: CI coverage.
    n_resamples: bootstrap resamples.
    seed: seeds the resampling.
    alpha: the level at which a Holm-adjusted p counts as a detected difference.
    primary: the primary test, "t" or "wilcoxon" (see `paired_comparison`).

  Returns:
    `AxisEffects`, its sentence written for Holm over this axis's comparisons.
  """
  pooled, by_context, values = _axis_comparisons(as_results(results), axis, metric, confidence,
                                                 n_resamples, seed, primary, alpha)
  pooled, by_context = _with_holm(pooled), _with_holm(by_context)
  return _effects(axis, metric, higher_is_better, values, pooled, by_context, alpha, _family_size(pooled))


def _axis_comparisons(results: list, axis: str, metric: str, confidence: float, n_resamples: int,
                      seed: int, primary: str, alpha: float):
  """([pooled Comparison], [per-context Comparison], value labels), without Holm."""
  axes = _axes(results)
  if axis not in axes:
    raise UserError(f"{axis!r} is not an axis of this sweep; its axes are {', '.join(axes) or 'none'}")
  _check_metric(results, metric)
  values = tuple(dict.fromkeys(r.labels[axis] for r in results))
  table = {}  # context -> value -> {seed: metric}
  for r in results:
    context = tuple((a, v) for a, v in r.cell if a != axis)
    table.setdefault(context, {}).setdefault(r.labels[axis], {})[r.seed] = r.value(metric)
  contexts = list(table)
  kw = dict(confidence=confidence, n_resamples=n_resamples, seed=seed, primary=primary, alpha=alpha)
  pooled, by_context = [], []
  for i, va in enumerate(values):
    for vb in values[i + 1:]:
      per_seed = {}  # seed -> [(a, b) per context where both ran it]
      used = set()
      for context in contexts:
        a_by, b_by = table[context].get(va, {}), table[context].get(vb, {})
        if len(contexts) > 1 and a_by and b_by:
          by_context.append(Comparison(metric, axis, va, vb, context, 1, paired_comparison(a_by, b_by, **kw)))
        for s in set(a_by) & set(b_by):
          if _isfinite(a_by[s]) and _isfinite(b_by[s]):
            per_seed.setdefault(s, []).append((float(a_by[s]), float(b_by[s])))
            used.add(context)
      seeds = tuple(sorted(per_seed))
      a = np.asarray([np.mean([p[0] for p in per_seed[s]]) for s in seeds], np.float64)
      b = np.asarray([np.mean([p[1] for p in per_seed[s]]) for s in seeds], np.float64)
      paired = _diff_stats(b - a, seeds, a, b, **kw)
      pooled.append(Comparison(metric, axis, va, vb, (), max(len(used), 1), paired))
  return pooled, by_context, values


def _family_size(comparisons: list) -> int:
  """The comparisons Holm counts: those with a p-value (too few seeds give none)."""
  return sum(1 for c in comparisons if math.isfinite(c.stats.p))


def _with_holm(comparisons: list) -> list:
  adjusted = holm([c.stats.p for c in comparisons]) if comparisons else []
  return [dataclasses.replace(c, stats=dataclasses.replace(c.stats, p_holm=float(p)))
          for c, p in zip(comparisons, adjusted)]


def _effects(axis, metric, higher_is_better, values, pooled, by_context, alpha, n_family) -> AxisEffects:
  sentence = _sentence(axis, metric, higher_is_better, values, pooled, alpha, n_family)
  return AxisEffects(axis, metric, bool(higher_is_better), values, pooled, by_context, sentence, alpha,
                     n_family)


def _sentence(axis, metric, higher_is_better, values, pooled, alpha, n_family) -> str:
  """A plain statement of what the pooled comparisons of one axis can and cannot say."""
  head = f"{axis}, {metric} ({'higher' if higher_is_better else 'lower'} is better): "
  if len(values) < 2:
    return head + f"only one value ({values[0] if values else 'none'}), nothing to compare."
  parts, small_n = [], []
  for c in pooled:
    s = c.stats
    where = f"paired over {s.n} seed{'s' * (s.n != 1)}"
    if c.n_contexts > 1:
      where += f", averaged over {c.n_contexts} settings of the other axes"
    if s.n < 2:
      parts.append(f"{c.a} vs {c.b}: {s.n} shared seed{'s' * (s.n != 1)}, no comparison possible "
                   "(run both on the same seeds).")
      continue
    # Orient the difference as the leader's advantage: positive, in the metric's units.
    sign = 1 if higher_is_better else -1
    b_leads = sign * s.mean_diff >= 0
    f = sign if b_leads else -sign  # leader's advantage = f * (b - a)
    winner, loser = (c.b, c.a) if b_leads else (c.a, c.b)
    lo, hi = sorted((f * s.low, f * s.high))
    ci = f" [{_fmt(lo)}, {_fmt(hi)}]" if math.isfinite(s.low) else " (no CI with < 3 seeds)"
    p_text = "Holm p" + ("<0.001" if s.p_holm is not None and s.p_holm < 0.001 else f"={_fmt_p(s.p_holm)}")
    p_text += f" over {n_family} comparisons" if n_family > 1 else ""
    if s.p_holm is not None and s.p_holm < alpha:
      parts.append(f"{winner} beats {loser} by {_fmt(f * s.mean_diff)} {metric}{ci} ({where}; {p_text}).")
    else:
      mde = (f"; with {s.n} seeds, differences below ~{_fmt(s.mde)} cannot be told apart"
             if math.isfinite(s.mde) and (s.test == "t" or s.min_p_wilcoxon <= alpha) else "")
      parts.append(f"No difference detectable between {c.a} and {c.b}: {winner} ahead by "
                   f"{_fmt(f * s.mean_diff)}{ci} ({where}; {p_text}){mde}.")
    if s.min_p_wilcoxon > alpha:
      small_n.append((s.n, s.test))
  text = head + " ".join(parts)  # labels keep their case: they name config values
  if small_n:
    n, test = max(small_n)
    if test == "t":
      text += (f" (p-values are paired t-tests: with {n} seeds the Wilcoxon signed-rank test cannot "
               f"reach p<{alpha:g}.)")
    else:
      text += (f" (With {n} seeds the Wilcoxon signed-rank test cannot reach p<{alpha:g}, so it cannot "
               "detect any difference: run more seeds, or use the paired t-test.)")
  return text


# ---------------------------------------------------------------------------- budget curves
@dataclasses.dataclass(frozen=True)
class BudgetCurve:
  """The best metric among k runs drawn without replacement, for k = 1..n."""

  k: np.ndarray  # 1..n
  mean: np.ndarray  # expected best of k
  low: np.ndarray  # band: the `band` percentiles of best-of-k over random k-subsets
  high: np.ndarray
  n: int
  higher_is_better: bool
  band: tuple


def budget_curve(values, higher_is_better: bool, n_boot: int = 0, seed: int = 0,
                 band: tuple = (5.0, 95.0)) -> BudgetCurve:
  """Lucic et al. (2018)'s budget curve of one arm: the expected best of k of its runs.

  For k = 1..N the best of k runs drawn without replacement from the arm's N runs has a discrete
  distribution: with the values sorted worst to best, x_(1) .. x_(N), the best of k is x_(i) with
  probability C(i-1, k-1) / C(N, k). With `n_boot=0` (the default) the mean and the band are taken
  from that distribution exactly: no Monte Carlo error, the curve at k=1 is the mean of the values
  and at k=N their best, and it never decreases (increases) with k. With `n_boot > 0`, as in the
  paper, `n_boot` random k-subsets per k are drawn instead (seeded by `seed`).

  Args:
    values: the arm's runs' metric; non-finite values are left out.
    higher_is_better: the best of k is the maximum (True) or the minimum (False).
    n_boot: 0 for the exact distribution, else random subsets per k.
    seed: seeds the random subsets.
    band: lower and upper percentile of the best-of-k distribution.

  Returns:
    A `BudgetCurve` (empty arrays when there is no finite value).
  """
  lo_q, hi_q = band
  if not 0 <= lo_q <= hi_q <= 100:
    raise UserError(f"band must be two percentiles 0 <= low <= high <= 100, got {band}")
  if n_boot < 0:
    raise UserError(f"n_boot must be >= 0 (0: exact), got {n_boot}")
  x = _finite(values)
  sign = 1.0 if higher_is_better else -1.0
  x = np.sort(sign * x)  # worst to best, as maxima
  n = x.size
  ks = np.arange(1, n + 1)
  mean, low, high = np.empty(n), np.empty(n), np.empty(n)
  if n_boot == 0:
    i = np.arange(1, n + 1)
    for j, k in enumerate(ks):
      with np.errstate(divide="ignore"):
        logp = _logcomb(i - 1, k - 1) - _logcomb(n, k)
      pmf = np.where(i >= k, np.exp(logp), 0.0)
      pmf /= pmf.sum()  # removes rounding in the log-gamma terms
      mean[j] = pmf @ x
      cdf = np.cumsum(pmf)
      # The inverse CDF; the tolerance keeps rounding in `cdf` from skipping a value.
      low[j], high[j] = (x[min(np.searchsorted(cdf, max(q / 100 - 1e-12, 1e-15)), n - 1)]
                         for q in (lo_q, hi_q))
  else:
    rng = np.random.default_rng(seed)
    for j, k in enumerate(ks):
      # k of n without replacement, n_boot times: the k smallest of n random keys per row.
      idx = np.argpartition(rng.random((n_boot, n)), k - 1, axis=1)[:, :k]
      best = x[idx].max(axis=1)
      mean[j] = best.mean()
      low[j], high[j] = np.percentile(best, [lo_q, hi_q], method="inverted_cdf")  # as the exact path
  if sign < 0:
    mean, low, high = -mean, -high, -low
  return BudgetCurve(ks, mean, low, high, int(n), bool(higher_is_better), (lo_q, hi_q))


def _logcomb(n, k):
  n, k = np.asarray(n, np.float64), np.asarray(k, np.float64)
  valid = (k >= 0) & (k <= n)
  out = special.gammaln(n + 1) - special.gammaln(np.where(valid, k, 0) + 1) - special.gammaln(
      np.where(valid, n - k, 0) + 1)
  return np.where(valid, out, -np.inf)


def budget_curves(results, metric: str, higher_is_better: bool, by: str | None = None, n_boot: int = 0,
                  seed: int = 0) -> dict:
  """{arm: BudgetCurve}: the arms are the values of axis `by` (pooling its other axes' cells and
  all seeds, as a search over them would), or every cell when `by` is None."""
  results = as_results(results)
  _check_metric(results, metric)
  if by is not None and by not in _axes(results):
    raise UserError(f"{by!r} is not an axis of this sweep; its axes are {', '.join(_axes(results))}")
  arms = {}
  for r in results:
    arms.setdefault(r.labels[by] if by is not None else r.cell_name, []).append(r.value(metric))
  return {arm: budget_curve(v, higher_is_better, n_boot, seed) for arm, v in arms.items()}


# ---------------------------------------------------------------------------- a whole sweep
@dataclasses.dataclass(frozen=True)
class SweepStats:
  """Everything `render_markdown` and `write_report` show: per metric, cell CIs, axis effects (Holm
  over all pooled comparisons of the report) and budget curves."""

  metrics: dict  # metric -> higher_is_better
  cells: dict  # metric -> {cell name: CellCI}
  effects: list  # [AxisEffects], metric by metric, axis by axis
  budgets: dict  # metric -> {arm: BudgetCurve}
  budget_by: str | None
  confidence: float
  alpha: float
  n_comparisons: int  # pooled comparisons with a p-value: Holm's m
  seeds: tuple
  primary: str = "t"  # the paired test behind the p-values: "t" or "wilcoxon"


def analyse_sweep(results, metrics, axes: Sequence | None = None, budget_by: str | None = None,
                  confidence: float = 0.95, alpha: float = 0.05, n_resamples: int = DEFAULT_RESAMPLES,
                  seed: int = 0, primary: str = "t") -> SweepStats:
  """Cell CIs, axis effects and budget curves of a sweep, Holm-corrected over the whole report.

  Args:
    results: `Result`s or result.json dicts.
    metrics: {metric: higher_is_better}, or [(metric, higher_is_better), ...].
    axes: the axes to compare along (default: every axis with more than one value).
    budget_by: the axis whose values are the budget curves' arms (default: one arm per cell).
    confidence: CI coverage.
    alpha: the level at which a Holm-adjusted p counts as a detected difference.
    n_resamples: bootstrap resamples.
    seed: seeds every bootstrap.
    primary: the primary paired test, "t" or "wilcoxon".

  Returns:
    A `SweepStats`.
  """
  results = as_results(results)
  if not results:
    raise UserError("no finished runs to analyse; run the sweep first")
  try:
    metrics = {str(m): bool(hib) for m, hib in (metrics.items() if isinstance(metrics, Mapping) else metrics)}
  except (TypeError, ValueError):
    raise UserError(f"metrics must be {{metric: higher_is_better}}, got {metrics!r}") from None
  all_axes = _axes(results)
  if axes is None:
    axes = [a for a in all_axes if len({r.labels[a] for r in results}) > 1]
  cells, raw, budgets = {}, [], {}
  for metric, hib in metrics.items():
    _check_metric(results, metric)
    by_cell = {}
    for r in results:
      by_cell.setdefault(r.cell_name, []).append(r.value(metric))
    cells[metric] = {name: cell_ci(v, confidence, n_resamples, seed) for name, v in by_cell.items()}
    for axis in axes:
      raw.append((metric, hib, axis, *_axis_comparisons(results, axis, metric, confidence, n_resamples,
                                                       seed, primary, alpha)))
    budgets[metric] = budget_curves(results, metric, hib, budget_by)
  # One family for every pooled comparison shown, one for the per-context detail.
  flat_pooled = _with_holm([c for _, _, _, pooled, _, _ in raw for c in pooled])
  flat_context = _with_holm([c for _, _, _, _, by_context, _ in raw for c in by_context])
  effects, i, j = [], 0, 0
  for metric, hib, axis, pooled, by_context, values in raw:
    p_part, c_part = flat_pooled[i:i + len(pooled)], flat_context[j:j + len(by_context)]
    i, j = i + len(pooled), j + len(by_context)
    effects.append(_effects(axis, metric, hib, values, p_part, c_part, alpha, _family_size(flat_pooled)))
  seeds = tuple(sorted({r.seed for r in results}))
  return SweepStats(metrics, cells, effects, budgets, budget_by, confidence, alpha,
                    _family_size(flat_pooled), seeds, primary)


# ---------------------------------------------------------------------------- rendering
def _fmt(x) -> str:
  if x is not None:
    x = float(x) + 0.0  # -0.0 -> 0.0
  if x is None or not math.isfinite(x):
    return "nan" if x is None or math.isnan(x) else ("inf" if x > 0 else "-inf")
  if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
    return f"{x:.2e}"
  return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def _fmt_p(p) -> str:
  if p is None or not math.isfinite(p):
    return "—"
  return "<0.001" if p < 0.001 else f"{p:.2g}"


def _fmt_ci(low, high) -> str:
  return "—" if not (math.isfinite(low) and math.isfinite(high)) else f"[{_fmt(low)}, {_fmt(high)}]"


def _table(head: list, rows: list) -> list:
  return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
          *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def render_markdown(report: SweepStats, budget_plots: Mapping | None = None) -> str:
  """The report as Markdown: per metric, the sentences, the cell table, the comparisons, the budget.

  Args:
    report: from `analyse_sweep`.
    budget_plots: {metric: path of its budget plot}, linked relative to where the Markdown lives.

  Returns:
    The Markdown text.
  """
  pct = f"{100 * report.confidence:g}%"
  lines = [f"Statistics over {len(report.seeds)} seeds ({', '.join(map(str, report.seeds))}). Cells: mean "
           f"and {pct} bootstrap CI (BCa) over seeds. Comparisons: paired over seeds (cells run with "
           "one seed share its initialisation and noise), difference b − a with its bootstrap CI, "
           "Cohen's d_z (mean / sd of the differences) and Hedges' g_z, paired t-test p and "
           f"Wilcoxon signed-rank p ({'t-test' if report.primary == 't' else 'Wilcoxon'} primary), "
           f"Holm-corrected over the {report.n_comparisons} pooled "
           f"comparisons of this report (per-context rows: their own Holm family). A difference counts "
           f"as detected at Holm p < {report.alpha:g}; the CIs do not decide it, since bootstrap CIs from "
           "few seeds are too narrow (a nominal 95% covers about 83% with 5 seeds, 89% with 10). Runs "
           "with a missing or non-finite metric (diverged) are left out and counted.", ""]
  for metric, hib in report.metrics.items():
    lines += [f"## {metric} ({'higher' if hib else 'lower'} is better)", ""]
    effects = [e for e in report.effects if e.metric == metric]
    lines += [f"- {e.sentence}" for e in effects] + ([""] if effects else [])
    rows = [(name, c.n, c.n_dropped, _fmt(c.mean), _fmt_ci(c.low, c.high), c.note)
            for name, c in report.cells[metric].items()]
    lines += _table(["cell", "n", "left out", "mean", f"{pct} CI", "note"], rows) + [""]
    for e in effects:
      if len(e.values) < 2:
        continue
      lines += [f"### {metric} along {e.axis}", ""]
      rows = [_comparison_row(c) for c in e.pooled + e.by_context]
      lines += _table(["a", "b", "within", "n", "b − a", f"{pct} CI", "d_z", "g_z", "p (t)",
                       "p (Wilcoxon)", "Holm p", "note"], rows) + [""]
    curves = report.budgets.get(metric, {})
    if curves:
      arms = "one arm per cell" if report.budget_by is None else f"arms: {report.budget_by}"
      lines += [f"### {metric}: expected best of k runs ({arms})", ""]
      n_max = max(c.n for c in curves.values())
      ks = sorted({k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, n_max) if 1 <= k <= n_max})
      lo, hi = next(iter(curves.values())).band
      rows = []
      for arm, c in curves.items():
        rows.append([arm, c.n] + [f"{_fmt(c.mean[k - 1])} [{_fmt(c.low[k - 1])}, {_fmt(c.high[k - 1])}]"
                                  if k <= c.n else "—" for k in ks])
      lines += _table(["arm", "runs", *[f"k={k}" for k in ks]], rows)
      lines += ["", f"Mean of the best of k runs drawn without replacement, [{lo:g}%, {hi:g}%] of its "
                "distribution over k-subsets (Lucic et al. 2018).", ""]
      if budget_plots and metric in budget_plots:
        lines += [f"![budget curves of {metric}]({os.path.basename(budget_plots[metric])})", ""]
  return "\n".join(lines).rstrip() + "\n"


def _comparison_row(c: Comparison) -> list:
  s = c.stats
  within = "pooled" + (f" ({c.n_contexts} settings)" if c.n_contexts > 1 else "") if not c.context else \
      ", ".join(f"{a}={v}" for a, v in c.context)
  return [c.a, c.b, within, s.n, _fmt(s.mean_diff), _fmt_ci(s.low, s.high), _fmt(s.d_z), _fmt(s.g_z),
          _fmt_p(s.p_t), _fmt_p(s.p_wilcoxon), _fmt_p(s.p_holm), s.note]


def plot_budget_curves(path: str, curves: Mapping, metric: str, higher_is_better: bool) -> str:
  """One line per arm (expected best of k runs against k) with its band; returns `path` (PNG)."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (only the plots need it)
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
  for i, (arm, c) in enumerate(curves.items()):
    if not c.n:
      continue
    color = f"C{i % 10}"
    ax.plot(c.k, c.mean, color=color, label=f"{arm} (N={c.n})", lw=1.5, marker="." if c.n <= 20 else None)
    ax.fill_between(c.k, c.low, c.high, color=color, alpha=0.15, lw=0)
  ax.set_xlabel("budget k (runs)")
  ax.set_ylabel(f"best {metric} among k runs ({'higher' if higher_is_better else 'lower'} is better)",
                fontsize=8)
  if max((c.n for c in curves.values()), default=0) > 20:  # long budgets: the early ks matter most
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
  else:
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  lo, hi = next(iter(curves.values())).band if curves else (5, 95)
  ax.set_title(f"{metric}: expected best of k runs, band {lo:g}-{hi:g}%", fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.png"
  fig.savefig(tmp)
  plt.close(fig)
  os.replace(tmp, path)  # a reader never sees half a file
  return path


def write_report(directory: str, report: SweepStats, name: str = "stats") -> list:
  """Writes NAME.md and NAME_budget_METRIC.png into `directory`; returns their paths, Markdown first."""
  os.makedirs(directory, exist_ok=True)
  plots = {}
  for metric, hib in report.metrics.items():
    if any(c.n for c in report.budgets.get(metric, {}).values()):
      safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in metric)
      plots[metric] = plot_budget_curves(os.path.join(directory, f"{name}_budget_{safe}.png"),
                                         report.budgets[metric], metric, hib)
  md = os.path.join(directory, f"{name}.md")
  with open(md, "w", encoding="utf-8") as f:
    f.write(render_markdown(report, plots))
  return [md, *plots.values()]
