"""Metric logs (JSON lines and TensorBoard) and progress reporting.

Logs survive resumption exactly. A run resumed from the checkpoint at step c first drops every record
after step c, from `metrics.jsonl` and from the TensorBoard event files (which it rewrites), then
appends; a run that starts afresh drops them all. So each log step appears exactly once, with the
values of the run that reached it from the checkpoint. The loop calls `flush` before each checkpoint,
so records up to a checkpoint's step are on disk before the checkpoint is.

Only process 0 writes; the other processes of a multi-host run get a writer that does nothing.
"""

import glob
import json
import math
import os
import socket
import struct
import sys
import time

import jax
from absl import logging
from tensorboardX.proto import event_pb2, summary_pb2
from tensorboardX.record_writer import masked_crc32c

from gan_jax.run import files


class MetricWriter:
  """Writes scalar metrics to `metrics.jsonl` and TensorBoard event files in `workdir`."""

  def __init__(self, workdir: str, start_step: int = 0, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.tb_dir = os.path.join(workdir, "tensorboard")
    self.last_record = {}  # the newest record kept from an earlier run, without its step
    self._tb = None
    if not self.enabled:
      return
    for path in glob.glob(os.path.join(self.tb_dir, "*.tmp*")):
      os.remove(path)  # a rewrite cut short by a kill; the file it was rewriting is intact
    self._truncate_after(start_step)
    for path in _event_files(workdir):
      _truncate_events(path, start_step)
    self._file = open(self.path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
    if tensorboard:
      self._tb = _EventFile(self.tb_dir)

  def _truncate_after(self, step: int):
    """Keeps the records up to `step`; lines that are not records are kept aside, with a warning."""
    if not os.path.exists(self.path):
      return
    with open(self.path, encoding="utf-8", errors="replace") as f:
      lines = [line if line.endswith("\n") else line + "\n" for line in f if line.strip()]
    kept, damaged = [], []
    for line in lines:
      try:
        record = json.loads(line)
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
          raise ValueError("not a record")
      except ValueError:
        damaged.append(line)  # a line cut short by a kill, or damaged on disk
        continue
      if record["step"] <= step:
        kept.append(line)
        self.last_record = {k: v for k, v in record.items() if k != "step"}
    if damaged:
      aside = self.path[:-len(".jsonl")] + ".damaged.jsonl"
      with open(aside, "a", encoding="utf-8") as f:
        f.writelines(damaged)
      logging.warning("%s: %d line(s) that are not metric records were moved to %s; the records "
                      "around them are kept", self.path, len(damaged), aside)
    if damaged or len(kept) != len(lines):
      files.atomic_write_text(self.path, "".join(kept))

  def write(self, step: int, metrics: dict, jsonl: bool = True):
    """Logs scalars at `step`: to metrics.jsonl (unless `jsonl` is False) and to TensorBoard."""
    if not self.enabled:
      return
    if jsonl:
      record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
      self._file.write(json.dumps(record) + "\n")
      self._file.flush()
    if self._tb is not None:
      self._tb.write_scalars(int(step), metrics)

  def write_image(self, step: int, tag: str, png_path: str):
    """Adds a PNG file (a sample grid) to TensorBoard's images at `step`."""
    if not self.enabled or self._tb is None:
      return
    from PIL import Image  # pylint: disable=g-import-not-at-top
    with open(png_path, "rb") as f:
      png = f.read()
    with Image.open(png_path) as im:
      width, height = im.size
      channels = len(im.getbands())
    self._tb.write_image(int(step), tag, png, height, width, channels)

  def flush(self):
    """Puts everything written so far on disk, for the checkpoint that follows to vouch for."""
    if self.enabled:
      self._file.flush()
      os.fsync(self._file.fileno())
      if self._tb is not None:
        self._tb.flush()

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


class _EventFile:
  """A TensorBoard event file, written synchronously.

  tensorboardX's `SummaryWriter` hands events to a thread through a queue that even its `flush` does
  not drain, so a kill after a checkpoint could lose scalars the checkpoint vouches for.
  """

  def __init__(self, directory: str):
    os.makedirs(directory, exist_ok=True)
    # TensorBoard's naming; the nanoseconds keep two files opened within one second apart, in order.
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{time.time_ns()}"
    self._f = open(os.path.join(directory, name), "ab")  # pylint: disable=consider-using-with
    self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

  def _write(self, event):
    self._f.write(_record(event.SerializeToString()))
    self._f.flush()  # to the OS, which a killed process cannot lose; fsync only in `flush`

  def write_scalars(self, step: int, metrics: dict):
    values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in metrics.items()]
    self._write(event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values)))

  def write_image(self, step: int, tag: str, png: bytes, height: int, width: int, channels: int):
    image = summary_pb2.Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=png)
    self._write(event_pb2.Event(wall_time=time.time(), step=step,
                                summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, image=image)])))

  def flush(self):
    self._f.flush()
    os.fsync(self._f.fileno())

  def close(self):
    self.flush()
    self._f.close()


def _record(data: bytes) -> bytes:
  """One TFRecord: length, its masked CRC-32C, the data, its masked CRC-32C."""
  header = struct.pack("<Q", len(data))
  return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def _event_files(workdir: str) -> list[str]:
  paths = glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
  return sorted(p for p in paths if ".tmp" not in os.path.basename(p))


def _read_records(path: str) -> tuple[list[bytes], bool]:
  """The TFRecord payloads of an event file, and whether the file ended cleanly (not cut by a kill)."""
  with open(path, "rb") as f:
    buf = f.read()
  out, i = [], 0
  while i + 12 <= len(buf):
    (n,) = struct.unpack("<Q", buf[i:i + 8])
    end = i + 12 + n + 4
    if end > len(buf) or struct.unpack("<I", buf[end - 4:end])[0] != masked_crc32c(buf[i + 12:end - 4]):
      break
    out.append(buf[i + 12:end - 4])
    i = end
  return out, i == len(buf)


def _truncate_events(path: str, step: int):
  """Rewrites an event file without the scalars logged after `step`; deletes it if none are left.

  A file that does not end cleanly (cut by a kill, or damaged on disk: a record whose checksum
  fails ends what can be read) is first copied, whole, to `tensorboard/damaged/`, with a warning.
  """
  records, clean = _read_records(path)
  if not clean:
    aside = os.path.join(os.path.dirname(path), "damaged", os.path.basename(path))
    files.atomic_copy(path, aside)
    logging.warning("%s is damaged after %d readable records; the original is kept at %s", path,
                    len(records), aside)
  kept, dropped = [], not clean
  for data in records:
    event = event_pb2.Event.FromString(data)
    if event.HasField("summary") and event.step > step:
      dropped = True
    else:
      kept.append(data)
  if not dropped:
    return
  if not any(event_pb2.Event.FromString(d).HasField("summary") for d in kept):
    os.remove(path)
    return
  files.atomic_write_bytes(path, b"".join(_record(data) for data in kept))


def read_tensorboard(workdir: str) -> dict[str, list[tuple[int, float]]]:
  """Every scalar in `workdir/tensorboard`'s event files: tag -> [(step, value)], sorted by step."""
  out = {}
  for path in _event_files(workdir):
    for data in _read_records(path)[0]:
      event = event_pb2.Event.FromString(data)
      for value in event.summary.value:
        if value.WhichOneof("value") == "simple_value":  # images (sample grids) are not scalars
          out.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
  return {tag: sorted(values) for tag, values in out.items()}


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

  def restart_clock(self, step: int):
    """Measures speed from `step` on (call after compiling, so it/s measures training alone)."""
    self._t0, self._s0 = time.perf_counter(), step
    if self._bar is not None:
      self._bar.update(step - self.step)
      self.step = step

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
      speed = f"{rate:.1f} it/s" if step > self._s0 else "? it/s"
      extra = " ".join(f"{k}={v:.3f}" for k, v in (postfix or {}).items())
      logging.info("step %d/%d  %s  ETA %s  %s", step, self.total, speed, format_eta(eta), extra)

  def close(self):
    if self._bar is not None:
      self._bar.close()


def format_eta(seconds: float) -> str:
  """H:MM:SS, or '?' for an unknown (infinite or NaN) time."""
  if not math.isfinite(seconds):
    return "?"
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h:d}:{m:02d}:{s:02d}"
