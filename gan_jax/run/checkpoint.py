"""Checkpoints with Orbax: the whole `GANState` and the run's config, in `WORKDIR/checkpoints`.

A checkpoint holds both networks' parameters and optimizer states, the step, the PRNG key and the
data-order position (`GANState`), plus the config as JSON. Orbax writes each checkpoint to a
temporary folder and renames it when complete, so a process killed mid-save leaves the previous
checkpoints as they were; the next run deletes the unfinished folder (`cleanup_tmp_directories`).

On restore, a checkpoint that cannot be read is skipped, with a warning, for the one before it; the
unreadable ones are then moved to `WORKDIR/checkpoints_unreadable/` (Orbax never saves a step at or
below its latest one, so leaving them would block every later save). If none can be read, the
restore is refused.

A checkpoint is resumed only by a config that trains the same thing. Keys that control how a run is
driven (its length, logging, parallelism) may change; anything else that differs is refused, naming
the keys.

Multi-host: every process calls `save` and `restore` with the same arguments (Orbax synchronises
them and lets process 0 write the metadata); `directory` must be on a filesystem all hosts share.
"""

import json
import logging as py_logging
import os

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from gan_jax import config as config_lib
from gan_jax.errors import UserError

# Keys that may differ between the run that saved a checkpoint and the run that resumes it.
RESUMABLE_KEYS = ("num_steps", "steps_per_dispatch", "log_every", "sample_every", "checkpoint_every",
                  "keep_checkpoints", "num_samples", "parallel.", "data.dir")

py_logging.getLogger("absl").setLevel(py_logging.INFO)
for _name in ("orbax", "orbax.checkpoint"):
  py_logging.getLogger(_name).setLevel(py_logging.WARNING)


class _QuietOrbax(py_logging.Filter):
  """Drops Orbax's INFO lines (dozens per save); its warnings and errors, and our lines, pass."""

  _ORBAX_DIR = os.path.dirname(os.path.dirname(os.path.abspath(ocp.__file__))) + os.sep

  def filter(self, record):
    return record.levelno >= py_logging.WARNING or not record.pathname.startswith(self._ORBAX_DIR)


# Orbax logs through absl, i.e. the Python logger 'absl', so filtering its own loggers is not enough.
if not any(isinstance(f, _QuietOrbax) for f in py_logging.getLogger("absl").filters):
  py_logging.getLogger("absl").addFilter(_QuietOrbax())


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
  defaults = _flatten(config_to_json(config_lib.base_config()))
  diff = []
  for key in sorted(set(a) | set(b)):
    if any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE_KEYS):
      continue
    if key not in a and key in defaults and b.get(key) == defaults[key]:
      continue  # a key added after the checkpoint was written, at its default: the same run
    if a.get(key, "<missing>") != b.get(key, "<missing>"):
      diff.append(f"{key}: {a.get(key, '<missing>')!r} -> {b.get(key, '<missing>')!r}")
  return diff


class Checkpointer:
  """Saves and restores a run's `GANState` and config."""

  def __init__(self, directory: str, keep: int = 3):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max(keep, 1), create=True,
                                           enable_async_checkpointing=False,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "config"))

  def latest_step(self):
    """The newest checkpoint's step, or None."""
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state, config: ml_collections.ConfigDict) -> None:
    """Saves `state` (a host pytree) at `step`; returns once it is on disk. A saved step is kept."""
    if step in self.manager.all_steps():
      return
    self.manager.save(step, force=True, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config_to_json(config))))
    self.manager.wait_until_finished()

  def restore(self, template, config: ml_collections.ConfigDict):
    """The newest readable checkpoint as a state shaped like `template`, or None when there is none.

    Args:
      template: a state with the shapes and dtypes to restore (a fresh `GAN.init`).
      config: the current run's config, compared with the checkpoint's.

    Returns:
      The restored state, or None for a directory without checkpoints.

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
          where = f"the checkpoint's (step {step}) in {os.path.dirname(self.directory)}"
          raise UserError(f"the config differs from {where} in {'; '.join(diff)}: put the checkpoint's "
                          "values back to resume, or pass another --workdir to start a new run")
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract)))
      except UserError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        msg = msg if len(msg) <= 160 else msg[:157] + "..."  # TensorStore appends its whole spec
        logging.warning("checkpoint at step %d in %s cannot be read (%s); trying an older one",
                        step, self.directory, msg)
        errors.append(f"step {step}: {msg}")
        continue
      if errors:
        self._set_aside([s for s in steps if s > step])
      return restored["state"]
    raise UserError(f"no readable checkpoint in {self.directory} ({'; '.join(errors)}): "
                    "move that folder away to start afresh")

  def _set_aside(self, steps):
    """Moves unreadable checkpoints out of Orbax's way, keeping them for inspection."""
    if jax.process_index() == 0:
      aside = self.directory + "_unreadable"
      os.makedirs(aside, exist_ok=True)
      for step in steps:
        if not os.path.isdir(os.path.join(self.directory, str(step))):
          continue
        dst, n = os.path.join(aside, str(step)), 1
        while os.path.exists(dst):
          dst, n = os.path.join(aside, f"{step}.{n}"), n + 1
        os.replace(os.path.join(self.directory, str(step)), dst)
        logging.warning("moved the unreadable checkpoint at step %d to %s", step, dst)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("gan_jax_checkpoints_set_aside")
    self.manager.reload()

  def close(self):
    self.manager.close()
