"""A sweep's report: results.csv (one row per run), results.md (per cell: mean ± std over seeds, the
best cell marked), results.png (bar charts), samples.png (samples of every cell) and, with
`with_stats`, stats.md (bootstrap CIs, paired comparisons along each axis with Holm's correction,
budget curves; gan_jax/sweep/stats.py) with its plots stats_budget_METRIC.png.

Every file is written all or nothing, so jobs sharing a workdir never leave half a table.
"""

import csv
import io
import math
import os
import sys
import textwrap

import numpy as np

from gan_jax import config as config_lib
from gan_jax.evaluation.evaluator import higher_is_better
from gan_jax.run import files, plotting
from gan_jax.sweep import stats, stats_report
from gan_jax.sweep.results import collect
from gan_jax.sweep.spec import cell_name, search_axis

STATS_FILE = "stats.md"

def command_line() -> str:
  return "python -m gan_jax.sweep " + " ".join(sys.argv[1:])


def _mean_std(values):
  v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
  if not v.size:
    return math.nan, math.nan, 0
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def write_stats(workdir: str, done: list, spec: dict) -> list:
  """Writes stats.md and its budget plots from the finished runs; returns their paths ([] if none).

  Args:
    workdir: the sweep's folder.
    done: [(run, result)] of the finished runs.
    spec: the sweep spec. Comparisons run along every axis with more than one value but a random
      search's: its trials are independent draws, not treatments, so they are the replicates of
      the comparisons instead of the seeds (`stats.axis_effects`' `unit`); the budget curves' arms
      are then the combinations of the other axes, their trials (times seeds) the runs. Without a
      search every cell is an arm whose runs are its seeds.
  """
  metric_names = list(spec.get("metrics", []))
  if not metric_names or not done:
    return []
  searched = search_axis(spec)
  axes = [a for a, _ in done[0][0].cell if not searched or a != searched[0]]
  report = stats.analyse_sweep(
      [res for _, res in done], {m: higher_is_better(m) for m in metric_names},
      axes=[a for a in axes if len({dict(r.cell)[a] for r, _ in done}) > 1],
      budget_by=axes if searched else None, unit=searched[0] if searched else None)
  return stats_report.write_report(workdir, report, name=os.path.splitext(STATS_FILE)[0])


def write_tables(workdir: str, runs: list, spec: dict, command: str | None = None,
                 with_stats: bool = False) -> dict:
  """Writes results.csv, results.md, results.png and samples.png from the finished runs' results,
  and with `with_stats` the statistics report (`write_stats`), which results.md then links.

  Returns:
    {cell name: {metric: (mean, std, n)}} of the cells with at least one finished run.
  """
  done = collect(workdir, runs)
  metric_names = list(spec.get("metrics", []))
  axes = [axis for axis, _ in runs[0].cell]
  searched = search_axis(spec)
  space = list(spec["search"]["space"]) if searched else []  # the searched keys' values as columns
  csv_text = io.StringIO()
  w = csv.writer(csv_text)
  w.writerow(["cell", *axes, *space, "seed", *metric_names, "nonfinite_step", "time_s", "group_size",
              "params_sha256"])
  for r, res in done:
    flat = config_lib.flatten(r.config)
    w.writerow([r.cell_name, *[label for _, label in r.cell], *[flat.get(k) for k in space], r.seed,
                *[_fmt_csv(res["metrics"].get(m)) for m in metric_names],
                res["nonfinite_step"] if res["nonfinite_step"] is not None else "",
                f"{res['time_s']:.2f}", res["group_size"], res["params_sha256"][:16]])
  files.atomic_write_text(os.path.join(workdir, "results.csv"), csv_text.getvalue())
  stats_paths = write_stats(workdir, done, spec) if with_stats else []
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
  lines = [f"Command: `{command or command_line()}`", "",
           f"{len(done)} of {len(runs)} runs finished ({len(all_cells)} cells x {len(seeds)} "
           f"seed{'s' * (len(seeds) != 1)}: "
           f"{', '.join(map(str, seeds))}); mean ± sample std over seeds. "
           + (f"Best cell by {metric_names[0]} ({'higher' if higher_is_better(metric_names[0]) else 'lower'} "
              "is better; ties broken by the next metrics): **bold**, ★." if best else ""), ""]
  if stats_paths:
    lines += [f"Statistics (bootstrap CIs per cell, paired comparisons along each axis with Holm's "
              f"correction, effect sizes, budget curves): [{STATS_FILE}]({STATS_FILE}).", ""]
  # With eval_every, the first metric's best value during training too (mean over seeds, its mean step).
  best_col = metric_names[0] if metric_names and any("best_metrics" in res for _, res in done) else None
  head = [*axes, *space, *metric_names, *([f"best {best_col} during training"] if best_col else []),
          "runs", "diverged", "time (s)"]
  lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  first_config = {}
  for r in runs:
    first_config.setdefault(r.cell, r.config)
  for cell in all_cells:
    results = cells.get(cell, [])
    name = cell_name(cell)
    mark = name == best
    cols = [f"**{label}** ★" if mark and i == 0 else label for i, (_, label) in enumerate(cell)]
    flat = config_lib.flatten(first_config[cell]) if space else {}
    cols += [_fmt_value(flat.get(k)) for k in space]
    for m in metric_names:
      mean, std, n = summary.get(name, {}).get(m, (math.nan, math.nan, 0))
      text = "—" if not n else stats.fmt(mean) if n == 1 else f"{stats.fmt(mean)} ± {stats.fmt(std)}"  # no spread from one
      cols.append(f"**{text}**" if mark else text)
    if best_col:
      bests = [x["best_metrics"][best_col] for x in results if best_col in x.get("best_metrics", {})]
      cols.append("—" if not bests else f"{stats.fmt(float(np.mean([b['value'] for b in bests])))} "
                  f"(step {int(np.mean([b['step'] for b in bests]))})")
    diverged = sum(1 for x in results if x["nonfinite_step"] is not None)
    cols += [f"{len(results)}/{len(seeds)}", str(diverged), f"{sum(x['time_s'] for x in results):.1f}"]
    lines.append("| " + " | ".join(cols) + " |")
  lines += ["", "time (s): the cell's share of wall time (training, compiling and evaluating its "
            "vmapped group, divided among the group's runs)."]
  if best_col:
    lines += ["", f"best {best_col} during training: each run scored every `eval_every` steps and at the "
              "end; the mean over seeds of each run's best value, and the mean step where it was reached "
              "(the metric columns are the final values)."]
  files.atomic_write_text(os.path.join(workdir, "results.md"), "\n".join(lines) + "\n")
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
  files.atomic_savefig(fig, path)


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
  files.atomic_savefig(fig, path)


def _fmt_value(x) -> str:
  """A searched config value for the table: numbers in 3 significant digits."""
  if isinstance(x, float):
    return stats.fmt(x)
  if isinstance(x, list | tuple):
    return "x".join(_fmt_value(v) for v in x)
  return str(x)


def _fmt_csv(x) -> str:
  return "" if x is None else repr(float(x))
