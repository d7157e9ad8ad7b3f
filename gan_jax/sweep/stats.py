"""Statistics of a sweep's results: per-cell confidence intervals, paired comparisons along each
axis with Holm's correction, and budget curves.

Pure functions on numbers (numpy and scipy; they compute nothing with JAX, though importing them
through the `gan_jax.sweep` package also loads its runner), so they run wherever results can be read.
The estimators themselves (bootstrap CI, paired tests, Holm, the budget curve) are in
gan_jax/sweep/estimators.py and re-exported here; the Markdown and the plots in stats_report.py.

The data model is the sweep's own `result.json`: a list of records

  {"cell": [["loss", "hinge"], ["lr", "1e-4"]], "seed": 3, "metrics": {"fid": 41.2, ...}}

(`cell` may also be a dict {axis: label}); `as_results` turns them into `Result`s. Every run draws
its random numbers from (seed, step, example), so two cells run with the same seed share their
initialisation and noise: cells are compared *paired over seeds*, which removes the part of the
variation that comes from the seed. A run whose metric is missing or not finite (a diverged run) is
left out of that metric's statistics, and the tables say how many were.

  results = stats.as_results(json.load(open(p)) for p in paths)
  report = stats.analyse_sweep(results, {"fid": False, "modes_covered": True})
  stats_report.write_report("runs/my_sweep", report)   # stats.md and one budget plot per metric

A sweep writes this report itself (WORKDIR/stats.md, gan_jax/sweep/report.py). What it holds:
  * cell CI: the mean over seeds and its bootstrap CI (estimators.cell_ci).
  * axis effects: every pair of an axis's values, compared within each combination of the other
    axes' values and pooled over them (estimators.paired_comparison); p-values Holm-corrected over
    all comparisons of the report, and one plain sentence per axis.
  * budget curves: per arm, the expected best metric among k of its runs (estimators.budget_curve).
"""

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from gan_jax.errors import UserError
from gan_jax.sweep.estimators import (  # pylint: disable=unused-import  (re-exported)
    DEFAULT_RESAMPLES, BudgetCurve, CellCI, Paired, diff_stats, isfinite,
    budget_curve, cell_ci, holm, paired_comparison)


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
                 primary: str = "t", unit: str | None = None) -> AxisEffects:
  """Compares every pair of `axis`'s values on `metric`, paired over seeds.

  Within each combination of the other axes' values (a context), the two cells are compared on
  their common seeds. The pooled comparison of a pair takes, per seed, the mean difference over the
  contexts where both cells ran that seed, and tests those per-seed means: the seed is the unit of
  replication (cells run with one seed share its noise, so differences from one seed in several
  contexts are not independent), so the pooled n is the number of seeds. In a complete grid this is
  the axis's main effect, averaged over the other axes.

  With `unit`, the values of that axis replace the seeds as the replicates: a random search's
  trials, independent draws of hyperparameters that every value of `axis` ran. Each trial gives the
  mean over its seeds (those both cells ran), contexts leave the unit axis out, and n counts trials.

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
    unit: an axis whose values are the replicates instead of the seeds (see above).

  Returns:
    `AxisEffects`, its sentence written for Holm over this axis's comparisons.
  """
  pooled, by_context, values = _axis_comparisons(as_results(results), axis, metric, confidence,
                                                 n_resamples, seed, primary, alpha, unit)
  pooled, by_context = _with_holm(pooled), _with_holm(by_context)
  return _effects(axis, metric, higher_is_better, values, pooled, by_context, alpha, _family_size(pooled),
                  unit or "seed")


def _axis_comparisons(results: list, axis: str, metric: str, confidence: float, n_resamples: int,
                      seed: int, primary: str, alpha: float, unit: str | None = None):
  """([pooled Comparison], [per-context Comparison], value labels), without Holm."""
  axes = _axes(results)
  for name in (axis, unit):
    if name is not None and name not in axes:
      raise UserError(f"{name!r} is not an axis of this sweep; its axes are {', '.join(axes) or 'none'}")
  if unit == axis:
    raise UserError(f"axis {axis!r} cannot be compared along and be the unit of replication too")
  _check_metric(results, metric)
  values = tuple(dict.fromkeys(r.labels[axis] for r in results))
  table = {}  # context -> value -> {replicate (seed, or unit value): {seed: metric}}
  for r in results:
    context = tuple((a, v) for a, v in r.cell if a not in (axis, unit))
    replicate = r.seed if unit is None else r.labels[unit]
    table.setdefault(context, {}).setdefault(r.labels[axis], {}).setdefault(replicate, {})[r.seed] = r.value(metric)
  contexts = list(table)
  kw = dict(confidence=confidence, n_resamples=n_resamples, seed=seed, primary=primary, alpha=alpha)
  pooled, by_context = [], []
  for i, va in enumerate(values):
    for vb in values[i + 1:]:
      per_seed = {}  # replicate -> [(a, b) per context where both ran it]
      used = set()
      for context in contexts:
        ta, tb = table[context].get(va, {}), table[context].get(vb, {})
        a_by, b_by = {}, {}  # replicate -> mean over the seeds both cells ran with finite values
        for rep in set(ta) & set(tb):
          shared = [s for s in set(ta[rep]) & set(tb[rep]) if isfinite(ta[rep][s]) and isfinite(tb[rep][s])]
          if shared:
            a_by[rep] = float(np.mean([ta[rep][s] for s in shared]))
            b_by[rep] = float(np.mean([tb[rep][s] for s in shared]))
        if len(contexts) > 1 and ta and tb:
          by_context.append(Comparison(metric, axis, va, vb, context, 1, paired_comparison(a_by, b_by, **kw)))
        for rep in a_by:
          per_seed.setdefault(rep, []).append((a_by[rep], b_by[rep]))
          used.add(context)
      seeds = tuple(sorted(per_seed))
      a = np.asarray([np.mean([p[0] for p in per_seed[s]]) for s in seeds], np.float64)
      b = np.asarray([np.mean([p[1] for p in per_seed[s]]) for s in seeds], np.float64)
      paired = diff_stats(b - a, seeds, a, b, **kw)
      pooled.append(Comparison(metric, axis, va, vb, (), max(len(used), 1), paired))
  return pooled, by_context, values


def _family_size(comparisons: list) -> int:
  """The comparisons Holm counts: those with a p-value (too few seeds give none)."""
  return sum(1 for c in comparisons if math.isfinite(c.stats.p))


def _with_holm(comparisons: list) -> list:
  adjusted = holm([c.stats.p for c in comparisons]) if comparisons else []
  return [dataclasses.replace(c, stats=dataclasses.replace(c.stats, p_holm=float(p)))
          for c, p in zip(comparisons, adjusted)]


def _effects(axis, metric, higher_is_better, values, pooled, by_context, alpha, n_family,
             unit: str = "seed") -> AxisEffects:
  sentence = _sentence(axis, metric, higher_is_better, values, pooled, alpha, n_family, unit)
  return AxisEffects(axis, metric, bool(higher_is_better), values, pooled, by_context, sentence, alpha,
                     n_family)


def _sentence(axis, metric, higher_is_better, values, pooled, alpha, n_family, unit: str = "seed") -> str:
  """A plain statement of what the pooled comparisons of one axis can and cannot say."""
  head = f"{axis}, {metric} ({'higher' if higher_is_better else 'lower'} is better): "
  if len(values) < 2:
    return head + f"only one value ({values[0] if values else 'none'}), nothing to compare."
  parts, small_n = [], []
  for c in pooled:
    s = c.stats
    where = f"paired over {s.n} {unit}{'s' * (s.n != 1)}"
    if c.n_contexts > 1:
      where += f", averaged over {c.n_contexts} settings of the other axes"
    if s.n < 2:
      parts.append(f"{c.a} vs {c.b}: {s.n} shared {unit}{'s' * (s.n != 1)}, no comparison possible "
                   f"(it needs both run on at least 2 {unit}s).")
      continue
    # Orient the difference as the leader's advantage: positive, in the metric's units.
    sign = 1 if higher_is_better else -1
    b_leads = sign * s.mean_diff >= 0
    f = sign if b_leads else -sign  # leader's advantage = f * (b - a)
    winner, loser = (c.b, c.a) if b_leads else (c.a, c.b)
    lo, hi = sorted((f * s.low, f * s.high))
    ci = f" [{fmt(lo)}, {fmt(hi)}]" if math.isfinite(s.low) else " (no CI with < 3 seeds)"
    p_text = "Holm p" + ("<0.001" if s.p_holm is not None and s.p_holm < 0.001 else f"={fmt_p(s.p_holm)}")
    p_text += f" over {n_family} comparisons" if n_family > 1 else ""
    if not math.isfinite(s.p):  # nothing to test (the same difference on every seed, under the t-test)
      p_text = "not tested: the same difference on every seed, no spread for a t-test"
    if s.p_holm is not None and s.p_holm < alpha:
      parts.append(f"{winner} beats {loser} by {fmt(f * s.mean_diff)} {metric}{ci} ({where}; {p_text}).")
    else:
      mde = (f"; with {s.n} {unit}s, differences below ~{fmt(s.mde)} cannot be told apart"
             if math.isfinite(s.mde) and (s.test == "t" or s.min_p_wilcoxon <= alpha) else "")
      parts.append(f"No difference detectable between {c.a} and {c.b}: {winner} ahead by "
                   f"{fmt(f * s.mean_diff)}{ci} ({where}; {p_text}){mde}.")
    if s.min_p_wilcoxon > alpha:
      small_n.append((s.n, s.test))
  text = head + " ".join(parts)  # labels keep their case: they name config values
  if small_n:
    n, test = max(small_n)
    if test == "t":
      text += (f" (p-values are paired t-tests: with {n} {unit}s the Wilcoxon signed-rank test cannot "
               f"reach p<{alpha:g}.)")
    else:
      text += (f" (With {n} {unit}s the Wilcoxon signed-rank test cannot reach p<{alpha:g}, so it cannot "
               f"detect any difference: run more {unit}s, or use the paired t-test.)")
  return text



# ---------------------------------------------------------------------------- budget curves of arms
def budget_curves(results, metric: str, higher_is_better: bool, by=None, n_boot: int = 0,
                  seed: int = 0) -> dict:
  """{arm: BudgetCurve} of a sweep.

  Args:
    results: `Result`s or result.json dicts.
    metric: the metric.
    higher_is_better: its direction.
    by: None: one arm per cell (its seeds are the runs). An axis name: one arm per value of that
      axis, pooling its other axes' cells and all seeds, as a search over them would. A list of
      axes: one arm per combination of their values ('base' for the empty list: every run in one
      arm), which makes the remaining axes (say a random search's trials) the runs.
    n_boot: see `budget_curve`.
    seed: see `budget_curve`.

  Returns:
    {arm label: BudgetCurve}, arms in the order they first appear.
  """
  results = as_results(results)
  _check_metric(results, metric)
  arm_axes = [by] if isinstance(by, str) else list(by) if by is not None else None
  for axis in arm_axes or []:
    if axis not in _axes(results):
      raise UserError(f"{axis!r} is not an axis of this sweep; its axes are {', '.join(_axes(results))}")
  arms = {}
  for r in results:
    if arm_axes is None:
      arm = r.cell_name
    elif isinstance(by, str):
      arm = r.labels[by]
    else:
      arm = cell_name(tuple((a, r.labels[a]) for a in arm_axes))
    arms.setdefault(arm, []).append(r.value(metric))
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
  budget_by: str | list | None  # `budget_curves`' `by`
  confidence: float
  alpha: float
  n_comparisons: int  # pooled comparisons with a p-value: Holm's m
  seeds: tuple
  primary: str = "t"  # the paired test behind the p-values: "t" or "wilcoxon"
  unit: str | None = None  # the axis whose values replace the seeds as replicates (`axis_effects`)


def analyse_sweep(results, metrics, axes: Sequence | None = None, budget_by=None,
                  confidence: float = 0.95, alpha: float = 0.05, n_resamples: int = DEFAULT_RESAMPLES,
                  seed: int = 0, primary: str = "t", unit: str | None = None) -> SweepStats:
  """Cell CIs, axis effects and budget curves of a sweep, Holm-corrected over the whole report.

  Args:
    results: `Result`s or result.json dicts.
    metrics: {metric: higher_is_better}, or [(metric, higher_is_better), ...].
    axes: the axes to compare along (default: every axis with more than one value).
    budget_by: the budget curves' arms (`budget_curves`' `by`; default: one arm per cell).
    confidence: CI coverage.
    alpha: the level at which a Holm-adjusted p counts as a detected difference.
    n_resamples: bootstrap resamples.
    seed: seeds every bootstrap.
    primary: the primary paired test, "t" or "wilcoxon".
    unit: an axis whose values are the comparisons' replicates instead of the seeds (`axis_effects`).

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
    axes = [a for a in all_axes if a != unit and len({r.labels[a] for r in results}) > 1]
  cells, raw, budgets = {}, [], {}
  for metric, hib in metrics.items():
    _check_metric(results, metric)
    by_cell = {}
    for r in results:
      by_cell.setdefault(r.cell_name, []).append(r.value(metric))
    cells[metric] = {name: cell_ci(v, confidence, n_resamples, seed) for name, v in by_cell.items()}
    for axis in axes:
      raw.append((metric, hib, axis, *_axis_comparisons(results, axis, metric, confidence, n_resamples,
                                                       seed, primary, alpha, unit)))
    budgets[metric] = budget_curves(results, metric, hib, budget_by)
  # One family for every pooled comparison shown, one for the per-context detail.
  flat_pooled = _with_holm([c for _, _, _, pooled, _, _ in raw for c in pooled])
  flat_context = _with_holm([c for _, _, _, _, by_context, _ in raw for c in by_context])
  effects, i, j = [], 0, 0
  for metric, hib, axis, pooled, by_context, values in raw:
    p_part, c_part = flat_pooled[i:i + len(pooled)], flat_context[j:j + len(by_context)]
    i, j = i + len(pooled), j + len(by_context)
    effects.append(_effects(axis, metric, hib, values, p_part, c_part, alpha, _family_size(flat_pooled),
                            unit or "seed"))
  seeds = tuple(sorted({r.seed for r in results}))
  return SweepStats(metrics, cells, effects, budgets, budget_by, confidence, alpha,
                    _family_size(flat_pooled), seeds, primary, unit)


# ---------------------------------------------------------------------------- numbers as text
def fmt(x) -> str:
  """A number in 3 significant digits (2 in scientific notation when tiny or huge); 'nan', 'inf'."""
  if x is not None:
    x = float(x) + 0.0  # -0.0 -> 0.0
  if x is None or not math.isfinite(x):
    return "nan" if x is None or math.isnan(x) else ("inf" if x > 0 else "-inf")
  if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
    return f"{x:.2e}"
  return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def fmt_p(p) -> str:
  """A p-value in 2 significant digits, '<0.001' below that, '—' when there is none."""
  if p is None or not math.isfinite(p):
    return "—"
  return "<0.001" if p < 0.001 else f"{p:.2g}"
