"""The Parzen log-likelihood of every kept checkpoint of a run: how the Table 1 number evolves.

  python -m gan_jax.paper.trajectory --workdir=runs/mnist_paper [--dataset_dir=...] [--every_steps=N]

For each finished checkpoint (every one, or those whose step is a multiple of --every_steps) draws
10,000 samples and runs the Table 1 protocol (gan_jax.evaluation.parzen). Results go to
WORKDIR/paper/parzen_trajectory.json after each checkpoint, and the curve to
WORKDIR/paper/parzen_trajectory.png (epoch on x; the paper's 225 ± 2 as a band for MNIST; the
training-image and k-means baselines of `table1` as lines when they have been computed).

Resumable and incremental: checkpoints already in the JSON (with the same protocol) are not evaluated
again, so the command can be re-run while training continues and only scores the new checkpoints.
"""

import json
import os
import sys
import time

from gan_jax.errors import UserError
from gan_jax.run import files

PAPER_MNIST = (225.0, 2.0)


def _load_cache(path: str, protocol: dict, log) -> dict:
  if not os.path.exists(path):
    return {}
  try:
    with open(path, encoding="utf-8") as f:
      cached = json.load(f)
  except ValueError:
    log(f"{path} is unreadable; starting afresh")
    return {}
  if cached.get("protocol") != protocol:
    log(f"{path} was computed with another protocol {cached.get('protocol')}; starting afresh")
    return {}
  return {int(k): v for k, v in cached.get("points", {}).items()}


def plot(points: dict, path: str, dataset: str, baselines: dict | None = None) -> str:
  """Draws the trajectory PNG: LL ± s.e. against epoch (top), the selected sigma (bottom)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  steps = sorted(points)
  epochs = np.array([points[s]["epoch"] for s in steps])
  means = np.array([points[s]["mean"] for s in steps])
  errs = np.array([points[s]["std_err"] for s in steps])
  sigmas = np.array([points[s]["sigma"] for s in steps])
  fig, (ax, ax_s) = plt.subplots(2, 1, figsize=(7, 5.5), dpi=110, sharex=True,
                                 gridspec_kw={"height_ratios": [3, 1]})
  if dataset == "mnist":
    m, e = PAPER_MNIST
    ax.axhspan(m - e, m + e, color="tab:red", alpha=0.25, lw=0,
               label=f"paper, adversarial nets: {m:g} ± {e:g}")
    ax.axhline(m, color="tab:red", lw=0.8)
  for name, label, style in (("training_images", "training images as samples", "k--"),
                             ("kmeans_centroids", "k-means centroids", "k:")):
    if baselines and name in baselines:
      ax.axhline(baselines[name]["mean"], ls=style[1:], color=style[0], lw=1,
                 label=f"{label}: {baselines[name]['mean']:.0f}")
  ax.errorbar(epochs, means, yerr=errs, fmt="o-", color="tab:blue", ms=3, lw=1.2, capsize=2,
              label="this run (mean ± s.e.)")
  ax.set_ylabel("Parzen log-likelihood (nats)")
  ax.set_title(f"Parzen log-likelihood over training ({dataset}, {len(steps)} checkpoints)",
               fontsize=10)
  ax.legend(fontsize=8, loc="best")
  ax.grid(alpha=0.3)
  ax_s.plot(epochs, sigmas, "s-", color="tab:gray", ms=3, lw=1)
  ax_s.set_ylabel("σ chosen")
  ax_s.set_xlabel("epoch")
  ax_s.grid(alpha=0.3)
  fig.tight_layout()
  files.atomic_savefig(fig, path)
  return path


def run_trajectory(workdir: str, dataset_dir: str | None = None, every_steps: int = 0,
                   num_samples: int = 10000, num_validation: int = 1000, num_test: int = 10000,
                   seed: int = 0, log=print) -> dict:
  """Scores every (new) kept checkpoint; writes the JSON and the PNG.

  Args:
    workdir: the run's folder.
    dataset_dir: overrides the run's `data.dir`.
    every_steps: only checkpoints whose step is a multiple of this (0: all).
    num_samples: samples per checkpoint (the paper: 10,000).
    num_validation: validation images that select sigma.
    num_test: test images scored.
    seed: seeds the samples (the same noise for every checkpoint).
    log: progress printer.

  Returns:
    {'points': {step: result}, 'json': path, 'png': path}.
  """
  from gan_jax.evaluation import parzen  # pylint: disable=import-outside-toplevel
  from gan_jax.paper import run as run_lib  # pylint: disable=import-outside-toplevel

  if every_steps < 0:
    raise UserError(f"--every_steps must be >= 0, got {every_steps}")
  if num_samples < 1 or num_validation < 1 or num_test < 1:
    raise UserError("--num_samples, --num_validation and --num_test must be >= 1")
  reader = run_lib.image_run(workdir, dataset_dir)
  paper_dir = os.path.join(reader.workdir, "paper")
  json_path = os.path.join(paper_dir, "parzen_trajectory.json")
  png_path = os.path.join(paper_dir, "parzen_trajectory.png")
  validation, test = reader.eval_splits(num_validation, num_test)
  protocol = {"n_samples": num_samples, "n_validation": len(validation), "n_test": len(test),
              "seed": seed}
  points = _load_cache(json_path, protocol, log)
  todo = [s for s in reader.steps() if s not in points and (not every_steps or s % every_steps == 0)]
  log(f"{reader.workdir}: {len(points)} checkpoints already scored, {len(todo)} to score "
      f"on {run_lib.device_description()}")
  t0 = time.perf_counter()
  for i, step in enumerate(todo):
    t_step = time.perf_counter()
    samples = reader.samples(reader.restore(step), num_samples, seed)
    r = parzen.evaluate(samples, validation, test).to_json_dict()
    r.update(epoch=reader.epoch(step), seconds=round(time.perf_counter() - t_step, 1))
    points[step] = r
    record = {"protocol": protocol, "dataset": reader.data.name, "workdir": workdir,
              "device": run_lib.device_description(),
              "points": {str(s): points[s] for s in sorted(points)}}
    run_lib.write_text(json_path, json.dumps(record, indent=2) + "\n")
    rate = (time.perf_counter() - t0) / (i + 1)
    log(f"[{i + 1}/{len(todo)}] step {step} (epoch {r['epoch']:g}): {r['mean']:.2f} ± "
        f"{r['std_err']:.2f} (sigma {r['sigma']:.3f}) in {r['seconds']:.0f} s; "
        f"ETA {rate * (len(todo) - i - 1):.0f} s")
  baselines = None
  base_path = os.path.join(paper_dir, "parzen_baselines.json")
  if os.path.exists(base_path):
    with open(base_path, encoding="utf-8") as f:
      baselines = json.load(f).get("results")
  if points:
    plot(points, png_path, reader.data.name, baselines)
    log(f"wrote {json_path} and {png_path}")
  return {"points": points, "json": json_path, "png": png_path}


def main(argv):
  from absl import flags  # pylint: disable=import-outside-toplevel

  if len(argv) > 1:
    raise UserError(f"unexpected arguments {argv[1:]}; pass everything as --flag=value")
  f = flags.FLAGS
  if not f.workdir:
    raise UserError("--workdir is required: the folder of a trained run (gan_jax.main --workdir)")
  run_trajectory(f.workdir, f.dataset_dir, f.every_steps, f.num_samples, f.num_validation,
                 f.num_test, f.seed)


def _define_flags():
  from absl import flags  # pylint: disable=import-outside-toplevel

  flags.DEFINE_string("workdir", None, "Folder of a trained run.")
  flags.DEFINE_string("dataset_dir", None, "Overrides the run's data.dir (e.g. the MNIST IDX folder).")
  flags.DEFINE_integer("every_steps", 0, "Only checkpoints whose step is a multiple of this (0: all).")
  flags.DEFINE_integer("num_samples", 10000, "Samples drawn from G per checkpoint.")
  flags.DEFINE_integer("num_validation", 1000, "Validation images that select sigma.")
  flags.DEFINE_integer("num_test", 10000, "Test images scored.")
  flags.DEFINE_integer("seed", 0, "Seeds the samples.")


if __name__ == "__main__":
  from gan_jax import cli  # pylint: disable=ungrouped-imports

  _define_flags()
  sys.exit(cli.run(main))
