"""Reads a trained run from its workdir: the config and the state of any kept checkpoint.

Read-only on purpose, because training may still be writing to the same folder. The training loop's
`Checkpointer` deletes unfinished checkpoint folders when it opens (`cleanup_tmp_directories`), which
would destroy the checkpoint a live run is writing; here each finished step's folder is read directly
with Orbax's handlers, and folders still being written (not yet renamed to their step) are ignored.

  reader = RunReader("runs/mnist_paper")            # config of the newest checkpoint, models, data
  for step in reader.steps():
    state = reader.restore(step)                     # a GANState on the host
"""

import json
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from gan_jax import config as config_lib
from gan_jax import train
from gan_jax.data import pipeline
from gan_jax.errors import UserError


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def checkpoint_steps(workdir: str) -> list[int]:
  """The steps of the finished checkpoints in `workdir`, oldest first."""
  directory = checkpoint_dir(workdir)
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


def read_config(workdir: str, step: int) -> ml_collections.ConfigDict:
  """The config saved with the checkpoint at `step`, completed with today's defaults."""
  path = os.path.join(checkpoint_dir(workdir), str(step), "config", "metadata")
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

  def __init__(self, workdir: str, data_dir: str | None = None):
    """Reads the newest checkpoint's config and builds the run's data and models.

    Args:
      workdir: the run's folder (as passed to `gan_jax.main --workdir`).
      data_dir: overrides the config's `data.dir` (the data may have moved since training).

    Raises:
      UserError: no finished checkpoint in `workdir`, or the data cannot be loaded.
    """
    self.workdir = os.path.abspath(workdir)
    if not os.path.isdir(self.workdir):
      raise UserError(f"--workdir={workdir} does not exist; pass the folder of a trained run "
                      "(the --workdir given to gan_jax.main)")
    steps = checkpoint_steps(workdir)
    if not steps:
      raise UserError(f"no finished checkpoint in {checkpoint_dir(workdir)}; train first "
                      "(python -m gan_jax.main --config=... --workdir=...) or wait for the first one")
    self.config = read_config(workdir, steps[-1])
    if data_dir:
      self.config.data.dir = data_dir
    if self.config.data.source == "toy":
      raise UserError(f"{workdir} was trained on toy data ({self.config.data.name}); the paper's "
                      "image evaluations need an image run (figure1 draws toy runs)")
    self.data, self.gan, self.template = train.setup(self.config)
    self._abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, self.template)
    self._checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())

  def steps(self) -> list[int]:
    """Finished checkpoints now on disk (new ones appear while a run trains)."""
    return checkpoint_steps(self.workdir)

  @property
  def steps_per_epoch(self) -> int:
    return self.data.sampler.steps_per_epoch(self.config.batch_size)

  def epoch(self, step: int) -> float:
    return round(step / self.steps_per_epoch, 2)

  def restore(self, step: int):
    """The `GANState` saved at `step`."""
    path = os.path.join(checkpoint_dir(self.workdir), str(step), "state")
    if step not in self.steps():
      raise UserError(f"no finished checkpoint at step {step} in {checkpoint_dir(self.workdir)}; "
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
    from gan_jax import gan as gan_lib  # pylint: disable=import-outside-toplevel

    key = jax.random.fold_in(jax.random.PRNGKey(seed), _SAMPLES_STREAM)
    x = gan_lib.generate_samples(self.gan, state.g_params, key, n)
    return x.reshape(n, -1).astype(np.float32)


# Keeps the evaluation samples apart from the noise streams training uses.
_SAMPLES_STREAM = 2014


def device_description() -> str:
  """What ran the computation, for the record: e.g. 'cpu (2 cores)' or 'gpu: NVIDIA H100 80GB HBM3'."""
  backend = jax.default_backend()
  if backend == "cpu":
    return f"cpu ({os.cpu_count()} cores)"
  return f"{backend}: {jax.devices()[0].device_kind}"


def write_text(path: str, text: str) -> str:
  """Writes `text` to `path` atomically, creating its folder; returns the path."""
  try:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, path)
  except OSError as e:
    raise UserError(f"cannot write {path} ({e.strerror}); choose a writable path") from None
  return path
