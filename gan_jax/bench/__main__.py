"""Training throughput: the gan_jax trainer against a bare JAX loop of the same arithmetic.

  python -m gan_jax.bench [--models=mnist_mlp,dcgan32] [--modes=step,scan,vmap,bf16,bare]
                          [--seeds=8,16] [--steps_per_dispatch=N] [--repeats=R] [--json_out=PATH]
                          [--profile]

Models: `mnist_mlp` is the paper's MNIST pair with its exact update (experiments/configs/mnist_paper.py:
batch 100, per-example dropout, simultaneous update, paper SGD); `dcgan32` is experiments/configs/
dcgan_32.py (batch 128, alternating update, Adam). Data is synthetic: random uint8 images of the real
shape and count, resident on the device, so nothing is downloaded.

Modes (each row of the table):
  step   the trainer (`parallel.Runner`, what `gan_jax.train` runs), one iteration per dispatch,
         the gradient norms measured in every `steps_per_dispatch`-th (as if it logged there);
  scan   the trainer, `steps_per_dispatch` iterations in one `lax.scan` per dispatch, the gradient
         norms measured at its last iteration;
  vmap   N seeds trained as one vmapped program (`gan_jax.vmap`), N from `--seeds`;
  bf16   `scan` with `model.compute_dtype='bfloat16'` (the conv model; params stay float32);
  bare   the ceiling: the same models, optimizer, data gather and random draws written as plain JAX
         functions (no gan_jax classes, no metrics beyond the two losses), scanned like `scan`.
         With bf16 selected, `bare` also runs in bf16 so that each dtype has its own ceiling; with
         step selected, `bare_step` runs it one iteration per dispatch, the ceiling of `step`.

Compilation is timed apart. Each dispatch is timed on its own, round-robin over the modes (so a noisy
neighbour slows every mode alike), and a row reports the best of `--repeats` dispatches. `vs bare` is a
row's images/s over its ceiling's (same dtype, same dispatch style). On a CPU the default is `--quick`
(DCGAN widths /4 and batch 16, 4 steps per dispatch, 2 rounds); `--noquick` runs the real sizes, for
accelerators. FLOPs per iteration are counted analytically (`flops_per_iteration`).

`--profile` adds where a step's time goes: a `jax.profiler` trace of each model's one-step trainer
program, its instructions' time summed by kind (matmul/conv, random numbers, the rest) and by pass.
"""

import json
import os
import sys

import jax
from absl import flags

from gan_jax import cli
from gan_jax.bench.configs import MODELS, MODES, QUICK_DCGAN_BATCH, QUICK_WIDTH_DIVISOR
from gan_jax.bench.profile import format_profile, profile_step
from gan_jax.bench.timing import format_table, run
from gan_jax.errors import UserError
from gan_jax.run import files

def _main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  f = flags.FLAGS
  if f.num_examples < 0:
    raise UserError(f"--num_examples must be 0 (the real split's size) or more, got {f.num_examples}")
  if f.repeats < 0 or f.steps_per_dispatch < 0 or f.batch_size < 0:
    raise UserError("--repeats, --steps_per_dispatch and --batch_size must be 0 (the default) or more")
  if f.json_out:  # checked before minutes of timing, not after
    files.check_destination(f.json_out, "--json_out")
  quick = f.quick if f.quick is not None else jax.default_backend() == "cpu"
  spd = f.steps_per_dispatch or (4 if quick else 200)
  repeats = f.repeats or (2 if quick else 5)

  def parse(text, name):
    return [t.strip() for t in text.split(",") if t.strip()] or _fail(f"--{name} is empty")

  try:
    seeds = [int(s) for s in parse(f.seeds, "seeds")]
  except ValueError:
    raise UserError(f"--seeds must be comma-separated integers, got {f.seeds!r}") from None
  if quick:
    print(f"quick: DCGAN widths /{QUICK_WIDTH_DIVISOR} and batch {f.batch_size or QUICK_DCGAN_BATCH}, "
          f"{spd} steps per dispatch, {repeats} rounds (--noquick for the real sizes)", flush=True)
  report = run(parse(f.models, "models"), parse(f.modes, "modes"), seeds, spd, repeats, quick,
               f.num_examples or None, f.batch_size, log=lambda s: print(s, flush=True))
  if f.profile:
    report["profiles"] = [profile_step(m, quick, f.batch_size) for m in parse(f.models, "models")]
  print(f"\n{report['device_kind']} ({report['platform']}), {report['date']}, {report['command']}")
  print(format_table(report["rows"]))
  for p in report.get("profiles", []):
    print(format_profile(p))
  if f.json_out:
    os.makedirs(os.path.dirname(os.path.abspath(f.json_out)), exist_ok=True)
    with open(f.json_out, "w", encoding="utf-8") as out:
      json.dump(report, out, indent=2)
    print(f"wrote {f.json_out}")


def _fail(message):
  raise UserError(message)


flags.DEFINE_string("models", ",".join(MODELS), f"Comma-separated models: {', '.join(MODELS)}.")
flags.DEFINE_string("modes", ",".join(MODES), f"Comma-separated modes: {', '.join(MODES)}.")
flags.DEFINE_string("seeds", "8,16", "Comma-separated run counts for the vmap mode.")
flags.DEFINE_integer("steps_per_dispatch", 0, "Iterations per timed dispatch (0: 4 quick, 200 otherwise).")
flags.DEFINE_integer("repeats", 0, "Timed rounds per row, best reported (0: 2 quick, 5 otherwise).")
flags.DEFINE_integer("num_examples", 0, "Synthetic training examples (0: the real training split's size).")
flags.DEFINE_integer("batch_size", 0, "Batch size of every model (0: the experiment's, 100 and 128).")
flags.DEFINE_bool("quick", None, "Small DCGAN, few steps (default: on when JAX runs on a CPU).")
flags.DEFINE_string("json_out", "", "Write the report as JSON here.")
flags.DEFINE_bool("profile", False, "Also trace a few one-step dispatches of each model's trainer "
                  "with jax.profiler and print where a step's time goes.")


if __name__ == "__main__":
  sys.exit(cli.run(_main))
