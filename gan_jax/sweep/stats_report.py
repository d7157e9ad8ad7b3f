"""The statistics report of a sweep as Markdown and plots: `render_markdown`, `plot_budget_curves`
and `write_report` (NAME.md and one budget plot per metric), from `stats.analyse_sweep`'s
`SweepStats`; gan_jax/sweep/stats.py says what the numbers mean.
"""

import math
import os
from collections.abc import Mapping

from gan_jax.run import files
from gan_jax.sweep.stats import Comparison, SweepStats, fmt, fmt_p


def _fmt_ci(low, high) -> str:
  return "—" if not (math.isfinite(low) and math.isfinite(high)) else f"[{fmt(low)}, {fmt(high)}]"


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
  n_seeds = len(report.seeds)
  lines = [f"Statistics over {n_seeds} seed{'s' * (n_seeds != 1)} ({', '.join(map(str, report.seeds))}). "
           f"Cells: mean and {pct} bootstrap CI (BCa) over seeds. Comparisons: {_pairing(report.unit)}, "
           "difference b − a with its bootstrap CI, Cohen's d_z (mean / sd of the differences) and Hedges' "
           f"g_z, paired t-test p and Wilcoxon signed-rank p ({'t-test' if report.primary == 't' else 'Wilcoxon'} "
           f"primary), Holm-corrected over the {report.n_comparisons} pooled comparisons of this report "
           "(per-context rows: their own Holm family). A difference counts as detected at Holm p < "
           f"{report.alpha:g}; the CIs do not decide it, since bootstrap CIs from few values are too narrow "
           "(a nominal 95% covers about 83% with 5, 89% with 10). Runs with a missing or non-finite metric "
           "(diverged) are left out and counted.", ""]
  for metric, hib in report.metrics.items():
    lines += [f"## {metric} ({'higher' if hib else 'lower'} is better)", ""]
    effects = [e for e in report.effects if e.metric == metric]
    lines += [f"- {e.sentence}" for e in effects] + ([""] if effects else [])
    rows = [(name, c.n, c.n_dropped, fmt(c.mean), _fmt_ci(c.low, c.high), c.note)
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
      arms = _arms_text(report.budget_by)
      lines += [f"### {metric}: expected best of k runs ({arms})", ""]
      n_max = max(c.n for c in curves.values())
      ks = sorted({k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, n_max) if 1 <= k <= n_max})
      lo, hi = next(iter(curves.values())).band
      rows = []
      for arm, c in curves.items():
        rows.append([arm, c.n] + [f"{fmt(c.mean[k - 1])} [{fmt(c.low[k - 1])}, {fmt(c.high[k - 1])}]"
                                  if k <= c.n else "—" for k in ks])
      lines += _table(["arm", "runs", *[f"k={k}" for k in ks]], rows)
      lines += ["", f"Mean of the best of k runs drawn without replacement, [{lo:g}%, {hi:g}%] of its "
                "distribution over k-subsets (Lucic et al. 2018).", ""]
      if budget_plots and metric in budget_plots:
        lines += [f"![budget curves of {metric}]({os.path.basename(budget_plots[metric])})", ""]
  return "\n".join(lines).rstrip() + "\n"


def _pairing(unit: str | None) -> str:
  if unit is None:
    return "paired over seeds (cells run with one seed share its initialisation and noise)"
  return (f"paired over the values of {unit} (independent draws of a random search, each run by both "
          "cells; a value's runs averaged over the seeds both ran)")


def _arms_text(by) -> str:
  if by is None:
    return "one arm per cell"
  if isinstance(by, str) or by:
    return f"arms: {by if isinstance(by, str) else ', '.join(by)}"
  return "one arm: every run"


def _comparison_row(c: Comparison) -> list:
  s = c.stats
  within = "pooled" + (f" ({c.n_contexts} settings)" if c.n_contexts > 1 else "") if not c.context else \
      ", ".join(f"{a}={v}" for a, v in c.context)
  return [c.a, c.b, within, s.n, fmt(s.mean_diff), _fmt_ci(s.low, s.high), fmt(s.d_z), fmt(s.g_z),
          fmt_p(s.p_t), fmt_p(s.p_wilcoxon), fmt_p(s.p_holm), s.note]


def plot_budget_curves(path: str, curves: Mapping, metric: str, higher_is_better: bool) -> str:
  """One line per arm (expected best of k runs against k) with its band; returns `path` (PNG)."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (only the plots need it)
  from gan_jax.run import plotting  # pylint: disable=g-import-not-at-top,unused-import  (Agg, once)
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
  return files.atomic_savefig(fig, path)  # a reader never sees half a file


def write_report(directory: str, report: SweepStats, name: str = "stats") -> list:
  """Writes NAME.md and NAME_budget_METRIC.png into `directory`; returns their paths, Markdown first."""
  os.makedirs(directory, exist_ok=True)
  plots = {}
  for metric, hib in report.metrics.items():
    if any(c.n for c in report.budgets.get(metric, {}).values()):
      safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in metric)
      plots[metric] = plot_budget_curves(os.path.join(directory, f"{name}_budget_{safe}.png"),
                                         report.budgets[metric], metric, hib)
  md = files.atomic_write_text(os.path.join(directory, f"{name}.md"), render_markdown(report, plots))
  return [md, *plots.values()]
