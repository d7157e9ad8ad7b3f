"""Table 1 of the paper for a trained run: its Parzen log-likelihood beside the paper's rows.

  python -m gan_jax.paper.table1 --workdir=runs/mnist_paper [--step=N] \
      [--dataset_dir=MNIST_FOLDER] [--out=docs/table1.md]

Restores the checkpoint (the newest, or --step), draws 10,000 samples, and runs the paper's protocol
(gan_jax.evaluation.parzen: sigma from logspace(-1, 0, 10) chosen on the first 1,000 of
train[50000:], mean ± standard error over the 10,000 test images). Then scores, with the same
protocol, the first 10,000 training images and 1,000 k-means centroids of the training set
(gan_jax.paper.baselines), as Theis et al. (2016) did, so the reader sees what the metric is worth.
Writes the Markdown table to --out (default WORKDIR/paper/table1.md) and prints it; the numbers also
go to WORKDIR/paper/table1.json, and the samples to WORKDIR/paper/samples_step_N.npy so that
`python -m gan_jax.evaluation.parzen --samples=...` can check them independently.
"""

import datetime
import json
import os
import sys
import time

import numpy as np

from gan_jax.errors import UserError

# The paper's Table 1, MNIST column (Goodfellow et al. 2014): (model, mean, standard error).
PAPER_ROWS = (
    ("DBN", 138, 2),
    ("Stacked CAE", 121, 1.6),
    ("Deep GSN", 214, 1.1),
    ("Adversarial nets", 225, 2),
)


def _pm(mean: float, err: float) -> str:
  return f"{mean:.1f} ± {err:.1f}"


def format_table(result: dict, baselines: dict | None, info: dict) -> str:
  """The Markdown report: the table, then how each number was obtained.

  Args:
    result: the run's `ParzenResult.to_json_dict()`.
    baselines: `baselines.score(...)` output, or None when they were skipped.
    info: 'dataset', 'step', 'epoch', 'workdir', 'n_samples', 'n_validation', 'command', 'date',
      'device', 'seconds'.

  Returns:
    Markdown text.
  """
  mnist = info["dataset"] == "mnist"
  lines = [f"# Table 1: Parzen window-based log-likelihood ({info['dataset']})", "",
           "| Model | Log-likelihood (nats) | Source |", "| --- | --- | --- |"]
  if mnist:
    for name, mean, err in PAPER_ROWS:
      lines.append(f"| {name} | {mean} ± {err} | paper (Goodfellow et al. 2014) |")
  lines.append(f"| **Adversarial nets, this run** | **{_pm(result['mean'], result['std_err'])}** | "
               f"measured: step {info['step']:,} (epoch {info['epoch']:g}), σ = {result['sigma']:.3f} |")
  if baselines:
    for name, label in (("training_images", "first {n:,} training images as the samples"),
                        ("kmeans_centroids", "{n:,} k-means centroids of the training set")):
      r = baselines[name]
      lines.append(f"| {label.format(n=r['n_samples'])} | {_pm(r['mean'], r['std_err'])} | "
                   f"measured baseline, σ = {r['sigma']:.3f} |")
  lines += [
      "",
      f"Protocol: {info['n_samples']:,} samples per model; an isotropic Gaussian Parzen window; σ chosen "
      f"from `numpy.logspace(-1, 0, 10)` by the mean log-likelihood of {info['n_validation']:,} "
      f"validation images; the mean over {result['n_test']:,} test images ± its standard error "
      "(std / √N).",
      "",
      f"Measured {info['date']} on {info['device']} in {info['seconds']:.0f} s with",
      "",
      f"    {info['command']}",
      "",
      f"Run: `{info['workdir']}`, checkpoint step {info['step']:,} (epoch {info['epoch']:g}).",
  ]
  if not mnist:
    lines += ["", f"The paper reports MNIST and TFD only, so no paper rows are shown for "
              f"{info['dataset']}."]
  lines += [
      "",
      "What the number is worth: Theis, van den Oord and Bethge (2016) showed that Parzen estimates "
      "of images (hundreds of dimensions, 10,000 samples) are unreliable. The baselines above make the point: "
      "real training images are a \"perfect model\" of the data, and blurry k-means centroids, which "
      "no one would call a generative model, score "
      + ("higher than them." if baselines and baselines["kmeans_centroids"]["mean"]
         > baselines["training_images"]["mean"] else "comparably.")
      if baselines else "(baselines skipped: run without --nobaselines to see them)",
  ]
  return "\n".join(lines) + "\n"


def run_table1(workdir: str, step: int | None = None, dataset_dir: str | None = None,
               out: str | None = None, num_samples: int = 10000, num_validation: int = 1000,
               num_test: int = 10000, seed: int = 0, with_baselines: bool = True,
               num_centroids: int = 1000, command: str = "", log=print) -> dict:
  """Evaluates a run's checkpoint with the Table 1 protocol and writes the Markdown table.

  Args:
    workdir: the trained run's folder.
    step: the checkpoint to evaluate; None for the newest.
    dataset_dir: overrides the run's `data.dir`.
    out: the Markdown file; default WORKDIR/paper/table1.md.
    num_samples: samples drawn from G (the paper: 10,000).
    num_validation: validation images that select sigma (the paper: 1,000).
    num_test: test images scored (the paper: all 10,000).
    seed: seeds the samples and k-means.
    with_baselines: also score the training images and k-means centroids.
    num_centroids: k-means clusters.
    command: the command line, recorded in the report.
    log: progress printer.

  Returns:
    The record written to WORKDIR/paper/table1.json (with 'markdown' and 'out' added).
  """
  from gan_jax.evaluation import parzen  # pylint: disable=import-outside-toplevel
  from gan_jax.paper import baselines as baselines_lib  # pylint: disable=import-outside-toplevel
  from gan_jax.paper import run as run_lib  # pylint: disable=import-outside-toplevel

  if num_samples < 1 or num_validation < 1 or num_test < 1:
    raise UserError("--num_samples, --num_validation and --num_test must be >= 1")
  t0 = time.perf_counter()
  reader = run_lib.image_run(workdir, dataset_dir)
  step = reader.latest_or(step)
  paper_dir = os.path.join(reader.workdir, "paper")
  out = out or os.path.join(paper_dir, "table1.md")
  log(f"{reader.workdir}: checkpoint at step {step} (epoch {reader.epoch(step):g}); "
      f"device {run_lib.device_description()}")
  validation, test = reader.eval_splits(num_validation, num_test)
  state = reader.restore(step)
  samples = reader.samples(state, num_samples, seed)
  samples_path = os.path.join(paper_dir, f"samples_step_{step}.npy")
  os.makedirs(paper_dir, exist_ok=True)
  np.save(samples_path, samples)
  log(f"{num_samples} samples -> {samples_path}; Parzen protocol on {len(validation)} validation "
      f"and {len(test)} test examples")
  result = parzen.evaluate(samples, validation, test, log_fn=log).to_json_dict()
  log(f"this run: {result['mean']:.2f} ± {result['std_err']:.2f} (sigma={result['sigma']:.3f})")
  base = None
  if with_baselines:
    dc = reader.config.data
    key = {"source": dc.source, "name": dc.name, "dir": os.path.abspath(dc.dir) if dc.dir else "",
           "num_train": dc.num_train, "scale": dc.scale, "gcn": dc.gcn,
           "n_validation": len(validation), "n_test": len(test)}
    base = baselines_lib.score(reader.training_images(), validation, test,
                               os.path.join(paper_dir, "parzen_baselines.json"), key,
                               num_images=num_samples, num_centroids=num_centroids, seed=seed, log=log)
  info = {"dataset": reader.data.name, "step": step, "epoch": reader.epoch(step),
          "workdir": workdir, "n_samples": num_samples, "n_validation": len(validation),
          "command": command or f"python -m gan_jax.paper.table1 --workdir={workdir}",
          "date": datetime.date.today().isoformat(), "device": run_lib.device_description(),
          "seconds": time.perf_counter() - t0}
  markdown = format_table(result, base, info)
  run_lib.write_text(out, markdown)
  record = dict(info, result=result, baselines=base, samples=samples_path)
  run_lib.write_text(os.path.join(paper_dir, "table1.json"), json.dumps(record, indent=2) + "\n")
  return dict(record, markdown=markdown, out=out)


def main(argv):
  from absl import flags  # pylint: disable=import-outside-toplevel

  if len(argv) > 1:
    raise UserError(f"unexpected arguments {argv[1:]}; pass everything as --flag=value")
  f = flags.FLAGS
  if not f.workdir:
    raise UserError("--workdir is required: the folder of a trained run (gan_jax.main --workdir)")
  if f.num_centroids < 1:
    raise UserError(f"--num_centroids must be >= 1, got {f.num_centroids}")
  if f.out:  # before the Parzen work, not after it
    from gan_jax.run import files  # pylint: disable=import-outside-toplevel
    files.check_destination(f.out, "--out")
  record = run_table1(f.workdir, f.step, f.dataset_dir, f.out, f.num_samples, f.num_validation,
                      f.num_test, f.seed, f.baselines, f.num_centroids,
                      command=" ".join(["python -m gan_jax.paper.table1"] + sys.argv[1:]))
  print(record["markdown"], flush=True)
  print(f"wrote {record['out']}", flush=True)


def _define_flags():
  from absl import flags  # pylint: disable=import-outside-toplevel

  flags.DEFINE_string("workdir", None, "Folder of a trained run.")
  flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the newest).")
  flags.DEFINE_string("dataset_dir", None, "Overrides the run's data.dir (e.g. the MNIST IDX folder).")
  flags.DEFINE_string("out", None, "Markdown output (default: WORKDIR/paper/table1.md).")
  flags.DEFINE_integer("num_samples", 10000, "Samples drawn from G (and training images scored).")
  flags.DEFINE_integer("num_validation", 1000, "Validation images that select sigma.")
  flags.DEFINE_integer("num_test", 10000, "Test images scored.")
  flags.DEFINE_integer("seed", 0, "Seeds the samples and k-means.")
  flags.DEFINE_bool("baselines", True, "Also score training images and k-means centroids.")
  flags.DEFINE_integer("num_centroids", 1000, "k-means clusters for the baseline.")


if __name__ == "__main__":
  from gan_jax import cli  # pylint: disable=ungrouped-imports

  _define_flags()
  sys.exit(cli.run(main))
