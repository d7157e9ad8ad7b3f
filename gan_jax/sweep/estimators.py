"""Estimators on plain numbers: a bootstrap CI of a mean, paired comparisons, Holm's correction and
the budget curve (the expected best of k runs).

Pure functions of numpy arrays and dicts (numpy and scipy; they compute nothing with JAX); gan_jax/sweep/stats.py applies
them to a sweep's cells and axes, and re-exports them.

What the numbers mean:
  * CI of a mean: a bootstrap CI (BCa; percentile where BCa is undefined). With fewer than 3 values
    there is no CI. Bootstrap CIs from few values are too narrow: on normal data a nominal 95% BCa
    interval covers the mean about 72% of the time with 3 values, 83% with 5, 89% with 10 and 93%
    with 50. Verdicts therefore rest on the paired test, not on a CI excluding 0.
  * paired comparison: the mean of the per-seed differences (b - a), its bootstrap CI, a paired
    t-test (the primary p-value; see `paired_comparison` for why) and the Wilcoxon signed-rank test,
    Cohen's d_z and its Hedges-corrected version g_z.
  * budget curve (Lucic et al. 2018, "Are GANs created equal?"): the expected best metric among k
    runs drawn without replacement from N runs, k = 1..N, with a 5-95% band.
"""

import dataclasses
import math
import warnings
from collections.abc import Mapping

import numpy as np
from scipy import special, stats as sps

from gan_jax.errors import UserError

DEFAULT_RESAMPLES = 9999  # scipy's default: the bounds' Monte Carlo error is small beside the CI width
POWER = 0.8  # the power behind "differences below ~X cannot be told apart"


def finite(values) -> np.ndarray:
  """The finite values of `values` (None, NaN and inf left out), as a float64 array."""
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
  x = finite(raw)
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
                       if isfinite(a_by_seed[s]) and isfinite(b_by_seed[s])))
  a = np.asarray([float(a_by_seed[s]) for s in seeds], np.float64)
  b = np.asarray([float(b_by_seed[s]) for s in seeds], np.float64)
  return diff_stats(b - a, seeds, a, b, confidence, n_resamples, seed, primary, alpha)


def isfinite(x) -> bool:
  """Whether `x` is a finite number (False for None and non-numbers)."""
  try:
    return math.isfinite(float(x))
  except (TypeError, ValueError):
    return False


def diff_stats(d: np.ndarray, seeds: tuple, a: np.ndarray, b: np.ndarray, confidence: float,
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
    elif mean == 0:  # no difference on any seed
      d_z = g_z = 0.0
      p_t = 1.0
    else:
      # The same non-zero difference on every seed (common for counts such as modes covered): with no
      # spread the t statistic is undefined, not infinite, so the t-test gives no evidence (p nan) and
      # a t-based verdict is not made; the Wilcoxon p still says what the seeds' signs can show.
      d_z = g_z = math.copysign(math.inf, mean)
      notes.append("the same difference on every seed: no spread for a t-test")
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
  x = finite(values)
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
