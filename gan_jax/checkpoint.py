"""Checkpoints with Orbax: the whole `GANState` and the run's config, in `WORKDIR/checkpoints`.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a process killed
mid-save leaves the previous checkpoints as they were. On restore, a checkpoint that cannot be read is
skipped, with a warning, for the one before it.

A checkpoint is resumed only by a config that trains the same thing. Keys that control how a run is
driven (its length, logging, parallelism) may change; anything else that differs is refused, naming
the keys.
"""

import json
import logging as py_logging
import os

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from gan_jax.errors import UserError

# Keys that may differ between the run that saved a checkpoint and the run that resumes it.
RESUMABLE_KEYS = ("num_steps", "steps_per_dispatch", "log_every", "sample_every", "checkpoint_every",
                  "keep_checkpoints", "num_samples", "parallel.", "data.dir")

py_logging.getLogger("absl").setLevel(py_logging.INFO)
for _name in ("orbax", "orbax.checkpoint"):
  py_logging.getLogger(_name).setLevel(py_logging.WARNING)


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_to_json(config: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON data (tuples become lists)."""
  return json.loads(config.to_json())


def config_differences(saved: dict, current: dict) -> list[str]:
  """Keys whose values differ and that a resumed run may not change, sorted."""
  a, b = _flatten(saved), _flatten(current)
  diff = []
  for key in sorted(set(a) | set(b)):
    if any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE_KEYS):
      continue
    if a.get(key, "<missing>") != b.get(key, "<missing>"):
      diff.append(f"{key}: {a.get(key, '<missing>')!r} -> {b.get(key, '<missing>')!r}")
  return diff


class Checkpointer:
  """Saves and restores a run's `GANState` and config."""

  def __init__(self, directory: str, keep: int = 3):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max(keep, 1), create=True,
                                           enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "config"))

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step: int, state, config: ml_collections.ConfigDict) -> None:
    """Saves `state` (a host pytree) at `step`; returns once it is on disk."""
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config_to_json(config))))
    self.manager.wait_until_finished()

  def restore(self, template, config: ml_collections.ConfigDict):
    """The newest readable checkpoint as a state shaped like `template`, or None when there is none.

    Raises:
      UserError: the config differs from the checkpoint's in keys a resume may not change, or no
        checkpoint can be read.
    """
    steps = sorted(self.manager.all_steps(), reverse=True)
    if not steps:
      return None
    current = config_to_json(config)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    errors = []
    for step in steps:
      try:
        saved = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        diff = config_differences(saved["config"], current)
        if diff:
          raise UserError(f"the config differs from the checkpoint's in {'; '.join(diff)}: "
                          f"use a new --workdir, or the original values, to resume {self.directory}")
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract)))
        return restored["state"]
      except UserError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        logging.warning("checkpoint at step %d cannot be read (%s); trying an older one", step, msg)
        errors.append(f"step {step}: {msg}")
    raise UserError(f"no readable checkpoint in {self.directory} ({'; '.join(errors)}): "
                    "move the folder away to start afresh")

  def close(self):
    self.manager.close()
