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

Runs whose configs differ only in `vmap_lib.VMAPPABLE_KEYS` (the seeds of a cell; learning rates,
loss and penalty weights across cells) train together as one vmapped program, up to `--max_members`
runs at a time (`--max_members=1` trains every run alone).

Everything lands in `--workdir`:
  runs/CELL/seed_S/result.json   the run's config, metrics and times; its presence means "finished"
  runs/CELL/seed_S/metrics.jsonl training losses every `log_every` steps
  results.csv                    one row per run
  results.md                     per cell: mean ± std over seeds of each metric, the best cell marked
  results.png                    the same as bar charts; samples.png: samples of every cell (first seed)
  stats.md                       bootstrap CIs, paired comparisons per axis (Holm), effect sizes, one
                                 sentence per axis, budget curves (stats_budget_METRIC.png)

Rerunning the command skips runs whose result.json records the same config, so an interrupted sweep
(Ctrl-C, SIGTERM, a crash) resumes where it stopped; only the groups in flight are trained again.
"""

from gan_jax.evaluation.evaluator import higher_is_better, metric_kind
from gan_jax.sweep.report import write_tables
from gan_jax.sweep.results import RESULT_FILE, load_result
from gan_jax.sweep.claims import Shard, parse_shard
from gan_jax.sweep.runner import plan_groups, run_sweep, shard_chunks, train_group
from gan_jax.sweep.spec import Run, expand, load_sweep_file

__all__ = ["RESULT_FILE", "Run", "Shard", "expand", "higher_is_better", "load_result", "load_sweep_file",
           "metric_kind", "parse_shard", "plan_groups", "run_sweep", "shard_chunks", "train_group",
           "write_tables"]
