"""The training loop: `train_and_evaluate(config, workdir)`.

Phases: set up (data, models, parallel runner) -> restore the latest checkpoint if the workdir has one
-> train in dispatches of `steps_per_dispatch` iterations (`lax.scan` on device; metrics stay there
until a log step) -> at step boundaries: log, sample, checkpoint, stop on request -> write the summary.

Reliability (docs/CHECKPOINTS.md):
  resume       the same command on the same workdir continues from the latest checkpoint, bit-exactly:
               the dispatch lengths depend only on the current step, and a scan of n steps computes
               what n scans of one step do, so a resumed run repeats the uninterrupted run's arithmetic.
  preemption   SIGTERM or SIGINT: a checkpoint at the next step boundary, a one-line message, return.
  non-finite   a NaN or Inf in a metric (losses, gradient norms) or in the state about to be saved
               raises `NonFiniteError` naming the step and the quantity; nothing bad is ever saved.

Everything the loop writes lives in `workdir`:
  checkpoints/        Orbax checkpoints (state + config), the last `keep_checkpoints`
  metrics.jsonl       one JSON record per log step
  tensorboard/        the same scalars as TensorBoard events
  samples/            sample grids from a fixed noise batch, one per `sample_every` (`step_0050000.png`)
  samples.png         the latest grid
  curves.png          losses and D outputs against step
  summary.json        step, wall_time_s, iters_per_s, final d_loss/g_loss, params_sha256, ...
"""

import contextlib
import functools
import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from gan_jax import parallel, validation
from gan_jax.core import build, gan as gan_lib, nets
from gan_jax.run import checkpoint, environment, files, logs, plotting, reader, signals
from gan_jax.run import workdir as workdir_lib
from gan_jax.data import pipeline, scale, stream
from gan_jax.evaluation import periodic
from gan_jax.config import matmul_precision
from gan_jax.errors import UserError

_CURVES = ("d_loss", "g_loss", "d_real", "d_fake")
# Optimizer settings changed when resuming, one JSON line per resume (gan_jax.run.checkpoint).
ADJUSTMENTS_FILE = "adjustments.jsonl"


class NonFiniteError(UserError):
  """A loss, gradient or parameter became NaN or Inf; the message names the step and the quantity.

  A `UserError` because the fix is the user's (a lower learning rate, other data), so the command line
  prints it as one `error:` line.
  """


def _first_nonfinite(metrics: dict, first_step: int):
  """(step, name) of the earliest non-finite value in one dispatch's metrics (a loss before other
  metrics of the same step, as it is the cause users look for), or None. A metric stacked shorter
  than the dispatch holds its last iterations (the gradient norms: the last one)."""
  n = max(len(np.atleast_1d(v)) for v in metrics.values())
  bad = []
  for name, values in metrics.items():
    values = np.atleast_1d(np.asarray(values))
    idx = np.flatnonzero(~np.isfinite(values))
    if idx.size:
      bad.append((n - len(values) + int(idx[0]), not name.endswith("_loss"), name))
  if not bad:
    return None
  i, _, name = min(bad)
  return first_step + i, name


def _first_nonfinite_state(state: gan_lib.GANState):
  """The name of the first part of a host state holding a NaN or Inf, or None."""
  for name in gan_lib.REQUIRED_FIELDS + gan_lib.OPTIONAL_FIELDS:
    for leaf in jax.tree.leaves(getattr(state, name)):
      a = np.asarray(leaf)
      if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
        return name
  return None


def _nonfinite_message(name: str, step: int, last_good) -> str:
  kept = (f"the last good checkpoint (step {last_good}) is intact and a rerun resumes from it"
          if last_good is not None else "no checkpoint had been saved")
  return (f"non-finite {name} (NaN or Inf) at step {step}: training stopped and saved nothing; {kept}. "
          "Lower the learning rate (a resumed run may change optimizer.g_lr and optimizer.d_lr, e.g. "
          "--config.optimizer.d_lr=1e-4 on the same command) or check the data")


@functools.partial(jax.jit, static_argnums=0)
def _generate(gan, g_params, z, labels=None, batch_stats=None):
  # Module level, keyed on the (hashable) GAN: `jax.jit(gan.generate)` made afresh at every sample
  # step would compile again each time.
  if labels is None and batch_stats is None:
    return gan.generate(g_params, z)
  return gan.generate(g_params, z, labels, batch_stats)


def save_samples(gan, g_params, z, data: pipeline.Data, path: str, title: str, toy_d_fn=None,
                 batch_stats=None):
  """Writes the sample grid (images) or scatter/histogram (toy data) for fixed noise `z`.

  `g_params` may be a whole (host) `GANState`: G's sampling variables are then taken from it (the
  moving average when `ema` is on). A class-conditional G draws one row per class.
  """
  if isinstance(g_params, gan_lib.GANState):
    g_params, batch_stats = gan.sampling_variables(g_params)
  labels, cols = nets.grid_labels(gan.num_classes, len(z))
  x = np.asarray(_generate(gan, g_params, z, labels, batch_stats))
  if data.image_shape is None:
    return plotting.save_toy_samples(x, path, title, toy=data.sampler.toy, d_fn=toy_d_fn)
  imgs = scale.to_unit(x, data.image_shape, data.display_scale)
  return plotting.save_grid(imgs, path, ncol=cols, title=title)


class _StreamFeed:
  """A streamed run's batches (`data.pipeline='stream'`), a block per dispatch, placed by the runner.

  The block of the dispatch starting at `step` is global batches t = step * draws ... (draws: the
  batches one iteration takes, k_disc_steps in the alternating update, else 1). The Grain iterator
  starts at the first step's batch, or where a checkpoint left it.
  """

  def __init__(self, config, data: pipeline.Data, runner: parallel.Runner, step: int):
    self.runner = runner
    self.draws = config.k_disc_steps if config.update_mode == "alternating" else 1
    self.labels = int(config.model.get("num_classes", 0)) > 0
    order = stream.StreamOrder(len(data.records), config.batch_size, config.seed, jax.process_index(),
                               jax.process_count())
    self.iterator = stream.make_iterator(data.records, order, config.data.get("workers", 0),
                                         start=step * self.draws)
    logging.info("streaming %d records with %d decoding threads: process %d of %d reads %d of each batch "
                 "of %d", len(data.records), stream.default_workers(config.data.get("workers", 0)),
                 jax.process_index(), jax.process_count(), order.local_batch, config.batch_size)

  def restore(self, ckpt: checkpoint.Checkpointer, step: int):
    """Puts the iterator where the restored checkpoint saved it; checks that agrees with `step`."""
    if not ckpt.restore_data_iterator(self.iterator):
      logging.info("the checkpoint holds no data position for this process: streaming from step %d's "
                   "batch, a pure function of the step", step)
    elif stream.position(self.iterator) != step * self.draws:
      raise UserError(f"the checkpoint at step {step} in {ckpt.directory} saved its data stream at batch "
                      f"{stream.position(self.iterator)}, but step {step} takes batch {step * self.draws}: "
                      "the checkpoint is inconsistent; move it away to resume from an older one")

  def arrays(self, step: int, num_steps: int) -> dict:
    first = step * self.draws
    if stream.position(self.iterator) != first:  # the loop asks for blocks in order; anything else is a bug
      raise RuntimeError(f"data stream at batch {stream.position(self.iterator)}, step {step} needs {first}")
    images, labels = stream.take(self.iterator, num_steps * self.draws)
    block = {"stream": images, **({"stream_labels": labels} if self.labels else {})}
    return self.runner.put_stream(block, first)

  def close(self):
    close = getattr(self.iterator, "close", None)
    if close is not None:
      close()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> dict:
  """Trains the GAN described by `config`, writing everything to `workdir`; resumes if it can.

  Args:
    config: the run's config.
    workdir: its folder: new or empty to start, a run's to resume (gan_jax.run.workdir).
    overwrite: start in a folder that holds other files, moving them to `previous_<time>/` in it.

  Returns:
    The summary (also written to `workdir/summary.json`); `stopped_by` names the signal of a
    preempted run.

  Raises:
    UserError: bad config, data or workdir (in use by another run, or holding files that are not a
      run); a checkpoint that does not match the config or that cannot be read; a full or unwritable
      disk (the last good checkpoint is kept).
    NonFiniteError: a loss, gradient or parameter became non-finite (the last good checkpoint is kept).
  """
  try:
    return _train_and_evaluate(config, workdir, overwrite)
  except OSError as e:
    reason = checkpoint.disk_error(e)
    if reason is None:
      raise
    where = os.path.abspath(workdir)
    steps = reader.checkpoint_steps(where)
    kept = f"the last good checkpoint (step {steps[-1]}) is intact" if steps else "no checkpoint was saved"
    raise UserError(f"cannot use {e.filename or where}: {reason}; {kept}. Free space (or fix the "
                    "folder's permissions) and run the same command to resume") from None


def _train_and_evaluate(config, workdir: str, overwrite: bool) -> dict:
  t_start = time.perf_counter()
  with contextlib.ExitStack() as stack:
    stop = stack.enter_context(signals.StopSignals(raise_on=2))  # first: a signal during set-up also stops cleanly
    validation.validate(config)
    stack.enter_context(matmul_precision(config))  # every program of the run compiles at config.precision
    parallel.maybe_initialize_distributed(config.parallel)
    is_main = jax.process_index() == 0
    # ---------------------------------------------------------------- set-up and resume
    # Data, models, the parallel runner and the evaluation settings first: a mistake in them leaves
    # the workdir untouched.
    data, gan, state = build.setup(config)
    runner = parallel.Runner(gan, config.parallel.mode)
    if config.get("eval_every", 0):
      periodic.check_config(config)
    workdir, lock, _ = workdir_lib.open_workdir(workdir, overwrite, is_main)
    if lock is not None:
      stack.callback(lock.release)
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
    stack.callback(ckpt.close)
    restored = ckpt.restore(state, config)
    if restored is not None:
      state = restored
      logging.info("resuming from the checkpoint at step %d in %s", int(state.step), ckpt.directory)
      if ckpt.adjusted and is_main:
        logging.warning("resuming with changed optimizer settings: %s (recorded in %s)",
                        "; ".join(ckpt.adjusted), ADJUSTMENTS_FILE)
        with open(os.path.join(workdir, ADJUSTMENTS_FILE), "a", encoding="utf-8") as f:
          f.write(json.dumps({"step": int(state.step), "changes": ckpt.adjusted}) + "\n")
    else:
      logging.info("no checkpoint in %s: starting at step 0", ckpt.directory)
    start_step = step = int(state.step)
    if start_step >= config.num_steps:
      logging.info("the checkpoint is at step %d >= num_steps %d: nothing to train", start_step,
                   config.num_steps)
    writer = logs.MetricWriter(workdir, start_step)
    stack.callback(writer.close)
    last = writer.last_record
    z_fixed = gan_lib.fixed_noise(gan, config.seed, config.num_samples)
    feed = None
    if data.pipeline == "stream":
      feed = _StreamFeed(config, data, runner, start_step)
      stack.callback(feed.close)
      if restored is not None:
        feed.restore(ckpt, start_step)
    else:
      arrays = runner.put(data.arrays)
    state = runner.put(state)
    progress = logs.Progress(config.num_steps, step)
    stack.callback(progress.close)
    evaluator = None
    if config.get("eval_every", 0):
      evaluator = periodic.PeriodicEvaluator(config, data, workdir, start_step, is_main)
      stack.callback(evaluator.close)
    pending = []  # (first step, metrics on device) of dispatches not yet checked and logged

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
          raise NonFiniteError(_nonfinite_message(bad[1], bad[0], ckpt.latest_step()))
      return {k: float(v[-1]) for k, v in host[-1][1].items()}

    def save_checkpoint():
      """Checkpoints the state at `step` unless that is done; refuses a non-finite state."""
      if step in ckpt.all_steps():
        return
      host = runner.get(state)
      bad = _first_nonfinite_state(host)
      if bad:
        raise NonFiniteError(_nonfinite_message(bad, step, ckpt.latest_step()))
      writer.flush()  # the logs up to `step` reach the disk before the checkpoint that vouches for them
      first = not ckpt.all_steps()
      ckpt.save(step, host, config, data_iterator=feed.iterator if feed else None)
      if first and is_main:
        workdir_lib.write_marker(workdir, checkpointed=True)

    def ends_at(s, every):
      """Whether step `s` is one of an `every`-steps event (log, sample grid, checkpoint)."""
      return s % every == 0 or s == config.num_steps

    def next_event(s):
      ends = [config.num_steps]
      for every in (config.log_every, config.sample_every, config.checkpoint_every, config.get("eval_every", 0)):
        if every:
          ends.append((s // every + 1) * every)
      return min(ends)

    def evaluating(s):
      return evaluator is not None and ends_at(s, config.eval_every)

    # ---------------------------------------------------------------- training
    t_loop, excluded_s, excluded_steps = time.perf_counter(), 0.0, 0
    while step < config.num_steps and not stop.requested_anywhere():
      # The length depends on `step` alone, so a resumed run dispatches exactly as an uninterrupted one.
      n = min(config.steps_per_dispatch, next_event(step) - step)
      t0, compiled_before = time.perf_counter(), runner.compile_time_s
      if feed is not None:  # read while the previous dispatch runs on the device
        arrays = feed.arrays(step, n)
      # The gradient norms cost a pass over the gradients: measured where they are logged only.
      state, metrics = runner.run(state, arrays, n, "last" if ends_at(step + n, config.log_every) else "none")
      pending.append((step, metrics))
      step += n
      if runner.compile_time_s != compiled_before:  # keep compilation out of it/s
        jax.block_until_ready(metrics)
        excluded_s, excluded_steps = excluded_s + time.perf_counter() - t0, excluded_steps + n
        progress.restart_clock(step)
      at = functools.partial(ends_at, step)
      if not (at(config.log_every) or at(config.sample_every) or at(config.checkpoint_every) or evaluating(step)):
        continue
      last = flush()  # waits for the device: training time ends here, file writing starts
      t_io = time.perf_counter()
      if at(config.log_every):
        writer.write(step, last)
        progress.update(step, {k: last[k] for k in _CURVES if k in last})
      if at(config.checkpoint_every):  # first: what a full disk must not cost is the state
        save_checkpoint()
      if at(config.sample_every) and is_main:
        g_vars, g_stats = runner.get(gan.sampling_variables(state))
        path = save_samples(gan, g_vars, z_fixed, data, os.path.join(workdir, "samples", f"step_{step:07d}.png"),
                            f"step {step}", batch_stats=g_stats)
        files.atomic_copy(path, os.path.join(workdir, "samples.png"))
        writer.write_image(step, "samples", path)
      if evaluating(step):
        writer.write(step, evaluator(step, gan, runner.get(state), config), jsonl=False)
      excluded_s += time.perf_counter() - t_io
    last = flush()
    jax.block_until_ready(state)
    train_time = time.perf_counter() - t_loop - excluded_s
    trained = step - start_step - excluded_steps
    save_checkpoint()  # the end of the run, or the boundary a stop request asked for
    if stop.signal:
      logging.info("%s: checkpoint at step %d in %s", stop.signal, step, ckpt.directory)
      if is_main:
        print(f"{stop.signal} received: saved a checkpoint at step {step} of {config.num_steps}; "
              "run the same command to resume.", flush=True)

  # ---------------------------------------------------------------- summary
  final = runner.get(state)
  summary = {
      "step": step,
      "num_steps": config.num_steps,
      "wall_time_s": round(time.perf_counter() - t_start, 3),
      "train_time_s": round(train_time, 3),
      "compile_time_s": round(runner.compile_time_s, 3),
      "iters_per_s": round(trained / train_time, 2) if trained > 0 and train_time > 0 else None,
      **{k: last.get(k) for k in _CURVES},
      "params_sha256": gan_lib.params_sha256(final),
      "data_pipeline": data.pipeline,
      "parallel_mode": runner.mode,
      "num_devices": runner.num_devices,
      "device": jax.devices()[0].device_kind,
      "matmul_precision": config.get("precision", "default"),
      "versions": environment.versions(),
      "resumed_from": start_step,
      "adjusted_on_resume": ckpt.adjusted,
      "stopped_by": stop.signal,
  }
  if evaluator is not None:
    summary["eval"] = evaluator.records[-1] if evaluator.records else None
    summary["best"] = evaluator.best
  if is_main:
    records = logs.read_metrics(workdir)
    if records:
      plotting.save_curves(records, os.path.join(workdir, "curves.png"), title=data.name)
    if evaluator is not None:
      evaluator.plot()
    path = os.path.join(workdir, "samples", f"step_{step:07d}.png")
    if not os.path.exists(path):  # the loop samples at its last step; a stopped run's last is another
      save_samples(gan, final, z_fixed, data, path, f"step {step}")
    files.atomic_copy(path, os.path.join(workdir, "samples.png"))
    files.atomic_write_json(os.path.join(workdir, "summary.json"), summary, indent=2)
  return summary
