"""Scores a trained run, or two sets of images, with the standard metrics (FID, KID, IS, precision/recall, density/coverage).

  python -m gan_jax.evaluate --workdir=RUN [--step=N|best] --metrics=fid,kid,pr
  python -m gan_jax.evaluate --real=DIR_OR_NPY --fake=DIR_OR_NPY --metrics=fid,kid,pr,dc --extractor=inception

A run is scored with `--num_samples` generated samples (default 10,000; the common protocol is
50,000) against its data's `--split` (default: train, the common protocol). Two image sets are
scored against each other: each is a folder of PNG/JPEG images or a .npy array [N, H, W(, C)] of
uint8, or floats in [0, 1]. The feature network is the FID Inception-v3 (`--weights`, see
docs/EVALUATION.md) or, for MNIST-like labelled data, the project's classifier; every printed number
carries n_real, n_fake, the split and the extractor. `--json_out` writes the result.
"""

import json
import os
import sys

from absl import flags

from gan_jax import cli
from gan_jax.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", "", "A trained run's folder.")
_STEP = flags.DEFINE_string("step", "", "A kept checkpoint's step, or 'best' (default: the newest).")
_REAL = flags.DEFINE_string("real", "", "Reference images: a folder of PNG/JPEG or a .npy array.")
_FAKE = flags.DEFINE_string("fake", "", "Images to score: a folder of PNG/JPEG or a .npy array.")
_METRICS = flags.DEFINE_string("metrics", "fid,kid,pr", "Comma-separated: fid, kid, pr, dc, is.")
_EXTRACTOR = flags.DEFINE_string("extractor", "auto", "inception | classifier (runs only) | auto.")
_WEIGHTS = flags.DEFINE_string("weights", "", "The FID Inception weights file (pytorch-fid's .pth).")
_NUM = flags.DEFINE_integer("num_samples", 10000, "Generated samples (runs).")
_SPLIT = flags.DEFINE_string("split", "train", "The run's reference split: train | validation | test.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the generated samples.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "The run's data folder, if it moved since training.")
_JSON = flags.DEFINE_string("json_out", "", "Write the result here as JSON.")
_FORCE = flags.DEFINE_bool("force", False, "Overwrite --json_out if it exists.")


def load_images(path: str):
  """[N, H, W, C] images from a .npy file or a folder of PNG/JPEG files."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  if not os.path.exists(path):
    raise UserError(f"{path} does not exist; pass a folder of images or a .npy file")
  if os.path.isdir(path):
    from gan_jax.data import folder  # pylint: disable=g-import-not-at-top
    return folder.load_folder(path).images
  if not path.endswith(".npy"):
    raise UserError(f"{path} is neither a folder nor a .npy file")
  try:
    return np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:  # EOFError: an empty or truncated file
    raise UserError(f"cannot read {path} as a .npy array ({e or 'it is empty or cut short'})") from None


def main(argv):
  del argv
  from gan_jax.evaluation import scorer  # pylint: disable=g-import-not-at-top
  names = scorer.parse_metrics(_METRICS.value)
  if bool(_WORKDIR.value) == bool(_REAL.value or _FAKE.value):
    raise UserError("pass either --workdir=RUN or both --real and --fake")
  if _NUM.value < 2:
    raise UserError(f"--num_samples must be at least 2, got {_NUM.value}")
  if _EXTRACTOR.value not in scorer.EXTRACTORS:
    raise UserError(f"unknown --extractor {_EXTRACTOR.value!r}; choose one of {', '.join(scorer.EXTRACTORS)}")
  if _JSON.value:  # before minutes of scoring, and never over a file the user has
    from gan_jax.run import files  # pylint: disable=g-import-not-at-top
    files.check_destination(_JSON.value, "--json_out")
    if os.path.exists(_JSON.value) and not _FORCE.value:
      raise UserError(f"{_JSON.value} exists; pass --force to overwrite it or choose another name")
  if _WORKDIR.value:
    from gan_jax.run.reader import load_run  # pylint: disable=g-import-not-at-top
    step = _STEP.value or None
    if step not in (None, "best") and not step.isdigit():
      raise UserError(f"--step must be a checkpoint's step or 'best', got {step!r}")
    run = load_run(_WORKDIR.value, int(step) if step and step.isdigit() else step, _DATA_DIR.value or None)
    if run.reader.data.image_shape is None:
      raise UserError(f"{_WORKDIR.value} was trained on toy data; score it with the sweep's mode metrics")
    s = scorer.Scorer(names, run.config.data, os.path.join(run.reader.workdir, "eval_cache"),
                      extractor=_EXTRACTOR.value, num_fake=_NUM.value, split=_SPLIT.value,
                      weights=_WEIGHTS.value)
    result = {"workdir": run.reader.workdir, "step": run.step,
              **s.score_generator(run.reader.gan, run.state, _SEED.value, run.reader.data.image_shape,
                                  run.reader.data.display_scale)}
  else:
    if not (_REAL.value and _FAKE.value):
      raise UserError("pass both --real and --fake")
    if _EXTRACTOR.value == "classifier":
      raise UserError("--extractor=classifier needs a run's labelled data; two image sets use inception")
    from gan_jax.evaluation import features  # pylint: disable=g-import-not-at-top
    real_images, fake_images = load_images(_REAL.value), load_images(_FAKE.value)  # both, before the weights
    ext = scorer.inception_extractor(_WEIGHTS.value)
    real, _ = ext(real_images)
    fake, logits = ext(fake_images)
    values = features.feature_metrics(real, fake, fake_logits=logits, names=[scorer.METRICS[n] for n in names])
    result = {"real": _REAL.value, "fake": _FAKE.value,
              **features.with_protocol(values, n_real=len(real), n_fake=len(fake), split="given",
                                       extractor=ext.name)}
  protocol = {k: result[k] for k in ("n_real", "n_fake", "split", "extractor")}
  for key, value in scorer.values_of(result).items():
    if key != "step":
      print(f"{key}: {value:.6g}")
  print(f"({protocol['n_fake']} generated vs {protocol['n_real']} {protocol['split']} images, "
        f"{protocol['extractor']} features)")
  if _JSON.value:
    from gan_jax.run import files  # pylint: disable=g-import-not-at-top
    files.atomic_write_text(_JSON.value, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
  sys.exit(cli.run(main))
