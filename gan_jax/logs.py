"""Metric logs (JSON lines and TensorBoard) and progress reporting.

Logs survive resumption exactly: a run resumed from the checkpoint at step c first drops every JSON
line after step c and opens its TensorBoard writer with `purge_step=c + 1`, which tells TensorBoard to
discard events after c written by the interrupted process. Each step then appears exactly once.

Only process 0 writes; the other processes of a multi-host run get a writer that does nothing.
"""

import json
import math
import os
import sys
import time

import jax
from absl import logging


class MetricWriter:
  """Writes scalar metrics to `metrics.jsonl` and TensorBoard event files in `workdir`."""

  def __init__(self, workdir: str, start_step: int = 0, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if not self.enabled:
      return
    self._truncate_after(start_step)
    self._file = open(self.path, "a", encoding="utf-8")
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"),
                               purge_step=start_step + 1 if start_step else None)

  def _truncate_after(self, step: int):
    if not os.path.exists(self.path):
      return
    with open(self.path, encoding="utf-8") as f:
      lines = [line for line in f if line.strip()]
    kept = []
    for line in lines:
      try:
        if json.loads(line)["step"] <= step:
          kept.append(line)
      except (ValueError, KeyError):
        break  # a line cut short by a kill: everything after it is newer than any checkpoint
    tmp = self.path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.writelines(kept)
    os.replace(tmp, self.path)

  def write(self, step: int, metrics: dict):
    if not self.enabled:
      return
    record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    if self._tb is not None:
      for k, v in metrics.items():
        self._tb.add_scalar(k, float(v), int(step))

  def close(self):
    if self.enabled:
      self._file.close()
      if self._tb is not None:
        self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
  """The records of `workdir/metrics.jsonl`, in order."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


class Progress:
  """A tqdm bar (it/s, ETA) on a terminal; plain periodic log lines otherwise."""

  def __init__(self, total: int, initial: int, every_s: float = 10.0):
    self.total, self.step = total, initial
    self.enabled = jax.process_index() == 0
    self._bar = None
    self._t0, self._s0 = time.perf_counter(), initial
    self._last_print, self._every_s = 0.0, every_s
    if self.enabled and sys.stderr.isatty():
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True)

  def restart_clock(self):
    """Starts timing now (call after compilation, so it/s measures training alone)."""
    self._t0, self._s0 = time.perf_counter(), self.step

  def update(self, step: int, postfix: dict | None = None):
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.update(step - self.step)
      if postfix:
        self._bar.set_postfix({k: f"{v:.3f}" for k, v in postfix.items()}, refresh=False)
    self.step = step
    now = time.perf_counter()
    if self._bar is None and (now - self._last_print >= self._every_s or step == self.total):
      self._last_print = now
      rate = (step - self._s0) / max(now - self._t0, 1e-9)
      eta = (self.total - step) / rate if rate > 0 else math.inf
      extra = " ".join(f"{k}={v:.3f}" for k, v in (postfix or {}).items())
      logging.info("step %d/%d  %.1f it/s  ETA %s  %s", step, self.total, rate, _fmt_eta(eta), extra)

  def close(self):
    if self._bar is not None:
      self._bar.close()


def _fmt_eta(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h:d}:{m:02d}:{s:02d}"
