"""One accelerator agenda: the benchmark rows behind the performance targets, the paper's MNIST model
trained to 1,800 epochs with its Parzen trajectory and Table 1, one JSON and one Markdown report.

  python -m gan_jax.bench.agenda --out=DIR [--only=bench|paper] [--data_dir=data/mnist] [--dry_run]

Sections (docs/PERFORMANCE.md, "The accelerator agenda"):
  bench  the paper MLP (experiments/configs/mnist_paper.py) as `step`, `scan` and 16 vmapped seeds,
         in float32 (the config's float32 matmul precision) and bfloat16, and the DCGAN-32 at full
         size (`scan`) in float32 (the config's JAX-default precision) and bfloat16, each next to
         its bare-JAX ceiling (`gan_jax.bench.timing`, synthetic data on the device);
  paper  mnist_paper.py trained to 1,800 epochs (900,000 iterations) with a checkpoint every 100
         epochs (`gan_jax.train`), then the Parzen trajectory of those checkpoints and Table 1 of
         the last one (`gan_jax.paper.trajectory`, `gan_jax.paper.table1`) on the device.

Each section writes DIR/SECTION.json when it finishes; a re-run skips finished sections (delete the
file to redo one) and resumes the training run from its checkpoints in DIR/mnist_paper. Every run
(re)writes DIR/agenda.json and DIR/agenda.md from what is there: versions, device, precision, the
rows, the targets (met or not met) and the paper's numbers. `--dry_run` does all of it at tiny
sizes (a few units per layer, 2 seeds, a 4-epoch run on 300 images, 100 Parzen samples), on
MNIST-format data it generates unless --data_dir is given, compiled at XLA's lowest optimisation
level: a minute or so on a CPU, nearly all of it compiling; numbers that mean nothing.
"""

import datetime
import gzip
import importlib.util
import json
import os
import sys
import time

from absl import flags

from gan_jax import cli
from gan_jax.errors import UserError

_OUT = flags.DEFINE_string("out", None, "Folder of the reports, the sections' results and the run.")
_ONLY = flags.DEFINE_enum("only", "", ["", "bench", "paper"], "Run one section only (default: both).")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "MNIST IDX folder, e.g. data/mnist inside the working "
                                "tree (default: $GAN_JAX_DATA/mnist or ~/gan_jax_data/mnist).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Everything at tiny sizes: a CPU check of the code path.")
_BASELINES = flags.DEFINE_bool("baselines", False, "Also score Table 1's data baselines (k-means of "
                               "50,000 images: minutes of CPU).")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECTIONS = ("bench", "paper")
STRETCHES = "paper_training.json"  # one record per training call of the paper run
# Modules the agenda imports beyond jax, flax, optax and orbax (distribution names in brackets).
NEEDED = {"ml_collections": "ml-collections", "tensorboardX": "tensorboardX", "matplotlib": "matplotlib",
          "PIL": "pillow", "tqdm": "tqdm", "scipy": "scipy", "sklearn": "scikit-learn"}
SIZES = {
    False: {"models": {"mnist_mlp": ("step", "scan", "vmap", "bare"), "dcgan32": ("scan", "bare")},
            "seeds": (16,), "steps_per_dispatch": 200, "repeats": 5, "quick": False, "num_examples": None,
            "batch_size": 0, "epochs": 1800, "checkpoint_epochs": 100, "dispatch": 2500,
            "num_samples": 10000, "num_validation": 1000, "num_test": 10000, "num_train": 0, "tiny": False},
    True: {"models": {"mnist_mlp": ("step", "scan", "vmap", "bare"), "dcgan32": ("scan", "bare")},
           "seeds": (2,), "steps_per_dispatch": 2, "repeats": 1, "quick": True, "num_examples": 256,
           "batch_size": 8, "epochs": 4, "checkpoint_epochs": 2, "dispatch": 2,
           "num_samples": 100, "num_validation": 50, "num_test": 100,
           "num_train": 250, "tiny": True},  # of the 300 generated images: 2 iterations of 100 per epoch
}
FAST_COMPILE = "--xla_backend_optimization_level=0"  # the dry run's compiler setting (as the tests')
PAPER_TARGETS = {"its_per_s": 3500, "vs_bare": 0.95, "vmap_speedup": 4, "bf16_speedup": 2,
                 "run_s": 300, "table1": 220}


def preflight():
  """A UserError naming the missing packages (a bare machine; docs/PERFORMANCE.md says how)."""
  missing = [dist for module, dist in NEEDED.items() if importlib.util.find_spec(module) is None]
  if missing:
    raise UserError(f"this Python lacks {', '.join(missing)}: install them from wheels brought along "
                    f"(`pip install --no-index --find-links wheels/ {' '.join(missing)}`, "
                    "docs/PERFORMANCE.md 'The accelerator agenda')")


def _idx(array) -> bytes:
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
  return header + array.tobytes()


def write_fake_mnist(folder: str, num_train: int = 300, num_test: int = 100) -> str:
  """MNIST-format IDX files (gzipped) of random digits, for a dry run without the real ones."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  os.makedirs(folder, exist_ok=True)
  for prefix, n in (("train", num_train), ("t10k", num_test)):
    for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                        ("labels-idx1", rng.integers(0, 10, (n,), dtype=np.uint8))):
      with open(os.path.join(folder, f"{prefix}-{kind}-ubyte.gz"), "wb") as f:
        f.write(gzip.compress(_idx(array)))
  return folder


def environment() -> dict:
  """Versions, device and host: what the numbers were measured with."""
  import platform  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  from gan_jax.run import environment as env  # pylint: disable=import-outside-toplevel

  return {"versions": env.versions(), "python": platform.python_version(),
          "device": env.device_description(), "platform": jax.default_backend(),
          "device_count": jax.device_count(), "cpu_count": os.cpu_count()}


# ------------------------------------------------------------------------------------------ bench
def tiny(config):
  """The dry run's models: the same layers, a few units wide (compiled in a second or two)."""
  config.model.g_hidden, config.model.d_hidden = (32, 32), (16, 16)
  config.model.g_channels, config.model.d_channels = (16, 8, 4), (4, 8, 16)


def run_bench(size: dict, log) -> dict:
  """The benchmark rows of `size` (`SIZES`), each dtype compiled at its config's precision."""
  import jax  # pylint: disable=import-outside-toplevel
  from gan_jax.bench import timing  # pylint: disable=import-outside-toplevel
  from gan_jax.bench.configs import bench_config  # pylint: disable=import-outside-toplevel
  from gan_jax.bench.flops import flops_per_iteration, matmul_peak_flops  # pylint: disable=import-outside-toplevel

  cases, flops, precision = [], {}, {}
  for model, modes in size["models"].items():
    shape = (784,) if model == "mnist_mlp" else (32, 32, 3)
    flops[model] = {}
    for dtype in ("float32", "bfloat16"):
      config = bench_config(model, dtype, size["quick"], size["batch_size"])
      if size["tiny"]:
        tiny(config)
      flops[model][dtype] = flops_per_iteration(config, shape)
      precision[(model, dtype)] = config.precision
      log(f"bench: compiling {model} ({dtype}, matmul precision {config.precision})")
      cases += timing.build_cases(model, modes, size["seeds"], size["steps_per_dispatch"], size["quick"],
                                  size["num_examples"], size["batch_size"], log, dtypes=[dtype],
                                  adjust=tiny if size["tiny"] else None)
  log(f"bench: timing {len(cases)} rows, {size['repeats']} rounds")
  timing.time_cases(cases, size["repeats"], log)
  rows = timing.summarize(cases, flops)
  with jax.default_matmul_precision("float32"):  # the float32 rate, not TF32's
    peak = matmul_peak_flops()
  for row in rows:
    row["floor_iters_per_s"] = row["runs"] * peak / flops[row["model"]][row["compute_dtype"]]
    row["matmul_precision"] = precision[(row["model"], row["compute_dtype"])]
  log(timing.format_table(rows))
  return {"rows": rows, "matmul_peak_tflops": peak / 1e12, "quick": size["quick"],
          "steps_per_dispatch": size["steps_per_dispatch"], "repeats": size["repeats"]}


# ------------------------------------------------------------------------------------------ paper
def paper_config(size: dict, data_dir: str):
  """experiments/configs/mnist_paper.py for `size['epochs']` epochs, a checkpoint every
  `checkpoint_epochs` (all kept; a sample grid every third), `dispatch` iterations per dispatch and
  log line. Only the loop's driver keys change (in a dry run also the data size and the widths), so
  the run trains what the config says."""
  from gan_jax import config as config_lib  # pylint: disable=import-outside-toplevel

  c = config_lib.from_file(os.path.join(REPO, "experiments", "configs", "mnist_paper.py"))
  if data_dir:
    c.data.dir = os.path.abspath(data_dir)
  if size["num_train"]:
    c.data.num_train = size["num_train"]
  if size["tiny"]:
    tiny(c)
  per_epoch = c.data.num_train // c.batch_size
  c.num_steps = size["epochs"] * per_epoch
  c.checkpoint_every = size["checkpoint_epochs"] * per_epoch
  c.sample_every = 3 * c.checkpoint_every  # and at the end
  c.keep_checkpoints = size["epochs"] // size["checkpoint_epochs"] + 1
  c.steps_per_dispatch = c.log_every = size["dispatch"]
  c.parallel.mode = "none"
  return c


def training_totals(stretches: list) -> dict:
  """The training calls that made the run, summed: wall and training seconds, it/s over the steps
  they trained, and whether they cover it from step 0 without a gap (a call killed outright,
  SIGKILL, leaves no record; its steps are then missing from the sums). Calls that found the run
  finished and trained nothing are left out."""
  last = stretches[-1]
  stretches = [s for s in stretches if s["step"] > s["resumed_from"]] or [last]  # calls that trained
  whole = stretches[0]["resumed_from"] == 0 and all(
      b["resumed_from"] == a["step"] for a, b in zip(stretches, stretches[1:]))
  trained = sum(s["step"] - s["resumed_from"] for s in stretches)
  train_s = sum(s["train_time_s"] or 0 for s in stretches if s["iters_per_s"])
  rated = sum(s["train_time_s"] * s["iters_per_s"] for s in stretches if s["iters_per_s"])
  return {"step": last["step"], "num_steps": last["num_steps"], "calls": len(stretches),
          "whole_run_recorded": whole, "steps_trained": trained,
          "wall_time_s": round(sum(s["wall_time_s"] for s in stretches), 1),
          "train_time_s": round(train_s, 1),
          "compile_time_s": round(sum(s["compile_time_s"] for s in stretches), 1),
          "iters_per_s": round(rated / train_s, 1) if train_s else None,
          **{k: last[k] for k in ("d_loss", "g_loss", "params_sha256", "matmul_precision", "device")}}


def run_paper(size: dict, data_dir: str, workdir: str, out: str, baselines: bool, log) -> dict | None:
  """Trains (or resumes) the run, then its trajectory and Table 1; None if the training was stopped."""
  from gan_jax import config as config_lib, train  # pylint: disable=import-outside-toplevel
  from gan_jax.paper import table1, trajectory  # pylint: disable=import-outside-toplevel
  from gan_jax.run import files  # pylint: disable=import-outside-toplevel

  config = paper_config(size, data_dir)
  log(f"paper: training mnist_paper.py to step {config.num_steps:,} ({size['epochs']} epochs) at "
      f"matmul precision {config.precision} in {workdir}")
  summary = train.train_and_evaluate(config, workdir)
  keep = ("resumed_from", "step", "num_steps", "wall_time_s", "train_time_s", "compile_time_s",
          "iters_per_s", "d_loss", "g_loss", "params_sha256", "matmul_precision", "device", "stopped_by")
  stretches = (_read(os.path.join(out, STRETCHES)) or []) + [{k: summary.get(k) for k in keep}]
  files.atomic_write_json(os.path.join(out, STRETCHES), stretches, indent=1)
  if summary["stopped_by"]:
    log(f"paper: stopped by {summary['stopped_by']} at step {summary['step']:,}; run the same command "
        "to resume")
    return None
  sizes = {k: size[k] for k in ("num_samples", "num_validation", "num_test")}
  t1 = time.perf_counter()
  with config_lib.matmul_precision(config):  # G's samples as in training; Parzen's own is HIGHEST
    traj = trajectory.run_trajectory(workdir, None, config.checkpoint_every, log=log, **sizes)
    t2 = time.perf_counter()
    t1_record = table1.run_table1(workdir, None, None, os.path.join(out, "table1.md"),
                                  with_baselines=baselines, num_centroids=10 if size["tiny"] else 1000,
                                  command=" ".join(["python -m gan_jax.bench.agenda"] + sys.argv[1:]),
                                  log=log, **sizes)
  t3 = time.perf_counter()
  points = [{"step": int(s), "epoch": p["epoch"], "mean": p["mean"], "std_err": p["std_err"],
             "sigma": p["sigma"]} for s, p in sorted(traj["points"].items())]
  return {"epochs": size["epochs"], "workdir": workdir, "training": training_totals(stretches),
          "stretches": stretches, "trajectory": points, "trajectory_s": round(t2 - t1, 1),
          "table1": t1_record["result"], "table1_baselines": t1_record["baselines"],
          "table1_step": t1_record["step"], "table1_s": round(t3 - t2, 1)}


# ---------------------------------------------------------------------------------------- targets
def _row(bench, model, mode, dtype="float32"):
  rows = [r for r in (bench or {}).get("rows", []) if r["model"] == model
          and r["compute_dtype"] == dtype and (r["mode"] == mode or mode == "vmap" and r["mode"].startswith("vmap"))]
  return rows[0] if rows else None


def targets(bench: dict | None, paper: dict | None) -> list[dict]:
  """Each performance target with what was measured and whether it is met (None: not measured)."""
  t = PAPER_TARGETS
  scan, vmap = _row(bench, "mnist_mlp", "scan"), _row(bench, "mnist_mlp", "vmap")
  d32, d16 = _row(bench, "dcgan32", "scan"), _row(bench, "dcgan32", "scan", "bfloat16")
  out = []

  def add(name, value, goal, how, at_most=False):
    met = None if value is None else bool(value <= goal if at_most else value >= goal)
    out.append({"target": name, "measured": value, "goal": goal, "met": met, "how": how})

  add(f"paper MNIST model in the trainer >= {t['its_per_s']:,} it/s", scan and scan["iters_per_s"],
      t["its_per_s"], "bench: mnist_mlp scan, float32")
  add(f"trainer >= {t['vs_bare']} of its bare loop", scan and scan["vs_bare"], t["vs_bare"],
      "bench: mnist_mlp scan against bare, float32 (median same-round ratio)")
  add(f"{vmap['runs'] if vmap else 16} vmapped seeds >= {t['vmap_speedup']}x one run",
      vmap and scan and vmap["iters_per_s"] / scan["iters_per_s"], t["vmap_speedup"],
      "bench: aggregate it/s of the vmap row over the scan row, float32")
  add(f"DCGAN-32 bfloat16 >= {t['bf16_speedup']}x float32",
      d32 and d16 and d16["iters_per_s"] / d32["iters_per_s"], t["bf16_speedup"],
      "bench: dcgan32 scan, bfloat16 over float32")
  run_s, how = None, "paper: seconds of the training calls, compilation and checkpoints included"
  if paper:
    tr = paper["training"]
    if tr["whole_run_recorded"]:
      run_s = tr["wall_time_s"]
    elif tr["iters_per_s"]:
      run_s, how = tr["num_steps"] / tr["iters_per_s"], "paper: num_steps / it/s (a call left no record)"
  add(f"the {paper['epochs'] if paper else 1800:,}-epoch run in <= {t['run_s'] // 60} minutes", run_s,
      t["run_s"], how, at_most=True)
  add(f"Table 1 >= {t['table1']}", paper and paper["table1"]["mean"], t["table1"],
      "paper: Parzen log-likelihood of the last checkpoint (nats)")
  return out


# ----------------------------------------------------------------------------------------- report
def _fmt(v):
  if v is None:
    return "—"
  return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3g}"


def markdown(record: dict) -> str:
  """The Markdown report of `record` (agenda.json)."""
  env, bench, paper = record["environment"], record["sections"].get("bench"), record["sections"].get("paper")
  lines = [f"# Accelerator agenda{' (dry run: tiny sizes, numbers mean nothing)' if record['dry_run'] else ''}",
           "", f"- Date: {record['date']}; command: `{record['command']}`",
           f"- Device: {env['device']}, {env['device_count']} device(s); host {env['cpu_count']} CPU cores",
           "- Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + f", Python {env['python']}",
           "- Matmul precision: the paper MLP and the MNIST run float32 (`precision` of mnist_paper.py); "
           "the DCGAN float32 rows JAX's default; bfloat16 rows default", "",
           "## Targets", "", "| target | measured | status | how |", "| --- | --- | --- | --- |"]
  for t in record["targets"]:
    status = "not measured" if t["met"] is None else ("met" if t["met"] else "not met")
    lines.append(f"| {t['target']} | {_fmt(t['measured'])} | {status} | {t['how']} |")
  lines += ["", "## Benchmark", ""]
  if bench:
    lines += [f"{bench['repeats']} rounds of {bench['steps_per_dispatch']} iterations per dispatch; "
              f"float32 matmul rate {bench['matmul_peak_tflops']:.2f} TFLOP/s; section {bench['seconds']:.0f} s.",
              "", "| model | mode | dtype | precision | it/s | images/s | compile s | vs bare |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in bench["rows"]:
      lines.append(f"| {r['model']} | {r['mode']} | {r['compute_dtype']} | {r['matmul_precision']} | "
                   f"{r['iters_per_s']:,.1f} | {r['images_per_s']:,.0f} | {r['compile_s']:.1f} | "
                   f"{_fmt(r['vs_bare'])} |")
  else:
    lines.append("Not run yet (`--only=bench`).")
  lines += ["", "## The paper's MNIST model", ""]
  if paper:
    tr, t1 = paper["training"], paper["table1"]
    lines += [f"Trained to step {tr['step']:,} ({paper['epochs']:,} epochs) at matmul precision "
              f"{tr['matmul_precision']} in {tr['calls']} call(s)"
              + ("" if tr["whole_run_recorded"] else " (not all recorded)") + f": "
              f"{_fmt(tr['iters_per_s'])} it/s, {tr['train_time_s']:.0f} s of training, "
              f"{tr['wall_time_s']:.0f} s in all (compile {tr['compile_time_s']:.1f} s); params_sha256 "
              f"`{tr['params_sha256'][:16]}...`. Trajectory {paper['trajectory_s']:.0f} s, "
              f"Table 1 {paper['table1_s']:.0f} s.", "",
              f"Table 1 (step {paper['table1_step']:,}): **{t1['mean']:.1f} ± {t1['std_err']:.1f}** "
              f"(σ = {t1['sigma']:.3f}; the paper: 225 ± 2).", "",
              "| epoch | " + " | ".join(f"{p['epoch']:g}" for p in paper["trajectory"]) + " |",
              "| --- | " + " | ".join("---" for _ in paper["trajectory"]) + " |",
              "| Parzen LL | " + " | ".join(f"{p['mean']:.1f}" for p in paper["trajectory"]) + " |",
              "| σ | " + " | ".join(f"{p['sigma']:.3f}" for p in paper["trajectory"]) + " |"]
  else:
    lines.append("Not run yet, or stopped before the end (`--only=paper` resumes it).")
  lines += ["", "## Sections", "", "| section | status | seconds |", "| --- | --- | --- |"]
  for name in SECTIONS:
    s = record["sections"].get(name)
    lines.append(f"| {name} | {'done ' + s['finished'] if s else 'not done'} | {_fmt(s and s['seconds'])} |")
  return "\n".join(lines) + "\n"


def _read(path: str):
  """A report of an earlier agenda run in --out, or None; one error line for a damaged one."""
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"{path} cannot be read ({e}); move it away, or pass another --out") from None
  return record


def main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments {argv[1:]}; pass everything as --flag=value")
  if not _OUT.value:
    raise UserError("--out is required: the folder of the reports (e.g. --out=runs/agenda)")
  out, dry = os.path.abspath(_OUT.value), _DRY_RUN.value
  data_dir = os.path.expanduser(_DATA_DIR.value)
  if data_dir and not os.path.isdir(data_dir):
    raise UserError(f"--data_dir={data_dir} is not a folder; fill it with `python -m gan_jax.data.fetch "
                    f"mnist --dir={data_dir}` (or copy the four MNIST files there)")
  preflight()
  if dry and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    # Before JAX starts: a dry run's numbers mean nothing, and compiling dominates its time.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE).strip()
  from gan_jax.run import files  # pylint: disable=import-outside-toplevel

  files.check_destination(out, "--out", folder=True)
  os.makedirs(out, exist_ok=True)
  previous = _read(os.path.join(out, "agenda.json"))
  if previous and (not isinstance(previous, dict) or "dry_run" not in previous):
    raise UserError(f"{os.path.join(out, 'agenda.json')} is not an agenda report; pass another --out")
  if previous and previous["dry_run"] != dry:
    raise UserError(f"{out} holds a {'dry' if previous['dry_run'] else 'full'} agenda; pass another --out")
  if dry and not data_dir:
    data_dir = write_fake_mnist(os.path.join(out, "fake_mnist"))
  size = SIZES[dry]
  log = lambda s: print(s, flush=True)
  for name in [_ONLY.value] if _ONLY.value else SECTIONS:
    path = os.path.join(out, f"{name}.json")
    done = _read(path)
    if done and done.get("dry_run") != dry:
      raise UserError(f"{path} comes from a {'dry' if done.get('dry_run') else 'full'} agenda; pass "
                      "another --out")
    if done:
      log(f"{name}: done before ({path}); skipped (delete that file to run it again)")
      continue
    t0 = time.perf_counter()
    result = (run_bench(size, log) if name == "bench" else
              run_paper(size, data_dir, os.path.join(out, "mnist_paper"), out, _BASELINES.value, log))
    if result is None:
      break
    result.update(dry_run=dry, seconds=round(time.perf_counter() - t0, 1),
                  finished=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    files.atomic_write_json(path, result, indent=1)
    log(f"{name}: done in {result['seconds']:.0f} s -> {path}")
  sections = {name: _read(os.path.join(out, f"{name}.json")) for name in SECTIONS}
  record = {"dry_run": dry, "date": datetime.date.today().isoformat(),
            "command": " ".join(["python -m gan_jax.bench.agenda"] + sys.argv[1:]),
            "environment": environment(), "sections": {k: v for k, v in sections.items() if v},
            "targets": targets(sections["bench"], sections["paper"])}
  files.atomic_write_json(os.path.join(out, "agenda.json"), record, indent=1)
  files.atomic_write_text(os.path.join(out, "agenda.md"), markdown(record))
  for t in record["targets"]:
    status = "not measured" if t["met"] is None else ("met" if t["met"] else "NOT MET")
    log(f"target: {t['target']}: {_fmt(t['measured'])} -> {status}")
  log(f"wrote {os.path.join(out, 'agenda.json')} and {os.path.join(out, 'agenda.md')}")


if __name__ == "__main__":
  sys.exit(cli.run(main))
