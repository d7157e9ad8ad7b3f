"""`python -m gan_jax.sample --workdir=RUN [--step=N] --num=64 --out=grid.png [--npy=samples.npy]`:
samples from a trained run, as a PNG grid and/or the raw samples.

The samples come from `gan_jax.load_run(RUN, step).sample(num, seed)`: images in [0, 1] for image
runs (a grid), points for toy runs (a scatter or histogram). `--npy` writes the array as the model
outputs it, in the data's scale. Existing files are not overwritten unless `--force` is given.
"""

import io
import os
import sys

from absl import flags

from gan_jax import cli
from gan_jax.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run's folder (the --workdir of gan_jax.main).")
_STEP = flags.DEFINE_string("step", "", "A kept checkpoint's step, or 'best' (default: the newest).")
_NUM = flags.DEFINE_integer("num", 64, "How many samples.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the samples' noise (the same seed, the same samples).")
_OUT = flags.DEFINE_string("out", "", "Write a PNG grid (images) or plot (toy data) here.")
_NPY = flags.DEFINE_string("npy", "", "Write the raw samples here as a .npy array.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "The run's data folder, if it moved since training.")
_FORCE = flags.DEFINE_bool("force", False, "Overwrite --out / --npy if they exist.")


def main(argv):
  del argv
  if not _OUT.value and not _NPY.value:
    raise UserError("nothing to write: pass --out=grid.png and/or --npy=samples.npy")
  if _NUM.value < 1:
    raise UserError(f"--num must be at least 1, got {_NUM.value}")
  step = _STEP.value or None
  if step not in (None, "best") and not step.isdigit():
    raise UserError(f"--step must be a checkpoint's step or 'best', got {step!r}")
  step = int(step) if step and step.isdigit() else step
  from gan_jax.run import files  # pylint: disable=g-import-not-at-top  (no JAX: fast errors)
  for path, ext, flag in ((_OUT.value, ".png", "--out"), (_NPY.value, ".npy", "--npy")):
    if path and not path.endswith(ext):
      raise UserError(f"{path} should end in {ext}")
    if path:
      files.check_destination(path, flag)
    if path and os.path.exists(path) and not _FORCE.value:
      raise UserError(f"{path} exists; pass --force to overwrite it or choose another name")
  import numpy as np  # pylint: disable=g-import-not-at-top  (after the flags are checked: fast errors)

  from gan_jax.run import plotting  # pylint: disable=g-import-not-at-top
  from gan_jax.run.reader import load_run  # pylint: disable=g-import-not-at-top
  run = load_run(_WORKDIR.value, step, _DATA_DIR.value or None)
  title = f"{os.path.basename(os.path.abspath(_WORKDIR.value))}, step {run.step}, seed {_SEED.value}"
  if _NPY.value:
    raw = run.reader.generate(run.state, _NUM.value, _SEED.value)
    buffer = io.BytesIO()
    np.save(buffer, raw)
    files.atomic_write_bytes(_NPY.value, buffer.getvalue())
    print(f"wrote {_NUM.value} samples of shape {raw.shape[1:]} to {_NPY.value}")
  if _OUT.value:
    samples = run.sample(_NUM.value, _SEED.value)
    data = run.reader.data
    if data.image_shape is None:
      plotting.save_toy_samples(samples, _OUT.value, title, toy=data.sampler.toy)
    else:
      plotting.save_grid(samples, _OUT.value, title=title)
    print(f"wrote {_OUT.value} ({_NUM.value} samples, step {run.step})")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  sys.exit(cli.run(main))
