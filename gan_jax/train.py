"""The training loop: `train_and_evaluate(config, workdir)`.

Phases: set up (data, models, parallel runner) -> restore the latest checkpoint if the workdir has one
-> train in dispatches of `steps_per_dispatch` iterations (`lax.scan` on device; metrics stay there
until a log step) -> at step boundaries: log, sample, checkpoint, stop on request -> write the summary.

Everything the loop writes lives in `workdir`:
  checkpoints/        Orbax checkpoints (state + config), the last `keep_checkpoints`
  metrics.jsonl       one JSON record per log step
  tensorboard/        the same scalars as TensorBoard events
  samples/            sample grids from a fixed noise batch, `step_XXXXXXX.png`
  samples.png         the latest grid
  curves.png          losses and D outputs against step
  summary.json        step, wall_time_s, iters_per_s, final d_loss/g_loss, params_sha256, ...
"""

import json
import os
import signal
import threading
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from gan_jax import checkpoint, gan as gan_lib, logs, parallel, plotting
from gan_jax.data import pipeline
from gan_jax.errors import UserError


class NonFiniteError(RuntimeError):
  """A loss or gradient became NaN or Inf; the message names the step and the quantity."""


class _StopRequest:
  """Turns SIGTERM/SIGINT into a request to checkpoint and stop at the next step boundary."""

  def __init__(self):
    self.signal = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if self.signal is not None:  # a second signal: stop now
      raise KeyboardInterrupt
    self.signal = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _prepare_workdir(workdir: str) -> str:
  workdir = os.path.abspath(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{os.getpid()}")
    with open(probe, "w", encoding="utf-8") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise UserError(f"cannot write to workdir {workdir} ({e.strerror}): choose a writable --workdir") from None
  return workdir


def _check_config(config):
  for key in ("num_steps", "steps_per_dispatch", "log_every", "sample_every", "checkpoint_every"):
    if config[key] < 1:
      raise UserError(f"{key} must be >= 1, got {config[key]}")


def _first_nonfinite(metrics: dict, first_step: int):
  """(step, name) of the earliest non-finite value in stacked metrics, or None."""
  bad = None
  for name, values in metrics.items():
    idx = np.flatnonzero(~np.isfinite(np.asarray(values)))
    if idx.size and (bad is None or idx[0] < bad[0]):
      bad = (int(idx[0]), name)
  return None if bad is None else (first_step + bad[0], bad[1])


def save_samples(gan, g_params, z, data: pipeline.Data, path: str, title: str, toy_d_fn=None):
  """Writes the sample grid (images) or scatter/histogram (toy data) for fixed noise `z`."""
  x = np.asarray(jax.jit(gan.generate)(g_params, z))
  if data.image_shape is None:
    return plotting.save_toy_samples(x, path, title, toy=data.sampler.toy, d_fn=toy_d_fn)
  imgs = plotting.to_displayable(x, data.image_shape, data.display_scale)
  return plotting.save_grid(imgs, path, title=title)


def setup(config: ml_collections.ConfigDict):
  """Data, the GAN and a fresh initial state for `config` (no files written)."""
  data = pipeline.build_data(config)
  gan = gan_lib.build_gan(config, data)
  mean = data.mean_example if config.model.get("g_bias_from_data", True) else None
  state = gan.init(config.seed, mean)
  return data, gan, state


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the GAN described by `config`, writing everything to `workdir`; resumes if it can.

  Returns:
    The summary (also written to `workdir/summary.json`).

  Raises:
    UserError: bad config, data or workdir.
    NonFiniteError: a loss or gradient became non-finite (the last good checkpoint is kept).
  """
  t_start = time.perf_counter()
  _check_config(config)
  parallel.maybe_initialize_distributed(config.parallel)
  workdir = _prepare_workdir(workdir)
  is_main = jax.process_index() == 0

  data, gan, state = setup(config)
  runner = parallel.Runner(gan, config.parallel.mode)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
  restored = ckpt.restore(state, config)
  if restored is not None:
    state = restored
    logging.info("resuming from the checkpoint at step %d in %s", int(state.step), ckpt.directory)
  start_step = int(state.step)
  if start_step >= config.num_steps:
    logging.info("the workdir's checkpoint is at step %d >= num_steps %d: nothing to train",
                 start_step, config.num_steps)

  writer = logs.MetricWriter(workdir, start_step)
  z_fixed = gan_lib.fixed_noise(gan, config.seed, config.num_samples)
  arrays = runner.put(data.arrays)
  state = runner.put(state)
  step, pending = start_step, []
  last = {}
  progress = logs.Progress(config.num_steps, step)
  train_time, trained = 0.0, 0

  def flush():
    """Fetches pending metrics, fails on a non-finite value, returns the latest step's metrics."""
    nonlocal pending
    if not pending:
      return last
    host = [(s0, jax.device_get(m)) for s0, m in pending]
    pending = []
    for s0, m in host:
      bad = _first_nonfinite(m, s0 + 1)
      if bad:
        raise NonFiniteError(
            f"non-finite {bad[1]} at step {bad[0]}: the run stopped; the last good checkpoint "
            f"(step {ckpt.latest_step()}) is intact. Lower the learning rate or check the data.")
    return {k: float(v[-1]) for k, v in host[-1][1].items()}

  def save_checkpoint():
    ckpt.save(step, runner.get(state), config)

  def next_event(s):
    ends = [config.num_steps]
    for every in (config.log_every, config.sample_every, config.checkpoint_every):
      ends.append((s // every + 1) * every)
    return min(ends)

  with _StopRequest() as stop:
    try:
      while step < config.num_steps:
        n = min(config.steps_per_dispatch, next_event(step) - step)
        t0 = time.perf_counter()
        compiled_before = runner.compile_time_s
        state, metrics = runner.run(state, arrays, n)
        pending.append((step, metrics))
        step += n
        if runner.compile_time_s != compiled_before:
          jax.block_until_ready(metrics)
          progress.restart_clock()
        else:
          train_time += time.perf_counter() - t0
          trained += n
        at = lambda every: step % every == 0 or step == config.num_steps  # pylint: disable=cell-var-from-loop
        if at(config.log_every):
          last = flush()
          writer.write(step, last)
          progress.update(step, {k: last[k] for k in ("d_loss", "g_loss", "d_real", "d_fake")})
        if at(config.sample_every) and is_main:
          last = flush()
          g_params = runner.get(state.g_params)
          path = save_samples(gan, g_params, z_fixed, data,
                              os.path.join(workdir, "samples", f"step_{step:07d}.png"), f"step {step}")
          _copy(path, os.path.join(workdir, "samples.png"))
        if at(config.checkpoint_every):
          last = flush()
          save_checkpoint()
        if stop.signal:
          last = flush()
          if step not in ckpt.manager.all_steps():
            writer.write(step, last)
          save_checkpoint()
          logging.info("%s received: saved a checkpoint at step %d in %s; run the same command to resume",
                       stop.signal, step, ckpt.directory)
          print(f"{stop.signal} received: checkpoint saved at step {step}; rerun the same command to resume.",
                flush=True)
          break
      last = flush()
      if step >= config.num_steps and ckpt.latest_step() != step:
        save_checkpoint()
    finally:
      jax.block_until_ready(state)
      progress.close()
      writer.close()
      ckpt.close()

  final = runner.get(state)
  summary = {
      "step": step,
      "num_steps": config.num_steps,
      "wall_time_s": round(time.perf_counter() - t_start, 3),
      "train_time_s": round(train_time, 3),
      "compile_time_s": round(runner.compile_time_s, 3),
      "iters_per_s": round(trained / train_time, 2) if train_time > 0 else None,
      "d_loss": last.get("d_loss"),
      "g_loss": last.get("g_loss"),
      "d_real": last.get("d_real"),
      "d_fake": last.get("d_fake"),
      "params_sha256": gan_lib.params_sha256(final),
      "parallel_mode": runner.mode,
      "num_devices": runner.num_devices,
      "device": jax.devices()[0].device_kind,
      "stopped_by": stop.signal,
  }
  if is_main:
    records = logs.read_metrics(workdir)
    if records:
      plotting.save_curves(records, os.path.join(workdir, "curves.png"), title=data.name)
    if not os.path.exists(os.path.join(workdir, "samples.png")) or step % config.sample_every:
      path = save_samples(gan, final.g_params, z_fixed, data,
                          os.path.join(workdir, "samples", f"step_{step:07d}.png"), f"step {step}")
      _copy(path, os.path.join(workdir, "samples.png"))
    with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=2)
  return summary


def _copy(src: str, dst: str):
  tmp = dst + ".tmp"
  with open(src, "rb") as fin, open(tmp, "wb") as fout:
    fout.write(fin.read())
  os.replace(tmp, dst)
