"""A run's folder: one run at a time in it, and nothing of a user's lost by starting one there.

`open_workdir(path, overwrite)` is what the trainer calls before it writes anything:

  lock       `WORKDIR/.lock` is held (an exclusive `flock`) for the run's life; a second run on the
             same folder is refused with one line naming the holder's pid and host. The kernel drops
             the lock when its process dies, even by kill -9, so a stale lock is taken over, with a
             warning that names the dead holder. Multi-host runs: process 0 locks (the folder is
             shared).
  marker     `WORKDIR/run.json` says that gan_jax made the folder; `checkpointed` turns true at the
             first checkpoint.
  refusal    a folder that is not empty and is neither a run with checkpoints (to resume) nor one of
             ours that stopped before its first checkpoint (to start again) is refused: a user's
             folder, or a run whose `checkpoints/` was moved away. With `overwrite=True` (the
             command line's `--overwrite`) its entries are moved, not deleted, to
             `WORKDIR/previous_<time>/`, and the run starts there.
"""

import datetime
import fcntl
import json
import os
import socket

from absl import logging

from gan_jax.errors import UserError
from gan_jax.run import files

LOCK = ".lock"
MARKER = "run.json"


class WorkdirLock:
  """An exclusive lock on a folder, released by `release()` or by the process's death."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK)
    self._fd = None

  def acquire(self):
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_holder(fd)
      os.close(fd)
      raise UserError(f"{os.path.dirname(self.path)} is in use by another run (pid {holder.get('pid', '?')} on "
                      f"host {holder.get('host', '?')}, since {holder.get('since', '?')}): wait for it to "
                      "finish, stop it, or pass another --workdir") from None
    previous = _read_holder(fd)
    if previous.get("pid") and not previous.get("released"):
      logging.warning("taking over the lock of %s left by pid %s on host %s, which is no longer running",
                      os.path.dirname(self.path), previous.get("pid"), previous.get("host"))
    _write_holder(fd, {"pid": os.getpid(), "host": socket.gethostname(),
                       "since": datetime.datetime.now().isoformat(timespec="seconds")})
    self._fd = fd
    return self

  def release(self):
    if self._fd is not None:
      _write_holder(self._fd, {"released": True})
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


def _read_holder(fd) -> dict:
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    return json.loads(os.read(fd, 4096).decode() or "{}")
  except (OSError, ValueError):
    return {}


def _write_holder(fd, holder: dict):
  os.ftruncate(fd, 0)
  os.lseek(fd, 0, os.SEEK_SET)
  os.write(fd, json.dumps(holder).encode())


def _entries(workdir: str) -> list[str]:
  return sorted(e for e in os.listdir(workdir) if e != LOCK)


def _has_checkpoints(workdir: str) -> bool:
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any(e.isdigit() for e in os.listdir(directory))


def _marker(workdir: str) -> dict | None:
  try:
    with open(os.path.join(workdir, MARKER), encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def open_workdir(workdir: str, overwrite: bool = False, main_process: bool = True):
  """Creates or checks `workdir` and locks it for this run.

  Returns:
    (absolute path, the lock to release at the end or None, whether the run resumes a checkpoint).

  Raises:
    UserError: no workdir, one that cannot be written, one in use by another run, or one holding
      files that are not a resumable run (without `overwrite`).
  """
  if not workdir:
    raise UserError("no workdir given: pass --workdir=DIR (a new folder starts a run, an old one resumes it)")
  workdir = os.path.abspath(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    if not main_process:  # process 0 of a multi-host run checks, locks and marks the shared folder
      return workdir, None, _has_checkpoints(workdir)
    held = WorkdirLock(workdir).acquire()
  except OSError as e:
    raise UserError(f"cannot write to workdir {workdir} ({e.strerror}): choose a writable --workdir") from None
  try:
    resuming = _has_checkpoints(workdir)
    marker = _marker(workdir)
    ours_before_first_checkpoint = marker is not None and not marker.get("checkpointed")
    entries = _entries(workdir)
    if entries and not resuming and not ours_before_first_checkpoint:
      if not overwrite:
        what = ("a run whose checkpoints are gone" if marker else "files that are not a gan_jax run")
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise UserError(f"{workdir} holds {what} ({shown}) and no checkpoint to resume from; pass "
                        "--overwrite to start a new run there (the old entries are moved to "
                        "previous_<time>/ inside it, not deleted), or choose another --workdir")
      aside = os.path.join(workdir, "previous_" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
      os.makedirs(aside)
      for entry in entries:
        if not entry.startswith("previous_"):
          os.replace(os.path.join(workdir, entry), os.path.join(aside, entry))
      logging.warning("--overwrite: moved the earlier contents of %s to %s", workdir, aside)
      marker = None
    if marker is None:
      write_marker(workdir, checkpointed=resuming)
  except BaseException:
    held.release()
    raise
  return workdir, held, resuming


def write_marker(workdir: str, checkpointed: bool):
  """Records that `workdir` is a gan_jax run (and whether it has saved a checkpoint yet)."""
  files.atomic_write_json(os.path.join(workdir, MARKER), {"gan_jax_run": True, "checkpointed": checkpointed})
