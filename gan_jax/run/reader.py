"""Reading a trained run from its workdir: its config, the state of any kept checkpoint, samples.

  run = gan_jax.load_run("runs/digits")              # the newest checkpoint
  images = run.sample(64, seed=0)                    # [64, H, W, C] in [0, 1], or [64, d] for toys
  state = run.state                                  # a GANState on the host

Read-only on purpose, because training may still be writing to the same folder. The training loop's
`Checkpointer` deletes unfinished checkpoint folders when it opens (`cleanup_tmp_directories`), which
would destroy the checkpoint a live run is writing; here each finished step's folder is read directly
with Orbax's handlers, and folders still being written (not yet renamed to their step) are ignored.
`RunReader` sets up once and restores any step (the paper kit walks every checkpoint with it).
"""

import dataclasses
import json
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from gan_jax import config as config_lib
from gan_jax.core import build, gan as gan_lib, rng
from gan_jax.data import pipeline, scale
from gan_jax.errors import UserError


# The rolling checkpoints, and the best one by the evaluation during training (gan_jax.evaluation.periodic).
ROLLING, BEST = "checkpoints", "checkpoints_best"


def checkpoint_dir(workdir: str, folder: str = ROLLING) -> str:
  return os.path.join(os.path.abspath(workdir), folder)


def checkpoint_steps(workdir: str, folder: str = ROLLING) -> list[int]:
  """The steps of the finished checkpoints in `workdir`'s `folder`, oldest first."""
  directory = checkpoint_dir(workdir, folder)
  if not os.path.isdir(directory):
    return []
  steps = []
  for name in os.listdir(directory):
    path = os.path.join(directory, name)
    # Orbax writes into `STEP.orbax-checkpoint-tmp-*` and renames when done, then leaves metadata.
    if name.isdigit() and os.path.exists(os.path.join(path, "_CHECKPOINT_METADATA")):
      steps.append(int(name))
  return sorted(steps)


def _merge(base: ml_collections.ConfigDict, saved: dict):
  """Writes `saved` into `base`; keys a newer gan_jax added keep their defaults. JSON made tuples lists."""
  for key, value in saved.items():
    if key not in base:
      continue  # a key this version no longer reads
    if isinstance(value, dict):
      _merge(base[key], value)
    elif isinstance(base[key], tuple) and isinstance(value, list):
      base[key] = tuple(value)
    else:
      base[key] = value


def read_config(workdir: str, step: int, folder: str = ROLLING) -> ml_collections.ConfigDict:
  """The config saved with the checkpoint at `step`, completed with today's defaults."""
  path = os.path.join(checkpoint_dir(workdir, folder), str(step), "config", "metadata")
  try:
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"cannot read the config of the checkpoint at step {step} ({path}: {e}); "
                    "is this a gan_jax workdir?") from None
  config = config_lib.base_config()
  _merge(config, saved)
  return config


class RunReader:
  """The data, models and checkpoints of one run; sets up once, restores any step."""

  def __init__(self, workdir: str, data_dir: str | None = None, best: bool = False):
    """Reads the newest checkpoint's config and builds the run's data and models.

    Args:
      workdir: the run's folder (as passed to `gan_jax.main --workdir`).
      data_dir: overrides the config's `data.dir` (the data may have moved since training).
      best: read the best checkpoint kept by the evaluation during training (`checkpoints_best/`)
        instead of the rolling ones.

    Raises:
      UserError: no finished checkpoint in `workdir`, or the data cannot be loaded.
    """
    self.workdir = os.path.abspath(workdir)
    self.folder = BEST if best else ROLLING
    if not os.path.isdir(self.workdir):
      raise UserError(f"--workdir={workdir} does not exist; pass the folder of a trained run "
                      "(the --workdir given to gan_jax.main)")
    steps = checkpoint_steps(workdir, self.folder)
    if not steps:
      hint = ("it is kept by evaluation during training (--config.eval_every=N)" if best else
              "train first (python -m gan_jax.main --config=... --workdir=...) or wait for the first one")
      raise UserError(f"no finished checkpoint in {checkpoint_dir(workdir, self.folder)}; {hint}")
    self.config = read_config(workdir, steps[-1], self.folder)
    if data_dir:
      self.config.data.dir = data_dir
    self.data, self.gan, self.template = build.setup(self.config)
    self._abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, self.template)
    self._checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())

  def steps(self) -> list[int]:
    """Finished checkpoints now on disk (new ones appear while a run trains)."""
    return checkpoint_steps(self.workdir, self.folder)

  @property
  def steps_per_epoch(self) -> int:
    return self.data.sampler.steps_per_epoch(self.config.batch_size)

  def epoch(self, step: int) -> float:
    return round(step / self.steps_per_epoch, 2)

  def restore(self, step: int):
    """The `GANState` saved at `step`."""
    path = os.path.join(checkpoint_dir(self.workdir, self.folder), str(step), "state")
    if step not in self.steps():
      raise UserError(f"no finished checkpoint at step {step} in {checkpoint_dir(self.workdir, self.folder)}; "
                      f"kept steps: {self.steps()}")
    try:
      return self._checkpointer.restore(path, args=ocp.args.StandardRestore(self._abstract))
    except Exception as e:  # pylint: disable=broad-except
      first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
      raise UserError(f"cannot read the checkpoint at step {step} ({first}); its models may differ "
                      "from this gan_jax version's, or the folder is damaged") from None

  def latest_or(self, step: int | None) -> int:
    """`step`, or the newest checkpoint's step when it is None."""
    steps = self.steps()
    if step is None:
      return steps[-1]
    if step not in steps:
      raise UserError(f"--step={step}: no finished checkpoint there; kept steps: {steps}")
    return step

  def training_images(self) -> np.ndarray:
    """The training split as float32 [N, ...] in model scale (what G learns to imitate)."""
    if self.data.pipeline == "stream":  # nothing was loaded: read the split
      return pipeline.load_split(self.config.data, "train")
    x = self.data.arrays["train"]
    return np.asarray(self.data.sampler.to_float(x)) if self.data.sampler.scale else x

  def eval_splits(self, num_validation: int, num_test: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation, test) flattened float32, in the space the generator's samples live in.

    For MNIST these are the paper's: the first `num_validation` of train[50000:] and the first
    `num_test` test images.
    """
    validation = pipeline.load_split(self.config.data, "validation")[:num_validation]
    test = pipeline.load_split(self.config.data, "test")[:num_test]
    return validation.reshape(len(validation), -1), test.reshape(len(test), -1)

  def samples(self, state, n: int, seed: int = 0) -> np.ndarray:
    """`n` samples of the generator in `state`, flattened float32 [n, d]; the same for the same seed."""
    return self.generate(state, n, seed).reshape(n, -1).astype(np.float32)

  def generate(self, state, n: int, seed: int = 0) -> np.ndarray:
    """`n` samples of the generator in `state`, shaped as the model outputs them (model scale); the
    moving average of G when the run kept one (`ema`), a uniform class per sample for a conditional G."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), rng.READER)
    return gan_lib.generate_samples(self.gan, state, key, n)


@dataclasses.dataclass
class TrainedRun:
  """A run's config and the state of one checkpoint, with a sampler (`gan_jax.load_run`)."""

  reader: RunReader
  step: int
  state: gan_lib.GANState

  @property
  def config(self) -> ml_collections.ConfigDict:
    return self.reader.config

  def sample(self, n: int, seed: int = 0) -> np.ndarray:
    """`n` samples for showing: images [n, H, W, C] with values in [0, 1] for image runs (whatever
    the data's scale), the model's raw output [n, ...] for toy data. The same seed, the same samples."""
    x = self.reader.generate(self.state, n, seed)
    data = self.reader.data
    if data.image_shape is None:
      return x
    return scale.to_unit(x, data.image_shape, data.display_scale)


def load_run(workdir: str, step: int | str | None = None, data_dir: str | None = None) -> TrainedRun:
  """The run in `workdir` at checkpoint `step` (default: the newest).

  Args:
    workdir: the run's folder (the --workdir given to `python -m gan_jax.main`).
    step: a kept checkpoint's step, None for the newest, or 'best' for the best one kept by the
      evaluation during training.
    data_dir: overrides the config's `data.dir` (the data may have moved since training).

  Raises:
    UserError: not a run folder, no finished checkpoint (at `step`), or data that cannot be loaded.
  """
  best = step == "best"
  reader = RunReader(workdir, data_dir, best=best)
  step = reader.latest_or(None if best else step)
  return TrainedRun(reader, step, reader.restore(step))
