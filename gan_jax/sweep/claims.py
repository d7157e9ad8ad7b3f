"""One sweep split over several jobs sharing its workdir: shards, and claims that keep two jobs from
training the same run.

  python -m gan_jax.sweep --sweep=FILE.py --workdir=/shared/runs/x --shard=0/3   # job 1 of 3
  python -m gan_jax.sweep --sweep=FILE.py --workdir=/shared/runs/x --shard=1/3   # job 2 of 3, ...
  python -m gan_jax.sweep --sweep=FILE.py --workdir=/shared/runs/x               # afterwards: the report

Under a SLURM job array the shard comes from SLURM_ARRAY_TASK_ID and the array's size
(`shard_from_env`), so one `sbatch --array=0-2` script needs no --shard.

Before training a run, a job claims it: it creates runs/CELL/seed_S/claim.json with
`os.open(O_CREAT | O_EXCL)`, which exactly one creator wins, holding its pid, host, shard and time.
The claim is removed once the run's result.json is written (or the job stops). A job skips runs
claimed by another live job. A claim is stale, and is taken over with a warning, when its process
ran on this host and is gone, or when its file was not refreshed for `timeout_s` (the holder
touches its claims after every dispatch, so a slow run stays claimed). Taking over goes through a
second O_EXCL file (claim.json.takeover), so two jobs never both take over one stale claim.

Every run a job starts training is appended as one line to WORKDIR/claims.jsonl (run, shard, host,
pid, time, whether its claim was taken over): a record of which job trained what.
"""

import dataclasses
import json
import os
import socket
import time
import uuid

from absl import logging

from gan_jax.errors import UserError
from gan_jax.run import files

CLAIM_FILE = "claim.json"
CLAIMS_LOG = "claims.jsonl"
DEFAULT_TIMEOUT_S = 3600.0
REFRESH_EVERY_S = 30.0  # how often a holder touches its claims; far below any sensible timeout
TAKEOVER_STALE_S = 60.0  # a takeover lock lives milliseconds; one this old was left by a crash


# ---------------------------------------------------------------------------- shards
@dataclasses.dataclass(frozen=True)
class Shard:
  """Job `index` of `count` (0-based) splitting one sweep."""

  index: int
  count: int

  def __str__(self) -> str:
    return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
  """A `Shard` from 'i/N' (0 <= i < N); a UserError otherwise."""
  index, sep, count = str(text).partition("/")
  try:
    shard = Shard(int(index), int(count))
  except ValueError:
    shard = None
  if not sep or shard is None or not 0 <= shard.index < shard.count:
    raise UserError(f"--shard={text} is not i/N with 0 <= i < N (job i of N, counted from 0), e.g. --shard=0/4")
  return shard


def shard_from_env(environ) -> Shard | None:
  """The shard of a SLURM job-array task, or None outside an array.

  The index is (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP, so arrays
  counted from 1 or with a step work too; the count is SLURM_ARRAY_TASK_COUNT, or, where that is
  not set, (MAX - MIN) / STEP + 1.
  """
  if "SLURM_ARRAY_TASK_ID" not in environ:
    return None

  def number(name, default=None):
    value = environ.get(name, default)
    try:
      return int(value)
    except (TypeError, ValueError):
      raise UserError(f"environment variable {name}={value!r} is not an integer; unset it or pass "
                      "--shard=i/N") from None

  task, low, step = number("SLURM_ARRAY_TASK_ID"), number("SLURM_ARRAY_TASK_MIN", 0), number("SLURM_ARRAY_TASK_STEP", 1)
  if "SLURM_ARRAY_TASK_COUNT" in environ:
    count = number("SLURM_ARRAY_TASK_COUNT")
  elif "SLURM_ARRAY_TASK_MAX" in environ:
    count = (number("SLURM_ARRAY_TASK_MAX") - low) // max(step, 1) + 1
  else:
    raise UserError("SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT or SLURM_ARRAY_TASK_MAX; "
                    "pass --shard=i/N")
  index = (task - low) // max(step, 1)
  if not 0 <= index < count:
    raise UserError(f"SLURM array task {task} is not one of {count} tasks from {low} in steps of {step}; "
                    "pass --shard=i/N")
  return Shard(index, count)


def resolve_shard(flag: str | None, environ) -> Shard | None:
  """--shard if given, else the SLURM array's shard, else None (the whole sweep in one job)."""
  return parse_shard(flag) if flag else shard_from_env(environ)


# ---------------------------------------------------------------------------- claims
def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # someone else's process
  return True


def _read(path: str):
  """(claim dict or None if unreadable, raw bytes or None if missing)."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    return None, None
  try:
    return json.loads(raw), raw
  except ValueError:
    return None, raw  # being written, or cut short by a crash: judged by its age only


class Claims:
  """The claims one job holds in a sweep's workdir."""

  def __init__(self, workdir: str, shard: str = "0/1", timeout_s: float = DEFAULT_TIMEOUT_S):
    if not timeout_s > 0:
      raise UserError(f"--claim_timeout must be > 0 seconds, got {timeout_s}")
    self.workdir, self.shard, self.timeout_s = workdir, shard, float(timeout_s)
    self.host, self.pid = socket.gethostname(), os.getpid()
    self.token = uuid.uuid4().hex  # tells this job's claims from an earlier job with a reused pid
    self.held = {}  # run dirname -> (claim path, whether it was taken over)
    self._refreshed = time.monotonic()

  def path(self, run) -> str:
    return os.path.join(self.workdir, run.dirname, CLAIM_FILE)

  def _payload(self, run) -> bytes:
    return json.dumps({"run": run.dirname, "shard": self.shard, "host": self.host, "pid": self.pid,
                       "token": self.token, "time": time.time()}).encode("utf-8")

  def stale_reason(self, claim: dict | None, path: str) -> str | None:
    """Why the claim at `path` (its contents `claim`) may be taken over, or None while it is live."""
    try:
      age = time.time() - os.path.getmtime(path)
    except FileNotFoundError:
      return None  # released meanwhile: the O_EXCL create decides
    if claim and claim.get("host") == self.host and isinstance(claim.get("pid"), int):
      if claim["pid"] == self.pid and claim.get("token") != self.token:
        return f"left by an earlier sweep in this process ({self.pid})"
      if claim["pid"] != self.pid and not _alive(claim["pid"]):
        return f"its process {claim['pid']} on {self.host} is gone"
    if age > self.timeout_s:
      return f"not refreshed for {age:.0f} s (timeout {self.timeout_s:.0f} s)"
    return None

  def try_claim(self, run) -> bool:
    """Claims `run` for this job; False if another live job holds it."""
    if run.dirname in self.held:
      return True
    path = self.path(run)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return self._take_over(run, path)
    try:
      os.write(fd, self._payload(run))
      os.fsync(fd)
    finally:
      os.close(fd)
    self.held[run.dirname] = (path, False)
    return True

  def _take_over(self, run, path: str) -> bool:
    claim, raw = _read(path)
    if raw is None:  # released between our create and our read: try once more
      return self.try_claim(run)
    reason = self.stale_reason(claim, path)
    if reason is None:
      return False
    lock = path + ".takeover"
    try:
      fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      try:
        if time.time() - os.path.getmtime(lock) > TAKEOVER_STALE_S:
          os.remove(lock)  # left by a job that died mid-takeover; the next attempt proceeds
      except FileNotFoundError:
        pass
      return False
    os.close(fd)
    try:
      if _read(path)[1] != raw:  # changed since we judged it: someone else's now
        return False
      files.atomic_write_bytes(path, self._payload(run))  # replaced in place, never absent
    finally:
      os.remove(lock)
    who = f"shard {claim.get('shard')} on {claim.get('host')}, pid {claim.get('pid')}" if claim else "unreadable"
    logging.warning("taking over the claim of %s (%s): %s", run.dirname, who, reason)
    print(f"  taking over the stale claim of {run.dirname} ({who}): {reason}", flush=True)
    self.held[run.dirname] = (path, True)
    return True

  def record(self, run) -> None:
    """Appends to the claims log that this job trains the claimed `run`."""
    line = json.dumps({"run": run.dirname, "shard": self.shard, "host": self.host, "pid": self.pid,
                       "time": round(time.time(), 3), "took_over": self.held[run.dirname][1]}) + "\n"
    # One write(2) to a file opened O_APPEND: lines from concurrent jobs do not interleave.
    fd = os.open(os.path.join(self.workdir, CLAIMS_LOG), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      os.write(fd, line.encode("utf-8"))
    finally:
      os.close(fd)

  def release(self, run) -> None:
    """Gives up the claim on `run` (after its result is written, or when stopping)."""
    path, _ = self.held.pop(run.dirname, (None, None))
    if path is None:
      return
    claim, _ = _read(path)
    if claim and claim.get("token") == self.token:  # not if another job took it over meanwhile
      try:
        os.remove(path)
      except FileNotFoundError:
        pass

  def release_all(self) -> None:
    for dirname in list(self.held):
      self.release(_Named(dirname))

  def refresh(self, force: bool = False) -> None:
    """Touches the held claims (at most every REFRESH_EVERY_S), so that they do not go stale."""
    now = time.monotonic()
    if not force and now - self._refreshed < REFRESH_EVERY_S:
      return
    self._refreshed = now
    for path, _ in self.held.values():
      try:
        os.utime(path)
      except FileNotFoundError:
        pass


@dataclasses.dataclass(frozen=True)
class _Named:
  """Stands in for a run where only its folder is needed."""

  dirname: str
