"""Evaluation during training: every `eval_every` steps (and at the end) the generator is scored
with `config.eval.metrics`, and the best checkpoint by `config.eval.best` is kept apart.

Writes, in the run's folder:
  eval.jsonl          one record per evaluation: the step, the metrics and their protocol
                      (n_real, n_fake, split, extractor)
  checkpoints_best/   the checkpoint of the best evaluation so far (Orbax, one kept), beside the
                      rolling `checkpoints/`; `best.json` says its step, metric and value
  eval_cache/         the reference features and, for the 'classifier' extractor, the classifier
  eval.png            each metric against the step (written at the end)
and the values as TensorBoard scalars `eval/NAME` (the caller logs them).
"""

import json
import math
import os

from absl import logging

from gan_jax.evaluation import scorer as scorer_lib
from gan_jax.run import checkpoint, files, reader

EVAL_FILE = "eval.jsonl"
BEST_DIR = reader.BEST
BEST_FILE = "best.json"


def check_config(config) -> None:
  """One `UserError` line for bad `config.eval` settings (metrics, extractor, split, weights file),
  before training starts rather than at the first evaluation."""
  ec = config.eval
  scorer_lib.Scorer(ec.metrics, config.data, "", extractor=ec.extractor, num_fake=ec.num_samples,
                    num_real=ec.num_real, split=ec.split, weights=ec.weights)


class PeriodicEvaluator:
  """Scores a training run's generator and keeps its best checkpoint (see the module docstring)."""

  def __init__(self, config, data, workdir: str, start_step: int, is_main: bool = True):
    ec = config.eval
    self.config, self.data, self.workdir, self.is_main = config, data, workdir, is_main
    self.scorer = scorer_lib.Scorer(ec.metrics, config.data, os.path.join(workdir, "eval_cache"),
                                    extractor=ec.extractor, num_fake=ec.num_samples, num_real=ec.num_real,
                                    split=ec.split, weights=ec.weights)
    self.best_key = ec.best
    self.path = os.path.join(workdir, EVAL_FILE)
    self.records = self._kept_records(start_step)
    self.best = self._read_best()
    self._ckpt = None

  def _kept_records(self, start_step: int) -> list:
    """This run's earlier evaluations up to `start_step` (later ones belong to a discarded future)."""
    if not os.path.exists(self.path):
      return []
    kept = []
    with open(self.path, encoding="utf-8") as f:
      for line in f:
        try:
          record = json.loads(line)
        except ValueError:
          continue
        if record.get("step", math.inf) <= start_step:
          kept.append(record)
    if self.is_main:
      files.atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept

  def _read_best(self):
    try:
      with open(os.path.join(self.workdir, BEST_FILE), encoding="utf-8") as f:
        return json.load(f)
    except (OSError, ValueError):
      return None

  def __call__(self, step: int, gan, state, config) -> dict:
    """Scores the generator in the host `state`; returns {'eval/NAME': value} for the logs."""
    result = self.scorer.score_generator(gan, state, config.seed, self.data.image_shape, self.data.display_scale)
    values = scorer_lib.values_of(result)
    record = {"step": int(step), **result}
    self.records.append(record)
    logging.info("step %d eval: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in values.items()))
    if self.is_main:
      with open(self.path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    self._keep_if_best(step, values, state, config)
    return {f"eval/{k}": v for k, v in values.items()}

  def _keep_if_best(self, step, values, state, config):
    key = self.best_key
    if not key:
      return
    if key not in values:
      logging.warning("eval.best=%r is not among the evaluation's results (%s); no best checkpoint kept",
                      key, ", ".join(values))
      return
    value = values[key]
    sign = 1 if scorer_lib.higher_is_better(key) else -1
    if self.best is not None and not sign * value > sign * self.best["value"]:
      return
    if self._ckpt is None:
      self._ckpt = checkpoint.Checkpointer(os.path.join(self.workdir, BEST_DIR), keep=1)
    self._ckpt.save(step, state, config)
    self.best = {"step": int(step), "metric": key, "value": value}
    if self.is_main:
      files.atomic_write_json(os.path.join(self.workdir, BEST_FILE), self.best)

  def plot(self) -> str | None:
    """eval.png: every metric of eval.jsonl against the step."""
    if not self.records or not self.is_main:
      return None
    from gan_jax.run import plotting  # pylint: disable=g-import-not-at-top,unused-import  (Agg, once)
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    keys = [k for k in scorer_lib.values_of(self.records[-1]) if k != "step" and not k.endswith("_std")]
    ncol = min(4, len(keys))
    nrow = -(-len(keys) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.8 * nrow), dpi=100, squeeze=False)
    for ax in list(axes.flat)[len(keys):]:
      ax.axis("off")
    steps = [r["step"] for r in self.records]
    for ax, k in zip(axes.flat, keys):
      ax.plot(steps, [r.get(k, math.nan) for r in self.records], "o-", ms=3)
      if self.best and self.best["metric"] == k:
        ax.axvline(self.best["step"], color="tab:orange", ls=":", label=f"best (step {self.best['step']})")
        ax.legend(fontsize=7)
      ax.set_xlabel("step")
      ax.set_title(f"{k} ({'higher' if scorer_lib.higher_is_better(k) else 'lower'} is better)", fontsize=9)
      ax.grid(alpha=0.3)
    last = self.records[-1]
    fig.suptitle(f"{last.get('extractor')} features, {last.get('n_fake')} samples vs {last.get('n_real')} "
                 f"{last.get('split')} images", fontsize=9)
    fig.tight_layout()
    return files.atomic_savefig(fig, os.path.join(self.workdir, "eval.png"))

  def close(self):
    if self._ckpt is not None:
      self._ckpt.close()
