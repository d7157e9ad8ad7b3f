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

import contextlib
import errno
import json
import logging as py_logging
import os
import shutil
import sys

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from gan_jax import config as config_lib
from gan_jax.errors import UserError

# Keys that may differ between the run that saved a checkpoint and the run that resumes it: the
# loop's drivers, the run's length and where its data lies.
RESUMABLE_KEYS = config_lib.DRIVER_KEYS + ("num_steps", "data.dir")
# Optimizer hyperparameters a resumed run may change (say, a lower learning rate after a non-finite
# loss): they change no shape. The run logs and records each change (`ADJUSTMENTS_FILE`).
ADJUSTABLE_KEYS = ("optimizer.g_lr", "optimizer.d_lr", "optimizer.b1", "optimizer.b2", "optimizer.momentum",
                   "optimizer.min_lr", "optimizer.decay_factor", "loss.d_weight", "loss.penalty_weight",
                   "precision")
# The item of a streamed run's checkpoints holding its Grain iterator's position.
DATA_ITERATOR = "data_iterator"
# Orbax messages that mean the disk, not the checkpoint, is the problem.
_DISK_ERRORS = ("No space left on device", "RESOURCE_EXHAUSTED", "Disk quota exceeded", "Read-only file system",
                "Permission denied", "os_error_code='28'")

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


def config_to_json(config: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON data (tuples become lists)."""
  return json.loads(config.to_json())


def config_differences(saved: dict, current: dict, allowed=RESUMABLE_KEYS + ADJUSTABLE_KEYS) -> list[str]:
  """Keys whose values differ, but for those in `allowed`, sorted; as 'key: old -> new'."""
  a, b = config_lib.flatten(saved), config_lib.flatten(current)
  defaults = config_lib.flatten(config_lib.base_config())
  diff = []
  for key in sorted(set(a) | set(b)):
    if config_lib.matches(key, allowed):
      continue
    if key not in a and key in defaults and b.get(key) == defaults[key]:
      continue  # a key added after the checkpoint was written, at its default: the same run
    if a.get(key, "<missing>") != b.get(key, "<missing>"):
      diff.append(f"{key}: {a.get(key, '<missing>')!r} -> {b.get(key, '<missing>')!r}")
  return diff


class _OrbaxErrorsFilter(py_logging.Filter):
  """Drops Orbax's own error records (tracebacks from its worker threads) while gan_jax reports the
  failure itself, as one line."""

  def filter(self, record):
    return not record.pathname.startswith(_QuietOrbax._ORBAX_DIR)  # pylint: disable=protected-access


@contextlib.contextmanager
def orbax_errors_silenced():
  f = _OrbaxErrorsFilter()
  logger = py_logging.getLogger("absl")
  logger.addFilter(f)
  try:
    yield
  finally:
    logger.removeFilter(f)


def _quiet_after_failed_save():
  """After a failed save, TensorStore's native threads still call into the asyncio loop Orbax has
  closed, and Python prints each 'Event loop is closed' RuntimeError as a traceback; the failure is
  already reported as one line, so these are dropped (every other exception is printed as before)."""
  def is_loop_closed(exc):
    return isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc)

  previous_hook, previous_unraisable = sys.excepthook, sys.unraisablehook

  def excepthook(kind, value, tb):
    if not is_loop_closed(value):
      previous_hook(kind, value, tb)

  def unraisablehook(info):
    if not is_loop_closed(info.exc_value):
      previous_unraisable(info)

  sys.excepthook, sys.unraisablehook = excepthook, unraisablehook


def _path_key(path) -> tuple:
  """A pytree path as names alone, so a dataclass's attributes and the saved dict's keys agree."""
  return tuple(str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in path)


def disk_error(e: BaseException):
  """A short reason if `e` (from Orbax or the OS) means the disk is full or not writable, else None."""
  if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
    return e.strerror
  text = str(e)
  for marker in _DISK_ERRORS:
    if marker in text:
      return "no space left on device" if marker in ("RESOURCE_EXHAUSTED", "os_error_code='28'") else marker.lower()
  return None


class Checkpointer:
  """Saves and restores a run's `GANState` and config."""

  def __init__(self, directory: str, keep: int = 3):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max(keep, 1), create=True,
                                           enable_async_checkpointing=False,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "config", DATA_ITERATOR))
    self.restored_step = None  # after `restore`: the step of the checkpoint it read
    self.adjusted = []  # after `restore`: the ADJUSTABLE_KEYS changed since the checkpoint, as 'key: old -> new'


  def latest_step(self):
    """The newest checkpoint's step, or None."""
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state, config: ml_collections.ConfigDict, data_iterator=None) -> None:
    """Saves `state` (a host pytree) at `step`; returns once it is on disk. A saved step is kept.

    A streamed run passes its Grain `data_iterator`: its position goes into the checkpoint too (one
    file per process, Grain's Orbax handler).

    Raises:
      UserError: the disk is full or not writable; the unfinished checkpoint is removed, the earlier
        ones are intact.
    """
    if step in self.manager.all_steps():
      return
    try:
      with orbax_errors_silenced():
        items = dict(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config_to_json(config)))
        if data_iterator is not None:
          import grain  # pylint: disable=g-import-not-at-top  (streamed runs only)
          items[DATA_ITERATOR] = grain.checkpoint.CheckpointSave(data_iterator)
        self.manager.save(step, force=True, args=ocp.args.Composite(**items))
        self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      reason = disk_error(e)
      if reason is None:
        raise
      _quiet_after_failed_save()
      self._remove_unfinished(step)
      last = [s for s in self.all_steps() if s != step]
      kept = (f"the last good checkpoint (step {max(last)}) is intact" if last else "no checkpoint was kept")
      raise UserError(f"cannot save the checkpoint at step {step} in {self.directory}: {reason}; {kept}. "
                      "Free space (or fix the folder's permissions) and run the same command to "
                      "resume") from None

  def _remove_unfinished(self, step: int):
    """Deletes what a failed save of `step` left behind (Orbax's temporary folder)."""
    if jax.process_index() != 0:
      return
    for name in os.listdir(self.directory):
      if name == str(step) or name.startswith(f"{step}.orbax-checkpoint-tmp"):
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
    self.manager.reload()

  def shape_differences(self, step: int, template) -> list[str]:
    """'leaf: saved shape -> template shape' for every array of the checkpoint at `step` whose shape
    differs from `template`'s (a model or data of another shape); [] if they agree or are unknown."""
    try:
      with orbax_errors_silenced():
        meta = ocp.StandardCheckpointer().metadata(os.path.join(self.directory, str(step), "state"))
      tree = getattr(meta, "item_metadata", meta)
      saved = {_path_key(p): tuple(getattr(m, "shape", ()))
               for p, m in jax.tree_util.tree_flatten_with_path(getattr(tree, "tree", tree))[0]}
    except Exception:  # pylint: disable=broad-except
      return []
    diff = []
    for p, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
      k = _path_key(p)
      shape = tuple(getattr(leaf, "shape", ()))
      if k in saved and saved[k] != shape:
        diff.append(f"{'.'.join(k)}: {saved[k]} -> {shape}")
    return diff

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
    self.adjusted = []
    for step in steps:
      try:
        with orbax_errors_silenced():
          saved = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        diff = config_differences(saved["config"], current)
        if diff:
          where = f"the checkpoint's (step {step}) in {os.path.dirname(self.directory)}"
          raise UserError(f"the config differs from {where} in {'; '.join(diff)}: put the checkpoint's "
                          "values back to resume, or pass another --workdir to start a new run")
        shapes = self.shape_differences(step, template)
        if shapes:
          raise UserError(
              f"the checkpoint at step {step} in {self.directory} holds arrays of other shapes than this "
              f"config builds ({'; '.join(shapes[:3])}{'; ...' if len(shapes) > 3 else ''}): the data "
              f"(data.dir={config.data.get('dir', '')!r}) or the model differs from the run's; point "
              "--config.data.dir at the run's data, or pass another --workdir to start a new run")
        with orbax_errors_silenced():
          restored = self.manager.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract)))
        self.adjusted = config_differences(saved["config"], current, allowed=RESUMABLE_KEYS)
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
      self.restored_step = step
      return restored["state"]
    raise UserError(f"no readable checkpoint in {self.directory} ({'; '.join(errors)}): "
                    "move that folder away to start afresh")

  def restore_data_iterator(self, data_iterator) -> bool:
    """Sets a Grain iterator to the position saved with the checkpoint `restore` read.

    Returns False, leaving the iterator as it is, when that checkpoint has no position for this
    process (written by the device pipeline, or by a run with another process count).
    """
    if self.restored_step is None:
      return False
    where = os.path.join(self.directory, str(self.restored_step), DATA_ITERATOR,
                         f"process_{jax.process_index()}-of-{jax.process_count()}.json")
    if not os.path.exists(where):
      return False
    import grain  # pylint: disable=g-import-not-at-top
    with orbax_errors_silenced():
      self.manager.restore(self.restored_step, args=ocp.args.Composite(
          **{DATA_ITERATOR: grain.checkpoint.CheckpointRestore(data_iterator)}))
    return True

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
