"""A run's safety around its folder and its config: one run per workdir, nothing of a user's lost, a
full disk or a bad value as one line, resumes that may change the optimizer but not the shapes.

Each case of the reliability review has a test here; the kill -9 and SIGTERM cases are in
tests/test_reliability.py.
"""

import errno
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import REPO, load_config, subprocess_env
from gan_jax import train, validation
from gan_jax.errors import UserError
from gan_jax.run import checkpoint, environment, files, logs, workdir as workdir_lib

TINY = {"parallel.mode": "none", "model.g_hidden": (16, 16), "model.d_hidden": (16, 16),
        "model.noise_dim": 4, "batch_size": 16, "num_samples": 16, "num_steps": 10,
        "steps_per_dispatch": 5, "log_every": 5, "checkpoint_every": 5, "sample_every": 10}


def _config(**overrides):
  c = load_config("mog_2d", "smoke")
  for key, value in {**TINY, **{k.replace("__", "."): v for k, v in overrides.items()}}.items():
    *path, last = key.split(".")
    node = c
    for p in path:
      node = node[p]
    node[last] = value
  return c


def _one_line(e) -> str:
  msg = str(e.value)
  assert "\n" not in msg, msg
  return msg


# ----------------------------------------------------------------------------- config values
@pytest.mark.parametrize("key,value,expected", [
    ("model.g_hidden", ("abc",), "model.g_hidden must be a tuple of integers"),
    ("model.g_hidden", (-5, 64), "model.g_hidden must be a non-empty tuple of positive integers"),
    ("model.d_pieces", 0, "model.d_pieces must be at least 1"),
    ("model.noise_dim", 0, "model.noise_dim must be at least 1"),
    ("num_samples", 0, "num_samples must be at least 1"),
    ("optimizer.g_lr", -1e-4, "optimizer.g_lr must be a learning rate above 0"),
    ("optimizer.d_lr", 0.0, "optimizer.d_lr must be a learning rate above 0"),
    ("model.d_hidden_keep", 0.0, "model.d_hidden_keep must be a keep probability in (0, 1]"),
    ("model.d_hidden_keep", 1.5, "model.d_hidden_keep must be a keep probability in (0, 1]"),
    ("optimizer.b1", 1.0, "optimizer.b1 must be in [0, 1)"),
    ("batch_size", 0, "batch_size must be at least 1"),
    ("ema.warmup", -3, "ema.warmup must be 0 or a number of steps"),
    ("ema.start_step", -1, "ema.start_step must be 0 or a step"),
    ("optimizer.decay_steps", -5, "optimizer.decay_steps must be 0"),
    ("model.attention_res", -1, "model.attention_res must be 0 (off)"),
    ("model.normal_init_std", -1.0, "model.normal_init_std must be 0"),
    ("model.bn_momentum", 2.0, "model.bn_momentum must be in [0, 1)"),
    ("model.sample_bn", "foo", "model.sample_bn must be 'train' or 'eval'"),
])
def test_every_bad_value_is_one_line(key, value, expected):
  c = _config()
  *path, last = key.split(".")
  node = c
  for p in path:
    node = node[p]
  with c.unlocked():
    node[last] = value
  with pytest.raises(UserError) as e:
    validation.validate(c)
  assert expected in _one_line(e)


def test_a_good_config_passes_and_validation_does_not_import_jax():
  code = ("import sys; from gan_jax import config, validation; validation.validate(config.base_config()); "
          "print('jax' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=subprocess_env(1), capture_output=True,
                       text=True, timeout=60, check=True).stdout
  assert out.strip() == "False"


@pytest.mark.parametrize("args,expected", [
    (["--config=experiments/configs/digits.py:badarg"], "unknown config argument 'badarg'"),
    (["--config=experiments/configs/digits.py:smoke", "--config.model.d_pieces=0"], "model.d_pieces must be"),
    (["--config=experiments/configs/digits.py:smoke", "stray"], "unexpected arguments: stray"),
    (["--config={noget}"], "has no get_config() function"),
    (["--config={raises}"], "failed at line 3: ZeroDivisionError"),
])
def test_command_line_mistakes_fail_fast_and_write_nothing(tmp_path, args, expected):
  noget = tmp_path / "noget.py"
  noget.write_text("X = 1\n")
  raises = tmp_path / "raises.py"
  raises.write_text("def get_config():\n  x = 0\n  return 1 / x\n")
  workdir = tmp_path / "run"
  args = [a.format(noget=noget, raises=raises) for a in args]
  t0 = time.perf_counter()
  proc = subprocess.run([sys.executable, "-m", "gan_jax.main", *args, f"--workdir={workdir}"], cwd=REPO,
                        env=subprocess_env(1), capture_output=True, text=True, timeout=120, check=False)
  elapsed = time.perf_counter() - t0
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
  assert expected in errors[0]
  assert not workdir.exists(), "a refused command must leave no workdir behind"
  assert elapsed < 30  # nothing heavy (JAX) runs before the check


@pytest.mark.parametrize("data,expected", [
    ({"data.pipeline": "disk"}, "unknown data.pipeline 'disk'"),
    ({"data.source": "folder", "data.dir": "{missing}"}, "does not exist"),
    ({"data.layout": "nchw"}, "unknown data.layout 'nchw'"),
    ({"eval.extractor": "bogus"}, "unknown extractor 'bogus'"),
    ({"eval.split": "bogus"}, "unknown reference split 'bogus'"),
    ({"eval.extractor": "inception", "eval.weights": "{missing}.pth"}, "Inception weights not found"),
])
def test_setup_mistakes_leave_the_workdir_untouched(tmp_path, data, expected):
  """Data, models, the runner and the evaluation settings are set up before the workdir is locked
  and marked (a bad evaluation setting fails at the start, not after training to the first eval)."""
  config = load_config("digits", "smoke")
  config.eval_every, config.parallel.mode = 20, "none"
  for key, value in data.items():
    group, _, leaf = key.rpartition(".")
    (config[group] if group else config)[leaf] = value.format(missing=tmp_path / "missing")
  with pytest.raises(UserError, match=expected):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- the workdir
def test_a_second_run_on_a_locked_workdir_is_refused_naming_the_holder(tmp_path):
  holder = workdir_lib.WorkdirLock(str(tmp_path)).acquire()
  try:
    with pytest.raises(UserError) as e:
      train.train_and_evaluate(_config(), str(tmp_path))
    assert f"pid {os.getpid()}" in _one_line(e) and "in use by another run" in str(e.value)
  finally:
    holder.release()
  assert not os.path.exists(tmp_path / "checkpoints")


def test_the_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
  code = (f"import os; from gan_jax.run import workdir; workdir.WorkdirLock({str(tmp_path)!r}).acquire(); "
          "os._exit(0)")  # dies holding the lock, as after kill -9
  subprocess.run([sys.executable, "-c", code], cwd=REPO, env=subprocess_env(1), check=True, timeout=60)
  lock = workdir_lib.WorkdirLock(str(tmp_path)).acquire()
  lock.release()
  assert any("taking over the lock" in r.getMessage() for r in caplog.records)


def test_a_folder_with_other_files_is_refused_then_moved_aside_with_consent(tmp_path):
  (tmp_path / "metrics.jsonl").write_text('{"step": 5, "d_loss": 1.0}\n')
  (tmp_path / "summary.json").write_text("{}")
  os.makedirs(tmp_path / "tensorboard")
  (tmp_path / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"mine")
  with pytest.raises(UserError) as e:
    train.train_and_evaluate(_config(), str(tmp_path))
  assert "--overwrite" in _one_line(e) and "not a gan_jax run" in str(e.value)
  assert (tmp_path / "tensorboard" / "events.out.tfevents.1.host").read_bytes() == b"mine"
  train.train_and_evaluate(_config(), str(tmp_path), overwrite=True)
  (aside,) = [p for p in os.listdir(tmp_path) if p.startswith("previous_")]
  assert (tmp_path / aside / "tensorboard" / "events.out.tfevents.1.host").read_bytes() == b"mine"
  assert json.loads((tmp_path / aside / "metrics.jsonl").read_text()) == {"step": 5, "d_loss": 1.0}


def test_a_run_whose_checkpoints_were_moved_away_is_refused(tmp_path):
  train.train_and_evaluate(_config(), str(tmp_path))
  os.replace(tmp_path / "checkpoints", tmp_path.parent / f"{tmp_path.name}_ck")
  with pytest.raises(UserError) as e:
    train.train_and_evaluate(_config(), str(tmp_path))
  assert "a run whose checkpoints are gone" in _one_line(e)


# ----------------------------------------------------------------------------- logs
def test_a_damaged_metrics_line_is_kept_aside_not_cut(tmp_path, caplog):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 5, "a": 1}\n{"st\x00ep": 10, garbage\n{"step": 15, "a": 3}\n{"step": 25, "a": 5}\n')
  writer = logs.MetricWriter(str(tmp_path), start_step=20, tensorboard=False)
  writer.close()
  assert [r["step"] for r in logs.read_metrics(str(tmp_path))] == [5, 15]  # 25 is after the checkpoint
  assert "garbage" in (tmp_path / "metrics.damaged.jsonl").read_text()
  assert any("moved to" in r.getMessage() for r in caplog.records)


def test_a_damaged_event_file_is_kept_aside(tmp_path, caplog):
  writer = logs.MetricWriter(str(tmp_path))
  for step in (5, 10, 15):
    writer.write(step, {"d_loss": float(step)})
  writer.close()
  (path,) = logs._event_files(str(tmp_path))  # pylint: disable=protected-access
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle
  open(path, "wb").write(bytes(data))
  original = bytes(data)
  logs.MetricWriter(str(tmp_path), start_step=15).close()
  kept = os.path.join(os.path.dirname(path), "damaged", os.path.basename(path))
  assert open(kept, "rb").read() == original
  assert any("is damaged" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- full disk
def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_last_one(tmp_path, monkeypatch):
  config = _config()
  real_save = checkpoint.ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step == 10:
      os.makedirs(os.path.join(str(self.directory), "10.orbax-checkpoint-tmp-1"), exist_ok=True)
      raise ValueError("RESOURCE_EXHAUSTED: Failed to write: No space left on device [os_error_code='28']")
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", save)
  with pytest.raises(UserError) as e:
    train.train_and_evaluate(config, str(tmp_path))
  msg = _one_line(e)
  assert "no space left on device" in msg and "last good checkpoint (step 5) is intact" in msg
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["5"]


def test_a_full_disk_at_the_last_sample_grid_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
  real = files.atomic_write_bytes

  def full(path, payload):
    if path.endswith("samples.png"):
      raise OSError(errno.ENOSPC, "No space left on device", path)
    return real(path, payload)

  monkeypatch.setattr(files, "atomic_write_bytes", full)
  with pytest.raises(UserError) as e:
    train.train_and_evaluate(_config(), str(tmp_path))
  assert "No space left on device" in _one_line(e) and "step 10) is intact" in str(e.value)
  leftovers = [f for _, _, fs in os.walk(tmp_path) for f in fs if ".tmp" in f]
  assert not leftovers


def test_an_unreadable_checkpoint_folder_is_one_line(tmp_path, monkeypatch):
  directory = str(tmp_path / "checkpoints")

  def denied(self, path, *args, **kwargs):
    raise PermissionError(errno.EACCES, "Permission denied", directory)

  monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "__init__", denied)  # as chmod 000 for a non-root user
  with pytest.raises(UserError) as e:
    train.train_and_evaluate(_config(), str(tmp_path))
  assert f"cannot use {directory}: Permission denied" in _one_line(e) and "permissions" in str(e.value)


# ----------------------------------------------------------------------------- resume
def test_resume_may_change_the_learning_rate_and_records_it(tmp_path):
  train.train_and_evaluate(_config(), str(tmp_path))
  summary = train.train_and_evaluate(_config(num_steps=15, optimizer__d_lr=1e-4), str(tmp_path))
  assert summary["step"] == 15 and summary["adjusted_on_resume"] == ["optimizer.d_lr: 0.0005 -> 0.0001"]
  record = json.loads((tmp_path / train.ADJUSTMENTS_FILE).read_text())
  assert record == {"step": 10, "changes": ["optimizer.d_lr: 0.0005 -> 0.0001"]}


def _idx_folder(directory, side):
  """MNIST-format IDX files of `side` x `side` random images."""
  rng = np.random.RandomState(0)
  os.makedirs(directory)
  for prefix, n in (("train", 120), ("t10k", 20)):
    for kind, arr in (("images-idx3", rng.randint(0, 256, (n, side, side))), ("labels-idx1", rng.randint(0, 10, n))):
      header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
      (directory / f"{prefix}-{kind}-ubyte").write_bytes(header + arr.astype(np.uint8).tobytes())
  return str(directory)


def test_resume_with_data_of_another_shape_names_the_shapes(tmp_path):
  def config(side):
    c = load_config("digits", "smoke")
    c.parallel.mode, c.num_steps, c.steps_per_dispatch, c.checkpoint_every = "none", 10, 5, 5
    c.data.source, c.data.name, c.data.num_train = "idx", "mnist", 100
    c.data.dir = _idx_folder(tmp_path / f"data{side}", side)
    return c

  train.train_and_evaluate(config(8), str(tmp_path / "run"))
  with pytest.raises(UserError) as e:  # data.dir may change on resume, but not to images of another size
    train.train_and_evaluate(config(12), str(tmp_path / "run"))
  msg = _one_line(e)
  assert "holds arrays of other shapes" in msg and "(64," in msg and "(144," in msg and "data.dir" in msg


def test_summary_records_versions_and_device(tmp_path):
  summary = train.train_and_evaluate(_config(), str(tmp_path))
  assert summary["versions"] == environment.versions() and summary["versions"]["jax"] == jax.__version__
  assert summary["device"] and np.isfinite(summary["d_loss"])


def test_check_destination(tmp_path):
  """The check every command runs on its output path before working: one line for a path blocked by
  a file or of the wrong kind; a new or matching path passes."""
  (tmp_path / "a_file").write_text("x")
  (tmp_path / "a_dir").mkdir()
  files.check_destination(str(tmp_path / "new" / "deeper" / "out.json"), "--json_out")
  files.check_destination(str(tmp_path / "a_file"), "--json_out")  # an existing file may be replaced
  files.check_destination(str(tmp_path / "a_dir"), "--out", folder=True)
  for path, folder, message in ((tmp_path / "a_file" / "out.json", False, "cannot be made: .*a_file is a file"),
                                (tmp_path / "a_dir", False, "is a folder; pass a file path"),
                                (tmp_path / "a_file", True, "is a file; pass a folder path")):
    with pytest.raises(UserError, match=message) as e:
      files.check_destination(str(path), "--out", folder=folder)
    assert _one_line(e)
  assert (tmp_path / "a_file").read_text() == "x" and not (tmp_path / "new").exists()
