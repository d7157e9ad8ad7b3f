"""Reliability of the training loop: bit-exact resume after `kill -9` and SIGTERM, the non-finite guard,
resume safety (a changed config, unreadable checkpoints) and logs that hold each step once.

The end-to-end tests run `python -m gan_jax.main` on a tiny 2-D toy GAN whose dispatches all have one
length (one compiled program), sharing a persistent XLA compilation cache so that only the first run
of a program compiles. The in-process tests never compile a training step.
"""

import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import REPO, RUNNING, load_config, subprocess_env
from gan_jax import train
from gan_jax.core import build
from gan_jax.run import checkpoint, logs, signals
from gan_jax.errors import UserError

# Every dispatch is 5 steps long; checkpoints at 10, 20, 30, 40 (the last two kept).
TINY = {
    "parallel.mode": "none", "model.g_hidden": (16, 16), "model.d_hidden": (16, 16), "model.noise_dim": 4,
    "batch_size": 16, "num_samples": 64, "num_steps": 40, "steps_per_dispatch": 5, "log_every": 5,
    "checkpoint_every": 10, "sample_every": 20, "keep_checkpoints": 2,
}
# One step per dispatch, logged and checkpointed; the config file (`_config_file(..., nan_at=2)`) makes
# the update report a NaN D loss at step 2, deterministically (not through an overflow, whose step
# depends on the JAX version's arithmetic).
DIVERGING = {"steps_per_dispatch": 1, "log_every": 1, "checkpoint_every": 1}
# Test-only code in a config file: wraps the update so that iteration `nan_at` reports d_loss = NaN.
_INJECT_NAN = """
import jax.numpy as _jnp
from gan_jax.core import gan as _gan
_update = _gan.GAN._update
def _nan_update(self, state, arrays, axis_name=None):
  new, metrics, grads = _update(self, state, arrays, axis_name)
  return new, dict(metrics, d_loss=_jnp.where(new.step == {step}, _jnp.nan, metrics["d_loss"])), grads
_gan.GAN._update = _nan_update
"""


def _config(overrides=None):
  c = load_config("mog_2d", "smoke")
  for key, value in {**TINY, **(overrides or {})}.items():
    *path, last = key.split(".")
    node = c
    for p in path:
      node = node[p]
    node[last] = value
  return c


# ----------------------------------------------------------------------------- subprocess helpers
def _config_file(path, overrides, nan_at=None):
  """Writes a config file: mog_2d's smoke config with TINY and `overrides` applied (and, with
  `nan_at`, a NaN D loss reported at that step)."""
  base = os.path.join(REPO, "experiments", "configs", "mog_2d.py")
  lines = ["import importlib.util",
           f"_spec = importlib.util.spec_from_file_location('mog_2d', {base!r})",
           "_module = importlib.util.module_from_spec(_spec)",
           "_spec.loader.exec_module(_module)",
           *([_INJECT_NAN.format(step=nan_at)] if nan_at else []),
           "def get_config():",
           "  c = _module.get_config('smoke')"]
  lines += [f"  c.{k} = {v!r}" for k, v in {**TINY, **(overrides or {})}.items()]
  lines += ["  return c", ""]
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
  return path


def _start(workdir, xla_cache, overrides=None, nan_at=None):
  """Starts `python -m gan_jax.main` on the tiny config; stdout and stderr go to files next to workdir."""
  env = subprocess_env(1)
  env.update(JAX_COMPILATION_CACHE_DIR=xla_cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  os.makedirs(workdir, exist_ok=True)
  n = len([f for f in os.listdir(os.path.dirname(workdir)) if f.endswith(".out")])
  out = open(f"{workdir}.{n}.out", "w+", encoding="utf-8")  # pylint: disable=consider-using-with
  err = open(f"{workdir}.{n}.err", "w+", encoding="utf-8")  # pylint: disable=consider-using-with
  config = _config_file(f"{workdir}_config.py", overrides, nan_at)
  cmd = [sys.executable, "-m", "gan_jax.main", f"--config={config}", f"--workdir={workdir}"]
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err)
  proc.files = (out, err)
  RUNNING.append(proc)  # killed after the test if still running (conftest.no_leftover_runs)
  return proc


def _finish(proc, timeout=300):
  """Waits for `proc`; returns (returncode, stdout, stderr)."""
  proc.wait(timeout=timeout)
  texts = []
  for f in proc.files:
    f.seek(0)
    texts.append(f.read())
    f.close()
  return proc.returncode, texts[0], texts[1]


def _wait_until(proc, condition, what, timeout=300, must=True):
  """Polls `condition` every 2 ms while `proc` runs; False if it ended first (an error if `must`)."""
  t0 = time.time()
  while not condition():
    if proc.poll() is not None:
      if must:
        raise AssertionError(f"the run ended before {what}: {_finish(proc)}")
      return False
    if time.time() - t0 > timeout:
      proc.kill()
      raise AssertionError(f"timed out waiting for {what}")
    time.sleep(0.002)
  return True


def _compiled(proc):
  """Whether the run has logged its compilation (its training is starting)."""
  with open(proc.files[1].name, encoding="utf-8") as f:
    return "compiled" in f.read()


def _listdir(path):
  try:
    return os.listdir(path)
  except FileNotFoundError:
    return []


def _steps(workdir):
  return sorted(int(n) for n in _listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())


def _tmp_dirs(workdir):
  return [n for n in _listdir(os.path.join(workdir, "checkpoints")) if "orbax-checkpoint-tmp" in n]


def _outputs(workdir):
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  return summary, logs.read_metrics(workdir), logs.read_tensorboard(workdir)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, xla_cache):
  """An uninterrupted run: (summary, metrics records, TensorBoard scalars, stderr)."""
  workdir = str(tmp_path_factory.mktemp("straight") / "run")
  code, _, err = _finish(_start(workdir, xla_cache))
  assert code == 0, err
  return (*_outputs(workdir), err)


# ----------------------------------------------------------------------------- end to end
def test_kill_during_save_and_sigterm_resume_bit_exactly(straight, xla_cache, tmp_path):
  # (One test, so that pytest-xdist runs the straight run once.)
  summary, records, tb, err = straight
  assert summary["step"] == 40 and summary["stopped_by"] is None
  assert [r["step"] for r in records] == list(range(5, 41, 5))
  assert [s for s, _ in tb["d_loss"]] == list(range(5, 41, 5))
  assert re.search(r"step 40/40 .* it/s .*ETA", err)
  # Orbax logs dozens of INFO lines per save through absl; none may reach the user.
  assert not re.search(r"^I\S* .*(checkpoint_manager|atomicity|async_io_engine)\.py", err, re.M), err

  workdir = str(tmp_path / "run")
  # 1. kill -9 while the step-20 checkpoint is being written.
  proc = _start(workdir, xla_cache)
  _wait_until(proc, lambda: any(n.startswith("20.") for n in _tmp_dirs(workdir)), "the step-20 save")
  proc.kill()
  _finish(proc)
  assert _tmp_dirs(workdir), "the kill should land mid-save"
  assert _steps(workdir) == [10]

  # 2. Same command; SIGTERM once it has compiled: a checkpoint at the next boundary, exit 0.
  proc = _start(workdir, xla_cache)
  _wait_until(proc, lambda: _compiled(proc), "compilation")
  proc.send_signal(signal.SIGTERM)
  code, out, err = _finish(proc)
  assert code == 0, err
  lines = [line for line in out.splitlines() if "SIGTERM" in line]
  assert len(lines) == 1 and "resuming from the checkpoint at step 10" in err, (out, err)
  stopped = int(re.search(r"checkpoint at step (\d+)", lines[0]).group(1))
  assert 10 < stopped < 40 and stopped in _steps(workdir) and not _tmp_dirs(workdir)
  summary, records, _ = _outputs(workdir)
  assert summary["stopped_by"] == "SIGTERM" and summary["step"] == stopped
  assert [r["step"] for r in records] == list(range(5, stopped + 1, 5))

  # 3. Same command again: finishes, identical to the uninterrupted run, parameters and logs.
  code, _, err = _finish(_start(workdir, xla_cache))
  assert code == 0 and f"resuming from the checkpoint at step {stopped}" in err, err
  summary, records, tb = _outputs(workdir)
  assert summary["params_sha256"] == straight[0]["params_sha256"]
  assert records == straight[1]  # each log step once, with the uninterrupted run's values
  assert tb == straight[2]
  assert _steps(workdir) == [30, 40]  # keep_checkpoints=2


@pytest.mark.slow
def test_random_sigkills_resume_bit_exactly(xla_cache, tmp_path):
  """kill -9, 12 times, at random moments picked by what the run is doing, resuming each time."""
  longer = {"num_steps": 120}  # the same compiled program: only the loop runs longer
  code, _, err = _finish(_start(str(tmp_path / "straight"), xla_cache, longer))
  assert code == 0, err
  expected = _outputs(str(tmp_path / "straight"))
  workdir, rng = str(tmp_path / "run"), random.Random(0)

  def logged_past(step):  # log steps are 5, 10, ...: the number of lines tells the latest
    try:
      with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return sum(1 for _ in f) * 5 > step
    except FileNotFoundError:
      return False

  for i in range(12):
    proc = _start(workdir, xla_cache, longer)
    moment = rng.choice(["start-up", "training", "save", "log"])
    if moment == "start-up":  # importing, restoring, compiling
      time.sleep(rng.uniform(0.0, 4.0))
    elif moment == "training":
      _wait_until(proc, lambda: _compiled(proc), "compilation", must=False)
      time.sleep(rng.uniform(0.0, 0.3))
    elif moment == "save":
      _wait_until(proc, lambda: _tmp_dirs(workdir), "a save", must=False)
    else:  # right after a log line past the latest checkpoint
      target = max(_steps(workdir), default=0) + 5 * rng.randint(1, 3)
      _wait_until(proc, lambda: logged_past(target), f"step {target}", must=False)  # pylint: disable=cell-var-from-loop
    proc.kill()
    code = _finish(proc)[0]
    print(f"kill {i} ({moment}, exit {code}): checkpoints {_steps(workdir)}, unfinished saves {_tmp_dirs(workdir)}")
  code, _, err = _finish(_start(workdir, xla_cache, longer))
  assert code == 0, err
  summary, records, tb = _outputs(workdir)
  assert summary["step"] == 120 and summary["params_sha256"] == expected[0]["params_sha256"]
  assert records == expected[1] and tb == expected[2]


def test_nonfinite_loss_stops_with_one_line_and_keeps_good_checkpoint(xla_cache, tmp_path):
  workdir = str(tmp_path / "run")
  code, _, err = _finish(_start(workdir, xla_cache, DIVERGING, nan_at=2))
  assert code != 0 and "Traceback" not in err, err
  errors = [line for line in err.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, err
  assert "non-finite d_loss (NaN or Inf) at step 2" in errors[0]
  assert "last good checkpoint (step 1) is intact" in errors[0]
  assert _steps(workdir) == [1] and [r["step"] for r in logs.read_metrics(workdir)] == [1]
  # The checkpoint loads and holds finite (if absurd) parameters.
  config = _config(DIVERGING)
  template = build.setup(config)[2]
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  state = jax.device_get(ckpt.restore(template, config))
  ckpt.close()
  assert int(state.step) == 1
  assert train._first_nonfinite_state(state) is None  # pylint: disable=protected-access


# ----------------------------------------------------------------------------- in process
@pytest.fixture(scope="module")
def init_state():
  """A fresh host state of the tiny config (its initialisation compiles only small functions)."""
  return jax.device_get(build.setup(_config())[2])


def _save(directory, steps, state, config):
  ckpt = checkpoint.Checkpointer(directory, keep=10)
  for s in steps:
    ckpt.save(s, state.replace(step=np.int32(s)), config)
  ckpt.close()


def test_resume_refuses_a_config_that_changes_the_model(init_state, tmp_path):
  config = _config()
  _save(str(tmp_path / "checkpoints"), [10], init_state, config)
  changed = _config({"model.d_hidden": (32, 16), "seed": 1, "num_steps": 99, "log_every": 10})
  with pytest.raises(UserError) as e:
    train.train_and_evaluate(changed, str(tmp_path))
  msg = str(e.value)
  assert "\n" not in msg
  assert "model.d_hidden: [16, 16] -> [32, 16]" in msg and "seed: 0 -> 1" in msg
  assert "num_steps" not in msg and "log_every" not in msg  # how long and how loud a run is may change
  assert _steps(str(tmp_path)) == [10]


def test_unreadable_checkpoint_falls_back_then_refuses(init_state, tmp_path, caplog):
  config, directory = _config(), str(tmp_path / "checkpoints")
  _save(directory, [10, 20, 30], init_state, config)
  os.remove(os.path.join(directory, "30", "state", "manifest.ocdbt"))  # as if cut short
  os.makedirs(os.path.join(directory, "40.orbax-checkpoint-tmp", "state"))  # a save killed midway
  ckpt = checkpoint.Checkpointer(directory)
  with caplog.at_level(logging.WARNING):
    state = ckpt.restore(init_state, config)
  assert int(state.step) == 20
  assert any("step 30" in r.getMessage() and "cannot be read" in r.getMessage() for r in caplog.records)
  assert os.listdir(directory + "_unreadable") == ["30"]  # kept for inspection, out of Orbax's way
  ckpt.save(30, init_state.replace(step=np.int32(30)), config)  # the run can save step 30 again
  ckpt.close()
  assert _steps(str(tmp_path)) == [10, 20, 30] and not _tmp_dirs(str(tmp_path))
  for step in (10, 20, 30):
    with open(os.path.join(directory, str(step), "state", "_METADATA"), "w", encoding="utf-8") as f:
      f.write("{not json")
  ckpt = checkpoint.Checkpointer(directory)
  with pytest.raises(UserError, match="no readable checkpoint") as e:
    ckpt.restore(init_state, config)
  ckpt.close()
  assert "\n" not in str(e.value)


def test_logs_drop_records_after_the_resumed_step(tmp_path):
  workdir = str(tmp_path)
  writer = logs.MetricWriter(workdir)
  for step in range(5, 31, 5):
    writer.write(step, {"d_loss": step / 10})
  writer.close()
  with open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8") as f:
    f.write('{"step": 35, "d_lo')  # a kill mid-line
  events = [os.path.join(workdir, "tensorboard", n) for n in os.listdir(os.path.join(workdir, "tensorboard"))]
  with open(events[0], "ab") as f:
    f.write(b"\x20\x00\x00")  # and mid-record
  writer = logs.MetricWriter(workdir, start_step=10)  # resumed from the step-10 checkpoint
  assert writer.last_record == {"d_loss": 1.0}
  for step in (15, 20):
    writer.write(step, {"d_loss": -step})
  writer.close()
  expected = [(5, 0.5), (10, 1.0), (15, -15.0), (20, -20.0)]
  assert [(r["step"], r["d_loss"]) for r in logs.read_metrics(workdir)] == expected
  assert logs.read_tensorboard(workdir)["d_loss"] == expected
  logs.MetricWriter(workdir, start_step=0).close()  # a fresh start keeps nothing
  assert logs.read_metrics(workdir) == [] and logs.read_tensorboard(workdir) == {}


def test_nonfinite_checks_name_step_and_quantity(init_state):
  metrics = {"d_grad_norm": np.array([1.0, np.nan, np.nan]), "d_loss": np.array([1.0, 2.0, np.inf]),
             "g_loss": np.array([1.0, np.inf, 1.0])}
  assert train._first_nonfinite(metrics, 11) == (12, "g_loss")  # pylint: disable=protected-access
  assert train._first_nonfinite({"d_loss": np.ones(3)}, 11) is None  # pylint: disable=protected-access
  # The trainer's gradient norms are of a dispatch's last iteration only: shape [1], step 11 + 2.
  last_only = {"d_loss": np.ones(3), "g_grad_norm": np.array([np.nan])}
  assert train._first_nonfinite(last_only, 11) == (13, "g_grad_norm")  # pylint: disable=protected-access
  bad = init_state.replace(d_params=jax.tree.map(lambda x: x + np.inf, init_state.d_params))
  assert train._first_nonfinite_state(bad) == "d_params"  # pylint: disable=protected-access
  assert train._first_nonfinite_state(init_state) is None  # pylint: disable=protected-access


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_becomes_a_stop_request(sig):
  before = signal.getsignal(sig)
  with signals.StopSignals(raise_on=2) as stop:
    assert not stop.requested_anywhere()
    os.kill(os.getpid(), sig)
    time.sleep(0.01)
    assert stop.requested_anywhere() and stop.signal == sig.name
    with pytest.raises(KeyboardInterrupt):  # a second signal stops at once
      os.kill(os.getpid(), sig)
      time.sleep(0.01)
  assert signal.getsignal(sig) is before
