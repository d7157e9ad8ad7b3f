"""Algorithm 1's alternating update against the reference code's simultaneous one, on the MNIST model.

  python experiments/paper/compare_updates.py --out=runs/paper_updates --epochs=10

Trains `experiments/configs/mnist_paper.py` twice for --epochs epochs, identical but for
`update_mode` ('simultaneous': D's and G's gradients from one batch and one set of samples, applied
together; 'alternating': a D step, then a G step on fresh noise against the updated D), logging every
100 iterations and checkpointing every --checkpoint_epochs. Then scores every checkpoint with the
Table 1 protocol (gan_jax.paper.trajectory) and writes, in --out:

  comparison.png   D's loss (log scale), D(x) and D(G(z)), and the Parzen log-likelihood against epoch
  comparison.md    the final numbers of both runs, the command, the date and the device

Each run resumes if interrupted (same command). 10 epochs take about 10 minutes per mode on 2 busy
CPU cores, most of it the Parzen evaluations; a GPU does 2,000 epochs in minutes.
"""

import datetime
import json
import os
import sys

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from gan_jax import cli  # pylint: disable=wrong-import-position
from gan_jax.errors import UserError  # pylint: disable=wrong-import-position

MODES = ("simultaneous", "alternating")
_COLORS = {"simultaneous": "tab:blue", "alternating": "tab:red"}

flags.DEFINE_string("out", "runs/paper_updates", "Folder for the two runs and the comparison.")
flags.DEFINE_integer("epochs", 10, "Epochs per run (500 iterations each).")
flags.DEFINE_integer("checkpoint_epochs", 2, "Epochs between checkpoints (each is Parzen-scored).")
flags.DEFINE_string("dataset_dir", "", "The MNIST IDX folder (default: the config's, "
                    "$GAN_JAX_DATA/mnist or ~/gan_jax_data/mnist).")
flags.DEFINE_integer("seed", 0, "The runs' seed.")
flags.DEFINE_integer("num_samples", 10000, "Parzen samples per checkpoint (the paper: 10,000).")


def _config(mode: str, epochs: int, checkpoint_epochs: int, dataset_dir: str, seed: int):
  from gan_jax import config as config_lib  # pylint: disable=import-outside-toplevel

  c = config_lib.from_file(os.path.join(REPO, "experiments", "configs", "mnist_paper.py"))
  steps_per_epoch = c.data.num_train // c.batch_size
  c.update_mode = mode
  c.seed = seed
  if dataset_dir:
    c.data.dir = dataset_dir
  c.num_steps = epochs * steps_per_epoch
  c.log_every = 100
  c.steps_per_dispatch = 100
  c.checkpoint_every = checkpoint_epochs * steps_per_epoch
  c.keep_checkpoints = 1000
  c.sample_every = c.num_steps
  return c, steps_per_epoch


def plot(runs: dict, path: str, epochs: int):
  """Three panels: D's loss, D's outputs, Parzen LL, each against epoch, one colour per mode."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, (a, b, c) = plt.subplots(1, 3, figsize=(14, 3.8), dpi=110)
  for mode, r in runs.items():
    col = _COLORS[mode]
    e = [rec["step"] / r["steps_per_epoch"] for rec in r["records"]]
    a.semilogy(e, [max(rec["d_loss"], 1e-12) for rec in r["records"]], color=col, lw=1, label=mode)
    b.plot(e, [rec["d_real"] for rec in r["records"]], color=col, lw=1, ls="-", label=f"{mode}: D(x)")
    b.plot(e, [rec["d_fake"] for rec in r["records"]], color=col, lw=1, ls="--", label=f"{mode}: D(G(z))")
    pts = sorted(r["parzen"].items())
    c.errorbar([p["epoch"] for _, p in pts], [p["mean"] for _, p in pts],
               yerr=[p["std_err"] for _, p in pts], fmt="o-", color=col, ms=3, capsize=2, label=mode)
  a.set_title("discriminator loss (log scale)", fontsize=10)
  b.set_title("D(x) solid, D(G(z)) dashed", fontsize=10)
  b.set_ylim(-0.02, 1.02)
  c.set_title("Parzen log-likelihood (Table 1 protocol)", fontsize=10)
  for ax in (a, b, c):
    ax.set_xlabel("epoch")
    ax.set_xlim(0, epochs * 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.suptitle("MNIST model of the paper: simultaneous (reference code) vs alternating (Algorithm 1) "
               "updates, same seed and hyperparameters", fontsize=10)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def _markdown(runs: dict, info: dict) -> str:
  lines = ["| update | final d_loss | min d_loss | final D(x) | final D(G(z)) | Parzen LL at the end | σ |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for mode, r in runs.items():
    last = r["records"][-1]
    p = r["parzen"][max(r["parzen"])]
    lines.append(f"| {mode} | {last['d_loss']:.3g} | {min(x['d_loss'] for x in r['records']):.3g} | "
                 f"{last['d_real']:.3f} | {last['d_fake']:.3g} | {p['mean']:.1f} ± {p['std_err']:.1f} | "
                 f"{p['sigma']:.3f} |")
  lines += ["", f"{info['epochs']} epochs ({info['steps']:,} iterations) each; measured {info['date']} on "
            f"{info['device']}; training (excluding compilation) {info['train_s']}", "", f"    {info['command']}", ""]
  return "\n".join(lines)


def _timing(workdir: str, summary: dict) -> str:
  """'MODE trained N iterations in S s (R it/s)' for the sessions that trained, kept across re-runs."""
  path = os.path.join(workdir, "training_sessions.json")
  sessions = json.load(open(path, encoding="utf-8")) if os.path.exists(path) else []
  trained = summary["step"] - summary["resumed_from"]
  if trained > 0:
    sessions.append({"from": summary["resumed_from"], "to": summary["step"],
                     "train_time_s": summary["train_time_s"], "iters_per_s": summary["iters_per_s"],
                     "device": summary["device"]})
    with open(path, "w", encoding="utf-8") as f:
      json.dump(sessions, f, indent=2)
  return f"{os.path.basename(workdir)}: " + "; ".join(
      f"steps {s['from']}-{s['to']} in {s['train_time_s']:.0f} s ({s['iters_per_s']} it/s)"
      for s in sessions)


def main(argv):
  del argv
  from gan_jax import train  # pylint: disable=import-outside-toplevel
  from gan_jax.run import logs  # pylint: disable=import-outside-toplevel
  from gan_jax.paper import run as run_lib, trajectory  # pylint: disable=import-outside-toplevel

  f = flags.FLAGS
  if f.epochs < 1 or f.checkpoint_epochs < 1:
    raise UserError("--epochs and --checkpoint_epochs must be >= 1")
  if f.dataset_dir and not os.path.isdir(f.dataset_dir):
    raise UserError(f"--dataset_dir={f.dataset_dir} is not a folder; pass the MNIST IDX folder")
  runs, train_s = {}, {}
  for mode in MODES:
    config, spe = _config(mode, f.epochs, f.checkpoint_epochs, f.dataset_dir, f.seed)
    workdir = os.path.join(f.out, mode)
    print(f"== {mode}: {f.epochs} epochs in {workdir}", flush=True)
    summary = train.train_and_evaluate(config, workdir)
    train_s[mode] = _timing(workdir, summary)
    traj = trajectory.run_trajectory(workdir, f.dataset_dir or None, num_samples=f.num_samples)
    runs[mode] = {"records": logs.read_metrics(workdir), "parzen": traj["points"], "steps_per_epoch": spe}
  plot(runs, os.path.join(f.out, "comparison.png"), f.epochs)
  info = {"epochs": f.epochs, "steps": f.epochs * spe, "date": datetime.date.today().isoformat(),
          "device": run_lib.device_description(), "train_s": ", ".join(train_s.values()),
          "command": " ".join(["python experiments/paper/compare_updates.py"] + sys.argv[1:])}
  text = _markdown(runs, info)
  run_lib.write_text(os.path.join(f.out, "comparison.md"), text)
  run_lib.write_text(os.path.join(f.out, "comparison.json"), json.dumps(
      {m: {"final": r["records"][-1], "parzen": r["parzen"]} for m, r in runs.items()}, indent=2))
  print(text, flush=True)


if __name__ == "__main__":
  sys.exit(cli.run(main))
